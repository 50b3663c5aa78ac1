#!/usr/bin/env python3
"""flows-fcgi benchmark: flows-fcgi against the floor program, behind the same nginx, in the same run.

Generates a key, starts flows-fcgi under spawn-fcgi (2 processes) and the floor program (bench/floor.c, 2
processes) behind one nginx on loopback, generates thousands of distinct signed and encrypted requests (ping,
appointment INIT and a form flow's first data_exchange step, each with its own flow token) with an independent
client (Tests/integration/flowclient.py), replays them with wrk at 1 and 16 connections, and prints requests/s,
p50/p99 latency and non-200 counts, peak RSS per responder process, `openssl speed -multi <cores> rsa2048`, the
ratios to the floor, and the wall time of one plain-CGI request. It also replays whole appointment bookings (a
journey: INIT to SUCCESS, six requests under one fresh flow token) at 16 connections and counts the journeys that
ended in SUCCESS per second.

With --postgres it starts a PostgreSQL server of its own (Tests/integration/pgserver.py: initdb into a temporary
folder as the unprivileged postgres user, a free port), puts a second set of flows-fcgi processes (the same count,
the same nginx location settings) in front of it, and measures appointment INIT and the booking journeys on
PostgreSQL too, in the same rounds as the floor and SQLite. Run it through bench/run (which builds first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
from flowclient import FlowCrypto, generate_keypair, http_request, sign  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
user root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;{upstreams}
    server {{
        listen 127.0.0.1:{port};{locations}
    }}
}}
"""

# One location per set of responders, all alike (the floor's never keeps connections).
NGINX_LOCATION = """
        location /{name}/ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass {target};{keep_conn}
        }}"""

# A valid data_exchange from the entry screen of each shipped form flow (flows/<name>.json): the screen, its
# payload and the screen it leads to. The answer is checked against the Flow JSON like every other.
def _in_days(days: int) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=days)).isoformat()


FORM_STEPS = {
    "feedback": ("FEEDBACK_RATING", lambda: {"rating": "4", "comments": "Quick and friendly"}, "FEEDBACK_FOLLOW_UP"),
    "calendar-preferences": ("CALENDAR_PREFERENCES", lambda: {
        "notify_channels": ["whatsapp"], "reminder": "1_hour", "daily_agenda": False, "time_zone": "UTC"},
        "CALENDAR_CONFIRM"),
    "schedule": ("SCHEDULE_DATES", lambda: {"start_date": _in_days(1), "end_date": _in_days(2)}, "SCHEDULE_DAYS"),
    "budget": ("BUDGET_BASICS", lambda: {"period": "monthly", "currency": "EUR", "categories": ["groceries"]},
               "BUDGET_LIMITS"),
}

WRK_SCRIPT = """
local requests = dofile(os.getenv("BENCH_REQUESTS"))
local i = 0
function init(args) i = math.random(#requests) end
function request() i = i % #requests + 1; return requests[i] end
"""

# Booking journeys: wrk runs one thread per connection, and thread N replays the journeys of its own file
# ($BENCH_REQUESTS-N.lua, a list of journeys, each the list of its requests) in order: a request is sent once the
# answer to the one before it has come, as a phone does. At the end each thread says how many journeys it finished
# (their last answer came) and whether it ran out of them.
JOURNEY_SCRIPT = """
local threads, count = {}, 0
function setup(thread)
    thread:set("id", count)
    count = count + 1
    threads[count] = thread
end
function init(args)
    journeys = dofile(os.getenv("BENCH_REQUESTS") .. "-" .. id .. ".lua")
    journey, step, finished, exhausted = 1, 1, 0, 0
end
function request() return journeys[journey][step] end
function response(status, headers, body)
    step = step + 1
    if step > #journeys[journey] then
        journey, step, finished = journey + 1, 1, finished + 1
        if journey > #journeys then
            exhausted = 1
            journey = #journeys
            wrk.thread:stop()
        end
    end
end
function done(summary, latency, requests)
    for _, thread in ipairs(threads) do
        io.write(string.format("journey thread %d finished %d exhausted %d\\n", thread:get("id"),
                               thread:get("finished"), thread:get("exhausted")))
    end
end
"""

