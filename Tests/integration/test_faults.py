"""FAULTS (issue 11): what the responder does when the machine misbehaves, against real servers and real SQLite files.

* SIGKILL of every responder process (spawn-fcgi's children, or a ``--processes`` parent and its children) while
  many booking journeys run through nginx, in rounds: every booking a client got SUCCESS for is in the database,
  no slot holds more than its capacity, ``PRAGMA integrity_check`` is ok, a restart serves again, and an
  acknowledged confirm sent again gets the same booking id.
* The database on a small tmpfs filled up: writes (a booking confirm, a webhook) get 503 with a log line naming the
  file and "database or disk is full", reads still work, nothing stored is lost; the filler deleted, the next write
  succeeds in the same process.
* The database file made read-only (the responder runs as ``nobody``: root ignores file modes), while serving and
  when a process starts: 503 with a log line naming the file; fixed, writes succeed without a restart.
* A lock held by another process beyond ``DATABASE_BUSY_TIMEOUT_MS``: the write gets 503 (it answers, no hang),
  requests that do not write are unaffected, and after the release 200.
* Clients (FastCGI, on the raw socket) that hang up mid-request and mid-response, and a client that sends its body
  a byte at a time, directly and through nginx's shipped config: the same processes keep serving the others.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import sys
import threading
import time
from pathlib import Path

import pytest

import fcgiwire
from conftest import (
    Processes,
    children_of,
    clean_env,
    pid_alive,
    socket_inodes,
    start_listen,
    start_nginx,
    start_spawn_fcgi,
    tail,
    wait_for_accept,
    wait_for_listener,
    wait_until,
    write_config,
)
from flowclient import FlowCrypto, HttpConnection, WhatsAppClient, generate_keypair, sign
from test_appointment import CATALOG as APPOINTMENT_CATALOG
from test_appointment import PERSON, AppointmentClient, success_params

APPOINTMENT = "/flows/appointment"
API_TOKEN = "faults-api-token-0123456789"
VERIFY_TOKEN = "faults-verify"
NOBODY = 65534

# test_appointment's catalog (one department, one location, open all day in 15-minute slots, today and the next two
# days) with two seats per slot.
CATALOG = {**APPOINTMENT_CATALOG, "capacity": 2}


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def fault_config(workdir: Path, keys, app_secret: str, database: Path | None = None, **extra: str) -> Path:
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    catalog.chmod(0o644)
    values = {"APPOINTMENT_CATALOG": str(catalog), "API_TOKEN": API_TOKEN, "VERIFY_TOKEN": VERIFY_TOKEN,
              "LOG_LEVEL": "info", **extra}
    if database is not None:
        values["DATABASE_URL"] = f"sqlite:{database}"
    return write_config(workdir / "flows.env", keys, app_secret, workdir, **values)


def integrity(db: Path) -> str:
    with sqlite3.connect(db, timeout=10) as conn:
        return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


def booking_rows(db: Path) -> dict[str, list[tuple]]:
    """Booked rows by flow token: (id, date, time)."""
    rows: dict[str, list[tuple]] = {}
    with sqlite3.connect(db, timeout=10) as conn:
        for token, booking_id, date, time_ in conn.execute(
                "SELECT flow_token, id, date, time FROM appointment_bookings WHERE status = 'booked'"):
            rows.setdefault(token, []).append((booking_id, date, time_))
    return rows


def fullest_slot(db: Path) -> int:
    with sqlite3.connect(db, timeout=10) as conn:
        row = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM appointment_bookings WHERE status = "
                           "'booked' GROUP BY department, location, date, time)").fetchone()
    return row[0] or 0


def webhook_body(wamid: str, text: str = "fault test") -> bytes:
    message = {"from": "15550001234", "id": wamid, "timestamp": str(int(time.time())), "type": "text",
               "text": {"body": text}}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [message]}}]}]}).encode()


def read_api(address, resource: str, query: str = "") -> fcgiwire.HttpResponse:
    return fcgiwire.exchange(address, fcgiwire.message("GET", "/x/" + resource,
                                                       headers=[("Authorization", f"Bearer {API_TOKEN}")],
                                                       query=query))


def post_webhook(address, app_secret: str, wamid: str, text: str = "fault test") -> fcgiwire.HttpResponse:
    return fcgiwire.exchange(address, fcgiwire.signed_post("/x/webhook", webhook_body(wamid, text), app_secret))


def first_free(times: list[dict]) -> str:
    return next(t["id"] for t in times if t.get("enabled", True))


def tomorrow(dates: list[dict]) -> str:
    return dates[1]["id"]


def log_lines(log: Path, *needles: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if all(n in line for n in needles)]


def assert_nothing_lost(db: Path, sock: Path, before: tuple[str, dict], completed: str, messages: int) -> None:
    """The booking acknowledged before the fault is there as it was, the one completed after it once, every
    webhook message too, and the file is intact."""
    token, params = before
    rows = booking_rows(db)
    assert rows[token] == [(int(params["booking_id"]), params["date"], params["time"])]
    assert len(rows[completed]) == 1
    assert json.loads(read_api(str(sock), "messages").body)["total"] == messages
    assert integrity(db) == "ok"


def ping_ok(client: AppointmentClient) -> None:
    status, answer = client.send("ping-probe", "ping")
    assert (status, answer) == (200, {"data": {"status": "active"}})


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted for this test (root only), unmounted afterwards even if busy."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "flows-faults", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_up(path: Path) -> int:
    """Writes ``path`` until the file system says ENOSPC; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            chunk = b"\xa5" * size
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


