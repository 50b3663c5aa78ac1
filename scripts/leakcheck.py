#!/usr/bin/env python3
"""The leak check behind scripts/leakcheck: the AddressSanitizer build of flows-fcgi (LeakSanitizer included) on
its own unix socket (``--listen unix:``, two worker threads, SQLite, a callback receiver on 127.0.0.1), a mixed
request load (scripts/traffic.py) sent straight over FastCGI by several client threads, a few plain CGI requests
(one process each), then SIGTERM: the clean exit runs LeakSanitizer's check. Prints the requests sent, the statuses,
the leaks found (bytes, allocations) and the time; exits 1 on any leak, AddressSanitizer error, unexpected answer
or unclean exit.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from traffic import APP_SECRET, Budget, Receiver, Traffic, prepare  # noqa: E402

import fcgiwire  # noqa: E402  (Tests/integration, on the path through traffic)
from conftest import Processes, clean_env, start_listen  # noqa: E402
from flowclient import sign  # noqa: E402

PREFIX = "/flows-fcgi"


def sanitizer_reports(pattern: str) -> tuple[int, int, list[str]]:
    """(bytes leaked, allocations leaked, report files) from the sanitizer log files."""
    leaked_bytes = leaked_allocations = 0
    reports = []
    for path in sorted(glob.glob(pattern)):
        text = open(path, errors="replace").read()
        if "ERROR:" not in text and "SUMMARY:" not in text:
            continue
        reports.append(path)
        for m in re.finditer(r"SUMMARY: AddressSanitizer: (\d+) byte\(s\) leaked in (\d+) allocation", text):
            leaked_bytes += int(m.group(1))
            leaked_allocations += int(m.group(2))
    return leaked_bytes, leaked_allocations, reports


LEAKY_C = """
#include <stdlib.h>
#include <string.h>
/* Loaded with LD_PRELOAD by the self-test: 4242 bytes nobody can reach, allocated before main. */
__attribute__((constructor)) static void leak_on_purpose(void) {
    char *lost = malloc(4242);
    memset(lost, 1, 4242);
    lost = 0;
}
"""


def self_test(binary: str, work: str, env: dict) -> None:
    """Proves the chain (LeakSanitizer runs at the clean exit, its report is found) with a deliberate leak."""
    source = os.path.join(work, "leaky.c")
    library = os.path.join(work, "leaky.so")
    with open(source, "w") as f:
        f.write(LEAKY_C)
    subprocess.run(["clang", "-shared", "-fPIC", "-O0", "-o", library, source], check=True)
    subprocess.run([binary, "--version"], env=dict(env, LD_PRELOAD=library, ASAN_OPTIONS=env["ASAN_OPTIONS"].replace(
        f"log_path={work}/asan", f"log_path={work}/selftest")), capture_output=True, timeout=60)
    leaked, allocations, _ = sanitizer_reports(f"{work}/selftest*")
    if leaked < 4242:
        raise SystemExit(f"leakcheck: self-test failed: a deliberate 4242-byte leak was not reported ({leaked} bytes):"
                         " LeakSanitizer does not run at exit here")
    print(f"leakcheck: self-test ok (a deliberate leak is reported: {leaked} bytes in {allocations} allocation)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--cgi", type=int, default=20, help="plain CGI requests (one process each)")
    parser.add_argument("--suppressions", default=os.path.join(HERE, "lsan.supp"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="flows-leakcheck-")
    started = time.monotonic()
    receiver = Receiver()
    processes = Processes()
    try:
        keys, stranger, config = prepare(work, receiver.port)
        env = clean_env(ASAN_OPTIONS=f"detect_leaks=1:log_path={work}/asan:halt_on_error=1",
                        LSAN_OPTIONS=f"suppressions={args.suppressions}:print_suppressions=1")
        self_test(args.binary, work, env)
        sock = os.path.join(work, "leak.sock")
        responder = start_listen(Path(args.binary), Path(config), Path(work), processes, f"unix:{sock}",
                                 ["--threads", "2"], env=env, label="flows-fcgi (AddressSanitizer)")
        print(f"leakcheck: {args.binary} (pid {responder.pid}) on {sock}, {args.requests} requests from "
              f"{args.clients} clients", flush=True)

        traffic = Traffic(keys, stranger)

        def send(method, path, body=b"", headers=(), query=""):
            return fcgiwire.exchange(sock, fcgiwire.message(method, PREFIX + path, body, headers, query))

        budget = Budget(args.requests)
        load_started = time.monotonic()
        clients = [threading.Thread(target=traffic.run_tasks, args=(send, budget, i)) for i in range(args.clients)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        load_seconds = time.monotonic() - load_started
        sent = sum(traffic.statuses.values())

        # Plain CGI: one process per request, each exit checked by LeakSanitizer too.
        cgi_statuses: dict[int, int] = {}
        for n in range(args.cgi):
            context = traffic.crypto.encrypt({"version": "3.0", "action": "INIT", "flow_token": f"cgi-{n}",
                                              "screen": "", "data": {}})
            cgi_env = dict(env, GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST",
                           SCRIPT_NAME=PREFIX + "/flows/appointment", CONTENT_LENGTH=str(len(context.body)),
                           HTTP_X_HUB_SIGNATURE_256=sign(APP_SECRET, context.body))
            result = subprocess.run([args.binary, "--config", config], input=context.body, env=cgi_env,
                                    capture_output=True, timeout=60)
            status = fcgiwire.parse_answer(result.stdout).status if result.returncode == 0 else -result.returncode
            cgi_statuses[status] = cgi_statuses.get(status, 0) + 1

        # SIGTERM: in-flight requests finish, the databases close, exit 0, and LeakSanitizer checks at exit.
        code = processes.stop(processes.procs[-1], signal.SIGTERM, timeout=120)
        leaked_bytes, leaked_allocations, reports = sanitizer_reports(f"{work}/asan*")
        seconds = time.monotonic() - started

        print(f"requests sent:     {sent} over FastCGI in {load_seconds:.1f} s ({sent / load_seconds:.0f}/s), "
              f"+ {args.cgi} plain CGI")
        print(f"statuses:          {dict(sorted(traffic.statuses.items()))}; CGI {cgi_statuses}")
        print(f"tasks:             {dict(traffic.kinds.most_common())}")
        print(f"callbacks:         {receiver.received[0]} completions delivered to the receiver")
        print(f"unexpected:        {len(traffic.unexpected)}" + "".join(f"\n    {u}" for u in traffic.unexpected[:10]))
        print(f"exit status:       {code}")
        print(f"leaks:             {leaked_bytes} bytes in {leaked_allocations} allocations; "
              f"sanitizer reports: {len(reports)}")
        for path in reports[:3]:
            print(f"--- {path}\n" + open(path, errors="replace").read()[:6000])
        print(f"time:              {seconds:.1f} s")
        failed = bool(reports) or code != 0 or bool(traffic.unexpected) or set(cgi_statuses) != {200}
        print("leakcheck: " + ("FAIL" if failed else "ok, no leak"))
        return 1 if failed else 0
    finally:
        processes.stop_all()
        receiver.stop()
        if args.keep:
            print(f"leakcheck: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