# The person every benchmark booking is for.
JOURNEY_PERSON = {"name": "Bench Customer", "email": "bench@example.com", "phone": "+44 20 7946 0000",
                  "more_details": ""}
# The screen each step of a journey answers with.
JOURNEY_SCREENS = ["APPOINTMENT", "APPOINTMENT", "APPOINTMENT", "APPOINTMENT", "SUMMARY", "SUCCESS"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def lua_string(data: bytes) -> str:
    out = ['"']
    for b in data:
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\%d" % b)
    out.append('"')
    return "".join(out)


def envelope(path: str, crypto: FlowCrypto, secret: str, clear: dict, port: int):
    """One raw HTTP request (signed and encrypted like WhatsApp's) and its context (to read the answer)."""
    context = crypto.encrypt(clear)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: {sign(secret, context.body)}\r\nContent-Length: {len(context.body)}\r\n\r\n")
    return head.encode() + context.body, context


def make_requests(path: str, crypto: FlowCrypto, secret: str, clear_for, count: int, port: int):
    """Raw HTTP requests, one per flow token, and their contexts (to check a sample of answers)."""
    pairs = [envelope(path, crypto, secret, clear_for(n), port) for n in range(count)]
    return [raw for raw, _ in pairs], [context for _, context in pairs]


def lua_value(value) -> str:
    """A Lua string of ``bytes``, a Lua list of a list."""
    if isinstance(value, bytes):
        return lua_string(value)
    return "{" + ",\n".join(lua_value(item) for item in value) + "}"


def write_lua(path: str, items: list) -> None:
    with open(path, "w") as f:
        f.write("return " + lua_value(items) + "\n")


def exchange(port: int, secret: str, raw: bytes, context) -> dict:
    """Sends one prepared request on a connection of its own; its answer decrypted (and checked against the Flow
    JSON), or the bench stopped when it is not a 200."""
    head, body = raw.split(b"\r\n\r\n", 1)
    path = head.split(b" ", 2)[1].decode()
    resp = http_request(("127.0.0.1", port), "POST", path,
                        headers=[("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(secret, body))],
                        body=body)
    if resp.status != 200:
        raise SystemExit(f"bench: {path} answered {resp.status}: {resp.body[:200]!r}")
    return context.decrypt_answer(resp.body)


def parse_duration_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, lua_requests: str, connections: int, seconds: int, script: str, threads: int = 1) -> dict:
    env = dict(os.environ, BENCH_REQUESTS=lua_requests)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", script,
         url], capture_output=True, text=True, env=env, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct, key in (("50", "p50"), ("99", "p99")):
        result[key] = parse_duration_ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    done = re.search(r"(\d+) requests in (\S+),", out)
    result["requests"], result["seconds"] = int(done.group(1)), parse_duration_ms(done.group(2)) / 1000
    result["threads"] = {int(t): (int(n), int(x)) for t, n, x in
                         re.findall(r"^journey thread (\d+) finished (\d+) exhausted (\d+)$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["non200"] = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return result


def peak_rss_kib(pids: list[int]) -> list[int]:
    values = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                values.append(int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)))
        except OSError:
            pass
    return values


def children_of(parent_pid_file: str) -> list[int]:
    with open(parent_pid_file) as f:
        return [int(line) for line in f.read().split()]


def cgi_wall_ms(binary: str, env: dict, body: bytes, secret: str, flow: str, rounds: int = 30) -> tuple[float, float]:
    cgi_env = dict(env, GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST", SCRIPT_NAME="/cgi-bin/flows.cgi",
                   PATH_INFO=f"/flows/{flow}", CONTENT_LENGTH=str(len(body)),
                   HTTP_X_HUB_SIGNATURE_256=sign(secret, body))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = subprocess.run([binary], input=body, env=cgi_env, capture_output=True, check=True).stdout
        times.append((time.perf_counter() - start) * 1000)
        if not out.startswith(b"Status: 200"):
            raise SystemExit(f"bench: CGI request failed: {out[:200]!r}")
    return statistics.median(times), min(times)


def write_bench_catalog(path: str) -> dict:
    """The appointment catalog of every flows-fcgi process of the bench: the shipped example's departments and
    locations (flows/appointment.catalog.json, the same as the built-in catalog, so INIT answers exactly as with
    the defaults), open around the clock every day in 15-minute slots of 1,000 seats each, no closed dates. The
    booking journeys spread over 14 department-location pairs x 12 dates x 96 times, so a slot never fills up and
    each slot's seat count stays small, as in a real diary; the bookings accumulate over the rounds like any
    business's do."""
    with open(os.path.join(ROOT, "flows", "appointment.catalog.json")) as f:
        catalog = json.load(f)
    catalog.update(hours={day: ["00:00-24:00"] for day in WEEKDAYS}, slot_minutes=15, capacity=1000, days_ahead=14,
                   min_notice_minutes=0, closed_dates=[])
    for location in catalog["locations"]:
        for own in ("hours", "capacity", "closed_dates"):
            location.pop(own, None)
    with open(path, "w") as f:
        json.dump(catalog, f, indent=2)
    return catalog


def journey_steps(token: str, slot: tuple[str, str, str, str]) -> list[dict]:
    """The six clear requests of one booking of ``slot`` (department, location, date, time) under ``token``:
    INIT, the three dropdowns of APPOINTMENT, DETAILS, and the confirm on SUMMARY (see JOURNEY_SCREENS)."""
    department, location, date, time_ = slot
    choice = {"department": department, "location": location}
    fields = {**choice, "date": date, "time": time_, **JOURNEY_PERSON}
    steps = [("INIT", "", {}),
             ("data_exchange", "APPOINTMENT", {"trigger": "department_selected", "department": department}),
             ("data_exchange", "APPOINTMENT", {"trigger": "location_selected", **choice}),
             ("data_exchange", "APPOINTMENT", {"trigger": "date_selected", **choice, "date": date}),
             ("data_exchange", "DETAILS", fields),
             ("data_exchange", "SUMMARY", fields)]
    return [{"version": "3.0", "action": action, "screen": screen, "data": data, "flow_token": token}
            for action, screen, data in steps]


class Store:
    """One store behind its own flows-fcgi processes: the location nginx serves them at, its two kinds of
    measurement, and the flow tokens that booked (read from the database itself)."""

    def __init__(self, name: str, location: str, booked_tokens):
        self.name, self.location, self.booked_tokens = name, location, booked_tokens
        self.init_kind = "init" if name == "sqlite" else f"{name}-init"
        self.journey_kind = f"{name}-journey"
        self.next_slot = 0


def sqlite_booked(path: str):
    def booked(prefix: str) -> list[str]:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute(
                "SELECT flow_token FROM appointment_bookings WHERE flow_token LIKE ? AND status = 'booked'",
                (prefix + "%",))]
        finally:
            db.close()
    return booked