# --------------------------------------------------------------------------------------------------------
# Disk full
# --------------------------------------------------------------------------------------------------------


def test_disk_full_gives_503_with_a_clear_log_line_and_recovers_without_restart(
        binary, keys, app_secret, tmp_path, small_disk, processes):
    db = small_disk / "flows.db"
    log = tmp_path / "responder.log"  # not on the full disk: the log line must get out
    config = fault_config(tmp_path, keys, app_secret, db)
    sock = tmp_path / "faults.sock"
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--threads", "2"])
    client = AppointmentClient(str(sock), keys, app_secret)

    # Before: one booking and one webhook message stored; a second journey waits at SUMMARY.
    fields = client.journey_to_summary("full-before", tomorrow, first_free)
    booked = success_params(client.ok("full-before", "data_exchange", "SUMMARY", fields))
    assert booked is not None
    assert post_webhook(str(sock), app_secret, "wamid.before").status == 200
    waiting = client.journey_to_summary("full-waiting", tomorrow, first_free)

    filler = small_disk / "filler"
    filled = fill_up(filler)
    usage = os.statvfs(small_disk)
    print(f"\nfilled {filled} bytes; {usage.f_bfree} blocks free")

    # Writes: 503, a log line naming the file and the problem; the process is the same.
    status, answer = client.send("full-waiting", "data_exchange", "SUMMARY", waiting)
    assert status == 503, (status, answer)
    hook = post_webhook(str(sock), app_secret, "wamid.during")
    assert hook.status == 503, hook
    for route in ("flow=appointment", "route=webhook"):
        lines = log_lines(log, "storage unavailable", "error=", route)
        assert lines, tail(log)
        assert str(db) in lines[-1] and "database or disk is full" in lines[-1], lines[-1]

    # Reads still work, and so does what needs no database.
    assert client.ok("full-reader", "INIT")["screen"] == "APPOINTMENT"
    ping_ok(client)
    listed = read_api(str(sock), "bookings")
    assert listed.status == 200 and json.loads(listed.body)["total"] == 1, listed
    messages = read_api(str(sock), "messages")
    assert messages.status == 200 and json.loads(messages.body)["total"] == 1, messages
    ready = fcgiwire.exchange(str(sock), fcgiwire.message("GET", "/x/health/ready"))
    assert ready.status == 503 and b"full" in ready.body, ready
    assert integrity(db) == "ok"

    # Space again: the next writes succeed in the same process, and nothing was lost.
    filler.unlink()
    status, answer = client.send("full-waiting", "data_exchange", "SUMMARY", waiting)
    assert status == 200 and success_params(answer) is not None, (status, answer)
    assert post_webhook(str(sock), app_secret, "wamid.after").status == 200
    assert responder.poll() is None
    assert fcgiwire.exchange(str(sock), fcgiwire.message("GET", "/x/health/ready")).status == 200
    assert_nothing_lost(db, sock, ("full-before", booked), "full-waiting", messages=2)


