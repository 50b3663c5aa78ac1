"""METRICS, RECYCLING, JSON LOGS: `GET .../metrics` counts every request of every responder process of the host
exactly and at once (spawn-fcgi -F 2 behind nginx, a prefork master recycling its children, plain CGI), a process
killed with SIGKILL loses none of its counts, `--max-requests` makes a prefork child exit 0 and be replaced while
requests keep succeeding, and `LOG_FORMAT=json` writes one JSON object per line."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import struct
import subprocess
import threading
from collections import Counter
from pathlib import Path

from conftest import (
    PREFIX,
    Processes,
    children_of,
    clean_env,
    fcgi_request,
    parse_cgi_output,
    start_listen,
    start_nginx,
    start_spawn_fcgi,
    wait_until,
    write_config,
)
from flowclient import WhatsAppClient, http_request

HEALTH_OK = 'flows_requests_total{flow="health",action="-",status="200"}'
PING_OK = 'flows_requests_total{flow="expense",action="ping",status="200"}'
PING_432 = 'flows_requests_total{flow="expense",action="-",status="432"}'
METRICS_OK = 'flows_requests_total{flow="metrics",action="-",status="200"}'


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


def file_counts(path: Path) -> Counter:
    """Requests per (flow, action, status) in one metrics file, read as MetricsFiles.swift documents the layout."""
    data = path.read_bytes()
    assert data[:8] == b"FLOWSMT1", path
    slots, size = struct.unpack_from("<II", data, 8)
    counts: Counter = Counter()
    for i in range(slots):
        base = 64 + i * size
        (length,) = struct.unpack_from("<I", data, base)
        if length == 0:
            break
        flow, action, status = data[base + 4:base + 4 + length].decode().split("\0")
        counts[(flow, action, int(status))] += sum(struct.unpack_from("<12q", data, base + 64))
    return counts


def answered_by(log: Path) -> Counter:
    """Requests answered per responder pid, from the access log lines (`id=<pid>-<n>`)."""
    return Counter(int(pid) for pid in re.findall(r" request id=(\d+)-\d+ ", log.read_text()))


def process_files(folder: Path) -> dict[int, Path]:
    """pid -> its metrics file."""
    return {int(p.name.split("-")[1]): p for p in folder.glob("p-*")}


def concurrently(count: int, threads: int, request) -> None:
    """`count` calls of `request(i)` spread over `threads` threads (so every responder process gets some)."""
    def run(start: int) -> None:
        for i in range(start, count, threads):
            request(i)
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def scrape(address, token: str, query: str = "") -> dict[str, float]:
    r = http_request(address, "GET", PREFIX + "/metrics" + query, headers=[("Authorization", f"Bearer {token}")])
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    return samples(r.body.decode())


def metrics_config(tmp_path: Path, keys, app_secret) -> tuple[str, Path]:
    """A fresh API token and a config with it."""
    token = secrets.token_hex(16)
    return token, write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, API_TOKEN=token)


def two_responders_behind_nginx(binary, config: Path, tmp_path: Path, processes: Processes):
    """spawn-fcgi -F 2 behind nginx: (their pids, nginx's address, the metrics folder)."""
    sock, pids = start_spawn_fcgi(binary, config, tmp_path, processes, count=2)
    return pids, start_nginx(tmp_path, processes, f"unix:{sock}"), tmp_path / "flows.db.metrics"


def mixed_requests(address, keys, app_secret, count: int) -> Counter:
    """`count` requests through nginx: health checks, signed pings and badly signed pings; returns what was sent."""
    sent: Counter = Counter()
    lock = threading.Lock()
    def one(i: int) -> None:
        good = WhatsAppClient(address, keys.public_key(), app_secret)
        bad = WhatsAppClient(address, keys.public_key(), "wrong")
        if i % 10 == 1:
            r, series = good.send(PREFIX + "/flows/expense", {"version": "3.0", "action": "ping"}), PING_OK
        elif i % 20 == 3:
            r, series = bad.send(PREFIX + "/flows/expense", {"version": "3.0", "action": "ping"}), PING_432
        else:
            r, series = http_request(address, "GET", PREFIX + "/health"), HEALTH_OK
        assert r.status == int(re.search(r'status="(\d+)"', series).group(1)), (series, r)
        with lock:
            sent[series] += 1
    concurrently(count, 8, one)
    return sent


def test_metrics_count_both_spawn_fcgi_processes_exactly_at_once(binary, keys, app_secret, tmp_path):
    token, config = metrics_config(tmp_path, keys, app_secret)
    processes = Processes()
    try:
        pids, address, folder = two_responders_behind_nginx(binary, config, tmp_path, processes)
        assert http_request(address, "GET", PREFIX + "/metrics").status == 401

        sent = mixed_requests(address, keys, app_secret, 200)
        # Both processes answered some, and the very next scrape counts all 200 (and the unauthorized scrape).
        answered = answered_by(tmp_path / "responder.log")
        assert set(answered) == set(pids) and sum(answered.values()) == 201, answered
        values = scrape(address, token)
        for series, count in sent.items():
            assert values[series] == count, (series, values.get(series), count)
        assert values['flows_requests_total{flow="metrics",action="-",status="401"}'] == 1
        assert sum(v for k, v in values.items() if k.startswith("flows_requests_total")) == 201
        assert values['flows_signature_failures_total{flow="expense"}'] == sent[PING_432]
        assert values['flows_request_duration_seconds_bucket{flow="health",le="+Inf"}'] == sent[HEALTH_OK]
        assert values['flows_request_duration_seconds_count{flow="expense"}'] == sent[PING_OK] + sent[PING_432]
        assert values["flows_expenses_total"] == 0 and "flows_webhook_messages_total" in values
        # Each process's own file (in a folder only the service user can enter) holds what it answered.
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        files = process_files(folder)
        answered = answered_by(tmp_path / "responder.log")
        assert {pid: sum(file_counts(files[pid]).values()) for pid in pids} == dict(answered)
        # The scrape itself is counted once answered.
        assert scrape(address, token)[METRICS_OK] == 1

        # Unknown parameters are refused as /stats refuses them; read answers are not cached or sniffed.
        auth = [("Authorization", f"Bearer {token}")]
        for path in ["/metrics?foo=1", "/stats?foo=1"]:
            r = http_request(address, "GET", PREFIX + path, headers=auth)
            assert r.status == 400 and b"unknown parameter 'foo'" in r.body, (path, r)
        for path, status in [("/metrics", 200), ("/stats", 200), ("/messages?limit=1", 200), ("/expenses", 200),
                             ("/messages?x=1", 400), ("/stats", 401)]:
            r = http_request(address, "GET", PREFIX + path, headers=auth if status != 401 else [])
            assert r.status == status, (path, r)
            assert r.header("Cache-Control") == "no-store", (path, r.headers)
            assert r.header("X-Content-Type-Options") == "nosniff", (path, r.headers)
    finally:
        processes.stop_all()


def test_a_responder_killed_with_sigkill_loses_no_counts(binary, keys, app_secret, tmp_path):
    token, config = metrics_config(tmp_path, keys, app_secret)
    processes = Processes()
    try:
        pids, address, folder = two_responders_behind_nginx(binary, config, tmp_path, processes)
        sent = mixed_requests(address, keys, app_secret, 120)
        victim = pids[0]
        assert answered_by(tmp_path / "responder.log")[victim] > 0
        victim_file = process_files(folder)[victim]
        os.kill(victim, signal.SIGKILL)

        def lock_dropped() -> bool:
            # The kernel drops the lock once the last thread has gone (a zombie leader may come earlier).
            with open(victim_file, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                fcntl.flock(f, fcntl.LOCK_UN)
                return True
        wait_until(lock_dropped, what="the killed responder's lock to go")
        values = scrape(address, token)
        for series, count in sent.items():
            assert values[series] == count, (series, values.get(series), count)
        # Its file was folded into the accumulated one (once: a second scrape gives the same figures).
        assert victim not in process_files(folder), sorted(p.name for p in folder.iterdir())
        assert (folder / "accumulated").exists()
        again = scrape(address, token)
        for series, count in sent.items():
            assert again[series] == count, series
    finally:
        processes.stop_all()


def test_recycled_prefork_children_are_counted_exactly_and_leave_few_files(binary, keys, app_secret, tmp_path):
    token, config = metrics_config(tmp_path, keys, app_secret)
    sock = tmp_path / "recycle.sock"
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}",
                     extra_args=["--processes", "2", "--max-requests", "4"])
        folder = tmp_path / "flows.db.metrics"

        def health(i: int) -> None:
            r = fcgi_request(str(sock), "GET", "/x/health")
            assert r.status == 200, (i, r)
        concurrently(150, 3, health)
        log = (tmp_path / "responder.log").read_text()
        assert log.count("MAX_REQUESTS reached") >= 30, log.count("MAX_REQUESTS reached")
        r = fcgi_request(str(sock), "GET", "/x/metrics", headers=[("Authorization", f"Bearer {token}")])
        assert r.status == 200, r
        assert samples(r.body.decode()).get(HEALTH_OK) == 150
        # Each child folds itself on its way out, and the scrape folds the rest: only live children's files stay.
        names = sorted(p.name for p in folder.iterdir())
        assert len([n for n in names if n.startswith("p-")]) <= 3 and len(names) <= 6, names
    finally:
        processes.stop_all()