def postgres_booked(server):
    def booked(prefix: str) -> list[str]:
        out = server.psql("SELECT flow_token FROM appointment_bookings "
                          f"WHERE flow_token LIKE '{prefix}%' AND status = 'booked'")
        return out.split("\n") if out else []
    return booked


class Journeys:
    """Whole bookings replayed with wrk on 16 connections, each journey under a fresh flow token and in a slot of
    its own; counts the journeys whose last answer came and whose booking is in the database (SUCCESS)."""

    CONNECTIONS = 16

    def __init__(self, work: str, crypto: FlowCrypto, secret: str, port: int):
        self.work, self.crypto, self.secret, self.port = work, crypto, secret, port
        self.script = os.path.join(work, "journeys.lua")
        with open(self.script, "w") as f:
            f.write(JOURNEY_SCRIPT)
        self.slots: list[tuple[str, str, str, str]] = []
        self.batches = 0

    def requests(self, store: Store, token: str):
        """One journey's raw requests and contexts, in the store's next slot."""
        slot = self.slots[store.next_slot % len(self.slots)]
        store.next_slot += 1
        path = f"/{store.location}/flows/appointment"
        return [envelope(path, self.crypto, self.secret, clear, self.port) for clear in journey_steps(token, slot)]

    def find_slots(self, store: Store, catalog: dict) -> None:
        """Asks the responders (as a client would) which dates and times they offer, and spreads the journeys over
        every department-location pair, the dates from the day after tomorrow (a run across midnight stays
        valid) and all their times."""
        pairs = [(department, location["id"]) for location in catalog["locations"]
                 for department in location["departments"]]
        token = f"bench-probe-{os.getpid()}"
        path = f"/{store.location}/flows/appointment"
        steps = journey_steps(token, (*pairs[0], "", ""))

        def ask(clear: dict) -> dict:
            return exchange(self.port, self.secret, *envelope(path, self.crypto, self.secret, clear, self.port))

        for clear in steps[:3]:
            answer = ask(clear)
        dates = [item["id"] for item in answer["data"]["date"] if item.get("enabled", True)][2:]
        if not dates:
            raise SystemExit(f"bench: the appointment flow offered no dates: {answer}")
        answer = ask(dict(steps[3], data=dict(steps[3]["data"], date=dates[0])))
        times = [item["id"] for item in answer["data"]["time"] if item.get("enabled", True)]
        self.slots = [(department, location, date, time_) for date in dates for time_ in times
                      for department, location in pairs]

    def check(self, store: Store) -> None:
        """One journey sent with every answer decrypted and checked: the screens in order, SUCCESS at the end."""
        for (raw, context), screen in zip(self.requests(store, f"bench-sample-{os.getpid()}-{store.name}"),
                                          JOURNEY_SCREENS):
            answer = exchange(self.port, self.secret, raw, context)
            if answer.get("screen") != screen or "error_message" in answer.get("data", {}):
                raise SystemExit(f"bench: {store.name} journey step answered {answer} (expected {screen})")

    def run(self, url: str, store: Store, count: int, seconds: int) -> dict:
        """Replays ``count`` new journeys (at most) for ``seconds``; wrk's figures per request, plus ``journeys``
        (finished with SUCCESS), ``finished`` and ``jps`` (journeys with SUCCESS per second)."""
        self.batches += 1
        tag = f"bench-journey-{os.getpid()}-{store.name}-{self.batches}"
        files = os.path.join(self.work, f"journeys-{self.batches}")
        per_thread = math.ceil(count / self.CONNECTIONS)
        for thread in range(self.CONNECTIONS):
            write_lua(f"{files}-{thread}.lua", [[raw for raw, _ in self.requests(store, f"{tag}-{thread}-{i}")]
                                                for i in range(per_thread)])
        try:
            result = run_wrk(url, files, self.CONNECTIONS, seconds, self.script, threads=self.CONNECTIONS)
        finally:
            for thread in range(self.CONNECTIONS):
                os.unlink(f"{files}-{thread}.lua")
        finished = result.pop("threads")
        if len(finished) != self.CONNECTIONS or any(exhausted for _, exhausted in finished.values()):
            raise SystemExit(f"bench: wrk ran out of the {per_thread} journeys per connection (or said nothing): "
                             f"{finished}")
        booked = 0
        for token in store.booked_tokens(tag + "-"):
            thread, index = map(int, token[len(tag) + 1:].split("-"))
            booked += index < finished[thread][0]  # its SUCCESS answer came within the run
        result["finished"] = sum(n for n, _ in finished.values())
        result["journeys"] = booked
        result["jps"] = booked / result["seconds"]
        return result