# --------------------------------------------------------------------------------------------------------
# Read-only database
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def nobody_dir():
    """A world-traversable folder outside pytest's 0700 tmp dir, for a responder running as ``nobody``."""
    work = Path(tempfile.mkdtemp(prefix="flows-faults-ro-"))
    work.chmod(0o755)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def start_as_nobody(binary, config: Path, work: Path, processes: Processes, sock: Path, label: str):
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            str(binary), "--config", str(config), "--listen", f"unix:{sock}", "--socket-mode", "0666",
            "--threads", "2"]
    popen = processes.start(argv, label, work / "responder.out", env=clean_env())
    try:
        wait_for_listener(str(sock), alive=lambda: popen.poll() is None)
    except RuntimeError:
        raise AssertionError(f"{label} exited with {popen.returncode}:\n{tail(work / 'responder.out')}"
                             f"\n{tail(work / 'responder.log')}")
    return popen


def test_read_only_database_gives_503_with_a_clear_log_line_and_recovers_without_restart(
        binary, app_secret, nobody_dir, processes):
    work = nobody_dir
    keys = generate_keypair(str(work), "ro", passphrase=None)
    db = work / "flows.db"
    log = work / "responder.log"
    config = fault_config(work, keys, app_secret, db)
    for path in [work, *work.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    sock = work / "ro.sock"
    responder = start_as_nobody(binary, config, work, processes, sock, "flows-fcgi as nobody")
    client = AppointmentClient(str(sock), keys, app_secret)
    fields = client.journey_to_summary("ro-before", tomorrow, first_free)
    booked = success_params(client.ok("ro-before", "data_exchange", "SUMMARY", fields))
    assert post_webhook(str(sock), app_secret, "wamid.ro-before").status == 200

    def refusals() -> list[str]:
        return log_lines(log, "storage unavailable", "error=", "route=webhook")

    def writes_refused(round_: str) -> None:
        seen = len(refusals())
        waiting = client.journey_to_summary(f"ro-{round_}", tomorrow, first_free) if round_ == "serving" else None
        db.chmod(0o444)
        if waiting is not None:
            status, answer = client.send(f"ro-{round_}", "data_exchange", "SUMMARY", waiting)
            assert status == 503, (status, answer)
        hook = post_webhook(str(sock), app_secret, f"wamid.ro-{round_}")
        assert hook.status == 503, hook
        # The error line is written as the answer goes out: wait for this round's rather than race it.
        lines = wait_until(lambda: refusals()[seen:], timeout=5, what="the webhook's storage error in the log")
        assert str(db) in lines[-1] and "read-only" in lines[-1].replace("readonly", "read-only"), lines[-1]
        # Reads still work.
        assert read_api(str(sock), "bookings").status == 200
        assert client.ok(f"ro-reader-{round_}", "INIT")["screen"] == "APPOINTMENT"
        db.chmod(0o644)
        if waiting is not None:
            status, answer = client.send(f"ro-{round_}", "data_exchange", "SUMMARY", waiting)
            assert status == 200 and success_params(answer) is not None, (status, answer)
        assert post_webhook(str(sock), app_secret, f"wamid.ro-{round_}").status == 200

    # 1. Made read-only while the process serves (its connections were opened read-write).
    writes_refused("serving")
    assert responder.poll() is None

    # 2. Read-only when a process starts (a restore with the wrong owner, a respawn after a chmod): it refuses to
    #    start, naming the file. (SQLite would open it read-only, and that connection would create the -wal and -shm
    #    files read-only too, which keeps every later writer read-only even once the file is fixed.)
    processes.stop(processes.procs[-1])
    assert not Path(f"{db}-shm").exists()
    db.chmod(0o444)
    refused = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(binary),
                              "--config", str(config), "--listen", f"unix:{sock}"],
                             capture_output=True, text=True, timeout=30, env=clean_env())
    assert refused.returncode == 1, refused
    assert str(db) in refused.stderr and "read-only" in refused.stderr, refused.stderr
    assert not Path(f"{db}-shm").exists() and not Path(f"{db}-wal").exists()
    db.chmod(0o644)
    restarted = start_as_nobody(binary, config, work, processes, sock, "flows-fcgi as nobody (restarted)")
    assert post_webhook(str(sock), app_secret, "wamid.ro-started").status == 200
    assert restarted.poll() is None

    assert_nothing_lost(db, sock, ("ro-before", booked), "ro-serving", messages=3)


