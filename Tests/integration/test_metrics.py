"""METRICS, RECYCLING, JSON LOGS: `GET .../metrics` sums the counters of every responder process sharing the
database (spawn-fcgi -F 2 behind nginx), `--max-requests` makes a prefork child exit 0 and be replaced while
requests keep succeeding, and `LOG_FORMAT=json` writes one JSON object per line."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time

from conftest import (
    PREFIX,
    Processes,
    children_of,
    fcgi_request,
    start_listen,
    start_nginx,
    start_spawn_fcgi,
    wait_until,
    write_config,
)
from flowclient import WhatsAppClient, http_request

HEALTH_OK = 'flows_requests_total{flow="health",action="-",status="200"}'


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {series: value}; checks every line is a comment or `series value`."""
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) flows_[a-z_]+ ", line), line
            continue
        series, _, value = line.rpartition(" ")
        assert re.match(r'^flows_[a-z_]+(\{([a-z]+="[^"]*",?)+\})?$', series), line
        values[series] = float(value)
    return values


def test_metrics_total_both_spawn_fcgi_processes(binary, keys, app_secret, tmp_path):
    token = secrets.token_hex(16)
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, API_TOKEN=token,
                          METRICS_FLUSH_SECONDS="1")
    processes = Processes()
    try:
        sock, pids = start_spawn_fcgi(binary, config, tmp_path, processes, count=2)
        address = start_nginx(tmp_path, processes, f"unix:{sock}")
        auth = [("Authorization", f"Bearer {token}")]
        assert http_request(address, "GET", PREFIX + "/metrics").status == 401

        # Concurrent requests, so both processes serve some.
        def burst():
            for _ in range(10):
                assert http_request(address, "GET", PREFIX + "/health").status == 200
        threads = [threading.Thread(target=burst) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client = WhatsAppClient(address, keys.public_key(), app_secret)
        assert client.send(PREFIX + "/flows/expense", {"version": "3.0", "action": "ping"}).status == 200
        assert WhatsAppClient(address, keys.public_key(), "wrong").send(
            PREFIX + "/flows/expense", {"version": "3.0", "action": "ping"}).status == 432

        def scraped():
            r = http_request(address, "GET", PREFIX + "/metrics", headers=auth)
            assert r.status == 200, r
            assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
            values = samples(r.body.decode())
            return values if values.get(HEALTH_OK) == 40 else None
        values = wait_until(scraped, timeout=10, what="/metrics to count 40 health requests", interval=0.5)
        assert values['flows_requests_total{flow="expense",action="ping",status="200"}'] == 1
        assert values['flows_signature_failures_total{flow="expense"}'] == 1
        assert values['flows_request_duration_seconds_bucket{flow="health",le="+Inf"}'] == 40
        assert values["flows_expenses_total"] == 0 and "flows_webhook_messages_total" in values

        db = sqlite3.connect(tmp_path / "flows.db")
        try:
            instances = {row[0] for row in db.execute(
                "SELECT instance FROM metrics_counters WHERE series = ?", (HEALTH_OK,))}
        finally:
            db.close()
        assert {int(i.split("-")[0]) for i in instances} == set(pids), instances
    finally:
        processes.stop_all()


def test_max_requests_recycles_the_prefork_child(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = tmp_path / "recycle.sock"
    processes = Processes()
    try:
        master = start_listen(binary, config, tmp_path, processes, f"unix:{sock}",
                              extra_args=["--processes", "1", "--max-requests", "5"])
        first = wait_until(lambda: children_of(master.pid), what="the prefork child")
        for i in range(12):
            r = fcgi_request(str(sock), "GET", "/x/health")
            assert r.status == 200, (i, r)
        wait_until(lambda: children_of(master.pid) and children_of(master.pid) != first,
                   what="a new child")
        log = (tmp_path / "responder.log").read_text()
        assert log.count("MAX_REQUESTS reached") >= 2, log
        assert log.count("worker process recycled") >= 2, log
        assert "worker process exited" not in log and "keep exiting" not in log, log
        assert master.poll() is None
    finally:
        processes.stop_all()


def test_json_log_lines(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, LOG_FORMAT="json")
    sock = tmp_path / "json.sock"
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        assert fcgi_request(str(sock), "GET", "/x/health", headers=[("X-Request-ID", "req-42")]).status == 200
        assert fcgi_request(str(sock), "GET", "/x/nothing-here").status == 404
    finally:
        processes.stop_all()
    lines = (tmp_path / "responder.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "msg"} <= set(r) for r in records)
    access = [r for r in records if r["msg"] == "request"]
    assert [r["status"] for r in access] == ["200", "404"]
    assert access[0]["id"] == "req-42" and re.match(r"^\d+-2$", access[1]["id"])
    assert any(r["msg"] == "stopped" for r in records)