def server_setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not (name and equals and value):
        raise argparse.ArgumentTypeError(f"NAME=VALUE expected, not {text!r}")
    return name, value


def _interrupted(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/flows-fcgi"))
    parser.add_argument("--floor", required=True)
    parser.add_argument("--seconds", type=int, default=10, help="per program and connection count, all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="turns the programs take (against drift)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--flow", default="appointment", help="the flow of the ping and INIT requests")
    parser.add_argument("--form-flow", default="feedback", choices=sorted(FORM_STEPS),
                        help="the form flow whose entry screen's data_exchange step is measured")
    parser.add_argument("--keep-conn", type=int, default=0, metavar="K",
                        help="flows-fcgi only: nginx keeps up to K idle FastCGI connections per worker "
                             "(fastcgi_keep_conn on); safe only with K below the responder threads (--threads)")
    parser.add_argument("--threads", type=int, default=None,
                        help="flows-fcgi worker threads per process (default: the responder's own, 2)")
    parser.add_argument("--postgres", action="store_true",
                        help="also measure appointment INIT and booking journeys on a PostgreSQL server the bench "
                             "starts on this machine (Debian's postgresql package)")
    parser.add_argument("--postgres-socket", action="store_true",
                        help="the PostgreSQL responders connect over the server's unix socket instead of TCP")
    parser.add_argument("--postgres-setting", action="append", default=[], metavar="NAME=VALUE", type=server_setting,
                        help="a server setting (repeatable), e.g. synchronous_commit=off; default: the server's own")
    parser.add_argument("--ci", action="store_true",
                        help="short smoke run for CI: fail only when it cannot run, sees a non-200 answer or a "
                             "booking journey that did not end in SUCCESS")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)  # killed: the same clean-up as for Ctrl-C

    work = tempfile.mkdtemp(prefix="flows-bench-")
    os.makedirs(os.path.join(work, "tmp"))
    procs: list[subprocess.Popen] = []
    pidfiles: dict[str, str] = {}
    pg = None
    try:
        keys = generate_keypair(work, "bench", passphrase="generate", style="pkcs8")
        secret = os.urandom(16).hex()
        catalog_path = os.path.join(work, "appointment.catalog.json")
        catalog = write_bench_catalog(catalog_path)
        env = dict(os.environ, APP_SECRET=secret, PRIVATE_KEY_FILE=keys.private_pem,
                   PASSPHRASE_FILE=keys.passphrase_file, DATABASE_URL=f"sqlite:{work}/flows.db",
                   LOG_FILE=f"{work}/flows.log", APPOINTMENT_CATALOG=catalog_path)
        stores = [Store("sqlite", "flows-fcgi", sqlite_booked(f"{work}/flows.db"))]
        # The responder's own default (2 worker threads) unless --threads; the floor program is single-threaded.
        # Process count, nginx and load are the same for the floor and both stores.
        flows_command = [args.binary] + (["--threads", str(args.threads)] if args.threads else [])
        responders = [("flows", "flows-fcgi", flows_command, env),
                      ("floor", "floor", [args.floor, keys.private_pem, keys.passphrase_file], env)]
        if args.postgres:
            from pgserver import PostgresServer  # noqa: E402  (only this mode needs the server binaries)
            # The server's own defaults unless told (fsync and synchronous_commit on: every booking is on disk
            # before its SUCCESS), unlike the tests' server.
            try:
                pg = PostgresServer(settings=dict(args.postgres_setting))
            except RuntimeError as error:
                raise SystemExit(f"bench: {error}")
            pg.start()
            pg_env = dict(env, DATABASE_URL=pg.socket_url if args.postgres_socket else pg.url,
                          LOG_FILE=f"{work}/flows-pg.log",
                          METRICS_DIR=f"{work}/flows-pg.metrics")
            stores.append(Store("postgresql", "flows-pg", postgres_booked(pg)))
            responders.append(("flows-pg", "flows-pg", flows_command, pg_env))
        port = free_port()
        keep = args.keep_conn > 0
        upstreams, locations = [], []
        for name, location, _, _ in responders:
            target = f"unix:{work}/{name}.sock"
            if keep and name != "floor":
                upstream = name.replace("-", "_")
                upstreams.append(f"\n    upstream {upstream} {{ server {target}; keepalive {args.keep_conn}; }}")
                target = upstream
            locations.append(NGINX_LOCATION.format(
                name=location, target=target,
                keep_conn="\n            fastcgi_keep_conn on;" if keep and name != "floor" else ""))
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=work, port=port, upstreams="".join(upstreams), locations="".join(locations)))
        for name, _, command, command_env in responders:
            pidfile = os.path.join(work, f"{name}.pid")
            subprocess.run(["spawn-fcgi", "-s", os.path.join(work, f"{name}.sock"), "-M", "0666", "-F", "2",
                            "-P", pidfile, "--", *command], env=command_env, check=True, capture_output=True)
            pidfiles[name] = pidfile
        nginx = subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf"), "-p", work],
                                 stderr=subprocess.DEVNULL)
        procs.append(nginx)
        wait_for(lambda: can_connect(port), "nginx")

        crypto = FlowCrypto.from_file(keys.public_pem)
        n = args.requests
        ping_raw, ping_ctx = make_requests("/flows-fcgi/flows/%s" % args.flow, crypto, secret,
                                           lambda i: {"version": "3.0", "action": "ping"}, n, port)
        init_raw, init_ctx = make_requests(
            "/flows-fcgi/flows/%s" % args.flow, crypto, secret,
            lambda i: {"version": "3.0", "action": "INIT", "screen": "", "data": {},
                       "flow_token": f"bench-{os.getpid()}-{i}"}, n, port)
        form_screen, form_data, form_next = FORM_STEPS[args.form_flow]
        form_raw, form_ctx = make_requests(
            "/flows-fcgi/flows/%s" % args.form_flow, crypto, secret,
            lambda i: {"version": "3.0", "action": "data_exchange", "screen": form_screen, "data": form_data(),
                       "flow_token": f"bench-form-{os.getpid()}-{i}"}, n, port)
        floor_raw = [r.replace(b"/flows-fcgi/flows/%s" % args.flow.encode(), b"/floor/x", 1) for r in ping_raw]
        request_sets = [("ping", ping_raw), ("init", init_raw), ("form", form_raw), ("floor", floor_raw)]
        samples = [(ping_raw, ping_ctx, "ping"), (init_raw, init_ctx, "init"), (form_raw, form_ctx, "form"),
                   (form_raw, form_ctx, "form")]
        for store in stores[1:]:
            # The same INIT requests (the same tokens, unknown to that store too), served from the store's location.
            raw = [r.replace(b"/flows-fcgi/", f"/{store.location}/".encode(), 1) for r in init_raw]
            request_sets.append((store.init_kind, raw))
            samples.append((raw, init_ctx, "init"))
        script = os.path.join(work, "requests.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        sets = {}
        for name, raw in request_sets:
            sets[name] = os.path.join(work, f"{name}-requests.lua")
            write_lua(sets[name], raw)

        # Answers are checked, not just counted: a sample decrypted by the client (against the Flow JSON too).
        # The form step is sent twice per token: the replay repeats it once the token's session has moved on,
        # as a user does who goes back to the first screen on the phone and submits it again.
        for raw, ctx, expect in samples:
            for i in range(5):
                answer = exchange(port, secret, raw[i], ctx[i])
                if expect == "ping" and answer != {"data": {"status": "active"}}:
                    raise SystemExit(f"bench: unexpected ping answer {answer}")
                if expect == "init" and "screen" not in answer:
                    raise SystemExit(f"bench: unexpected INIT answer {answer}")
                if expect == "form" and (answer.get("screen") != form_next or "error_message" in answer["data"]):
                    raise SystemExit(f"bench: unexpected {args.form_flow} {form_screen} answer {answer}")
        # The sample used the first requests' tokens; INIT and the form step are repeatable, so the replay may reuse
        # them.
        journeys = Journeys(work, crypto, secret, port)
        journeys.find_slots(stores[0], catalog)
        for store in stores:
            journeys.check(store)

        # The machine's speed drifts (shared hosts): the programs take turns in short rounds, so a slow minute hits
        # each of them alike. Per configuration: requests/s is the mean of the rounds, p50 the median of the rounds'
        # p50s, p99 the worst round's p99, non-200 the sum. Each round ends with a batch of new booking journeys per
        # store (more than the round's floor rate could serve, so wrk never runs out).
        url = f"http://127.0.0.1:{port}/"
        kinds = ["floor", "ping", "init", "form"] + [store.init_kind for store in stores[1:]]
        for name in kinds:
            run_wrk(url, sets[name], 4, 2, script)  # warm-up
        rounds: dict = {}
        slice_seconds = max(1, args.seconds // args.rounds)
        rss_before_journeys: dict = {}
        for _ in range(args.rounds):
            for c in (1, 16):
                for name in kinds:
                    rounds.setdefault((name, c), []).append(run_wrk(url, sets[name], c, slice_seconds, script))
            # The memory target was set on ping, INIT and the form step: the peak before the first journeys (a whole
            # booking runs more code and keeps more in SQLite's cache) is that figure; the final peak is printed too.
            if not rss_before_journeys:
                rss_before_journeys = {name: peak_rss_kib(children_of(pidfile)) for name, pidfile in pidfiles.items()}
            enough = math.ceil(1.5 * rounds[("floor", 16)][-1]["rps"] * slice_seconds / len(JOURNEY_SCREENS)) + 64
            for store in stores:
                rounds.setdefault((store.journey_kind, 16), []).append(
                    journeys.run(url, store, enough, slice_seconds))
        results = {}
        for (name, c), runs in rounds.items():
            results[(name, c)] = r = {
                "rps": statistics.mean(x["rps"] for x in runs),
                "p50": statistics.median(x["p50"] for x in runs),
                "p99": max(x["p99"] for x in runs),
                "non200": sum(x["non200"] for x in runs),
                "requests": sum(x["requests"] for x in runs),
            }
            if "jps" in runs[0]:
                r.update(jps=statistics.mean(x["jps"] for x in runs), journeys=sum(x["journeys"] for x in runs),
                         finished=sum(x["finished"] for x in runs))
        width = max(len(name) for name in kinds)
        for c in (1, 16):
            for name in kinds:
                r = results[(name, c)]
                print(f"  {name:{width}} c={c:2}: {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  "
                      f"p99 {r['p99']:6.2f} ms  non-200 {r['non200']}  "
                      f"({r['requests']} requests in {args.rounds} rounds)", flush=True)
        for store in stores:
            r = results[(store.journey_kind, 16)]
            print(f"  booking journeys, {store.name:10} c=16: {r['jps']:6.1f} journeys/s ended in SUCCESS  "
                  f"({r['journeys']} of {r['finished']} finished in {args.rounds} rounds)\n"
                  f"      their requests: {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                  f"non-200 {r['non200']}", flush=True)

        rss = {name: peak_rss_kib(children_of(pidfile)) for name, pidfile in pidfiles.items()}
        cores = os.cpu_count() or 1
        speed = subprocess.run(["openssl", "speed", "-seconds", "3", "-multi", str(cores), "rsa2048"],
                               capture_output=True, text=True).stdout
        m = re.search(r"rsa 2048 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)", speed)
        sign_per_s = float(m.group(1)) if m else float("nan")
        cgi_body = init_raw[0].split(b"\r\n\r\n", 1)[1]
        cgi_median, cgi_min = cgi_wall_ms(args.binary, env, cgi_body, secret, args.flow)

        floor16, floor1 = results[("floor", 16)], results[("floor", 1)]
        ratio = lambda name: results[(name, 16)]["rps"] / floor16["rps"]  # noqa: E731
        cpu = re.search(r"model name\s+:\s+(.*)", open("/proc/cpuinfo").read())
        print()
        print(f"date {time.strftime('%Y-%m-%d')}, CPU {cpu.group(1) if cpu else '?'}, {cores} cores"
              f"{', AVX-512 IFMA' if 'avx512ifma' in open('/proc/cpuinfo').read() else ''}")
        print(f"openssl speed -multi {cores} rsa2048: {sign_per_s:.0f} private-key ops/s")
        print("responders: 2 processes each (floor: 1 thread); flows-fcgi worker threads: "
              + (str(args.threads) if args.threads else "its default (2)"))
        measured = kinds[1:] + [store.journey_kind for store in stores]
        non200 = sum(results[key]["non200"] for key in results if key[0] in measured)
        unbooked = sum(results[(store.journey_kind, 16)]["finished"] - results[(store.journey_kind, 16)]["journeys"]
                       for store in stores)
        checks = [
            ("appointment INIT c=16 throughput / floor >= 0.90", ratio("init"), ratio("init") >= 0.90),
            ("ping c=16 throughput / floor >= 0.95", ratio("ping"), ratio("ping") >= 0.95),
            (f"{args.form_flow} {form_screen} data_exchange c=16 throughput / floor >= 0.85", ratio("form"),
             ratio("form") >= 0.85),
        ]
        if pg:
            checks.append(("PostgreSQL appointment INIT c=16 throughput / floor >= 0.85", ratio("postgresql-init"),
                           ratio("postgresql-init") >= 0.85))
        checks += [
            ("non-200 responses == 0", non200, non200 == 0),
            ("finished booking journeys without SUCCESS == 0", unbooked, unbooked == 0),
            ("INIT p50 c=1 <= floor p50 + 0.3 ms", results[("init", 1)]["p50"] - floor1["p50"],
             results[("init", 1)]["p50"] <= floor1["p50"] + 0.3),
            ("ping p50 c=1 <= floor p50 + 0.3 ms", results[("ping", 1)]["p50"] - floor1["p50"],
             results[("ping", 1)]["p50"] <= floor1["p50"] + 0.3),
            ("INIT p99 c=16 <= 2 x floor p99", results[("init", 16)]["p99"] / floor16["p99"],
             results[("init", 16)]["p99"] <= 2 * floor16["p99"]),
            ("ping p99 c=16 <= 2 x floor p99", results[("ping", 16)]["p99"] / floor16["p99"],
             results[("ping", 16)]["p99"] <= 2 * floor16["p99"]),
            ("peak RSS per responder process, ping/INIT/form step <= 12 MB (MiB shown)",
             max(rss_before_journeys["flows"]) / 1024 if rss_before_journeys.get("flows") else float("nan"),
             bool(rss_before_journeys.get("flows")) and max(rss_before_journeys["flows"]) <= 12 * 1000 * 1000 / 1024),
            ("one plain-CGI request <= 15 ms (median ms)", cgi_median, cgi_median <= 15),
        ]
        mib = lambda values: ", ".join(f"{v / 1024:.1f} MiB" for v in values)  # noqa: E731
        print(f"peak RSS (VmHWM) flows-fcgi processes: {mib(rss_before_journeys['flows'])} serving ping, INIT and the "
              f"form step; {mib(rss['flows'])} after the booking journeys too; floor: {mib(rss['floor'])}")
        print(f"plain CGI request (fork, exec, key load, answer): median {cgi_median:.1f} ms, min {cgi_min:.1f} ms")
        if pg:
            pg_median, pg_min = cgi_wall_ms(args.binary, pg_env, cgi_body, secret, args.flow)
            version = pg.psql("SHOW server_version")
            durability = pg.psql("SELECT setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit') "
                                 "ORDER BY name").replace("\n", "/")
            print(f"PostgreSQL {version} on this machine over {'its unix socket' if args.postgres_socket else 'TCP'} "
                  f"(fsync/synchronous_commit {durability}): "
                  f"INIT c=16 {ratio('postgresql-init'):.3f} of the floor, booking journeys "
                  f"{results[('postgresql-journey', 16)]['jps'] / results[('sqlite-journey', 16)]['jps']:.2f} of "
                  f"SQLite's; peak RSS flows-fcgi processes {mib(rss['flows-pg'])}; plain CGI request median "
                  f"{pg_median:.1f} ms, min {pg_min:.1f} ms")
        print()
        for label, value, ok in checks:
            print(f"  {'PASS' if ok else 'MISS'}  {label}: {value:.3f}")
        if args.ci and (non200 or unbooked):
            raise SystemExit(f"bench: {non200} answers were not 200, {unbooked} finished booking journeys did not "
                             "end in SUCCESS")
        print(json.dumps({f"{k}_c{c}": v for (k, c), v in results.items()}), file=open(f"{work}/results.json", "w"))
    finally:
        for pidfile in pidfiles.values():
            try:
                for pid in children_of(pidfile):
                    os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            p.send_signal(signal.SIGQUIT)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg is not None:
            pg.cleanup()  # stops the server (by its PID when pg_ctl cannot) and removes its folder
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
