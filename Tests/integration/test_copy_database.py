"""COPY-DATABASE (issue 18): a one-host installation's SQLite database moved to PostgreSQL with
``flows-fcgi copy-database``, then served from PostgreSQL by the same binary.

* The SQLite database is filled through the endpoint (nginx + spawn-fcgi): bookings (one with U+0000 in its
  details, one cancelled), an unfinished session, expenses, form-flow submissions, webhooks (a text with U+0000, a
  status, a Flows alert, nfm_replies confirming completions), delivered callback outbox rows, and a booking's and a
  submission's tokens purged to tombstones (``purge``).
* The copy runs while those responders still serve the file. It prints every table with its rows (the same in
  both databases), and every table reads back the same from PostgreSQL, ids, U+0000 and all.
* Served from PostgreSQL: /bookings, /expenses, /submissions, /messages and /stats answer the same JSON; completed
  and purged tokens still get 427 and an identical retried confirm the same SUCCESS; new bookings, expenses,
  submissions and messages get ids above the copied ones; a callback delivered before is not delivered again.
* Refused, changing nothing: a target with rows (exit 1); a missing source (exit 1, no file created, the target not
  touched); a table or column without its counterpart (exit 1, named; the same target takes the copy once fixed).
  Bad arguments exit 2 naming the argument. The password is never printed; DATABASE_PASSWORD_FILE and PGPASSFILE
  work as for the server.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

import expense
from conftest import (Deployment, Processes, Store, clean_env, free_port, make_database, make_deployment, wait_until,
                      write_config)
from test_appointment import write_catalog
from test_callbacks import Receiver
from test_form_flows import FormClient
from test_text_integrity import ok as appointment_ok, send as appointment_send, slot_fields

API_TOKEN = "api-" + secrets.token_hex(16)
AUTH = [("Authorization", "Bearer " + API_TOKEN)]
DAY = 86400
SENDER = "15550007777"
READ_API = ["/bookings?all=true&limit=100", "/expenses?limit=100", "/submissions?flow=feedback&limit=100",
            "/messages?limit=100", "/stats"]


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def copy_database(binary: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "copy-database", *args], capture_output=True, text=True,
                          env=env or clean_env(), timeout=120)


def sqlite_rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def sqlite_tables(db: Path) -> list[str]:
    """The tables a copy must carry: all but SQLite's own and the migration record."""
    return [name for (name,) in sqlite_rows(db, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite%' AND name != 'schema_migrations'")]


def unescape(value):
    """PostgresStore's reversible escape undone: U+FDD0 '0' is U+0000, U+FDD0 'E' is U+FDD0."""
    if isinstance(value, str):
        return re.sub("\ufdd0([0E])", lambda m: "\0" if m.group(1) == "0" else "\ufdd0", value)
    return value


def canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def pg_table(store: Store, table: str) -> list[dict]:
    """Every row of ``table`` on PostgreSQL, typed (row_to_json), text unescaped."""
    out = store.cluster.psql(f'SELECT row_to_json(t) FROM "{table}" t', url=store.database_url)
    return [{k: unescape(v) for k, v in json.loads(line).items()} for line in out.split("\n") if line]


def pg_columns(store: Store, table: str) -> list[str]:
    out = store.cluster.psql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                             f"AND table_name = '{table}' ORDER BY ordinal_position", url=store.database_url)
    return out.split("\n") if out else []


def sqlite_table(db: Path, table: str, columns: list[str]) -> list[dict]:
    """Every row of ``table`` on SQLite as the columns PostgreSQL has (``rowid`` is SQLite's implicit one)."""
    quoted = ", ".join(f'"{c}"' if c != "rowid" else "rowid" for c in columns)
    return [dict(zip(columns, row)) for row in sqlite_rows(db, f'SELECT {quoted} FROM "{table}"')]


def pg_dump(store: Store) -> dict[str, list[str]]:
    """Every table of the target, canonical: to show that a refused copy changed nothing."""
    return {table: canonical(pg_table(store, table)) for table in store.tables()}


def pg_count(store: Store, table: str) -> int:
    return int(store.cluster.psql(f'SELECT count(*) FROM "{table}"', url=store.database_url))


def printed_counts(stdout: str) -> dict[str, int]:
    """The ``  table  rows`` lines of a copy's output."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\w+) +(\d+)$", stdout, re.MULTILINE)}


def read_api(dep: Deployment) -> dict[str, object]:
    answers = {}
    for path in READ_API:
        r = dep.request("GET", path, headers=AUTH)
        assert r.status == 200, (path, r.body, dep.logs())
        answers[path] = json.loads(r.body)
    return answers


def book(dep: Deployment, token: str, **person: str) -> dict:
    """INIT, the dropdowns (tomorrow's first free time), DETAILS and the confirm: the SUCCESS params."""
    fields = {**slot_fields(dep, token), **person}
    assert appointment_ok(dep, token, "data_exchange", "DETAILS", fields)["screen"] == "SUMMARY"
    done = appointment_ok(dep, token, "data_exchange", "SUMMARY", fields)
    assert done["screen"] == "SUCCESS", done
    return {"fields": fields, "params": done["data"]["extension_message_response"]["params"]}


def submit_expense(dep: Deployment, token: str, amount: str, description: str = "") -> dict:
    client = dep.client()
    assert client.send(dep.path("/flows/expense"), expense.init(token)).status == 200
    ex = client.send(dep.path("/flows/expense"), expense.submit(token, amount, "food", description))
    assert ex.status == 200, ex.response
    return expense.success_params(ex.answer())


def give_feedback(dep: Deployment, token: str, comments: str) -> dict:
    form = FormClient(dep, "feedback")
    assert form.ok(token, "INIT")["screen"] == "FEEDBACK_RATING"
    form.next(token, "FEEDBACK_RATING", {"rating": "4", "comments": comments}, "FEEDBACK_FOLLOW_UP")
    form.next(token, "FEEDBACK_FOLLOW_UP", {"follow_up": "no"}, "FEEDBACK_THANKS")
    answer = form.ok(token, "data_exchange", "FEEDBACK_THANKS", {})
    assert answer["screen"] == "SUCCESS", answer
    return answer["data"]["extension_message_response"]["params"]


def webhook(dep: Deployment, messages: list[dict] = (), statuses: list[dict] = (), alerts: list[str] = ()) -> None:
    """A signed webhook batch: ``messages``, ``statuses`` and a Flows alert for each flow id in ``alerts``."""
    changes = [{"field": "messages", "value": {"messaging_product": "whatsapp", "messages": list(messages),
                                               "statuses": list(statuses)}}]
    changes += [{"field": "flows", "value": {"event": "ENDPOINT_LATENCY", "flow_id": flow_id}} for flow_id in alerts]
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": changes}]}).encode()
    r = dep.post_signed("/webhook", body)
    assert r.status == 200, (r.body, dep.logs())


def nfm_reply(params: dict, wamid: str) -> dict:
    return {"from": SENDER, "id": wamid, "timestamp": str(int(time.time())), "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                               "response_json": json.dumps(params)}}}


def start_host(binary, keys, app_secret, workdir: Path, processes: Processes, database_url: str,
               receiver_port: int) -> Deployment:
    return make_deployment("nginx+spawn-fcgi", binary, keys, app_secret, workdir, processes,
                           DATABASE_URL=database_url, APPOINTMENT_CATALOG=str(write_catalog(workdir)),
                           API_TOKEN=API_TOKEN, CALLBACK_URL=f"http://127.0.0.1:{receiver_port}/completed",
                           RETENTION_DAYS="0", LOG_LEVEL="info")


def age_and_purge(binary: Path, dep: Deployment, rows: list[tuple[str, str, str]]) -> None:
    """Moves ``rows`` (table, key column, key) 100 days back, then ``purge --days 30``: sessions are deleted, each
    leaving a tombstone, submissions lose their values, Flows alerts are deleted."""
    db = dep.workdir / "flows.db"
    for table, key, value in rows:
        for column in ("created_at", "updated_at", "received_at"):
            if any(name == column for _, name, *_ in sqlite_rows(db, f"PRAGMA table_info({table})")):
                sqlite_rows(db, f"UPDATE {table} SET {column} = {column} - ? WHERE {key} = ?", (100 * DAY, value))
    done = subprocess.run([str(binary), "purge", "--days", "30", "--config", str(dep.workdir / "flows.env")],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------------------------------------
# The source: a SQLite installation filled through its endpoint; the copy; the same binary on PostgreSQL
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver():
    port = free_port()
    server = Receiver(port)
    yield port, server
    server.stop()


@pytest.fixture(scope="module")
def source(binary, keys, app_secret, tmp_path_factory, receiver):
    """nginx + spawn-fcgi on SQLite, filled; kept serving while the copy runs."""
    port, server = receiver
    workdir = tmp_path_factory.mktemp("copy-source")
    processes = Processes()
    try:
        dep = start_host(binary, keys, app_secret, workdir, processes, f"sqlite:{workdir / 'flows.db'}", port)
        run = secrets.token_hex(3)
        facts = {"run": run}
        facts["nul"] = book(dep, f"copy-nul-{run}", more_details="a\u0000b")
        facts["cancelled"] = book(dep, f"copy-cancelled-{run}")
        cancel = subprocess.run([str(binary), "cancel-booking", str(facts["cancelled"]["params"]["booking_id"]),
                                 "--config", str(workdir / "flows.env")], capture_output=True, text=True,
                                env=clean_env(), timeout=60)
        assert cancel.returncode == 0, cancel.stderr
        facts["purged_booking"] = book(dep, f"copy-purged-{run}")
        slot_fields(dep, f"copy-unfinished-{run}")  # a session that never reached DETAILS
        facts["expense"] = submit_expense(dep, f"copy-expense-{run}", "12.50", "Team lunch")
        submit_expense(dep, f"copy-expense2-{run}", "7")
        facts["feedback"] = give_feedback(dep, f"copy-form-{run}", "Quick and friendly")
        facts["purged_feedback"] = give_feedback(dep, f"copy-form-purged-{run}", "Forget me")
        wamid = f"wamid.copy-{run}"
        text = {"from": SENDER, "id": wamid, "timestamp": str(int(time.time())), "type": "text",
                "text": {"body": "hi\u0000there"}}
        status = {"id": wamid, "status": "delivered", "timestamp": str(int(time.time())), "recipient_id": SENDER}
        webhook(dep, [text], [status], alerts=["77", "78"])
        # Purged: a booking's session and a submission (tombstones), and the newest alert, so that SQLite's
        # AUTOINCREMENT counter for the alerts is above their largest id.
        age_and_purge(binary, dep, [("appointment_sessions", "flow_token",
                                     facts["purged_booking"]["params"]["flow_token"]),
                                    ("form_sessions", "flow_token", facts["purged_feedback"]["flow_token"]),
                                    ("form_submissions", "flow_token", facts["purged_feedback"]["flow_token"]),
                                    ("webhook_flow_events", "flow_id", "78")])
        webhook(dep, [nfm_reply(facts["nul"]["params"], f"wamid.copy-confirm-{run}"),
                      nfm_reply(facts["feedback"], f"wamid.copy-form-confirm-{run}")])
        wait_until(lambda: len(server.received) == 2, 20, "the two callbacks delivered")
        db = workdir / "flows.db"
        wait_until(lambda: sqlite_rows(db, "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NOT NULL")
                   == [(2,)], 10, "the deliveries recorded")
        facts["answers"] = read_api(dep)
        yield dep, facts
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def copied(request, binary, source, tmp_path_factory):
    """The copy into a new PostgreSQL database, the password in the URL, while the source still serves."""
    dep, facts = source
    target = Store("postgres", tmp_path_factory.mktemp("copy-target"), request.getfixturevalue("pg_cluster"))
    result = copy_database(binary, "--from", f"sqlite:{dep.workdir / 'flows.db'}", "--to", target.database_url,
                           "--config", str(dep.workdir / "flows.env"))
    assert result.returncode == 0, result.stdout + result.stderr
    return target, result


@pytest.fixture(scope="module")
def on_postgres(binary, keys, app_secret, tmp_path_factory, copied, receiver):
    """The same binary and settings serving the copy."""
    target, _ = copied
    processes = Processes()
    try:
        yield start_host(binary, keys, app_secret, tmp_path_factory.mktemp("copy-served"), processes,
                         target.database_url, receiver[0])
    finally:
        processes.stop_all()


def test_every_table_is_copied_with_its_rows_and_counts(source, copied):
    dep, facts = source
    target, result = copied
    db = dep.workdir / "flows.db"
    assert target.cluster.password not in result.stdout + result.stderr
    assert target.database_url.replace(target.cluster.password, "<hidden>") in result.stdout, result.stdout

    # One line per table, every table of the source, with the rows of both databases.
    counts = printed_counts(result.stdout)
    assert sorted(counts) == sorted(sqlite_tables(db)), result.stdout
    for table, rows in counts.items():
        assert rows == sqlite_rows(db, f'SELECT count(*) FROM "{table}"')[0][0] == pg_count(target, table), table
    assert f"{sum(counts.values())} rows in {len(counts)} tables" in result.stdout, result.stdout
    for table in ("appointment_bookings", "appointment_session_tombstones", "expenses", "form_submissions",
                  "form_tombstones", "webhook_messages", "webhook_statuses", "webhook_confirmations",
                  "webhook_flow_events", "webhook_outbox"):
        assert counts[table] > 0, (table, result.stdout)

    # Every row, every value: the same (ids kept, U+0000 whole once the store's escape is undone).
    for table in counts:
        columns = pg_columns(target, table)
        assert canonical(pg_table(target, table)) == canonical(sqlite_table(db, table, columns)), table
    assert target.rows("SELECT count(*) FROM appointment_bookings WHERE more_details = ?",
                       ("a\ufdd00b",)) == [(1,)]


def test_postgresql_answers_what_sqlite_answered(source, on_postgres):
    _, facts = source
    assert read_api(on_postgres) == facts["answers"]
    messages = facts["answers"]["/messages?limit=100"]["data"]
    assert [m["text"] for m in messages if m["id"] == f"wamid.copy-{facts['run']}"] == ["hi\u0000there"]
    bookings = facts["answers"]["/bookings?all=true&limit=100"]["data"]
    assert {b["more_details"] for b in bookings if b["flow_token"] == facts["nul"]["params"]["flow_token"]} == \
        {"a\u0000b"}


def test_completed_and_purged_tokens_still_get_427(source, on_postgres):
    _, facts = source
    for token in (facts["nul"]["params"]["flow_token"], facts["purged_booking"]["params"]["flow_token"]):
        assert appointment_send(on_postgres, token, "INIT").status == 427, token
    # The identical retried confirm: the same SUCCESS (the submission's fingerprint was copied too).
    retried = appointment_ok(on_postgres, facts["nul"]["params"]["flow_token"], "data_exchange", "SUMMARY",
                             facts["nul"]["fields"])
    assert retried["data"]["extension_message_response"]["params"] == facts["nul"]["params"]
    client = on_postgres.client()
    assert client.send(on_postgres.path("/flows/expense"),
                       expense.init(facts["expense"]["flow_token"])).status == 427
    form = FormClient(on_postgres, "feedback")
    for token in (facts["feedback"]["flow_token"], facts["purged_feedback"]["flow_token"]):
        assert form.send(token, "INIT")[0] == 427, token


def test_new_rows_get_ids_above_the_copied_ones(source, copied, on_postgres, receiver):
    dep, facts = source
    target, _ = copied
    db = dep.workdir / "flows.db"
    run = facts["run"]

    def largest(table: str, column: str = "id") -> int:
        return sqlite_rows(db, f"SELECT max({column}) FROM {table}")[0][0]

    booked = book(on_postgres, f"copy-new-{run}")["params"]
    assert int(booked["booking_id"]) > largest("appointment_bookings")
    spent = submit_expense(on_postgres, f"copy-new-expense-{run}", "3.20")
    assert int(spent["expense_id"]) > largest("expenses")
    feedback = give_feedback(on_postgres, f"copy-new-form-{run}", "Still friendly")
    assert int(feedback["submission_id"]) > largest("form_submissions")

    # A new message is listed first, after a row id above the copied ones; its callback is delivered, and the two
    # delivered from SQLite are not delivered again (they would be due before it).
    port, server = receiver
    webhook(on_postgres, [nfm_reply(booked, f"wamid.copy-new-{run}")])
    assert int(target.rows(f"SELECT rowid FROM webhook_messages WHERE id = 'wamid.copy-new-{run}'")[0][0]) > \
        largest("webhook_messages", "rowid")
    listed = on_postgres.request("GET", "/messages?limit=1", headers=AUTH)
    assert [m["id"] for m in json.loads(listed.body)["data"]] == [f"wamid.copy-new-{run}"]
    wait_until(lambda: any(p["flow_token"] == booked["flow_token"] for _, _, p in server.received), 20,
               "the new callback")
    assert sorted(p["flow_token"] for _, _, p in server.received) == sorted(
        [facts["nul"]["params"]["flow_token"], facts["feedback"]["flow_token"], booked["flow_token"]])
    ids = [row[0] for row in target.rows("SELECT id FROM webhook_outbox ORDER BY id")]
    assert len(ids) == 3 and ids[2] > largest("webhook_outbox"), ids

    # An id SQLite handed out once (to the purged alert) is not handed out again.
    handed_out = sqlite_rows(db, "SELECT seq FROM sqlite_sequence WHERE name = 'webhook_flow_events'")[0][0]
    assert handed_out > largest("webhook_flow_events")
    webhook(on_postgres, alerts=["79"])
    assert target.rows("SELECT id FROM webhook_flow_events WHERE flow_id = '79'") == [(handed_out + 1,)]


def test_the_copy_reads_one_snapshot_while_the_responders_write(request, binary, source, tmp_path):
    """Webhooks keep arriving during the copy, each storing a message and its status in one transaction: the copy
    succeeds, and what it copied is one instant of the source (every message copied with its status)."""
    dep, facts = source
    target = Store("postgres", tmp_path, request.getfixturevalue("pg_cluster"))
    stop = threading.Event()
    posted: list[str] = []

    def write() -> None:
        while not stop.is_set():
            wamid = f"wamid.during-{facts['run']}-{len(posted)}"
            stamp = str(int(time.time()))
            # A text no path or log line holds by chance (every text sent is searched for in the logs).
            body = f"written during the copy {facts['run']}"
            webhook(dep, [{"from": SENDER, "id": wamid, "timestamp": stamp, "type": "text", "text": {"body": body}}],
                    [{"id": wamid, "status": "sent", "timestamp": stamp, "recipient_id": SENDER}])
            posted.append(wamid)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(posted) >= 3, 20, "webhooks arriving")
        result = copy_database(binary, "--from", str(dep.workdir / "flows.db"), "--to", target.database_url,
                               "--config", str(dep.workdir / "flows.env"))
        during = len(posted)
    finally:
        stop.set()
        writer.join(30)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = printed_counts(result.stdout)
    assert counts["webhook_messages"] == pg_count(target, "webhook_messages")
    messages = {m for (m,) in target.rows("SELECT id FROM webhook_messages WHERE id LIKE 'wamid.during-%'")}
    statuses = {m for (m,) in target.rows("SELECT message_id FROM webhook_statuses "
                                          "WHERE message_id LIKE 'wamid.during-%'")}
    assert messages == statuses and len(messages) >= 3, (len(messages), len(statuses), during)


# --------------------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_source(binary, keys, app_secret, tmp_path) -> Path:
    """A SQLite database as the responder leaves it when started once on a new file (every table, no rows) and
    the config naming it."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    make_database(binary, config, tmp_path)
    return tmp_path / "flows.db"


def test_a_target_with_rows_is_refused_and_left_unchanged(request, binary, source, tmp_path):
    dep, _ = source
    target = Store("postgres", tmp_path, request.getfixturevalue("pg_cluster"))
    arguments = ["--from", str(dep.workdir / "flows.db"), "--to", target.database_url,
                 "--config", str(dep.workdir / "flows.env")]
    assert copy_database(binary, *arguments).returncode == 0
    before = pg_dump(target)
    again = copy_database(binary, *arguments)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "is not empty" in again.stderr and "appointment_bookings (" in again.stderr, again.stderr
    assert "nothing was changed" in again.stderr and again.stdout == "", again.stdout
    assert target.cluster.password not in again.stdout + again.stderr
    assert pg_dump(target) == before


def test_a_missing_source_is_refused_and_nothing_is_created(request, binary, tmp_path):
    target = Store("postgres", tmp_path, request.getfixturevalue("pg_cluster"))
    missing = tmp_path / "nothing-here.db"
    for given in (str(missing), f"sqlite:{missing}"):
        result = copy_database(binary, "--from", given, "--to", target.database_url)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"--from {missing}: there is no database there" in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    assert target.tables() == []  # the target was not touched: not even migrated

    # A file that is no flows-fcgi database: refused before the target is touched, the file unchanged.
    other = tmp_path / "other.db"
    sqlite_rows(other, "CREATE TABLE notes (body TEXT)")
    content = other.read_bytes()
    result = copy_database(binary, "--from", str(other), "--to", target.database_url)
    assert result.returncode == 1 and "not a flows-fcgi database" in result.stderr, result.stderr
    assert other.read_bytes() == content and target.tables() == []


def test_a_table_or_column_without_its_counterpart_is_refused_by_name(request, binary, small_source, tmp_path):
    target = Store("postgres", tmp_path, request.getfixturevalue("pg_cluster"))
    arguments = ["--from", str(small_source), "--to", target.database_url, "--config", str(tmp_path / "flows.env")]
    # A table of a flow this version does not serve (by hand: there is none yet).
    sqlite_rows(small_source, "CREATE TABLE loyalty_points (id INTEGER PRIMARY KEY, flow_token TEXT)")
    sqlite_rows(small_source, "INSERT INTO loyalty_points (flow_token) VALUES ('x')")
    refused = copy_database(binary, *arguments)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "table loyalty_points of the source has no counterpart in the target" in refused.stderr, refused.stderr
    sqlite_rows(small_source, "DROP TABLE loyalty_points")
    # A column the target does not have.
    sqlite_rows(small_source, "ALTER TABLE expenses ADD COLUMN note TEXT")
    refused = copy_database(binary, *arguments)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "table expenses: the columns differ" in refused.stderr and "only in the source: note" in refused.stderr
    assert all(pg_count(target, table) == 0 for table in target.tables() if table != "schema_migrations")
    # Fixed, the same target (migrated by the refused attempts, still without rows) takes the copy.
    sqlite_rows(small_source, "ALTER TABLE expenses DROP COLUMN note")
    done = copy_database(binary, *arguments)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_password_file_and_pgpassfile_work_as_for_the_server(request, binary, small_source, tmp_path):
    cluster = request.getfixturevalue("pg_cluster")
    config = str(tmp_path / "flows.env")
    for way in ("DATABASE_PASSWORD_FILE", "PGPASSFILE"):
        target = Store("postgres", tmp_path, cluster)
        secret = tmp_path / f"secret-{way}"
        secret.write_text(cluster.password + "\n" if way == "DATABASE_PASSWORD_FILE"
                          else f"127.0.0.1:{cluster.port}:{target.name}:flows:{cluster.password}\n")
        secret.chmod(0o600)
        url = target.database_url.replace(":" + cluster.password, "")
        without = copy_database(binary, "--from", str(small_source), "--to", url, "--config", config)
        assert without.returncode == 1 and "password" in without.stderr, (way, without.stderr)
        result = copy_database(binary, "--from", str(small_source), "--to", url, "--config", config,
                               env=clean_env(**{way: str(secret)}))
        assert result.returncode == 0, (way, result.stdout + result.stderr)
        assert cluster.password not in result.stdout + result.stderr
        assert printed_counts(result.stdout)["appointment_bookings"] == 0, result.stdout


@pytest.mark.parametrize("arguments,named", [
    ([], "--from is required"),
    (["--from", "/x.db"], "--to is required"),
    (["--to", "postgresql://flows@127.0.0.1/flows"], "--from is required"),
    (["--from"], "--from needs a value"),
    (["--from", "/x.db", "--to", "postgresql://flows@127.0.0.1/flows", "--force"], "unknown option --force"),
    (["--from", "postgresql://flows:pw-secret@127.0.0.1/flows", "--to", "postgresql://flows@127.0.0.1/flows"],
     "--from must be a SQLite database"),
    (["--from", "/x.db", "--to", "sqlite:/y.db"], "--to must be a PostgreSQL connection URI"),
    (["--from", "/x.db", "--to", "postgresql://flows:pw-secret@[::1/flows"], "--to: "),
    (["--from", "/x.db", "--to", "postgresql://flows@127.0.0.1/flows", "postgresql://flows:pw-secret@h/db"],
     "unexpected argument postgresql://flows:<hidden>@h/db"),
])
def test_bad_arguments_exit_2_naming_the_argument(binary, tmp_path, arguments, named):
    result = copy_database(binary, *arguments)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"flows-fcgi: copy-database: {named}" in result.stderr, result.stderr
    assert "pw-secret" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == [] and not Path("/x.db").exists()


def test_help_prints_the_usage(binary):
    result = copy_database(binary, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: flows-fcgi copy-database --from sqlite:"), result.stdout
    assert "--to postgresql://" in result.stdout and "PGPASSFILE" in result.stdout
    listed = subprocess.run([str(binary), "--help"], capture_output=True, text=True, env=clean_env()).stdout
    assert re.search(r"^  copy-database  +copy a SQLite database", listed, re.MULTILINE), listed
