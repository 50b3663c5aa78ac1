"""A realistic request mix for scripts/leakcheck and scripts/soak, built with the integration tests' independent
WhatsApp client (Tests/integration/flowclient.py): every request is encrypted and signed as WhatsApp or Meta would,
each journey with its own flow token, and every answer is checked against the status it must get.

Mix (by weight): appointment journeys to a booking (INIT, three dropdowns, DETAILS, confirm; some with BACK, a
retried confirm and a 427 afterwards), expense submits (an invalid amount first, then a valid one), pings, webhook
deliveries (text messages, redeliveries, nfm_reply confirmations that queue a callback), the webhook handshake, the
read API and /metrics, health checks, and what clients get wrong: a bad signature (432), another key (421), not an
envelope (400), unknown routes and flows (404), a wrong method (405), a wrong bearer token (401).

``Traffic.run(send, budget)`` runs tasks until ``budget`` says stop; ``send(method, path, body, headers, query)``
is the transport (FastCGI straight to a socket, or HTTP through nginx) and returns a flowclient.HttpResponse.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
from conftest import write_config  # noqa: E402
from flowclient import FlowCrypto, HttpResponse, KeyPair, generate_keypair, sign  # noqa: E402

APP_SECRET = "traffic-app-secret"
API_TOKEN = "traffic-api-token-0123456789"
VERIFY_TOKEN = "traffic-verify"

# Open every day, all day, a thousand seats per 15-minute slot: bookings never run out during a run.
CATALOG = {
    "time_zone": "UTC",
    "days_ahead": 30,
    "slot_minutes": 15,
    "capacity": 1000,
    "departments": [{"id": "repairs", "title": "Repairs"}, {"id": "sales", "title": "Sales"}],
    "locations": [{"id": "hq", "title": "Head office", "departments": ["repairs", "sales"]},
                  {"id": "north", "title": "North branch", "departments": ["sales"]}],
    "hours": {day: ["00:00-24:00"] for day in
              ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]},
}
PERSON = {"name": "Load Tester", "email": "load@example.com", "phone": "+44 20 7946 0000", "more_details": "soak"}

Send = Callable[..., HttpResponse]


class Unexpected(Exception):
    """An answer that is not what the request must get."""


class Budget:
    """How many requests may still be sent (``None``: until ``stop``), shared by the client threads."""

    def __init__(self, requests: int | None = None):
        self.left = requests
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.stopped.is_set():
            return False
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def open(self) -> bool:
        """True while requests may still be sent (without spending one)."""
        return not self.stopped.is_set() and (self.left is None or self.left > 0)

    def stop(self) -> None:
        self.stopped.set()


class Traffic:
    def __init__(self, keys: KeyPair, stranger: KeyPair, run: str | None = None):
        self.crypto = FlowCrypto.from_file(keys.public_pem)
        self.stranger = FlowCrypto.from_file(stranger.public_pem)
        self.secret = APP_SECRET
        self.api_token = API_TOKEN
        self.verify_token = VERIFY_TOKEN
        self.run = run or os.urandom(4).hex()
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.serial = 0
        self.completed: list[dict] = []  # SUCCESS params, for nfm_reply webhooks
        # (weight, task) pairs
        self.tasks = [(24, self.booking), (10, self.expense), (12, self.ping), (10, self.webhook),
                      (3, self.handshake), (10, self.read_api), (6, self.health), (8, self.client_errors)]

    # -- plumbing ------------------------------------------------------------------------------------------

    def next_id(self, kind: str) -> str:
        with self.lock:
            self.serial += 1
            return f"{kind}-{self.run}-{self.serial}"

    def request(self, send: Send, budget: Budget, expect: set[int], method: str, path: str, body: bytes = b"",
                headers: list[tuple[str, str]] | None = None, query: str = "") -> HttpResponse | None:
        if not budget.take():
            return None
        response = send(method, path, body, headers or [], query)
        with self.lock:
            self.statuses[response.status] += 1
            if response.status not in expect:
                self.unexpected.append(f"{method} {path}: {response.status} (expected {sorted(expect)}): "
                                       f"{response.body[:120]!r}")
        if response.status not in expect:
            raise Unexpected(path)
        return response

    def flow(self, send: Send, budget: Budget, name: str, clear: dict, expect: set[int] = frozenset({200}),
             crypto: FlowCrypto | None = None, secret: str | None = None) -> dict | None:
        context = (crypto or self.crypto).encrypt(clear)
        headers = [("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(secret or self.secret,
                                                                                      context.body))]
        response = self.request(send, budget, set(expect), "POST", f"/flows/{name}", context.body, headers)
        if response is None:
            return None
        if response.status in (200, 427):
            return context.decrypt_answer(response.body)
        return {}

    def api(self, send: Send, budget: Budget, resource: str, query: str = "", token: str | None = None,
            expect: set[int] = frozenset({200})) -> HttpResponse | None:
        headers = [("Authorization", f"Bearer {token or self.api_token}")]
        return self.request(send, budget, set(expect), "GET", f"/{resource}", b"", headers, query)

    def post_webhook(self, send: Send, budget: Budget, payload: dict, expect: set[int] = frozenset({200}),
                     secret: str | None = None) -> HttpResponse | None:
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(secret or self.secret, body))]
        return self.request(send, budget, set(expect), "POST", "/webhook", body, headers)

    def run_tasks(self, send: Send, budget: Budget, seed: int) -> None:
        """One client thread: weighted random tasks until the budget is spent (an unexpected answer, or an
        answer the client refuses, such as one breaking the Flow JSON, is recorded and the task abandoned)."""
        rng = random.Random(f"{self.run}-{seed}")
        weights = [w for w, _ in self.tasks]
        while budget.open():
            task = rng.choices([t for _, t in self.tasks], weights)[0]
            with self.lock:
                self.kinds[task.__name__] += 1
            try:
                task(send, budget, rng)
            except Unexpected:
                pass
            except Exception as error:  # noqa: BLE001 - a broken answer (e.g. one the Flow JSON forbids) is a finding
                with self.lock:
                    self.unexpected.append(f"{task.__name__}: {type(error).__name__}: {error}")

    # -- tasks ---------------------------------------------------------------------------------------------

    def booking(self, send: Send, budget: Budget, rng: random.Random) -> None:
        token = self.next_id("book")

        def step(action: str, screen: str = "", data: dict | None = None, expect=frozenset({200})):
            return self.flow(send, budget, "appointment", {"version": "3.0", "action": action, "flow_token": token,
                                                           "screen": screen, "data": data or {}}, expect)

        answer = step("INIT")
        if answer is None:
            return
        department = rng.choice(answer["data"]["department"])["id"]
        answer = step("data_exchange", "APPOINTMENT", {"trigger": "department_selected", "department": department})
        if answer is None:
            return
        location = rng.choice([item for item in answer["data"]["location"] if item.get("enabled", True)])["id"]
        choice = {"department": department, "location": location}
        answer = step("data_exchange", "APPOINTMENT", {"trigger": "location_selected", **choice})
        if answer is None:
            return
        choice["date"] = rng.choice([d for d in answer["data"]["date"][1:] if d.get("enabled", True)])["id"]
        answer = step("data_exchange", "APPOINTMENT", {"trigger": "date_selected", **choice})
        if answer is None:
            return
        choice["time"] = rng.choice([t for t in answer["data"]["time"] if t.get("enabled", True)])["id"]
        fields = {**choice, **PERSON}
        if step("data_exchange", "DETAILS", fields) is None:
            return
        # BACK comes only for a screen with refresh_on_back (APPOINTMENT): the user went back to it from SUMMARY.
        if rng.random() < 0.15 and step("BACK", "APPOINTMENT") is None:
            return
        answer = step("data_exchange", "SUMMARY", fields)
        if answer is None:
            return
        if answer.get("screen") != "SUCCESS":
            with self.lock:
                self.unexpected.append(f"booking confirm answered {answer.get('screen')}: {answer.get('data')}")
            return
        params = answer["data"]["extension_message_response"]["params"]
        with self.lock:
            self.completed.append(params)
            del self.completed[:-200]
        if rng.random() < 0.2:
            step("data_exchange", "SUMMARY", fields)  # a lost SUCCESS retried: the same answer again
        if rng.random() < 0.2:
            step("INIT", expect=frozenset({427}))  # the completed token

    def expense(self, send: Send, budget: Budget, rng: random.Random) -> None:
        token = self.next_id("expense")

        def submit(amount: str):
            return self.flow(send, budget, "expense", {"version": "3.0", "action": "data_exchange",
                                                       "flow_token": token, "screen": "EXPENSE_FORM", "data": {
                                                           "amount": amount, "category": "food",
                                                           "description": "Lunch " * rng.randrange(1, 40)}})

        if self.flow(send, budget, "expense", {"version": "3.0", "action": "INIT", "flow_token": token,
                                               "screen": "", "data": {}}) is None:
            return
        if rng.random() < 0.3 and submit("12,3.4") is None:
            return
        answer = submit(f"{rng.randrange(1, 500)}.{rng.randrange(0, 100):02d}")
        if answer is not None and answer.get("screen") == "SUCCESS":
            with self.lock:
                self.completed.append(answer["data"]["extension_message_response"]["params"])

    def ping(self, send: Send, budget: Budget, rng: random.Random) -> None:
        self.flow(send, budget, rng.choice(["appointment", "expense"]), {"version": rng.choice(["3.0", "4.0"]),
                                                                         "action": "ping"})

    def webhook(self, send: Send, budget: Budget, rng: random.Random) -> None:
        wamid = "wamid." + self.next_id("msg")
        sender = f"1555000{rng.randrange(10000):04d}"
        with self.lock:
            params = rng.choice(self.completed) if self.completed and rng.random() < 0.4 else None
        if params is not None:
            message = {"from": sender, "id": wamid, "timestamp": "1795435200", "type": "interactive",
                       "interactive": {"type": "nfm_reply", "nfm_reply": {
                           "name": "flow", "body": "Sent", "response_json": json.dumps(params)}}}
        else:
            message = {"from": sender, "id": wamid, "timestamp": "1795435200", "type": "text",
                       "text": {"body": "Hello " * rng.randrange(1, 50)}}
        value = {"messaging_product": "whatsapp", "messages": [message],
                 "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1795435201",
                               "recipient_id": sender}]}
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": value}]}]}
        for _ in range(2 if rng.random() < 0.2 else 1):  # Meta redelivers now and then
            if self.post_webhook(send, budget, payload) is None:
                return

    def handshake(self, send: Send, budget: Budget, rng: random.Random) -> None:
        right = rng.random() < 0.7
        query = (f"hub.mode=subscribe&hub.verify_token={self.verify_token if right else 'wrong'}"
                 f"&hub.challenge={rng.randrange(10 ** 9)}")
        self.request(send, budget, {200} if right else {403}, "GET", "/webhook", query=query)

    def read_api(self, send: Send, budget: Budget, rng: random.Random) -> None:
        page = f"limit={rng.randint(1, 100)}&offset={rng.randrange(5000)}"  # a client paging through
        resource, query = rng.choice([("messages", "limit=20"), ("messages", "q=hello&limit=5"), ("stats", ""),
                                      ("bookings", "limit=50"), ("expenses", page), ("metrics", ""),
                                      ("messages", "since=2020-01-01T00:00:00Z"), ("messages", page)])
        if rng.random() < 0.1:
            self.api(send, budget, resource, query, token="not-the-api-token", expect=frozenset({401}))
        else:
            self.api(send, budget, resource, query)

    def health(self, send: Send, budget: Budget, rng: random.Random) -> None:
        self.request(send, budget, {200}, rng.choice(["GET", "HEAD"]), rng.choice(["/health", "/health/ready"]))

    def client_errors(self, send: Send, budget: Budget, rng: random.Random) -> None:
        ping = {"version": "3.0", "action": "ping"}
        kind = rng.randrange(7)
        if kind == 0:
            self.flow(send, budget, "appointment", ping, {432}, secret="not-the-app-secret")
        elif kind == 1:
            self.flow(send, budget, "appointment", ping, {421}, crypto=self.stranger)
        elif kind == 2:
            body = b'{"encrypted_flow_data": "nope"}'
            self.request(send, budget, {400}, "POST", "/flows/expense", body,
                         [("X-Hub-Signature-256", sign(self.secret, body))])
        elif kind == 3:
            self.request(send, budget, {404}, "GET", "/nothing-here")
        elif kind == 4:
            self.flow(send, budget, "no-such-flow", ping, {404})
        elif kind == 5:
            self.request(send, budget, {405}, "GET", "/flows/appointment")
        else:
            self.post_webhook(send, budget, {"object": "whatsapp_business_account", "entry": []}, {401},
                              secret="forged")


class Receiver:
    """The business system the callback delivery thread POSTs completions to."""

    def __init__(self):
        received = self.received = [0]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received[0] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def prepare(work: str, callback_port: int, **extra: str) -> tuple[KeyPair, KeyPair, str]:
    """The endpoint's key pair (encrypted PKCS#8), a stranger's, and a config file in ``work`` (the integration
    tests' ``write_config`` plus the catalog above, the read API and webhook tokens and a ``CALLBACK_URL``):
    (keys, stranger keys, config path)."""
    keys = generate_keypair(work, "endpoint")
    stranger = generate_keypair(work, "stranger", passphrase=None)
    catalog = os.path.join(work, "catalog.json")
    with open(catalog, "w") as f:
        json.dump(CATALOG, f)
    config = write_config(Path(work) / "flows.env", keys, APP_SECRET, Path(work), LOG_LEVEL="info",
                          API_TOKEN=API_TOKEN, VERIFY_TOKEN=VERIFY_TOKEN, APPOINTMENT_CATALOG=catalog,
                          CALLBACK_URL=f"http://127.0.0.1:{callback_port}/completed", **extra)
    return keys, stranger, str(config)
