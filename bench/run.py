#!/usr/bin/env python3
"""flows-fcgi benchmark: flows-fcgi against the floor program, behind the same nginx, in the same run.

Generates a key, starts flows-fcgi under spawn-fcgi (2 processes) and the floor program (bench/floor.c, 2
processes) behind one nginx on loopback, generates thousands of distinct signed and encrypted requests (ping,
appointment INIT and a form flow's first data_exchange step, each with its own flow token) with an independent
client (Tests/integration/flowclient.py), replays them with wrk at 1 and 16 connections, and prints requests/s, p50/p99 latency and non-200 counts, peak RSS
per responder process, `openssl speed -multi <cores> rsa2048`, the ratios to the floor, and the wall time of one
plain-CGI request. Run it through bench/run (which builds first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
from flowclient import FlowCrypto, generate_keypair, sign  # noqa: E402

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
    scgi_temp_path {dir}/tmp;
    {upstream}
    server {{
        listen 127.0.0.1:{port};
        location /flows-fcgi/ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass {flows_pass};{keep_conn}
        }}
        location /floor/ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:{dir}/floor.sock;
        }}
    }}
}}
"""

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


def make_requests(path: str, crypto: FlowCrypto, secret: str, clear_for, count: int, port: int):
    """Raw HTTP requests, one per flow token, and their contexts (to check a sample of answers)."""
    raw, contexts = [], []
    for n in range(count):
        context = crypto.encrypt(clear_for(n))
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {sign(secret, context.body)}\r\nContent-Length: {len(context.body)}\r\n\r\n")
        raw.append(head.encode() + context.body)
        contexts.append(context)
    return raw, contexts


def write_lua(path: str, raw: list[bytes]) -> None:
    with open(path, "w") as f:
        f.write("return {\n")
        for r in raw:
            f.write(lua_string(r) + ",\n")
        f.write("}\n")