# --------------------------------------------------------------------------------------------------------
# A lock held by another process
# --------------------------------------------------------------------------------------------------------


HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO webhook_flow_events (event, raw, received_at) VALUES ('LOCK', 'hung holder', 0)")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("holder", ["open transaction", "hung process"])
def test_lock_held_beyond_the_busy_timeout_gives_503_not_a_hang(binary, keys, app_secret, tmp_path, processes,
                                                                holder):
    """Another process holds the write lock with a write pending: ``open transaction`` (an admin shell left in
    BEGIN IMMEDIATE) commits at the end; ``hung process`` (a stopped cron job) is SIGSTOPped and finally SIGKILLed,
    its uncommitted write discarded. Writes get 503 within about the busy timeout; readers go on (WAL)."""
    busy_ms = 300
    db = tmp_path / "flows.db"
    log = tmp_path / "responder.log"
    config = fault_config(tmp_path, keys, app_secret, DATABASE_BUSY_TIMEOUT_MS=str(busy_ms))
    sock = tmp_path / "lock.sock"
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--threads", "2"])
    client = AppointmentClient(str(sock), keys, app_secret)
    waiting = client.journey_to_summary("lock-waiting", tomorrow, first_free)

    other = None
    if holder == "open transaction":
        other = sqlite3.connect(db, isolation_level=None, timeout=10)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO webhook_flow_events (event, raw, received_at) VALUES ('LOCK', 'admin', 0)")
    else:
        hung = processes.start([sys.executable, "-c", HOLDER, str(db)], "lock holder", tmp_path / "holder.out")
        wait_until(lambda: "locked" in (tmp_path / "holder.out").read_text(), 10, "the holder to take the lock")
        os.kill(hung.pid, signal.SIGSTOP)
    try:
        timings = {}

        def timed(name, call):
            started = time.monotonic()
            result = call()
            timings[name] = time.monotonic() - started
            return result

        status, answer = timed("confirm", lambda: client.send("lock-waiting", "data_exchange", "SUMMARY", waiting))
        hook = timed("webhook", lambda: post_webhook(str(sock), app_secret, "wamid.locked"))
        listed = timed("read API", lambda: read_api(str(sock), "bookings"))
        assert status == 503, (status, answer)
        assert hook.status == 503, hook
        assert listed.status == 200, listed
        # Each answered instead of hanging: well below the request deadline (8 s) and nginx's 8 s read timeout.
        assert max(timings.values()) < 5, timings
        lines = log_lines(log, "storage unavailable", "error=", "route=webhook")
        assert lines and str(db) in lines[-1] and "database is locked" in lines[-1], lines[-1:] or tail(log)
        ping_ok(client)
        assert client.ok("lock-reader", "INIT")["screen"] == "APPOINTMENT"
        assert fcgiwire.exchange(str(sock), fcgiwire.message("GET", "/x/health/ready")).status == 503
        print(f"\nanother process holding the write lock ({holder}): "
              + ", ".join(f"{k} {listed.status if k == 'read API' else 503} after {v * 1000:.0f} ms"
                          for k, v in timings.items()) + f" (busy timeout {busy_ms} ms)")
    finally:
        if other is not None:
            other.execute("COMMIT")
            other.close()
        else:
            os.kill(hung.pid, signal.SIGKILL)
            hung.wait(5)
    status, answer = client.send("lock-waiting", "data_exchange", "SUMMARY", waiting)
    assert status == 200 and success_params(answer) is not None, (status, answer)
    assert post_webhook(str(sock), app_secret, "wamid.locked").status == 200
    assert responder.poll() is None
    assert integrity(db) == "ok"
    with sqlite3.connect(db) as conn:
        events = [row[0] for row in conn.execute("SELECT raw FROM webhook_flow_events WHERE event = 'LOCK'")]
    assert events == (["admin"] if holder == "open transaction" else []), events


