"""APPOINTMENT FLOW across processes: several single-threaded flows-fcgi processes (``--listen unix:`` with
``--processes 4``) share one store, as spawn-fcgi or prefork deployments do: a SQLite file, then (the same tests)
a PostgreSQL database.

* Many clients race for the last seat of one slot: exactly one SUCCESS, every other confirm gets SUMMARY with an
  ``error_message``, one booking row.
* 40 journeys run at once (INIT, three dropdown selections, DETAILS, confirm), each for its own slot: all complete.
* No 503 (SQLITE_BUSY beyond the busy timeout) ever reaches a client.
* Processes started together on a fresh database file all come up (WAL switch and migrations exactly once).
* A booking acknowledged with SUCCESS is in the database after SIGKILL of the process right after the answer,
  and a retried confirm after a restart gets the same booking.

FastCGI is spoken directly (a small client below), so the timing of the race is the clients', not a web server's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (
    STORES,
    Processes,
    Store,
    children_of,
    clean_env,
    make_store,
    parse_cgi_output,
    serving_pids,
    start_listen,
    tail,
    wait_for_listener,
    wait_until,
    write_config,
)
from flowclient import FlowCrypto, KeyPair, sign

PATH = "/flows/appointment"
VERSION = "3.0"

# One department at one location, open all day every day in 15-minute slots, one seat per slot: the test never
# depends on the time of day it runs at (it books tomorrow and the day after).
CATALOG = {
    "time_zone": "Europe/London",
    "days_ahead": 3,
    "slot_minutes": 15,
    "capacity": 1,
    "departments": [{"id": "repairs", "title": "Repairs"}],
    "locations": [{"id": "hq", "title": "Head office", "departments": ["repairs"]}],
    "hours": {day: ["00:00-24:00"] for day in
              ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]},
}

PERSON = {"name": "Test Customer", "email": "customer@example.com", "phone": "+44 20 7946 0000",
          "more_details": ""}


# --------------------------------------------------------------------------------------------------------
# A minimal FastCGI client (responder role, one request per connection)
# --------------------------------------------------------------------------------------------------------

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def _record(kind: int, content: bytes) -> bytes:
    """One or more records of ``kind`` for request id 1 carrying ``content`` (an empty record when empty)."""
    chunks = [content[i:i + 65535] for i in range(0, len(content), 65535)] or [b""]
    out = b""
    for chunk in chunks:
        padding = (-len(chunk)) % 8
        out += struct.pack(">BBHHBx", 1, kind, 1, len(chunk), padding) + chunk + b"\0" * padding
    return out


def _pair(name: str, value: str) -> bytes:
    def length(data: bytes) -> bytes:
        return bytes([len(data)]) if len(data) < 128 else struct.pack(">I", len(data) | 0x80000000)
    n, v = name.encode(), value.encode()
    return length(n) + length(v) + n + v


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the responder closed the connection mid-record")
        data += chunk
    return bytes(data)


class FastCGIPost:
    """A signed POST prepared in full, so that a racing client only has to connect and send."""

    def __init__(self, sock_path: str, path: str, body: bytes, signature: str):
        params = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": path, "REQUEST_URI": path,
            "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_HUB_SIGNATURE_256": signature,
        }
        self.sock_path = sock_path
        self.message = (_record(FCGI_BEGIN_REQUEST, struct.pack(">HB5x", 1, 0))
                        + _record(FCGI_PARAMS, b"".join(_pair(k, v) for k, v in params.items()))
                        + _record(FCGI_PARAMS, b"") + _record(FCGI_STDIN, body) + _record(FCGI_STDIN, b""))

    def send(self, timeout: float = 20.0):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.sock_path)
            sock.sendall(self.message)
            stdout = bytearray()
            while True:
                _, kind, _, length, padding = struct.unpack(">BBHHBx", _recv_exactly(sock, 8))
                content = _recv_exactly(sock, length + padding)[:length]
                if kind == FCGI_STDOUT:
                    stdout += content
                elif kind == FCGI_END_REQUEST:
                    return parse_cgi_output(bytes(stdout))


class AppointmentClient:
    """WhatsApp's side of the appointment flow, over FastCGI to one socket."""

    def __init__(self, sock_path: str, keys: KeyPair, app_secret: str):
        self.sock_path = sock_path
        self.crypto = FlowCrypto(keys.public_key())
        self.app_secret = app_secret
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def prepare(self, token: str, action: str, screen: str = "", data: dict | None = None):
        request = {"version": VERSION, "action": action, "flow_token": token, "screen": screen,
                   "data": data or {}}
        context = self.crypto.encrypt(request)
        post = FastCGIPost(self.sock_path, PATH, context.body, sign(self.app_secret, context.body))
        return post, context

    def finish(self, response, context) -> tuple[int, dict]:
        with self.lock:
            self.statuses.append(response.status)
        if response.status in (200, 427):
            return response.status, context.decrypt_answer(response.body)
        return response.status, {"body": response.text}

    def send(self, token: str, action: str, screen: str = "", data: dict | None = None) -> tuple[int, dict]:
        post, context = self.prepare(token, action, screen, data)
        return self.finish(post.send(), context)

    def ok(self, token: str, action: str, screen: str = "", data: dict | None = None) -> dict:
        status, answer = self.send(token, action, screen, data)
        assert status == 200, (status, answer)
        return answer

    def journey_to_summary(self, token: str, pick_date, pick_time) -> dict:
        """INIT, the three dropdowns, DETAILS; ``pick_date``/``pick_time`` choose from the offered lists."""
        first = self.ok(token, "INIT")
        assert first["screen"] == "APPOINTMENT", first
        assert [first["data"][k] for k in ("is_location_enabled", "is_date_enabled", "is_time_enabled")] == \
            [False, False, False], first
        department = first["data"]["department"][0]["id"]
        answer = self.ok(token, "data_exchange", "APPOINTMENT",
                         {"trigger": "department_selected", "department": department})
        location = answer["data"]["location"][0]["id"]
        answer = self.ok(token, "data_exchange", "APPOINTMENT",
                         {"trigger": "location_selected", "department": department, "location": location})
        date = pick_date(answer["data"]["date"])
        answer = self.ok(token, "data_exchange", "APPOINTMENT",
                         {"trigger": "date_selected", "department": department, "location": location, "date": date})
        assert answer["data"]["is_time_enabled"] is True, answer
        time_id = pick_time(answer["data"]["time"])
        fields = {"department": department, "location": location, "date": date, "time": time_id, **PERSON}
        summary = self.ok(token, "data_exchange", "DETAILS", fields)
        assert summary["screen"] == "SUMMARY", summary
        assert "error_message" not in summary["data"], summary
        return fields


