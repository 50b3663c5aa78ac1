"""Who may read what: the database and its -wal and -shm (personal data) are created 0600 whatever the umask,
0640 in DATABASE_GROUP when that is set, by every process that can create them (CGI, --listen, spawn-fcgi, the
container entrypoint, operator commands); `flows-fcgi check` reports a database file others or a foreign group
can read, and accepts the 0640 root:<service group> config file the shipped recipes recommend."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import (
    REPO,
    children_of,
    clean_env,
    fcgi_request,
    start_listen,
    start_spawn_fcgi,
    tail,
    wait_for_listener,
    wait_until,
    write_config,
)

GROUP = "www-data"  # a group every Debian system has; the tests run as root, who may give files to it


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(workdir: Path) -> list[Path]:
    db = workdir / "flows.db"
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


@contextmanager
def umask(value: int):
    """The umask the processes started inside inherit (the loosest one: nothing masked)."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def run(binary, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env or clean_env(), timeout=60,
                          **kw)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]


def serve(how: str, binary, config: Path, workdir: Path, processes) -> str:
    """Starts the responder the way ``how`` names; returns its socket once it has opened the database."""
    if how == "listen":
        sock = str(workdir / "own.sock")
        start_listen(binary, config, workdir, processes, f"unix:{sock}", ["--processes", "2"])
    elif how == "spawn-fcgi":
        sock, _ = start_spawn_fcgi(binary, config, workdir, processes, count=1)
    else:  # the container entrypoint, as test_maintenance runs it (spawn-fcgi -n under tini)
        run_dir = workdir / "run"
        sock = str(run_dir / "flows-fcgi.sock")
        env = clean_env(FLOWS_FCGI_BIN=str(binary), FLOWS_FCGI_LISTEN=f"unix:{sock}", FLOWS_FCGI_CONFIG=str(config),
                        FLOWS_FCGI_PIDFILE=str(run_dir / "flows-fcgi.pid"), FLOWS_FCGI_THREADS="2")
        tini = processes.start(["tini", "-s", "--", str(REPO / "container" / "entrypoint.sh")], "tini entrypoint",
                               workdir / "container.out", env=env)
        wait_for_listener(sock, alive=lambda: tini.poll() is None, log=workdir / "container.out")
        for pid in wait_until(lambda: children_of(tini.pid), what="the responder under tini"):
            processes.adopt(pid, "flows-fcgi (entrypoint)")
    assert fcgi_request(sock, "GET", "/x/health/ready").status == 200, tail(workdir / "responder.log")
    return sock


@pytest.mark.parametrize("how", ["listen", "spawn-fcgi", "container entrypoint"])
@pytest.mark.parametrize("group", [None, GROUP])
def test_serving_processes_create_the_database_private(how, group, binary, keys, app_secret, tmp_path, processes):
    extra = {"DATABASE_GROUP": group} if group else {}
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, **extra)
    with umask(0):
        serve(how, binary, config, tmp_path, processes)
    # While the workers hold their connections the -wal and -shm exist: SQLite made them like the database.
    expected = 0o640 if group else 0o600
    gid = grp.getgrnam(group).gr_gid if group else os.getgid()
    for file in database_files(tmp_path):
        assert file.exists(), file
        assert mode(file) == expected, f"{file}: {oct(mode(file))}"
        assert file.stat().st_gid == gid, f"{file}: group {file.stat().st_gid}"
    result = run(binary, "check", "--config", str(config))
    assert not [p for p in problems(result) if "database" in p], result.stdout


def test_cgi_creates_the_database_private(binary, keys, app_secret, tmp_path):
    # Plain CGI creates the database on its first request; operator commands never create one
    # (test_operator_commands.py: a typo in the path is an error, not a new file).
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    db = tmp_path / "flows.db"
    with umask(0):
        env = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", SCRIPT_NAME="/f/health")
        result = run(binary, "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert mode(db) == 0o600, oct(mode(db))


def test_database_group_that_does_not_exist_stops_startup(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, DATABASE_GROUP="no-such-group-x")
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 78 and "DATABASE_GROUP=no-such-group-x: no such group" in result.stderr, result


def test_check_reports_database_files_others_or_a_foreign_group_can_read(binary, keys, app_secret, tmp_path,
                                                                        processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    config.chmod(0o600)
    serve("listen", binary, config, tmp_path, processes)
    db, wal, shm = database_files(tmp_path)
    assert run(binary, "check", "--config", str(config)).returncode == 0
    db.chmod(0o644)
    wal.chmod(0o604)
    shm.chmod(0o640)
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 1, result.stdout
    found = problems(result)
    for file, shown, who in [(db, "0644", "others"), (wal, "0604", "others"), (shm, "0640", "group")]:
        line = [p for p in found if f"database file {file} has mode {shown}" in p]
        assert len(line) == 1, (file, found)
        assert who in line[0] and f"chmod 600 {file}" in line[0], line[0]
    assert len(found) == 3, found

    # Readable by DATABASE_GROUP is what that setting is for; by any other group it is not.
    os.chown(shm, -1, grp.getgrnam(GROUP).gr_gid)
    for file in (db, wal):
        file.chmod(0o600)
    grouped = write_config(tmp_path / "grouped.env", keys, app_secret, tmp_path, DATABASE_GROUP=GROUP)
    grouped.chmod(0o600)
    result = run(binary, "check", "--config", str(grouped))
    assert result.returncode == 0, result.stdout
    os.chown(shm, -1, 0)
    result = run(binary, "check", "--config", str(grouped))
    assert [p for p in problems(result) if str(shm) in p and f"chgrp {GROUP} {shm}" in p], result.stdout


@pytest.mark.parametrize("file_mode,ok", [(0o600, True), (0o640, True), (0o644, False), (0o660, False),
                                          (0o604, False)])
def test_check_accepts_a_group_readable_config_file_only(file_mode, ok, binary, keys, app_secret, tmp_path):
    """The shipped recipes recommend 0640 root:<service group> for the config file (the Debian norm)."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    config.chmod(file_mode)
    result = run(binary, "check", "--config", str(config))
    shown = f"{file_mode:04o}"
    lines = [line for line in result.stdout.splitlines() if f"config file {config} has mode {shown}" in line]
    assert len(lines) == 1, result.stdout
    if ok:
        assert result.returncode == 0 and lines[0].startswith("OK"), result.stdout
    else:
        assert result.returncode == 1 and lines[0].startswith("PROBLEM") and "chmod 640" in lines[0], result.stdout


SHIPPED_ADVICE = ["README.md", "nginx/flows-fcgi.service", "nginx/spawn-fcgi.sh", "lighttpd/flows-fcgi.conf",
                  "container/Containerfile", "apache/.htaccess", "debian/flows-fcgi.env", "debian/README.Debian"]


@pytest.mark.parametrize("name", SHIPPED_ADVICE)
def test_shipped_files_recommend_what_check_accepts(name):
    """Each recipe tells the config file's mode, and the same one: 0640 (root and the responder's group) or 0600,
    which check accepts; none says group-readable files are a problem."""
    text = " ".join((REPO / name).read_text().split())  # comments wrap: one line
    assert "0640" in text and "config file" in text, f"{name} does not tell the config file's mode"
    for wrong in ("not accessible to group", "not be readable by group", "chmod 600 the config"):
        assert wrong not in text, f"{name}: {wrong}"
