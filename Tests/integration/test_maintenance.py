"""MAINTENANCE: `flows-fcgi purge` and the automatic purge of the FastCGI processes on a real database, log
reopening through the shipped logrotate snippet, and the container entrypoint under tini (docker cannot run here:
the entrypoint script is what the container runs, so it is run as the container would, with tini as PID 1's
stand-in)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, STORES, Processes, Store, children_of, clean_env, fcgi_request, make_database,
                      make_store, pid_alive, start_listen, start_spawn_fcgi, tail, wait_for_listener, wait_until,
                      write_config)

DAY = 86400


def run(binary, config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args, "--config", str(config)], capture_output=True, text=True,
                          env=clean_env(), timeout=30)


def rows(db: Path | Store, sql: str, params: tuple = ()) -> list[tuple]:
    """``sql`` on a SQLite file, or on a ``Store`` (SQLite or PostgreSQL)."""
    if isinstance(db, Store):
        return db.rows(sql, params)
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def seed(db: Path | Store, now: int) -> None:
    """Rows 100 days old and 1 day old in the booking, expense, session and webhook tables."""
    for age, tag in ((100 * DAY, "old"), (DAY, "new")):
        at = now - age
        rows(db, "INSERT INTO appointment_bookings (created_at, flow_token, department, location, date, "
             "time, starts_at, utc_offset, name, email, phone, more_details) VALUES "
             "(?, ?, 'beauty', '1', '2026-01-01', '10:00', ?, 0, 'Pat Person', 'pat@example.com', "
             "'+44 20 7946 0000', 'details')", (at, f"{tag}-booking", at))
        rows(db, "INSERT INTO appointment_sessions (flow_token, created_at, updated_at, completed) "
             "VALUES (?, ?, ?, 1)", (f"{tag}-booking", at, at))
        rows(db, "INSERT INTO expenses (created_at, flow_token, amount_minor, currency, category, "
             "description, expense_date) VALUES (?, ?, 1250, 'EUR', 'food', 'Lunch with Pat', "
             "'2026-01-01')", (at, f"{tag}-expense"))
        rows(db, "INSERT INTO webhook_messages (id, sender, type, timestamp, text, raw, received_at) "
             "VALUES (?, '447700900123', 'text', ?, 'hello', '{}', ?)", (f"wamid.{tag}", at, at))


def counts(db: Path | Store) -> dict[str, int]:
    def one(sql: str) -> int:
        return rows(db, sql)[0][0]
    return {
        "named": one("SELECT count(*) FROM appointment_bookings WHERE name != ''"),
        "bookings": one("SELECT count(*) FROM appointment_bookings"),
        "sessions": one("SELECT count(*) FROM appointment_sessions"),
        "described": one("SELECT count(*) FROM expenses WHERE description IS NOT NULL"),
        "messages": one("SELECT count(*) FROM webhook_messages"),
    }


@pytest.mark.parametrize("kind", STORES)
def test_purge_command_removes_old_personal_data_and_keeps_recent(kind, request, binary, keys, app_secret, tmp_path):
    db = make_store(kind, tmp_path, request)
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, RETENTION_DAYS="90",
                          DATABASE_URL=db.database_url)
    make_database(binary, config, tmp_path)
    seed(db, int(time.time()))

    dry = run(binary, config, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "webhook_messages" in dry.stdout, dry.stdout
    assert counts(db) == {"named": 2, "bookings": 2, "sessions": 2, "described": 2, "messages": 2}

    done = run(binary, config, "purge")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines()[1:]}
    assert lines["appointment_bookings"] == "1" and lines["appointment_sessions"] == "1", done.stdout
    assert lines["expenses"] == "1" and lines["webhook_messages"] == "1", done.stdout
    assert counts(db) == {"named": 1, "bookings": 2, "sessions": 1, "described": 1, "messages": 1}
    assert "Pat" not in done.stdout

    # --days overrides the setting; 0 keeps everything.
    kept = run(binary, config, "purge", "--days", "0")
    assert kept.returncode == 0 and "nothing purged" in kept.stdout, kept.stdout + kept.stderr
    bad = run(binary, config, "purge", "--days", "soon")
    assert bad.returncode == 2 and "--days" in bad.stderr and "RETENTION_DAYS" not in bad.stderr, bad.stderr


@pytest.mark.parametrize("kind", STORES)
def test_automatic_purge_runs_once_across_processes(kind, request, binary, keys, app_secret, tmp_path):
    db = make_store(kind, tmp_path, request)
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, RETENTION_DAYS="30",
                          DATABASE_URL=db.database_url)
    make_database(binary, config, tmp_path)
    seed(db, int(time.time()))
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{tmp_path / 'auto.sock'}",
                     extra_args=["--processes", "2"])
        wait_until(lambda: counts(db)["messages"] == 1, timeout=20, what="the automatic purge")
        assert counts(db) == {"named": 1, "bookings": 2, "sessions": 1, "described": 1, "messages": 1}
        last = rows(db, "SELECT value FROM maintenance WHERE name = 'last_purge_at'")[0][0]
        assert abs(last - time.time()) < 60
        time.sleep(1)
        log = (tmp_path / "responder.log").read_text()
        assert log.count("purge done") == 1, tail(tmp_path / "responder.log")
        assert "Pat" not in log and "hello" not in log
    finally:
        processes.stop_all()


def test_logrotate_snippet_moves_the_log_and_responders_reopen_it(binary, keys, app_secret, tmp_path, processes):
    """The shipped snippet run by logrotate -f against spawn-fcgi's responders (their pid file): the old lines
    stay in the rotated file, the next request's access line lands in a fresh file at the original path."""
    assert shutil.which("logrotate"), "logrotate is not installed (scripts/deps installs it)"
    logs = tmp_path  # spawn-fcgi.sh gives the responders --log-file responder.log there
    log = logs / "responder.log"
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock, pids = start_spawn_fcgi(binary, config, tmp_path, processes, count=2)
    conf = tmp_path / "logrotate.conf"
    conf.write_text((REPO / "packaging" / "logrotate" / "flows-fcgi").read_text()
                    .replace("/var/log/flows-fcgi/", f"{logs}/")
                    .replace("/run/flows-fcgi/flows-fcgi.pid", str(tmp_path / "flows-fcgi.pid")))
    # Both responders ready first: a SIGHUP that arrives while a process still loads its keys (before its signal
    # handling is set up) ends it.
    wait_until(lambda: log.exists() and log.read_text().count("serving FastCGI") == 2, what="both responders")
    assert fcgi_request(sock, "GET", "/flows-fcgi/health").status == 200
    wait_until(lambda: "route=health " in log.read_text(), what="the first access line")
    before = log.read_text()

    result = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    rotated = logs / "responder.log.1"
    assert rotated.exists() and rotated.read_text().startswith(before)
    time.sleep(0.5)  # each responder reopens on SIGHUP
    for _ in range(4):  # whichever process answers, the line goes to the new file
        assert fcgi_request(sock, "GET", "/flows-fcgi/health/ready").status == 200
    wait_until(lambda: log.exists() and "health/ready" in log.read_text(), what="an access line in the new file")
    assert "health/ready" not in rotated.read_text()
    assert all(pid_alive(pid) for pid in pids)