def success_params(answer: dict) -> dict | None:
    if answer.get("screen") != "SUCCESS":
        return None
    return answer["data"]["extension_message_response"]["params"]


def bookings(store: Store | Path) -> list[tuple]:
    """The bookings in a ``Store``, or in a SQLite file."""
    sql = "SELECT id, flow_token, date, time, status FROM appointment_bookings ORDER BY id"
    if isinstance(store, Store):
        return store.rows(sql)
    with sqlite3.connect(store) as conn:
        return conn.execute(sql).fetchall()


# --------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------


def write_catalog(workdir: Path) -> Path:
    path = workdir / "appointment.catalog.json"
    path.write_text(json.dumps(CATALOG, indent=2))
    return path


@pytest.fixture(scope="module", params=STORES)
def prefork(request, binary, keys, app_secret, tmp_path_factory):
    """4 single-threaded processes (``--processes 4``) on one unix socket, one store (SQLite, then PostgreSQL)."""
    workdir = tmp_path_factory.mktemp("appointment-prefork")
    store = make_store(request.param, workdir, request)
    config = write_config(workdir / "flows.env", keys, app_secret, workdir, DATABASE_URL=store.database_url,
                          APPOINTMENT_CATALOG=str(write_catalog(workdir)), LOG_LEVEL="info")
    sock = workdir / "appointment.sock"
    processes = Processes()
    try:
        parent = start_listen(binary, config, workdir, processes, f"unix:{sock}",
                              ["--processes", "4", "--threads", "1"])
        workers = wait_until(lambda: len(children_of(parent.pid)) == 4 and children_of(parent.pid), 10,
                             "4 worker processes")
        client = AppointmentClient(str(sock), keys, app_secret)
        status, _ = client.send(f"warm-up-{secrets.token_hex(4)}", "ping")
        if status == 404:
            pytest.skip("the binary does not serve the appointment flow yet (ping got 404)")
        assert status == 200
        yield {"client": client, "workers": workers, "store": store, "log": workdir / "responder.log"}
    finally:
        processes.stop_all()