# --------------------------------------------------------------------------------------------------------
# SIGKILL of every responder while bookings run
# --------------------------------------------------------------------------------------------------------

NGINX_FLOW = "/flows-fcgi" + APPOINTMENT


class BookingLoad:
    """Booking journeys through nginx from ``clients`` threads until stopped. Records every SUCCESS (the
    acknowledged bookings) and every confirm that got no answer from the responder (502, connection reset)."""

    def __init__(self, address, keys, app_secret: str, run: str, clients: int = 10):
        self.client = WhatsAppClient(address, keys.public_key(), app_secret, timeout=20)
        self.run = run
        self.lock = threading.Lock()
        self.acknowledged: dict[str, tuple[dict, dict]] = {}  # token -> (confirm fields, SUCCESS params)
        self.unanswered: dict[str, dict] = {}  # token -> confirm fields
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self.counter = 0
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive(), "a booking client hung"

    def send(self, token: str, action: str, screen: str = "", data: dict | None = None):
        request = {"version": "3.0", "action": action, "flow_token": token, "screen": screen, "data": data or {}}
        try:
            exchange = self.client.send(NGINX_FLOW, request)
        except (ConnectionError, OSError):
            status, answer = 0, None
        else:
            status = exchange.status
            answer = exchange.answer() if status == 200 else None
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        return status, answer

    def loop(self, index: int) -> None:
        rng = random.Random(f"{self.run}-{index}")
        while not self.stop.is_set():
            with self.lock:
                self.counter += 1
                token = f"kill-{self.run}-{index}-{self.counter}"
            self.journey(token, rng)

    def journey(self, token: str, rng) -> None:
        status, answer = self.send(token, "INIT")
        if status != 200:
            return
        department = answer["data"]["department"][0]["id"]
        status, answer = self.send(token, "data_exchange", "APPOINTMENT",
                                   {"trigger": "department_selected", "department": department})
        if status != 200:
            return
        location = answer["data"]["location"][0]["id"]
        status, answer = self.send(token, "data_exchange", "APPOINTMENT",
                                   {"trigger": "location_selected", "department": department, "location": location})
        if status != 200:
            return
        dates = [d["id"] for d in answer["data"]["date"][1:] if d.get("enabled", True)]
        if not dates:
            return
        date = rng.choice(dates)
        status, answer = self.send(token, "data_exchange", "APPOINTMENT", {
            "trigger": "date_selected", "department": department, "location": location, "date": date})
        if status != 200:
            return
        # The first few free times only: clients compete for the same seats.
        times = [t["id"] for t in answer["data"]["time"] if t.get("enabled", True)][:6]
        if not times:
            return
        fields = {"department": department, "location": location, "date": date, "time": rng.choice(times),
                  **PERSON}
        status, answer = self.send(token, "data_exchange", "DETAILS", fields)
        if status != 200 or answer["screen"] != "SUMMARY" or "error_message" in answer["data"]:
            return
        status, answer = self.send(token, "data_exchange", "SUMMARY", fields)
        with self.lock:
            if status == 200 and success_params(answer) is not None:
                self.acknowledged[token] = (fields, success_params(answer))
            elif status != 200:
                self.unanswered[token] = fields


