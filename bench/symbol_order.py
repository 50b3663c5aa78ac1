#!/usr/bin/env python3
"""Writes bench/hot-symbols.txt: the functions of the release binary that a serving process runs, for lld's
``--symbol-ordering-file`` (used by scripts/build-release).

Why: the static Swift standard library puts about 5.5 MB of code in the binary. The kernel maps code in 64 KiB
"fault-around" chunks, so a request path that touches a few hundred functions scattered over that code makes
3.5-4 MiB of it resident in every process. Laid out together, the same functions fit in a fraction of that.

How: runs the release binary under valgrind's callgrind (names not demangled) on a unix socket, sends the
requests a serving process sees (ping, appointment, expense and feedback journeys, webhooks, health, read API, errors),
stops it with SIGTERM, and lists every function of the binary that ran, hottest first. Regenerate after a
toolchain change or a large code change: `bench/symbol-order`. A stale list only costs memory, never
correctness (lld skips names it does not find).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
import expense  # noqa: E402
from flowclient import generate_keypair, sign  # noqa: E402
from test_appointment import PERSON, AppointmentClient, FastCGIPost  # noqa: E402


def drive(sock: str, keys, secret: str, rounds: int) -> None:
    """The request mix of a serving process, `rounds` times."""
    client = AppointmentClient(sock, keys, secret)
    for r in range(rounds):
        token = f"profile-{r}"
        client.ok(token, "ping")
        fields = client.journey_to_summary(token, lambda dates: dates[-1]["id"], lambda times: times[r % len(times)]["id"])
        client.ok(token, "BACK", "APPOINTMENT")
        client.ok(token, "data_exchange", "SUMMARY", fields)
        client.send(token, "ping")
        client.send(token, "data_exchange", "SUMMARY", fields)  # a retried confirm
        crypto = client.crypto
        for clear in (expense.init(f"e-{r}"), expense.submit(f"e-{r}", "12.50", "travel", "taxi"),
                      expense.submit(f"e-{r}", "x", "travel")):
            context = crypto.encrypt(clear)
            FastCGIPost(sock, "/flows/expense", context.body, sign(secret, context.body)).send()
        for screen, data in (("", {}), ("FEEDBACK_RATING", {"rating": "5", "comments": ""}),
                             ("FEEDBACK_FOLLOW_UP", {"follow_up": "no"}), ("FEEDBACK_THANKS", {})):
            clear = {"version": "3.0", "action": "data_exchange" if screen else "INIT", "screen": screen,
                     "data": data, "flow_token": f"f-{r}"}
            context = crypto.encrypt(clear)
            FastCGIPost(sock, "/flows/feedback", context.body, sign(secret, context.body)).send()
        webhook = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"},
                                           "messages": [{"from": "441234", "id": f"wamid.{r}", "timestamp": "1",
                                                         "type": "text", "text": {"body": "hi"}}]}}]}]}).encode()
        FastCGIPost(sock, "/webhook", webhook, sign(secret, webhook)).send()
        FastCGIPost(sock, "/flows/appointment", b"{}", "sha256=00").send()  # 432
        FastCGIPost(sock, "/flows/appointment", b"not json", sign(secret, b"not json")).send()  # 400


def hot_functions(callgrind_out: str, binary: str) -> list[str]:
    """Functions of `binary` with their instruction counts, from a callgrind profile (name compression aware)."""
    objects: dict[str, str] = {}
    names: dict[str, str] = {}
    cost: dict[str, int] = {}
    current_object = current_function = None
    binary = os.path.realpath(binary)

    def expand(table: dict[str, str], text: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?$", text)
        if not m:
            return text
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "")

    with open(callgrind_out) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("ob="):
                current_object = expand(objects, line[3:])
            elif line.startswith(("cob=", "cfn=")):
                expand(objects if line.startswith("cob=") else names, line[4:])
            elif line.startswith("fn="):
                # "name'2" is callgrind's name for a second level of recursion: the same function.
                current_function = re.sub(r"'\d+$", "", expand(names, line[3:]))
                if current_object and os.path.realpath(current_object) == binary:
                    cost.setdefault(current_function, 0)
                else:
                    current_function = None
            elif current_function and line[:1].isdigit():
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[current_function] += int(parts[1])
    # Symbol names only: callgrind also reports pseudo-functions such as "(below main)".
    return [name for name, _ in sorted(cost.items(), key=lambda item: -item[1]) if re.fullmatch(r"[^\s()]+", name)]


def section_sizes(map_file: str, binary: str) -> dict[str, int]:
    """Symbol -> size of the largest input section defining it: the sections' addresses and sizes from lld's link map
    (scripts/build-release writes one), every symbol's address (local ones too) from the binary's symbol table."""
    sections: list[tuple[int, int]] = []
    with open(map_file) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 5 and ":(.text" in fields[4]:
                sections.append((int(fields[0], 16), int(fields[2], 16)))
    sections.sort()
    starts = [start for start, _ in sections]
    sizes: dict[str, int] = {}
    listing = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[1] not in "tTwW":
            continue
        address = int(fields[0], 16)
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < sections[i][0] + sections[i][1]:
            # Local symbols repeat across objects (each module has its own `$sSqwxx`); lld orders every section
            # defining the name, so the largest one counts.
            sizes[fields[2]] = max(sizes.get(fields[2], 0), sections[i][1])
    return sizes


def layout(functions: list[str], sizes: dict[str, int]) -> list[str]:
    """Hot functions with a section of their own first, in order; those inside a large shared section (the
    standard library's 1.6 MB main .text cannot be split) last, so that section lands after the compact hot part
    instead of in its middle."""
    own = [name for name in functions if sizes.get(name, 0) <= 65536]
    shared = [name for name in functions if sizes.get(name, 0) > 65536]
    return own + shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "flows-fcgi"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "hot-symbols.txt"))
    parser.add_argument("--map", default=os.path.join(ROOT, ".build", "flows-fcgi.map"),
                        help="lld's link map of the binary (written by scripts/build-release)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flows-symbols-") as work:
        keys = generate_keypair(work, "profile", passphrase="generate", style="pkcs8")
        secret = os.urandom(16).hex()
        sock = os.path.join(work, "flows.sock")
        out = os.path.join(work, "callgrind.out")
        env = dict(os.environ, APP_SECRET=secret, PRIVATE_KEY_FILE=keys.private_pem,
                   PASSPHRASE_FILE=keys.passphrase_file, DATABASE_URL=f"sqlite:{work}/flows.db",
                   LOG_FILE=f"{work}/flows.log", API_TOKEN="profile-api-token-0123")
        server = subprocess.Popen(["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
                                   args.binary, "--listen", f"unix:{sock}"], env=env,
                                  stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while not os.path.exists(sock):
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("symbol-order: the responder did not start under valgrind")
                time.sleep(0.2)
            drive(sock, keys, secret, args.rounds)
            time.sleep(7)  # the first automatic purge check runs too
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
        functions = layout(hot_functions(out, args.binary), section_sizes(args.map, args.binary))
    if len(functions) < 100:
        raise SystemExit(f"symbol-order: only {len(functions)} functions found; is the binary built with symbols?")
    with open(args.output, "w") as f:
        f.write("\n".join(functions) + "\n")
    print(f"symbol-order: {len(functions)} functions written to {os.path.relpath(args.output, ROOT)}")


if __name__ == "__main__":
    main()
