#!/usr/bin/env python3
"""The simulated WhatsApp client of scripts/demo: walks the expense flow against a running endpoint and
prints every request and decrypted answer.

    scripts/demo_client.py --address 127.0.0.1:8080 --prefix /flows-fcgi \\
        --public-key demo-run/public.pem --app-secret-file demo-run/app-secret

Exits non-zero when an answer is not what the flow should send. Needs Python 3 and the cryptography package.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "integration"))

import expense  # noqa: E402  (the flow-specific part: screen and field names)
from flowclient import WhatsAppClient, http_request  # noqa: E402

BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() \
    else ("", "", "", "", "")


class DemoFailure(Exception):
    pass


def show(step: str, request: dict, status: int, answer: dict | None, note: str = "") -> None:
    print(f"\n{BOLD}== {step}{RESET}")
    print(f"{DIM}   WhatsApp -> endpoint (decrypted):{RESET} {json.dumps(request)}")
    colour = GREEN if status == 200 else RED if status >= 500 else ""
    print(f"{DIM}   endpoint -> WhatsApp:{RESET} HTTP {colour}{status}{RESET}, decrypted:")
    text = json.dumps(answer, indent=2, ensure_ascii=False) if answer is not None else "(no body)"
    print("\n".join("      " + line for line in text.splitlines()))
    if note:
        print(f"   {note}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def decrypted(ex) -> dict | None:
    """The decrypted answer, or the raw body when it is not an encrypted answer (an error page)."""
    if not ex.response.body:
        return None
    try:
        return ex.answer()
    except Exception:
        return {"raw body (not encrypted)": ex.response.text[:500]}


def walk(client: WhatsAppClient, prefix: str) -> None:
    path = f"{prefix}/flows/{expense.FLOW_NAME}"
    token = "demo-" + secrets.token_hex(6)
    print(f"Endpoint: http://{client.address[0]}:{client.address[1]}{path}   flow token: {token}")

    # 1. The health check WhatsApp runs against an endpoint.
    ping = {"version": "3.0", "action": "ping"}
    ex = client.send(path, ping)
    expect(ex.status == 200, f"ping: HTTP {ex.status} {ex.response.text[:200]}")
    show("1. ping (WhatsApp's health check)", ping, ex.status, ex.answer())
    expect(ex.answer() == {"data": {"status": "active"}}, "ping: unexpected answer")

    # 2. The user opens the Flow.
    request = expense.init(token)
    ex = client.send(path, request)
    expect(ex.status == 200, f"INIT: HTTP {ex.status} {ex.response.text[:200]}")
    form = ex.answer()
    show("2. INIT: the user opens the Flow, the endpoint sends the first screen", request, ex.status, form)
    expect(form.get("screen") == expense.FORM_SCREEN, "INIT: not the form screen")
    category = expense.categories(form)[0]["id"]

    # 3. An invalid submit: the same screen comes back with an error message.
    request = expense.submit(token, "twelve fifty", category, "Team lunch")
    ex = client.send(path, request)
    expect(ex.status == 200, f"invalid submit: HTTP {ex.status}")
    answer = ex.answer()
    show("3. An invalid amount: the form again, with an error message (shown as a snackbar)", request,
         ex.status, answer, f"error_message: {expense.error_message(answer)!r}")
    expect(bool(expense.error_message(answer)), "invalid submit: no error_message")

    # 4. A valid submit completes the Flow.
    request = expense.submit(token, "12.50", category, "Team lunch")
    ex = client.send(path, request)
    expect(ex.status == 200, f"valid submit: HTTP {ex.status}")
    answer = ex.answer()
    params = expense.success_params(answer)
    show("4. A valid submit: stored, the Flow completes (params go to the business in the nfm_reply webhook)",
         request, ex.status, answer, f"expense_id: {params.get('expense_id')}")
    expect(params.get("flow_token") == token, "SUCCESS: params carry another flow token")

    # 5. The completed token cannot be used again.
    request = expense.init(token)
    ex = client.send(path, request)
    answer = decrypted(ex)
    show("5. The same flow token again: 427, the Flow's button is disabled with this message", request,
         ex.status, answer)
    expect(ex.status == 427, f"repeat on the completed token: HTTP {ex.status}, expected 427")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:8080", help="HOST:PORT of the web server (loopback)")
    parser.add_argument("--prefix", default="/flows-fcgi", help="URL prefix routed to flows-fcgi")
    parser.add_argument("--public-key", required=True, help="the endpoint's public key (SPKI PEM)")
    parser.add_argument("--app-secret-file", required=True, help="file holding the app secret")
    args = parser.parse_args()

    host, _, port = args.address.rpartition(":")
    address = (host, int(port))
    with open(args.app_secret_file) as f:
        secret = f.read().strip()
    with open(args.public_key, "rb") as f:
        client = WhatsAppClient(address, f.read(), secret)

    health = http_request(address, "GET", f"{args.prefix}/health")
    print(f"GET {args.prefix}/health -> {health.status} {health.text.strip()}")
    try:
        walk(client, args.prefix)
    except (DemoFailure, KeyError, ValueError) as e:
        print(f"\n{RED}demo failed: {e}{RESET}", file=sys.stderr)
        return 1
    print(f"\n{GREEN}The expense flow works end to end.{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