def responders_of(mode: str, handle) -> list[int]:
    if mode == "spawn-fcgi":
        return list(handle)
    return [handle.pid, *children_of(handle.pid)]


def test_sigkill_of_every_responder_loses_no_acknowledged_booking(binary, keys, app_secret, tmp_path, processes):
    config = fault_config(tmp_path, keys, app_secret)
    db = tmp_path / "flows.db"
    sock = tmp_path / "flows-fcgi.sock"  # start_spawn_fcgi's path; the prefork rounds listen on it too
    address = start_nginx(tmp_path, processes, f"unix:{sock}")

    def start(mode: str):
        if mode == "spawn-fcgi":
            return start_spawn_fcgi(binary, config, tmp_path, processes, count=2)[1]
        popen = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--processes", "2"],
                             label="flows-fcgi --processes 2")
        wait_until(lambda: len(children_of(popen.pid)) == 2, 10, "two prefork workers")
        return popen

    rounds = [("spawn-fcgi", 5), ("prefork", 20), ("spawn-fcgi", 40), ("prefork", 10)]
    handle = start(rounds[0][0])
    for number, (mode, target) in enumerate(rounds):
        load = BookingLoad(address, keys, app_secret, f"{number}{os.urandom(3).hex()}")
        load.start()
        try:
            wait_until(lambda: len(load.acknowledged) >= target, 120, f"{target} acknowledged bookings")
            pids = responders_of(mode, handle)
            for pid in pids:  # parent first: a prefork parent must not respawn what dies
                os.kill(pid, signal.SIGKILL)
            killed_at = len(load.acknowledged)
            if mode == "prefork":
                assert handle.wait(10) == -signal.SIGKILL  # the parent is ours to reap
            wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "every responder to die")
            # Let the clients run into the dead socket for a moment, then stop them.
            wait_until(lambda: load.statuses.get(502, 0) + load.statuses.get(0, 0) > 0, 10, "a failed request")
        finally:
            load.finish()
        acknowledged = dict(load.acknowledged)
        # Gone for good (reaped by init), or spawn-fcgi.sh would take the zombies for running responders.
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 30, "the killed responders reaped")

        # The database as the killed processes left it (WAL included).
        assert integrity(db) == "ok"
        rows = booking_rows(db)
        for token, (fields, params) in acknowledged.items():
            assert rows.get(token) == [(int(params["booking_id"]), fields["date"], fields["time"])], \
                (token, params, rows.get(token))
        assert all(len(found) == 1 for found in rows.values()), "a flow token with two bookings"
        assert fullest_slot(db) <= CATALOG["capacity"]

        # Restarted, the service resumes; an acknowledged confirm sent again gets the same booking.
        next_mode = rounds[number + 1][0] if number + 1 < len(rounds) else mode
        handle = start(next_mode)
        replay = BookingLoad(address, keys, app_secret, "replay")
        for token, (fields, params) in acknowledged.items():
            status, answer = replay.send(token, "data_exchange", "SUMMARY", fields)
            assert status == 200 and success_params(answer) == params, (token, status, answer)
        # A confirm that got no answer, sent again: booked once (the same id if the first one committed) or the
        # seat went meanwhile.
        for token, fields in load.unanswered.items():
            status, answer = replay.send(token, "data_exchange", "SUMMARY", fields)
            assert status == 200, (token, status)
            found = booking_rows(db).get(token, [])
            if success_params(answer) is not None:
                assert found == [(int(success_params(answer)["booking_id"]), fields["date"], fields["time"])]
            else:
                assert answer["screen"] == "SUMMARY" and "error_message" in answer["data"] and not found
        replay.journey(f"after-{number}", random.Random(number))
        assert f"after-{number}" in replay.acknowledged, replay.statuses
        print(f"\nround {number + 1} ({mode}): SIGKILL of {len(pids)} processes after {killed_at} acknowledged "
              f"bookings; {len(acknowledged)} acknowledged in all, {len(load.unanswered)} confirms unanswered, "
              f"statuses {dict(sorted(load.statuses.items()))}; all in the database, integrity ok, "
              f"fullest slot {fullest_slot(db)}/{CATALOG['capacity']}")
    assert integrity(db) == "ok"


