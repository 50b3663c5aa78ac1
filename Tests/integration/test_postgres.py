"""POSTGRESQL (issue 18): what only a database server shared by several hosts has.

* ``check`` on a PostgreSQL ``DATABASE_URL``: the URL shown with its password hidden, the server answering, a
  write transaction, the migrations; the password from ``DATABASE_PASSWORD_FILE``.
* Two hosts on one machine: two nginx instances on different ports, each in front of its own spawn-fcgi
  responders, one PostgreSQL database. Journeys whose steps alternate between the hosts complete; 24 tokens racing
  for the last seat of one slot across both hosts get exactly one SUCCESS; the same webhook batch delivered to both
  hosts is stored once; ``/bookings`` on host B shows what host A booked.
* PostgreSQL stopped (immediate mode) in the middle of a booking load, then started again: the responders answer
  503 while it is down (never 500) and 200 again after, without a restart; every booking a client got SUCCESS for
  is in the database, and no slot is over capacity.

The store-independent behaviour (journeys, races on one host, webhooks, forms, purge) runs on both stores in the
other test files (``STORES``).
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import subprocess
import threading

import pytest

from conftest import Deployment, Processes, Store, clean_env, make_deployment, make_store, start_listen, \
    wait_until, write_config
from flowclient import KeyPair
from test_appointment import PATH, PERSON, VERSION, AppointmentClient, success_params, tomorrow, write_catalog

API_TOKEN = "api-" + secrets.token_hex(16)


def test_check_shows_the_masked_url_and_checks_the_server(request, binary, keys, app_secret, tmp_path):
    store = make_store("postgres", tmp_path, request)
    password = store.cluster.password
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, DATABASE_URL=store.database_url)
    first = subprocess.run([str(binary), "check", "--config", str(config)], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
    output = first.stdout + first.stderr
    assert password not in output, output
    masked = store.database_url.replace(password, "<hidden>")
    assert f"database {masked} answers" in output, output
    assert f"database {masked} is writable" in output, output
    assert "migrations not applied yet" in output, output

    # The password from DATABASE_PASSWORD_FILE, the URL without one: the responder migrates, check agrees.
    secret = tmp_path / "db-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path,
                          DATABASE_URL=store.database_url.replace(":" + password, ""),
                          DATABASE_PASSWORD_FILE=str(secret))
    processes = Processes()
    try:
        sock = tmp_path / "pw.sock"
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        client = AppointmentClient(str(sock), keys, app_secret)
        assert client.ok("pw-" + secrets.token_hex(4), "INIT")["screen"] == "APPOINTMENT"
    finally:
        processes.stop_all()
    second = subprocess.run([str(binary), "check", "--config", str(config)], capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert "migrations applied" in second.stdout and password not in second.stdout + second.stderr, second.stdout
    assert store.rows("SELECT count(*) FROM schema_migrations")[0][0] >= 10


def test_two_worker_threads_by_default_on_either_store(request, binary, keys, app_secret, tmp_path):
    """A process runs two workers unless --threads says otherwise (one uses the processor while the other waits
    for the web server, a lock or a PostgreSQL round trip), on either store. The startup line says how many."""
    store = make_store("postgres", tmp_path, request)
    cases = [({"DATABASE_URL": store.database_url}, (), "2"),
             ({"DATABASE_URL": store.database_url}, ("--threads", "3"), "3"),
             ({"DATABASE_URL": f"sqlite:{tmp_path / 'flows.db'}"}, (), "2"),
             ({"DATABASE_URL": f"sqlite:{tmp_path / 'flows.db'}"}, ("--threads", "1"), "1")]
    for i, (settings, args, expected) in enumerate(cases):
        work = tmp_path / f"case-{i}"
        work.mkdir()
        config = write_config(work / "flows.env", keys, app_secret, work, LOG_LEVEL="info", **settings)
        processes = Processes()
        try:
            start_listen(binary, config, work, processes, f"unix:{work / 's.sock'}", extra_args=args)
            client = AppointmentClient(str(work / "s.sock"), keys, app_secret)
            assert client.ok(f"threads-{i}-" + secrets.token_hex(4), "INIT")["screen"] == "APPOINTMENT"
        finally:
            processes.stop_all()
        serving = [line for line in (work / "responder.log").read_text().splitlines() if "serving FastCGI" in line]
        assert len(serving) == 1 and f"threads={expected} " in serving[0] + " ", (args, serving)


# --------------------------------------------------------------------------------------------------------
# Two hosts, one database
# --------------------------------------------------------------------------------------------------------


class HostsClient(AppointmentClient):
    """The appointment flow through the nginx of several hosts: each request goes to the next host in turn, or to
    the one given."""

    def __init__(self, hosts: list[Deployment], keys: KeyPair, app_secret: str):
        super().__init__("", keys, app_secret)
        self.hosts = hosts
        self.turn = itertools.count()
        self.pinned: Deployment | None = None

    def send(self, token: str, action: str, screen: str = "", data: dict | None = None) -> tuple[int, dict]:
        host = self.pinned or self.hosts[next(self.turn) % len(self.hosts)]
        request = {"version": VERSION, "action": action, "flow_token": token, "screen": screen, "data": data or {}}
        exchange = host.client().send(host.path(PATH), request)
        with self.lock:
            self.statuses.append(exchange.status)
        if exchange.status in (200, 427):
            return exchange.status, exchange.answer()
        return exchange.status, {"body": exchange.response.body.decode(errors="replace")}


@pytest.fixture
def two_hosts(request, binary, keys, app_secret, tmp_path):
    store = make_store("postgres", tmp_path, request)
    catalog = write_catalog(tmp_path)
    processes = Processes()
    try:
        hosts = [make_deployment("nginx+spawn-fcgi", binary, keys, app_secret, tmp_path / name, processes,
                                 children=2, DATABASE_URL=store.database_url, APPOINTMENT_CATALOG=str(catalog),
                                 API_TOKEN=API_TOKEN, LOG_LEVEL="info")
                 for name in ("host-a", "host-b")]
        assert hosts[0].address != hosts[1].address
        yield hosts, store
    finally:
        processes.stop_all()


def test_two_hosts_alternating_steps_and_racing_for_the_last_seat(two_hosts, keys, app_secret):
    hosts, store = two_hosts
    client = HostsClient(hosts, keys, app_secret)
    run = secrets.token_hex(4)

    # Journeys whose steps alternate between the hosts (INIT on A, the first selection on B, ...) complete.
    for index in range(4):
        token = f"alt-{run}-{index}"
        fields = client.journey_to_summary(token, tomorrow, lambda times, i=index: times[40 + i]["id"])
        params = success_params(client.ok(token, "data_exchange", "SUMMARY", fields))
        assert params is not None and params["flow_token"] == token
        # The identical retried confirm, on whichever host, gets the same SUCCESS; anything else 427.
        assert success_params(client.ok(token, "data_exchange", "SUMMARY", fields)) == params
        status, _ = client.send(token, "INIT")
        assert status == 427

    # 24 tokens reach SUMMARY for the same slot, then confirm at once, half through each host.
    racers = 24
    tokens = [f"race-{run}-{i}" for i in range(racers)]
    fields = [client.journey_to_summary(token, tomorrow, lambda times: times[60]["id"]) for token in tokens]
    slot = fields[0]["time"]
    barrier = threading.Barrier(racers)

    def confirm(i: int) -> tuple[int, dict]:
        host = hosts[i % 2]
        request = {"version": VERSION, "action": "data_exchange", "flow_token": tokens[i], "screen": "SUMMARY",
                   "data": fields[i]}
        sender = host.client()
        barrier.wait()
        exchange = sender.send(host.path(PATH), request)
        return exchange.status, exchange.answer() if exchange.status == 200 else {}

    threads_answers: list[tuple[int, dict]] = [(0, {})] * racers

    def run_one(i: int) -> None:
        threads_answers[i] = confirm(i)
    threads = [threading.Thread(target=run_one, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [status for status, _ in threads_answers] == [200] * racers, threads_answers
    winners = [answer for _, answer in threads_answers if success_params(answer)]
    assert len(winners) == 1, threads_answers
    for _, answer in threads_answers:
        if not success_params(answer):
            assert answer["screen"] == "SUMMARY" and "go back" in answer["data"]["error_message"], answer
    rows = store.rows(f"SELECT id, flow_token FROM appointment_bookings WHERE flow_token LIKE 'race-{run}-%' "
                      "AND status = 'booked'")
    assert len(rows) == 1 and rows[0][0] == int(success_params(winners[0])["booking_id"]), rows
    assert all(f["time"] == slot for f in fields)


def test_two_hosts_share_bookings_and_store_a_webhook_batch_once(two_hosts, binary, keys, app_secret):
    hosts, store = two_hosts
    client = HostsClient(hosts, keys, app_secret)
    token = "on-a-" + secrets.token_hex(4)
    client.pinned = hosts[0]
    fields = client.journey_to_summary(token, tomorrow, lambda times: times[20]["id"])
    params = success_params(client.ok(token, "data_exchange", "SUMMARY", fields))
    assert params is not None

    auth = [("Authorization", "Bearer " + API_TOKEN)]
    listed = hosts[1].request("GET", "/bookings", headers=auth)
    assert listed.status == 200, listed.body
    assert [b["id"] for b in json.loads(listed.body)["data"] if b["flow_token"] == token] == \
        [int(params["booking_id"])], listed.body
    # The operator commands of host B read and write the same database: the listing (and, at the end, a cancel).
    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args, "--config", str(hosts[1].workdir / "flows.env")],
                              capture_output=True, text=True, env=clean_env(), timeout=60)
    listing = command("bookings")
    assert listing.returncode == 0 and f"{params['booking_id']} " in listing.stdout, listing.stdout + listing.stderr
    assert store.cluster.password not in listing.stdout + listing.stderr

    # The same batch (a message completing the flow, and a status) delivered to both hosts at once: stored once.
    wamid = "wamid.two-hosts-" + secrets.token_hex(6)
    message = {"from": "15550009876", "id": wamid, "timestamp": "1795435200", "type": "interactive",
               "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                                  "response_json": json.dumps(params)}}}
    status = {"id": wamid, "status": "delivered", "timestamp": "1795435201", "recipient_id": "15550009876"}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [message],
                                        "statuses": [status]}}]}]}).encode()
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def deliver(host: Deployment) -> None:
        barrier.wait()
        answers.append(host.post_signed("/webhook", body).status)
    threads = [threading.Thread(target=deliver, args=(hosts[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 4, answers
    assert store.rows(f"SELECT count(*) FROM webhook_messages WHERE id = '{wamid}'") == [(1,)]
    assert store.rows(f"SELECT count(*) FROM webhook_statuses WHERE message_id = '{wamid}'") == [(1,)]
    assert store.rows(f"SELECT message_id FROM webhook_confirmations WHERE flow_token = '{token}'") == [(wamid,)]
    stats = json.loads(hosts[0].request("GET", "/stats", headers=auth).body)
    assert stats["flows"]["appointment"]["confirmed"] == 1, stats
    cancelled = command("cancel-booking", str(params["booking_id"]))
    assert cancelled.returncode == 0 and "free again" in cancelled.stdout, cancelled.stdout + cancelled.stderr
    assert store.rows(f"SELECT status FROM appointment_bookings WHERE flow_token = '{token}'") == [("cancelled",)]


# --------------------------------------------------------------------------------------------------------
# PostgreSQL stopped in the middle of a booking load
# --------------------------------------------------------------------------------------------------------


def test_postgres_stopped_mid_load_answers_503_then_serves_again(binary, keys, app_secret, tmp_path):
    from pgserver import PostgresServer
    with PostgresServer() as server:
        catalog = write_catalog(tmp_path)
        config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, DATABASE_URL=server.url,
                              APPOINTMENT_CATALOG=str(catalog), LOG_LEVEL="info")
        store = Store("postgres", tmp_path, server, database_url=server.url)
        sock = tmp_path / "load.sock"
        processes = Processes()
        try:
            start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--processes", "2", "--threads", "2"])
            client = AppointmentClient(str(sock), keys, app_secret)
            assert client.ok("warm-" + secrets.token_hex(4), "INIT")["screen"] == "APPOINTMENT"
            stop = threading.Event()
            booked: list[tuple[str, dict]] = []
            lock = threading.Lock()

            def load(worker: int) -> None:
                rng = random.Random(worker)
                for n in itertools.count():
                    if stop.is_set():
                        return
                    token = f"load-{worker}-{n}-{secrets.token_hex(3)}"
                    try:
                        fields = client.journey_to_summary(
                            token, tomorrow, lambda times: rng.choice(times[:12])["id"])
                    except AssertionError:
                        continue  # a step answered 503 (or the slot filled up): next journey
                    status, answer = client.send(token, "data_exchange", "SUMMARY", fields)
                    params = success_params(answer) if status == 200 else None
                    if params:
                        with lock:
                            booked.append((token, params))
            workers = [threading.Thread(target=load, args=(i,)) for i in range(6)]
            for worker in workers:
                worker.start()
            wait_until(lambda: len(booked) >= 5, 20, "bookings before the stop")
            server.stop("immediate")
            down_from = len(client.statuses)
            wait_until(lambda: client.statuses[down_from:].count(503) >= 10, 20, "503 while the server is down")
            server.start()
            before = len(booked)
            wait_until(lambda: len(booked) >= before + 5, 30, "bookings again after the restart")
            stop.set()
            for worker in workers:
                worker.join(30)

            statuses = set(client.statuses)
            assert statuses <= {200, 427, 503}, sorted(statuses)
            assert 503 in statuses
            log = (tmp_path / "responder.log").read_text()
            assert "status=500" not in log, log[-3000:]
            assert server.password not in log
            # Every SUCCESS is in the database, once, with its booking id.
            rows = {token: (id_, status) for id_, token, status in
                    store.rows("SELECT id, flow_token, status FROM appointment_bookings")}
            for token, params in booked:
                assert rows.get(token) == (int(params["booking_id"]), "booked"), (token, params)
            # No slot over its capacity (1 in this catalog).
            over = store.rows("SELECT date, time, count(*) FROM appointment_bookings WHERE status = 'booked' "
                              "GROUP BY date, time HAVING count(*) > 1")
            assert over == [], over
            print(f"\n{len(booked)} bookings acknowledged across an immediate stop and restart; "
                  f"{client.statuses.count(503)} answers 503 while it was down")
        finally:
            processes.stop_all()
