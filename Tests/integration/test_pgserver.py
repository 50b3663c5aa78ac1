"""The throwaway PostgreSQL server the PostgreSQL tests run against (pgserver.py, issue 18)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from conftest import pid_alive, wait_until  # noqa: E402
from pgserver import PostgresServer, postgres, server_binaries  # noqa: E402,F401  (postgres: the fixture)


def test_server_is_private_and_needs_the_password(postgres):
    assert postgres.psql("SELECT current_user, current_database()") == "flows|flows"
    assert postgres.psql("SELECT 1", url=postgres.socket_url) == "1"
    assert postgres.psql("SHOW listen_addresses", superuser=True) == "127.0.0.1"
    assert postgres.psql("SHOW port") == str(postgres.port)
    with pytest.raises(RuntimeError, match="password authentication failed"):
        postgres.psql("SELECT 1", url=postgres.url.replace(postgres.password, "wrong-password"))
    # Owned by the unprivileged server user, never by root; the system cluster's folders untouched.
    if os.geteuid() == 0:
        assert pwd.getpwuid(postgres.data.stat().st_uid).pw_name == "postgres"
    assert str(postgres.data).startswith(str(postgres.root))
    assert postgres.psql("SHOW data_directory", superuser=True) == str(postgres.data)


def test_settings_are_the_tests_unless_given():
    """The tests' server runs without fsync; bench/run --postgres asks for the server's own defaults instead."""
    with PostgresServer() as tests, PostgresServer(settings={"work_mem": "8MB"}) as bench:
        assert tests.psql("SHOW fsync") == "off"
        assert bench.psql("SHOW fsync") == "on"
        assert bench.psql("SHOW work_mem") == "8MB"
        assert bench.psql("SHOW synchronous_commit") == "on"


def test_immediate_stop_then_start_keeps_committed_rows(postgres):
    postgres.psql("CREATE TABLE bookings (id bigserial PRIMARY KEY, slot text NOT NULL)")
    postgres.psql("INSERT INTO bookings (slot) SELECT 'slot-' || n FROM generate_series(1, 100) n")
    pid = postgres.postmaster_pid()
    assert pid and pid_alive(pid)
    postgres.stop(mode="immediate")
    wait_until(lambda: not pid_alive(pid), what="the postmaster gone")
    with pytest.raises(RuntimeError, match="Connection refused|could not connect|No such file"):
        postgres.psql("SELECT 1")
    postgres.start()
    assert postgres.psql("SELECT count(*) FROM bookings") == "100"
    assert postgres.postmaster_pid() != pid


def test_cleanup_stops_the_server_and_removes_its_folder():
    server = PostgresServer().start()
    pid = server.postmaster_pid()
    root = server.root
    assert pid and pid_alive(pid)
    server.cleanup()
    wait_until(lambda: not pid_alive(pid), what="the postmaster gone")
    assert not root.exists()


def test_script_prints_a_url_and_cleans_up_at_end_of_input():
    script = os.path.join(os.path.dirname(__file__), "pgserver.py")
    proc = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("postgresql://flows:") and "@127.0.0.1:" in url
        port = url.rsplit(":", 1)[1].split("/")[0]
        assert port.isdigit()
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        done = subprocess.run([str(server_binaries() / "pg_isready"), "-h", "127.0.0.1", "-p", port],
                              capture_output=True, text=True)
        assert done.returncode == 2, done.stdout  # 2: no response
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_flows_fcgi_does_not_link_libpq():
    """libpq is loaded with dlopen by FlowStorePostgres, never linked: a NEEDED entry would cost every responder
    process about 4 MiB and 4 ms at startup, PostgreSQL configured or not (Sources/FlowStorePostgres/DESIGN.md)."""
    from conftest import BINARY

    needed = subprocess.run(["readelf", "-d", str(BINARY)], capture_output=True, text=True, check=True).stdout
    libraries = [line.split("[", 1)[1].rstrip("]") for line in needed.splitlines() if "(NEEDED)" in line]
    assert libraries, needed
    assert not [name for name in libraries if "libpq" in name or "ldap" in name or "krb5" in name], libraries