def test_plain_cgi_requests_are_counted(binary, keys, app_secret, tmp_path):
    token, config = metrics_config(tmp_path, keys, app_secret)
    folder = tmp_path / "flows.db.metrics"

    def cgi(path: str, **headers: str):
        env = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", SCRIPT_NAME="/cgi-bin/responder" + path,
                        SERVER_PROTOCOL="HTTP/1.1", **headers)
        result = subprocess.run([str(binary), "--config", str(config)], input=b"", env=env, capture_output=True,
                                timeout=20)
        assert result.returncode == 0, result.stderr
        return parse_cgi_output(result.stdout)

    for _ in range(5):
        assert cgi("/health").status == 200
    r = cgi("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status == 200, r
    assert samples(r.body.decode()).get(HEALTH_OK) == 5
    # 40 more: the CGI processes fold the files once 32 are there, so they do not pile up.
    for _ in range(40):
        assert cgi("/health").status == 200
    assert len(list(folder.glob("p-*"))) < 32
    values = samples(cgi("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").body.decode())
    assert values[HEALTH_OK] == 45 and values[METRICS_OK] == 1


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
        # Each child serves 5 requests, or 6 when its second worker thread was already waiting for a connection:
        # two children recycled either way, the second logged by the master once it has reaped it.
        log_file = tmp_path / "responder.log"
        wait_until(lambda: log_file.read_text().count("worker process recycled") >= 2, what="two recycled children")
        log = log_file.read_text()
        assert log.count("MAX_REQUESTS reached") >= 2, log
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


def test_an_unusable_metrics_folder_stops_the_start_with_its_name(binary, keys, app_secret, tmp_path):
    (tmp_path / "plain-file").write_text("not a folder")
    folder = tmp_path / "plain-file" / "metrics"
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, METRICS_DIR=str(folder))
    result = subprocess.run([str(binary), "--config", str(config), "--listen", f"unix:{tmp_path / 'm.sock'}"],
                            env=clean_env(), capture_output=True, timeout=20)
    assert result.returncode == 1, result
    log = (tmp_path / "responder.log").read_text()
    assert "cannot use the metrics folder (METRICS_DIR)" in log and str(folder) in log, log
    assert f"cannot use the metrics folder: metrics: cannot create the folder {folder}" in result.stderr.decode()
