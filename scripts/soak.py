#!/usr/bin/env python3
"""The soak behind scripts/soak: the release binary as shipped (nginx with the example site and snippet,
nginx/spawn-fcgi.sh with 2 processes), a steady moderate load of the scripts/traffic.py mix through nginx (each
journey with its own flow token, bookings included), and every responder's resident memory (VmRSS) sampled every
few seconds. Prints start, end and max RSS per process and the growth over the second half (MiB and MiB/min).

Criterion: over the second half (the first half is warm-up: SQLite page caches, malloc arenas, statement caches),
the RSS of a process must not grow by more than --max-growth MiB (median of its last three samples against the
median of the first three of that half). Exits 1 if one does, if a responder died, or if an answer was not the
one its request must get.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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
        samples: dict[int, list[tuple[float, int]]] = {pid: [] for pid in pids}
        start = time.monotonic()

        def sample() -> None:
            now = time.monotonic() - start
            for pid in pids:
                rss = rss_bytes(pid)
                if rss is not None:
                    samples[pid].append((now, rss))

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
            half = [rss for t, rss in series if t >= elapsed / 2]
            growth = (statistics.median(half[-3:]) - statistics.median(half[:3])) / MIB if len(half) >= 2 else 0.0
            minutes = elapsed / 2 / 60
            verdict = "ok" if alive and growth <= args.max_growth else "FAIL"
            failed = failed or verdict == "FAIL"
            print(f"responder {pid}:   RSS start {series[0][1] / MIB:.1f} MiB, end {series[-1][1] / MIB:.1f} MiB, "
                  f"max {max(r for _, r in series) / MIB:.1f} MiB; second half {growth:+.2f} MiB "
                  f"({growth / minutes:+.3f} MiB/min, {len(half)} samples){'' if alive else ', DIED'}: {verdict}")
        print(f"soak: {'FAIL' if failed else 'ok'} (criterion: at most {args.max_growth} MiB of RSS growth over the "
              f"second half, every responder alive, every answer as expected)")
        return 1 if failed else 0
    finally:
        processes.stop_all()
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