# --------------------------------------------------------------------------------------------------------
# Clients that hang up, and a slow one, on the raw FastCGI socket
# --------------------------------------------------------------------------------------------------------


def hang_up(sock: socket.socket, reset: bool) -> None:
    if reset:  # RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def big_messages(address, app_secret: str, count: int = 100, size: int = 30000) -> None:
    """``count`` webhook messages of ``size`` characters each, so that ``/messages?limit=100`` answers MBs."""
    changes = [{"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [
        {"from": "15550001234", "id": f"wamid.big-{i}", "timestamp": str(int(time.time())), "type": "text",
         "text": {"body": f"{i:04d}" + "x" * (size - 4)}}]}} for i in range(count)]
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}).encode()
    response = fcgiwire.exchange(address, fcgiwire.signed_post("/x/webhook", body, app_secret))
    assert response.status == 200, response


def test_clients_hanging_up_mid_request_and_mid_response_leave_the_process_serving(
        binary, keys, app_secret, tmp_path, processes):
    """One process with one worker thread: a request left stuck would block every later one."""
    config = fault_config(tmp_path, keys, app_secret)
    path = tmp_path / "hangup.sock"
    address = str(path)
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{path}", ["--threads", "1"])
    client = AppointmentClient(address, keys, app_secret)
    big_messages(address, app_secret)
    query = "limit=100"
    whole = read_api(address, "messages", query)
    assert whole.status == 200 and len(json.loads(whole.body)["data"]) == 100 and len(whole.body) > 2_900_000
    ping = FlowCrypto(keys.public_key()).encrypt({"version": "3.0", "action": "ping"})
    params = fcgiwire.cgi_params("POST", APPOINTMENT, ping.body, [("X-Hub-Signature-256", sign(app_secret, ping.body))])
    big_read = fcgiwire.message("GET", "/x/messages", headers=[("Authorization", f"Bearer {API_TOKEN}")], query=query)
    full_ping = fcgiwire.begin(params) + fcgiwire.records(fcgiwire.STDIN, ping.body) + fcgiwire.records(
        fcgiwire.STDIN, b"")

    cases = {
        "inside the params": lambda s: s.sendall(fcgiwire.begin(params)[:60]),
        "after the params": lambda s: s.sendall(fcgiwire.begin(params)),
        "mid-body": lambda s: s.sendall(fcgiwire.begin(params) + fcgiwire.records(fcgiwire.STDIN, ping.body[:200])),
        "before reading the answer": lambda s: s.sendall(full_ping),
        "before reading a 3 MB answer": lambda s: s.sendall(big_read),
        "after 64 KiB of a 3 MB answer": lambda s: (s.sendall(big_read), fcgiwire.recv_exactly(s, 65536)),
    }
    for reset in (False, True):
        for name, act in cases.items():
            with fcgiwire.connect(address) as sock:
                act(sock)
                hang_up(sock, reset)
            ping_ok(client)  # served by the same single worker thread
            assert responder.poll() is None, f"the responder died after a hang-up {name}\n{tail(tmp_path / 'responder.log')}"
    again = read_api(address, "messages", query)
    assert again.status == 200 and again.body == whole.body
    log = (tmp_path / "responder.log").read_text()
    assert "fatal" not in log.lower(), log[-2000:]

    # Through nginx (which buffers the answer): a client gone mid-answer leaves the responder serving too.
    nginx = start_nginx(tmp_path, processes, f"unix:{path}")
    for _ in range(3):
        with HttpConnection(nginx) as conn:
            conn.send_head("GET", f"/flows-fcgi/messages?{query}", [("Authorization", f"Bearer {API_TOKEN}")])
            assert fcgiwire.recv_exactly(conn.sock, 12) == b"HTTP/1.1 200"  # the answer has started
            hang_up(conn.sock, True)
    response = WhatsAppClient(nginx, keys.public_key(), app_secret).send(NGINX_FLOW, {"version": "3.0",
                                                                                      "action": "ping"})
    assert response.status == 200 and response.answer() == {"data": {"status": "active"}}
    assert responder.poll() is None