@pytest.mark.parametrize("listen", ["unix", "tcp"])
def test_container_entrypoint_under_tini_serves_and_stops_on_sigterm(binary, keys, app_secret, tmp_path, processes,
                                                                     listen):
    """container/entrypoint.sh as the container runs it, under tini (-s: a subreaper, standing in for PID 1):
    spawn-fcgi -n execs the responder in its place; requests are answered; SIGTERM to tini stops it, exit 0."""
    assert shutil.which("tini"), "tini is not installed (scripts/deps installs it)"
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    if listen == "unix":
        address: str | tuple[str, int] = str(run_dir / "flows-fcgi.sock")
        setting = f"unix:{address}"
    else:
        from conftest import free_port
        address = ("127.0.0.1", free_port())
        setting = f"127.0.0.1:{address[1]}"
    env = clean_env(FLOWS_FCGI_BIN=str(binary), FLOWS_FCGI_LISTEN=setting, FLOWS_FCGI_CONFIG=str(config),
                    FLOWS_FCGI_PIDFILE=str(run_dir / "flows-fcgi.pid"), FLOWS_FCGI_THREADS="2")
    tini = processes.start(["tini", "-s", "--", str(REPO / "container" / "entrypoint.sh")], "tini entrypoint",
                           tmp_path / "container.out", env=env)
    wait_for_listener(address, alive=lambda: tini.poll() is None, log=tmp_path / "container.out")
    wait_until(lambda: len(children_of(tini.pid)) == 1, what="the responder under tini")
    responder = children_of(tini.pid)[0]
    assert int((run_dir / "flows-fcgi.pid").read_text()) == responder
    assert Path(f"/proc/{responder}/exe").resolve() == binary.resolve()

    for _ in range(3):
        response = fcgi_request(address, "GET", "/flows-fcgi/health")
        assert response.status == 200, response

    tini.send_signal(signal.SIGTERM)
    assert tini.wait(20) == 0, tail(tmp_path / "container.out") + tail(tmp_path / "responder.log")
    assert not pid_alive(responder) and not children_of(tini.pid)
    log = (tmp_path / "responder.log").read_text()
    assert "stopped" in log, log[-2000:]


def test_containerfile_installs_what_the_entrypoint_needs():
    text = (REPO / "container" / "Containerfile").read_text()
    for package in ("spawn-fcgi", "libfcgi0ldbl", "libssl3", "libsqlite3-0", "tini"):
        assert package in text, package
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]' in text
    assert "STOPSIGNAL SIGTERM" in text
    assert os.access(REPO / "container" / "entrypoint.sh", os.X_OK)
    result = subprocess.run(["sh", "-n", str(REPO / "container" / "entrypoint.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
