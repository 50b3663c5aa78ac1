"""Process lifecycle: graceful stop, clients that hang up, socket ownership, start-up refusals.

The tests that need a request to be *in flight at the responder* while the client is still sending put
``fastcgi_request_buffering off`` in the harness's http block (the shipped snippet keeps nginx's default
buffering, which hides slow clients from the responder).
"""

from __future__ import annotations

import grp
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import (
    REPO,
    Processes,
    can_connect,
    children_of,
    clean_env,
    fcgi_request,
    free_port,
    pid_alive,
    socket_inodes,
    start_listen,
    start_nginx,
    start_socket_activated,
    start_spawn_fcgi,
    tail,
    wait_for_accept,
    wait_until,
    write_config,
)
import fcgiwire
from flowclient import FlowCrypto, HttpConnection, WhatsAppClient, sign

FLOW = "/flows-fcgi/flows/expense"
PING = {"version": "3.0", "action": "ping"}
UNBUFFERED = "    fastcgi_request_buffering off;\n"


def signed_ping(keys, app_secret):
    ctx = FlowCrypto.from_file(keys.public_pem).encrypt(PING)
    headers = [("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(app_secret, ctx.body))]
    return ctx, headers


def assert_ping_ok(address, keys, app_secret, timeout=10.0):
    ex = WhatsAppClient(address, keys.public_key(), app_secret, timeout=timeout).send(FLOW, PING)
    assert ex.status == 200, ex.response
    assert ex.answer() == {"data": {"status": "active"}}


# --------------------------------------------------------------------------------------------------------
# SIGTERM while a request is in flight
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["listen-unix", "systemd-fd3", "spawn-fcgi-fd0"])
def test_sigterm_during_slow_request_completes_it_then_exits_0(mode, binary, keys, app_secret, tmp_path,
                                                                processes: Processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    if mode == "listen-unix":
        sock = str(tmp_path / "own.sock")
        responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
    elif mode == "spawn-fcgi-fd0":
        # spawn-fcgi -n execs the responder in place (listening socket on fd 0), so its exit status is ours
        # to see; nginx/spawn-fcgi.sh forks instead (-F), which hides it.
        sock = str(tmp_path / "spawned.sock")
        responder = processes.start(["spawn-fcgi", "-n", "-s", sock, "-M", "0660", "--", str(binary),
                                     "--config", str(config)], "flows-fcgi (spawn-fcgi -n)",
                                    tmp_path / "responder.out", env=clean_env())
        wait_until(lambda: os.path.exists(sock) and can_connect(sock), 10, "spawn-fcgi's socket")
    else:
        sock, responder = start_socket_activated(binary, config, tmp_path, processes)
    address = start_nginx(tmp_path, processes, f"unix:{sock}", extra_http=UNBUFFERED)
    # One request first: it also makes systemd-socket-activate exec the responder.
    assert_ping_ok(address, keys, app_secret)
    before = socket_inodes(responder.pid)

    ctx, headers = signed_ping(keys, app_secret)
    half = len(ctx.body) // 2
    with HttpConnection(address, timeout=15) as conn:
        conn.send_head("POST", FLOW, headers, len(ctx.body))
        conn.send(ctx.body[:half])
        # The responder has accepted nginx's connection: the request is in flight there.
        wait_for_accept(responder.pid, before)
        os.kill(responder.pid, signal.SIGTERM)
        time.sleep(0.3)  # let the signal land while the body is still incomplete (not a synchronisation)
        assert responder.poll() is None, "the responder exited with a request in flight"
        conn.send_slowly(ctx.body[half:], pieces=4, duration=0.8)
        response = conn.read_response()
    assert response.status == 200, f"{response}\n{tail(tmp_path / 'responder.log')}"
    assert ctx.decrypt_answer(response.body) == {"data": {"status": "active"}}
    try:
        code = responder.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the responder did not exit within 10 s of SIGTERM once the request was done")
    assert code == 0, f"exit status {code}\n{tail(tmp_path / 'responder.log')}"


def test_sigterm_when_idle_exits_0_and_removes_own_socket(binary, keys, app_secret, tmp_path, processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = tmp_path / "own.sock"
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--threads", "2"])
    assert fcgi_request(str(sock), "GET", "/health").status == 200
    os.kill(responder.pid, signal.SIGINT)
    assert responder.wait(10) == 0
    assert not sock.exists(), "the responder left its socket behind"


def test_prefork_respawns_and_stops_cleanly(binary, keys, app_secret, tmp_path, processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    port = free_port()
    parent = start_listen(binary, config, tmp_path, processes, f"127.0.0.1:{port}", ["--processes", "2"])
    workers = wait_until(lambda: len(children_of(parent.pid)) == 2 and children_of(parent.pid), 10,
                         "two prefork workers")
    for pid in workers:
        processes.adopt(pid, "prefork worker")
    os.kill(workers[0], signal.SIGKILL)
    respawned = wait_until(lambda: (len(children_of(parent.pid)) == 2 and workers[0] not in children_of(parent.pid)
                                    and children_of(parent.pid)), 10, "a worker to be respawned")
    for pid in respawned:
        processes.adopt(pid, "prefork worker")
    for _ in range(4):
        assert fcgi_request(("127.0.0.1", port), "GET", "/health").status == 200
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(10) == 0
    wait_until(lambda: not any(pid_alive(p) for p in respawned), 5, "the workers to exit with the parent")


def test_prefork_workers_stop_when_the_master_is_killed(binary, keys, app_secret, tmp_path, processes):
    """SIGKILL on the master: each worker finishes the request it accepted, stops accepting and exits, so a new
    master can take the socket over."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = str(tmp_path / "prefork.sock")
    master = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--processes", "3", "--threads", "1"])
    workers = wait_until(lambda: len(children_of(master.pid)) == 3 and children_of(master.pid), 10,
                         "three prefork workers")
    for pid in workers:
        processes.adopt(pid, "prefork worker")
    before = {pid: socket_inodes(pid) for pid in workers}
    # One request in flight in each worker (one thread each): the params and half the body are sent.
    pending = []
    for _ in workers:
        ctx = FlowCrypto.from_file(keys.public_pem).encrypt(PING)
        params = fcgiwire.cgi_params("POST", FLOW, ctx.body, [("X-Hub-Signature-256", sign(app_secret, ctx.body))])
        conn = fcgiwire.connect(sock)
        half = len(ctx.body) // 2
        conn.sendall(fcgiwire.begin(params) + fcgiwire.records(fcgiwire.STDIN, ctx.body[:half]))
        pending.append((conn, ctx, ctx.body[half:]))
    try:
        wait_until(lambda: all(socket_inodes(pid) - before[pid] for pid in workers), 10,
                   "every worker to accept a connection")
        os.kill(master.pid, signal.SIGKILL)
        master.wait(10)
        time.sleep(0.3)  # let the death signal land while the bodies are incomplete (not a synchronisation)
        for conn, ctx, rest in pending:
            conn.sendall(fcgiwire.records(fcgiwire.STDIN, rest) + fcgiwire.records(fcgiwire.STDIN, b""))
            answer = fcgiwire.read_answer(conn)
            assert answer.status == 200, f"{answer}\n{tail(tmp_path / 'responder.log')}"
            assert ctx.decrypt_answer(answer.body) == {"data": {"status": "active"}}
    finally:
        for conn, _, _ in pending:
            conn.close()
    wait_until(lambda: not any(pid_alive(pid) for pid in workers), 10, "the workers to exit after their master")
    # The socket is free: a new master starts on it and serves.
    successor = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--processes", "2"])
    for pid in wait_until(lambda: children_of(successor.pid), 10, "the new master's workers"):
        processes.adopt(pid, "prefork worker")
    assert_ping_ok_unix(sock, keys, app_secret)
    os.kill(successor.pid, signal.SIGTERM)
    assert successor.wait(10) == 0


def assert_ping_ok_unix(sock: str, keys, app_secret) -> None:
    ctx = FlowCrypto.from_file(keys.public_pem).encrypt(PING)
    answer = fcgiwire.exchange(sock, fcgiwire.signed_post(FLOW, ctx.body, app_secret))
    assert answer.status == 200, answer
    assert ctx.decrypt_answer(answer.body) == {"data": {"status": "active"}}


# --------------------------------------------------------------------------------------------------------
# Clients that hang up
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["listen-unix", "spawn-fcgi"])
def test_client_disconnect_mid_request_then_next_request_is_served(mode, binary, keys, app_secret, tmp_path,
                                                                   processes):
    """One process with one thread: if the aborted request left it stuck, the next one could not be served."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    if mode == "listen-unix":
        sock = str(tmp_path / "own.sock")
        pid = start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--threads", "1"]).pid
    else:
        sock, pids = start_spawn_fcgi(binary, config, tmp_path, processes, count=1, threads=1)
        pid = pids[0]
    address = start_nginx(tmp_path, processes, f"unix:{sock}", extra_http=UNBUFFERED)
    assert_ping_ok(address, keys, app_secret)
    before = socket_inodes(pid)

    # 1. Hang up in the middle of the body, while the responder is reading it.
    ctx, headers = signed_ping(keys, app_secret)
    conn = HttpConnection(address)
    conn.send_head("POST", FLOW, headers, len(ctx.body))
    conn.send(ctx.body[: len(ctx.body) // 3])
    accepted = wait_for_accept(pid, before)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    conn.close()
    wait_until(lambda: not (socket_inodes(pid) & accepted), 10, "the responder to drop the aborted request")
    assert pid_alive(pid)
    assert_ping_ok(address, keys, app_secret, timeout=5)

    # 2. Send everything, hang up before reading the answer: the responder's write must not kill it.
    for _ in range(3):
        ctx, headers = signed_ping(keys, app_secret)
        with HttpConnection(address) as conn:
            conn.send_head("POST", FLOW, headers, len(ctx.body))
            conn.send(ctx.body)
    assert_ping_ok(address, keys, app_secret, timeout=5)

    # 3. Hang up after the headers only.
    conn = HttpConnection(address)
    conn.send_head("POST", FLOW, headers, 5000)
    conn.close()
    assert_ping_ok(address, keys, app_secret, timeout=5)
    assert pid_alive(pid), f"the responder died\n{tail(tmp_path / 'responder.log')}"


# --------------------------------------------------------------------------------------------------------
# --listen and its socket
# --------------------------------------------------------------------------------------------------------


def test_listen_refuses_live_socket_and_replaces_stale_one(binary, keys, app_secret, tmp_path, processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = tmp_path / "own.sock"
    first = start_listen(binary, config, tmp_path, processes, f"unix:{sock}")

    # A second responder on the same path must not steal the live socket.
    second = subprocess.run([str(binary), "--config", str(config), "--listen", f"unix:{sock}"],
                            env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    # README: exit status 1 for a runtime failure such as a socket in use.
    assert second.returncode == 1, f"second responder on a live socket: {second}"
    assert first.poll() is None
    assert fcgi_request(str(sock), "GET", "/health").status == 200, "the live socket was replaced"

    # A stale socket (its owner died without removing it) is replaced.
    os.kill(first.pid, signal.SIGKILL)
    first.wait(5)
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    assert stale.exists()
    third = start_listen(binary, config, tmp_path, processes, f"unix:{stale}")
    assert fcgi_request(str(stale), "GET", "/health").status == 200
    # ... and so is the one the killed responder left.
    if sock.exists():
        fourth = start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        assert fcgi_request(str(sock), "GET", "/health").status == 200
        assert fourth.poll() is None
    assert third.poll() is None


def test_listen_never_replaces_a_regular_file_nor_binds_every_interface_implicitly(binary, keys, app_secret,
                                                                                   tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    victim = tmp_path / "not-a-socket"
    victim.write_text("precious\n")
    for listen in (f"unix:{victim}", f":{free_port()}"):
        result = subprocess.run([str(binary), "--config", str(config), "--listen", listen], env=clean_env(),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        assert result.returncode != 0, (listen, result)
    assert victim.read_text() == "precious\n"


def test_listen_socket_mode(binary, keys, app_secret, tmp_path, processes):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = tmp_path / "own.sock"
    start_listen(binary, config, tmp_path, processes, f"unix:{sock}", ["--socket-mode", "0600"])
    assert (sock.stat().st_mode & 0o777) == 0o600
    sock2 = tmp_path / "own2.sock"
    start_listen(binary, config, tmp_path, processes, f"unix:{sock2}", ["--socket-mode", "0666"])
    assert (sock2.stat().st_mode & 0o777) == 0o666
    sock3 = tmp_path / "own3.sock"
    start_listen(binary, config, tmp_path, processes, f"unix:{sock3}", ["--socket-group", "www-data"])
    assert grp.getgrgid(sock3.stat().st_gid).gr_name == "www-data"


def test_listen_tcp_port_in_use_fails(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(binary), "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                                env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=15)
    assert result.returncode == 1, result


# --------------------------------------------------------------------------------------------------------
# Start-up refusals and the command line
# --------------------------------------------------------------------------------------------------------


def test_no_serving_mode_prints_usage_and_exits_2(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    argv = [str(binary), "--config", str(config)]
    result = subprocess.run(argv, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=15)
    assert result.returncode == 2, result
    assert "usage" in result.stderr.lower(), result
    # stdin a pipe (not a listening socket), and LISTEN_FDS meant for another process: still no mode.
    result = subprocess.run(argv, env=clean_env(LISTEN_FDS="1", LISTEN_PID="1"), input="", capture_output=True,
                            text=True, timeout=15)
    assert result.returncode == 2, result


def test_missing_app_secret_refuses_to_start(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, APP_SECRET=None)
    assert "APP_SECRET" not in config.read_text()
    sock = tmp_path / "own.sock"
    result = subprocess.run([str(binary), "--config", str(config), "--listen", f"unix:{sock}"],
                            env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    # README: exit status 78 (EX_CONFIG) for a configuration error.
    assert result.returncode == 78, result
    assert "APP_SECRET" in result.stderr, result
    assert not sock.exists()


def test_version_and_help(binary):
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and version.stdout.strip(), version
    helptext = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10)
    assert helptext.returncode == 0, helptext
    assert "--listen" in helptext.stdout + helptext.stderr


# --------------------------------------------------------------------------------------------------------
# The shipped spawn-fcgi script's own commands
# --------------------------------------------------------------------------------------------------------


def test_spawn_fcgi_script_start_status_stop(binary, keys, app_secret, tmp_path, processes):
    # No LOG_FILE in the config: the log lines must come from the script's --log-file (spawn-fcgi sends the
    # children's stderr to /dev/null).
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, LOG_FILE=None)
    sock, pids = start_spawn_fcgi(binary, config, tmp_path, processes, count=2)
    env = clean_env(FLOWS_FCGI_BIN=str(binary), FLOWS_FCGI_CONFIG=str(config), FLOWS_FCGI_SOCKET=sock,
                    FLOWS_FCGI_LOG=str(tmp_path / "responder.log"),
                    FLOWS_FCGI_PIDFILE=str(tmp_path / "flows-fcgi.pid"))
    script = ["sh", str(REPO / "nginx" / "spawn-fcgi.sh")]
    assert fcgi_request(sock, "GET", "/health").status == 200
    wait_until(lambda: (tmp_path / "responder.log").exists() and "health" in (tmp_path / "responder.log").read_text(),
               5, "a log line for the request in the --log-file")
    status = subprocess.run(script + ["status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and all(str(p) in status.stdout for p in pids), status
    again = subprocess.run(script + ["start"], env=env, capture_output=True, text=True)
    assert again.returncode != 0, f"a second start while running succeeded: {again}"
    stop = subprocess.run(script + ["stop"], env=env, capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0, stop
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(sock)
    status = subprocess.run(script + ["status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3, status