def parse_duration_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, lua_requests: str, connections: int, seconds: int, script: str) -> dict:
    env = dict(os.environ, BENCH_REQUESTS=lua_requests)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", script, url],
        capture_output=True, text=True, env=env, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct, key in (("50", "p50"), ("99", "p99")):
        result[key] = parse_duration_ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
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
    parser.add_argument("--threads", type=int, default=1, help="flows-fcgi worker threads per process")
    parser.add_argument("--ci", action="store_true",
                        help="short smoke run for CI: fail only when it cannot run or sees a non-200 answer")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="flows-bench-")
    os.makedirs(os.path.join(work, "tmp"))
    procs: list[subprocess.Popen] = []
    pidfiles: list[str] = []
    try:
        keys = generate_keypair(work, "bench", passphrase="generate", style="pkcs8")
        secret = os.urandom(16).hex()
        env = dict(os.environ, APP_SECRET=secret, PRIVATE_KEY_FILE=keys.private_pem,
                   PASSPHRASE_FILE=keys.passphrase_file, DATABASE_URL=f"sqlite:{work}/flows.db",
                   LOG_FILE=f"{work}/flows.log")
        port = free_port()
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            keep = args.keep_conn > 0
            f.write(NGINX_CONF.format(
                dir=work, port=port,
                upstream=(f"upstream flows {{ server unix:{work}/flows.sock; keepalive {args.keep_conn}; }}"
                          if keep else ""),
                flows_pass="flows" if keep else f"unix:{work}/flows.sock",
                keep_conn="\n            fastcgi_keep_conn on;" if keep else ""))
        for name, command in (
            ("flows", [args.binary, "--threads", str(args.threads)]),
            ("floor", [args.floor, keys.private_pem, keys.passphrase_file]),
        ):
            pidfile = os.path.join(work, f"{name}.pid")
            subprocess.run(["spawn-fcgi", "-s", os.path.join(work, f"{name}.sock"), "-M", "0666", "-F", "2",
                            "-P", pidfile, "--", *command], env=env, check=True, capture_output=True)
            pidfiles.append(pidfile)
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
        script = os.path.join(work, "requests.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        sets = {}
        for name, raw in (("ping", ping_raw), ("init", init_raw), ("form", form_raw), ("floor", floor_raw)):
            sets[name] = os.path.join(work, f"{name}-requests.lua")
            write_lua(sets[name], raw)

        # Answers are checked, not just counted: a sample decrypted by the client (against the Flow JSON too).
        # The form step is sent twice per token: the replay repeats it once the token's session has moved on,
        # as a user does who goes back to the first screen on the phone and submits it again.
        from flowclient import http_request  # noqa: E402
        for raw, ctx, expect in ((ping_raw, ping_ctx, "ping"), (init_raw, init_ctx, "init"),
                                 (form_raw, form_ctx, "form"), (form_raw, form_ctx, "form")):
            for i in range(5):
                head, body = raw[i].split(b"\r\n\r\n", 1)
                path = head.split(b" ", 2)[1].decode()
                resp = http_request(("127.0.0.1", port), "POST", path,
                                    headers=[("Content-Type", "application/json"),
                                             ("X-Hub-Signature-256", sign(secret, body))], body=body)
                if resp.status != 200:
                    raise SystemExit(f"bench: {expect} answered {resp.status}: {resp.body[:200]!r}")
                answer = ctx[i].decrypt_answer(resp.body)
                if expect == "ping" and answer != {"data": {"status": "active"}}:
                    raise SystemExit(f"bench: unexpected ping answer {answer}")
                if expect == "init" and "screen" not in answer:
                    raise SystemExit(f"bench: unexpected INIT answer {answer}")
                if expect == "form" and (answer.get("screen") != form_next or "error_message" in answer["data"]):
                    raise SystemExit(f"bench: unexpected {args.form_flow} {form_screen} answer {answer}")
        # The sample used the first requests' tokens; INIT and the form step are repeatable, so the replay may reuse
        # them.

        # The machine's speed drifts (shared hosts): the three programs take turns in short rounds, so a slow
        # minute hits each of them alike. Per configuration: requests/s is the mean of the rounds, p50 the median
        # of the rounds' p50s, p99 the worst round's p99, non-200 the sum.
        url = f"http://127.0.0.1:{port}/"
        kinds = ("floor", "ping", "init", "form")
        for name in kinds:
            run_wrk(url, sets[name], 4, 2, script)  # warm-up
        rounds: dict = {}
        slice_seconds = max(1, args.seconds // args.rounds)
        for _ in range(args.rounds):
            for c in (1, 16):
                for name in kinds:
                    rounds.setdefault((name, c), []).append(run_wrk(url, sets[name], c, slice_seconds, script))
        results = {}
        for (name, c), runs in rounds.items():
            results[(name, c)] = r = {
                "rps": statistics.mean(x["rps"] for x in runs),
                "p50": statistics.median(x["p50"] for x in runs),
                "p99": max(x["p99"] for x in runs),
                "non200": sum(x["non200"] for x in runs),
                "requests": sum(x["requests"] for x in runs),
            }
        for c in (1, 16):
            for name in kinds:
                r = results[(name, c)]
                print(f"  {name:5} c={c:2}: {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                      f"non-200 {r['non200']}  ({r['requests']} requests in {args.rounds} rounds)", flush=True)

        flows_pids = children_of(pidfiles[0])
        floor_pids = children_of(pidfiles[1])
        rss = peak_rss_kib(flows_pids)
        floor_rss = peak_rss_kib(floor_pids)
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
        checks = [
            ("appointment INIT c=16 throughput / floor >= 0.90", ratio("init"), ratio("init") >= 0.90),
            ("ping c=16 throughput / floor >= 0.95", ratio("ping"), ratio("ping") >= 0.95),
            (f"{args.form_flow} {form_screen} data_exchange c=16 throughput / floor >= 0.85", ratio("form"),
             ratio("form") >= 0.85),
            ("non-200 responses == 0", sum(results[(k, c)]["non200"] for k in kinds[1:] for c in (1, 16)),
             all(results[(k, c)]["non200"] == 0 for k in kinds[1:] for c in (1, 16))),
            ("INIT p50 c=1 <= floor p50 + 0.3 ms", results[("init", 1)]["p50"] - floor1["p50"],
             results[("init", 1)]["p50"] <= floor1["p50"] + 0.3),
            ("ping p50 c=1 <= floor p50 + 0.3 ms", results[("ping", 1)]["p50"] - floor1["p50"],
             results[("ping", 1)]["p50"] <= floor1["p50"] + 0.3),
            ("INIT p99 c=16 <= 2 x floor p99", results[("init", 16)]["p99"] / floor16["p99"],
             results[("init", 16)]["p99"] <= 2 * floor16["p99"]),
            ("ping p99 c=16 <= 2 x floor p99", results[("ping", 16)]["p99"] / floor16["p99"],
             results[("ping", 16)]["p99"] <= 2 * floor16["p99"]),
            ("peak RSS per responder process <= 12 MB (MiB shown)", max(rss) / 1024 if rss else float("nan"),
             bool(rss) and max(rss) <= 12 * 1000 * 1000 / 1024),
            ("one plain-CGI request <= 15 ms (median ms)", cgi_median, cgi_median <= 15),
        ]
        print(f"peak RSS (VmHWM) flows-fcgi processes: {', '.join(f'{v / 1024:.1f} MiB' for v in rss)}; "
              f"floor: {', '.join(f'{v / 1024:.1f} MiB' for v in floor_rss)}")
        print(f"plain CGI request (fork, exec, key load, answer): median {cgi_median:.1f} ms, min {cgi_min:.1f} ms")
        print()
        for label, value, ok in checks:
            print(f"  {'PASS' if ok else 'MISS'}  {label}: {value:.3f}")
        failed_requests = sum(r["non200"] for r in results.values())
        if args.ci and failed_requests:
            raise SystemExit(f"bench: {failed_requests} answers were not 200")
        print(json.dumps({f"{k}_c{c}": v for (k, c), v in results.items()}), file=open(f"{work}/results.json", "w"))
    finally:
        for pidfile in pidfiles:
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
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