def tomorrow(dates: list[dict]) -> str:
    # Today, tomorrow, the day after: all open, so the second entry is tomorrow.
    assert len(dates) == 3, dates
    return dates[1]["id"]


def day_after(dates: list[dict]) -> str:
    assert len(dates) == 3, dates
    return dates[2]["id"]


# --------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slot", ["12:00", "12:15", "12:30"])
def test_processes_racing_for_the_last_seat_book_it_once(prefork, slot):
    client: AppointmentClient = prefork["client"]
    racers = 24
    run = os.urandom(4).hex()
    tokens = [f"race-{run}-{i}" for i in range(racers)]

    # Everyone reaches SUMMARY for the same slot (tomorrow) while it is still free.
    with ThreadPoolExecutor(8) as pool:
        fields = list(pool.map(lambda t: client.journey_to_summary(t, tomorrow, lambda times: slot), tokens))
    assert [f["time"] for f in fields] == [slot] * racers, fields

    # Then all confirm at once: connections made and requests encrypted first, released by one barrier.
    prepared = [client.prepare(token, "data_exchange", "SUMMARY", f) for token, f in zip(tokens, fields)]
    barrier = threading.Barrier(racers)
    log_size = Path(prefork["log"]).stat().st_size

    def confirm(item):
        post, context = item
        barrier.wait()
        return client.finish(post.send(), context)

    started = time.monotonic()
    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(confirm, prepared))
    elapsed = time.monotonic() - started
    served = sorted(serving_pids(Path(prefork["log"]), log_size, "SUMMARY") & set(prefork["workers"]))

    assert [status for status, _ in answers] == [200] * racers, answers
    winners = [answer for _, answer in answers if success_params(answer)]
    losers = [answer for _, answer in answers if not success_params(answer)]
    assert len(winners) == 1, answers
    assert len(losers) == racers - 1
    for answer in losers:
        assert answer["screen"] == "SUMMARY", answer
        assert "go back" in answer["data"]["error_message"], answer
    params = success_params(winners[0])
    assert params["time"] == slot and params["flow_token"] in tokens
    rows = [row for row in bookings(prefork["store"]) if row[1].startswith(f"race-{run}-")]
    assert len(rows) == 1 and rows[0][0] == int(params["booking_id"]), rows
    assert len(served) >= 2, f"only {served} of {prefork['workers']} served the confirms"
    print(f"\n{racers} confirms for one seat through {len(served)} processes: {elapsed * 1000:.0f} ms")


def test_forty_concurrent_journeys_all_complete(prefork):
    client: AppointmentClient = prefork["client"]
    run = os.urandom(4).hex()
    journeys = 40

    def journey(index: int) -> dict:
        token = f"journey-{run}-{index}"
        fields = client.journey_to_summary(token, day_after, lambda times: times[index]["id"])
        answer = client.ok(token, "data_exchange", "SUMMARY", fields)
        params = success_params(answer)
        assert params is not None, answer
        return params

    started = time.monotonic()
    with ThreadPoolExecutor(journeys) as pool:
        results = list(pool.map(journey, range(journeys)))
    elapsed = time.monotonic() - started

    assert len({p["booking_id"] for p in results}) == journeys
    assert len({p["time"] for p in results}) == journeys
    rows = [row for row in bookings(prefork["store"]) if row[1].startswith(f"journey-{run}-")]
    assert len(rows) == journeys
    print(f"\n{journeys} concurrent journeys ({journeys * 6} requests) through 4 processes: {elapsed:.2f} s")

    # The access and flow log lines of all those journeys: one line per request, no personal data, no tokens.
    log = Path(prefork["log"]).read_text()
    assert log.count(" route=appointment ") >= journeys * 6, log[-2000:]
    for secret in (PERSON["name"], PERSON["email"], PERSON["phone"], f"journey-{run}-"):
        assert secret not in log, secret


