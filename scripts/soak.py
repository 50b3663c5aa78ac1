#!/usr/bin/env python3
"""The soak behind scripts/soak: the release binary as shipped (nginx with the example site and snippet,
nginx/spawn-fcgi.sh with 2 processes), a steady moderate load of the scripts/traffic.py mix through nginx (each
journey with its own flow token, bookings included), and every responder's resident memory (VmRSS) sampled every
few seconds. Prints start, end and max RSS per process and the growth over the second half (MiB and
MiB/min), for VmRSS and for its heap part (RssAnon).

Criterion: over the second half (the first is warm-up: SQLite page caches, malloc arenas, statement caches; the
database is seeded larger than the page caches first), the floor of each responder's heap (RssAnon: private
anonymous memory, where a leak shows; the rest of VmRSS is mostly the binary's code paged in) must not rise by more
than --max-growth MiB from the third quarter of the run to the fourth. The floor, the lowest sample of a quarter,
because the heap rises and falls with the requests in flight as malloc takes memory and gives it back; a leak
lifts the floor. Exits 1 if it rises more, if a responder died, or if an answer was not the one its request must
get.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from traffic import Budget, Receiver, Traffic, prepare  # noqa: E402

from conftest import Processes, pid_alive, start_nginx, start_spawn_fcgi  # noqa: E402
from flowclient import http_request  # noqa: E402

PREFIX = "/flows-fcgi"
MIB = 1024 * 1024


def memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, RssAnon) in bytes: all resident memory, and the private anonymous part (heap, stacks) in which a
    leak shows; the rest is mostly the binary's code paged in as new paths run (bounded, shared)."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon"):
                    found[name] = int(value.split()[0]) * 1024
    except OSError:
        return None
    return (found["VmRSS"], found["RssAnon"]) if len(found) == 2 else None


def seed(db: Path, messages: int) -> None:
    """Webhook messages written straight into the database before the load (many senders, some text), so that the
    database is larger than SQLite's page caches from the start: a fresh file would fill them (2 MiB per connection
    for the main database and as much for temporary tables, SQLite's defaults) during the run, which looks like
    growth."""
    import sqlite3
    now = int(time.time())
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executemany(
            "INSERT OR IGNORE INTO webhook_messages (id, sender, type, timestamp, text, raw, received_at) "
            "VALUES (?, ?, 'text', ?, ?, ?, ?)",
            ((f"wamid.seed-{n}", f"1555{n % 5000:07d}", now - n, f"Seeded message {n} " + "lorem ipsum " * 8,
              '{"seeded":true,"n":%d,"padding":"%s"}' % (n, "x" * 200), now) for n in range(messages)))


class Pacer:
    """Spreads requests evenly at ``rate`` per second across the client threads."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=10.0)
    length.add_argument("--seconds", type=float)
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second (default 150)")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--interval", type=float, help="seconds between RSS samples (default: 5, short runs less)")
    parser.add_argument("--max-growth", type=float, default=1.0, help="MiB allowed over the second half")
    parser.add_argument("--seed-messages", type=int, default=30000,
                        help="webhook messages in the database before the load (default 30000, about 15 MB)")
    parser.add_argument("--samples", help="also write every sample to this file (seconds, pid, VmRSS, RssAnon, "
                                          "requests)")
    args = parser.parse_args()
    duration = args.seconds if args.seconds is not None else args.minutes * 60
    interval = args.interval or max(1.0, min(5.0, duration / 30))

    work = Path(tempfile.mkdtemp(prefix="flows-soak-"))
    receiver = Receiver()
    processes = Processes()
    try:
        keys, stranger, config = prepare(str(work), receiver.port)
        sock, pids = start_spawn_fcgi(Path(args.binary), Path(config), work, processes, count=2)
        address = start_nginx(work, processes, f"unix:{sock}")
        traffic = Traffic(keys, stranger)
        ready = http_request(address, "GET", PREFIX + "/health/ready")  # the schema is in place
        assert ready.status == 200, ready
        seed(work / "flows.db", args.seed_messages)
        pacer = Pacer(args.rate)
        latencies: list[float] = []

        def send(method, path, body=b"", headers=(), query=""):
            pacer.wait()
            started = time.monotonic()
            response = http_request(address, method, PREFIX + path + (f"?{query}" if query else ""), body,
                                    headers, timeout=15)
            latencies.append(time.monotonic() - started)
            return response

        print(f"soak: {args.binary} under spawn-fcgi (pids {pids}) behind nginx on {address[0]}:{address[1]}; "
              f"{duration:.0f} s at {args.rate:.0f} requests/s, RSS every {interval:.1f} s", flush=True)
        samples: dict[int, list[tuple[float, int, int]]] = {pid: [] for pid in pids}
        start = time.monotonic()
        log = open(args.samples, "w") if args.samples else None

        def sample() -> None:
            now = time.monotonic() - start
            for pid in pids:
                found = memory(pid)
                if found is not None:
                    samples[pid].append((now, *found))
                    if log:
                        log.write(f"{now:.1f} {pid} {found[0]} {found[1]} {sum(traffic.statuses.values())}\n")
                        log.flush()

        sample()
        budget = Budget()
        clients = [threading.Thread(target=traffic.run_tasks, args=(send, budget, i), daemon=True)
                   for i in range(args.clients)]
        for client in clients:
            client.start()
        next_sample = start + interval
        next_report = start + 60
        while time.monotonic() - start < duration:
            time.sleep(max(0.0, min(next_sample, start + duration) - time.monotonic()))
            sample()
            next_sample += interval
            if time.monotonic() >= next_report:
                next_report += 60
                sent = sum(traffic.statuses.values())
                print(f"  {time.monotonic() - start:5.0f} s: {sent} requests; RSS "
                      + ", ".join(f"{pid} {samples[pid][-1][1] / MIB:.1f} MiB" for pid in pids if samples[pid]),
                      flush=True)
            if not all(pid_alive(pid) for pid in pids):
                break
        budget.stop()
        for client in clients:
            client.join(30)
        elapsed = time.monotonic() - start
        sample()

        sent = sum(traffic.statuses.values())
        ordered = sorted(latencies)
        print(f"requests sent:     {sent} in {elapsed:.0f} s ({sent / elapsed:.0f}/s); "
              f"latency p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, p99 {ordered[int(len(ordered) * 0.99)] * 1000:.1f} ms")
        print(f"statuses:          {dict(sorted(traffic.statuses.items()))}")
        print(f"tasks:             {dict(traffic.kinds.most_common())}")
        print(f"callbacks:         {receiver.received[0]} completions delivered to the receiver")
        print(f"unexpected:        {len(traffic.unexpected)}" + "".join(f"\n    {u}" for u in traffic.unexpected[:10]))
        failed = bool(traffic.unexpected)
        for pid in pids:
            series = samples[pid]
            alive = pid_alive(pid)
            third = [s for s in series if elapsed / 2 <= s[0] < elapsed * 3 / 4]
            fourth = [s for s in series if s[0] >= elapsed * 3 / 4]
            if not third or not fourth:
                print(f"responder {pid}:   too few samples ({len(series)})")
                failed = True
                continue
            # The floor (lowest sample) of each quarter: the heap rises and falls as requests come and go and malloc
            # gives memory back; a leak lifts the floor.
            growth = {i: (min(s[i] for s in fourth) - min(s[i] for s in third)) / MIB for i in (1, 2)}
            minutes = elapsed / 4 / 60
            verdict = "ok" if alive and growth[2] <= args.max_growth else "FAIL"
            failed = failed or verdict == "FAIL"
            print(f"responder {pid}:   VmRSS start {series[0][1] / MIB:.1f} MiB, end {series[-1][1] / MIB:.1f} MiB, "
                  f"max {max(s[1] for s in series) / MIB:.1f} MiB, second half {growth[1]:+.2f} MiB "
                  f"({growth[1] / minutes:+.3f} MiB/min); heap (RssAnon) start {series[0][2] / MIB:.1f}, end "
                  f"{series[-1][2] / MIB:.1f}, max {max(s[2] for s in series) / MIB:.1f} MiB, second half "
                  f"{growth[2]:+.2f} MiB ({growth[2] / minutes:+.3f} MiB/min){'' if alive else ', DIED'}: {verdict}")
        print(f"soak: {'FAIL' if failed else 'ok'} (criterion: the floor of each responder's heap, RssAnon, rises by at "
              f"most {args.max_growth} MiB from the third quarter of the run to the fourth; every responder alive, "
              f"every answer as expected)")
        return 1 if failed else 0
    finally:
        processes.stop_all()
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