def slow_ping(keys, app_secret):
    context = FlowCrypto(keys.public_key()).encrypt({"version": "3.0", "action": "ping"})
    return context, [("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(app_secret, context.body))]


@pytest.mark.parametrize("path", ["fastcgi-direct", "nginx-shipped"])
def test_a_slow_client_does_not_hold_up_the_others(binary, keys, app_secret, tmp_path, processes, path):
    """The slow client sends its body a byte at a time and holds back the last byte until every other request has
    been answered: if it blocked the responder, the others could never finish. Directly on the FastCGI socket it
    holds one of two worker threads; through nginx with the shipped config (request buffering on) it holds none,
    so the responder runs one thread only."""
    config = fault_config(tmp_path, keys, app_secret)
    sock = tmp_path / "slow.sock"
    threads = "2" if path == "fastcgi-direct" else "1"
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--threads", threads])
    client = AppointmentClient(str(sock), keys, app_secret)
    context, headers = slow_ping(keys, app_secret)
    others_done = threading.Event()
    result: dict = {}

    def trickle(send) -> None:
        for byte in context.body[:-1]:
            send(bytes([byte]))
            time.sleep(0.002)
        result["waited"] = others_done.wait(60)
        send(context.body[-1:])

    if path == "fastcgi-direct":
        before = socket_inodes(responder.pid)
        params = fcgiwire.cgi_params("POST", APPOINTMENT, context.body, headers[1:])
        conn = fcgiwire.connect(str(sock), timeout=90)

        def slow() -> None:
            conn.sendall(fcgiwire.begin(params))
            trickle(lambda piece: conn.sendall(fcgiwire.records(fcgiwire.STDIN, piece)))
            conn.sendall(fcgiwire.records(fcgiwire.STDIN, b""))
            result["response"] = fcgiwire.read_answer(conn)
    else:
        address = start_nginx(tmp_path, processes, f"unix:{sock}")
        conn = HttpConnection(address, timeout=90)

        def slow() -> None:
            conn.send_head("POST", NGINX_FLOW, headers, len(context.body))
            trickle(conn.send)
            result["response"] = conn.read_response()

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    if path == "fastcgi-direct":
        wait_for_accept(responder.pid, before)  # a worker thread is reading the slow body
    for _ in range(20):
        ping_ok(client)
    fields = client.journey_to_summary("beside-slow", tomorrow, first_free)
    assert success_params(client.ok("beside-slow", "data_exchange", "SUMMARY", fields)) is not None
    assert thread.is_alive(), "the slow client finished before the others: nothing was tested"
    others_done.set()
    thread.join(60)
    conn.close()
    assert result.get("waited") is True
    response = result["response"]
    assert response.status == 200, response
    assert context.decrypt_answer(response.body) == {"data": {"status": "active"}}
    assert responder.poll() is None