def test_no_busy_error_ever_reached_a_client(prefork):
    # Runs after the two above (same module, same processes): every answer so far was 200 or 427.
    client: AppointmentClient = prefork["client"]
    assert client.statuses, "no requests recorded"
    assert set(client.statuses) <= {200, 427}, sorted(set(client.statuses))
    log = prefork["log"].read_text()
    assert "status=503" not in log and "storage unavailable" not in log, log[-2000:]
    assert "status=500" not in log, log[-2000:]


@pytest.mark.parametrize("kind", STORES)
def test_booking_acknowledged_with_success_survives_sigkill(kind, request, binary, keys, app_secret, tmp_path):
    catalog = write_catalog(tmp_path)
    db = make_store(kind, tmp_path, request)
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, APPOINTMENT_CATALOG=str(catalog),
                          DATABASE_URL=db.database_url)
    sock = tmp_path / "single.sock"
    processes = Processes()
    try:
        responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        client = AppointmentClient(str(sock), keys, app_secret)
        token = "kill-" + os.urandom(4).hex()
        fields = client.journey_to_summary(token, tomorrow, lambda times: "15:45")
        post, context = client.prepare(token, "data_exchange", "SUMMARY", fields)
        response = post.send()
        os.kill(responder.pid, signal.SIGKILL)  # right after the answer, before any clean shutdown
        responder.wait(5)
        assert responder.returncode == -signal.SIGKILL
        status, answer = client.finish(response, context)
        assert status == 200, answer
        params = success_params(answer)
        assert params is not None, answer

        # The killed process never closed its connection (on SQLite the WAL is left behind): the booking is there.
        rows = bookings(db)
        assert rows == [(int(params["booking_id"]), token, params["date"], "15:45", "booked")], rows

        # A new process on the same file knows the session: the retried confirm gets the same booking.
        sock.unlink(missing_ok=True)
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}", label="flows-fcgi (restarted)")
        status, again = client.send(token, "data_exchange", "SUMMARY", fields)
        assert status == 200 and success_params(again) == params, again
        status, closed = client.send(token, "INIT")
        assert status == 427 and "error_msg" in closed, closed
        assert len(bookings(db)) == 1
    finally:
        processes.stop_all()


def test_processes_starting_together_on_a_fresh_database(binary, keys, app_secret, tmp_path):
    """spawn-fcgi -F N or several units start responders at the same moment on a new file: all must serve."""
    catalog = write_catalog(tmp_path)
    for round_ in range(6):
        workdir = tmp_path / f"round{round_}"
        workdir.mkdir()
        config = write_config(workdir / "flows.env", keys, app_secret, workdir, APPOINTMENT_CATALOG=str(catalog))
        processes = Processes()
        try:
            # Each waits for the same file to appear, then execs the responder: they start within microseconds.
            go = workdir / "go"
            started = [processes.start(["sh", "-c", f'while [ ! -e "{go}" ]; do :; done; exec "$0" "$@"',
                                        str(binary), "--config", str(config), "--listen", f"unix:{workdir}/{i}.sock"],
                                       f"flows-fcgi {i}", workdir / f"{i}.out", env=clean_env())
                       for i in range(6)]
            go.touch()
            for i, popen in enumerate(started):
                try:
                    wait_for_listener(str(workdir / f"{i}.sock"), alive=lambda: popen.poll() is None)
                except RuntimeError:
                    raise AssertionError(f"responder {i} of round {round_} exited with {popen.returncode}:\n"
                                         + tail(workdir / f"{i}.out") + tail(workdir / "responder.log"))
            client = AppointmentClient(str(workdir / "5.sock"), keys, app_secret)
            assert client.ok("fresh", "INIT")["screen"] == "APPOINTMENT"
            with sqlite3.connect(workdir / "flows.db") as conn:
                applied = conn.execute("SELECT id FROM schema_migrations WHERE id LIKE 'appointment-%'").fetchall()
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            assert applied == [("appointment-1",), ("appointment-2",), ("appointment-3",)] and mode == "wal"
        finally:
            processes.stop_all()
