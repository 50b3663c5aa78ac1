"""Fixtures for the integration tests: real web servers in front of the real flows-fcgi binary.

Every server runs in its own temporary directory, listens on 127.0.0.1 (a free port) or a unix socket in
that directory, and is stopped by PID when the fixture ends, whether the test passed or not.

The web-server configs are the shipped files (nginx/, lighttpd/, apache/) with only known path and port
strings substituted (``substitute``), never rewritten copies.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from flowclient import (  # noqa: E402
    SENT_PERSONAL,
    FlowCrypto,
    HttpResponse,
    KeyPair,
    WhatsAppClient,
    generate_keypair,
    http_request,
    sign,
)

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("FLOWS_FCGI_BIN", str(REPO / ".build" / "debug" / "flows-fcgi")))
if not BINARY.is_absolute():
    BINARY = REPO / BINARY

# Known strings in the shipped configs that tests replace.
SHIPPED_BIN = "/usr/local/bin/flows-fcgi"
SHIPPED_CONFIG = "/etc/flows-fcgi/flows.env"
SHIPPED_NGINX_SOCKET = "/run/flows-fcgi/flows-fcgi.sock"
SHIPPED_LIGHTTPD_SOCKET = "/run/lighttpd/flows-fcgi.socket"
SHIPPED_LOG = "/var/log/flows-fcgi/flows-fcgi.log"
PREFIX = "/flows-fcgi"  # the URL prefix the shipped configs route to the responder

# The responder's body cap in the test config: small, so 413 comes from the responder, not nginx (4m).
TEST_MAX_BODY = 65536

# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(address)
            return True
        except OSError:
            return False


def wait_for_listener(address: tuple[str, int] | str, timeout: float = 10.0,
                      alive: Callable[[], bool] | None = None, log: Path | None = None) -> None:
    """Wait until something accepts connections on ``address`` (and, if given, ``alive()`` stays true)."""
    def ready():
        if alive is not None and not alive():
            raise RuntimeError(f"process died before listening on {address}"
                               + (f"; its output:\n{tail(log)}" if log else ""))
        return can_connect(address)
    wait_until(ready, timeout, f"a listener on {address}")


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace known strings in a shipped config; every one of them must be present."""
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"shipped config no longer contains {old!r}: update the tests")
        text = text.replace(old, new)
    return text


def install_shipped(src: Path, dst: Path, replacements: dict[str, str], mode: int | None = None) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(substitute(src.read_text(), replacements))
    if mode is not None:
        dst.chmod(mode)
    return dst


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def socket_inodes(pid: int) -> set[str]:
    """The sockets ``pid`` holds (``socket:[inode]``); a new one appears when it accepts a connection.

    Compare sets, not counts: a connection that just answered may still be open for a moment."""
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            found.add(link)
    return found


def wait_for_accept(pid: int, before: set[str], timeout: float = 10.0) -> set[str]:
    """Wait until ``pid`` holds a socket it did not hold in ``before`` (it accepted a connection)."""
    return wait_until(lambda: socket_inodes(pid) - before, timeout, f"process {pid} to accept a connection")


def serving_pids(log: Path, since: int, screen: str) -> set[int]:
    """The processes that logged a request on ``screen`` after byte ``since`` of the log (the access line's id is
    ``<pid>-<n>`` when the web server sends no X-Request-ID)."""
    with open(log, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    return {int(m.group(1)) for m in re.finditer(rf"request id=(\d+)-\d+ .*screen={screen} ", text)}


def tail(path: Path | str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<{e}>"


def parse_cgi_output(raw: bytes) -> HttpResponse:
    """A CGI/FastCGI responder's output (``Status:`` line, headers, blank line, body) as a response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    headers = []
    for line in head.decode("latin-1").splitlines():
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    status = 200
    for k, v in headers:
        if k.lower() == "status":
            status = int(v.split()[0])
    return HttpResponse(status, "", [(k, v) for k, v in headers if k.lower() != "status"], body)


def fcgi_request(sock: str | tuple[str, int], method: str, path: str, body: bytes = b"",
                 headers: Iterable[tuple[str, str]] = (), timeout: float = 10.0) -> HttpResponse:
    """One FastCGI request straight to a responder socket, with libfcgi's ``cgi-fcgi`` as the client
    (no web server). ``headers`` become ``HTTP_*`` params."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": method, "SCRIPT_NAME": path,
           "REQUEST_URI": path, "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    if body or method == "POST":
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/json"
    for k, v in headers:
        env["HTTP_" + k.upper().replace("-", "_")] = v
    target = sock if isinstance(sock, str) else f"{sock[0]}:{sock[1]}"
    result = subprocess.run(["cgi-fcgi", "-bind", "-connect", target], input=body, env=env,
                            capture_output=True, timeout=timeout)
    if result.returncode != 0 and not result.stdout:
        raise ConnectionError(f"cgi-fcgi -connect {target} failed ({result.returncode}): {result.stderr!r}")
    return parse_cgi_output(result.stdout)


# --------------------------------------------------------------------------------------------------------
# Processes, stopped by PID
# --------------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    label: str
    popen: subprocess.Popen | None = None


class Processes:
    """Processes a fixture started (or adopted, e.g. spawn-fcgi's children); ``stop_all`` ends each by PID."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, argv: list[str], label: str, log: Path, env: dict | None = None,
              cwd: Path | None = None, stdin=subprocess.DEVNULL, **kw) -> subprocess.Popen:
        out = open(log, "ab")
        try:
            popen = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd, start_new_session=True, **kw)
        finally:
            out.close()
        self.procs.append(Proc(popen.pid, label, popen))
        return popen

    def adopt(self, pid: int, label: str) -> None:
        self.procs.append(Proc(pid, label))

    @staticmethod
    def stop(proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal ``proc`` and wait for it; SIGKILL after ``timeout``. Returns the exit code if known."""
        if proc.popen is not None:
            if proc.popen.poll() is None:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    return proc.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    for child in children_of(proc.pid):
                        try:
                            os.kill(child, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    os.kill(proc.pid, signal.SIGKILL)
                    return proc.popen.wait(5)
            return proc.popen.returncode
        if pid_alive(proc.pid):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                return None
            try:
                wait_until(lambda: not pid_alive(proc.pid), timeout, f"{proc.label} to exit")
            except TimeoutError:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return None

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as e:  # keep stopping the others
                print(f"could not stop {proc.label} ({proc.pid}): {e}", file=sys.stderr)
        self.procs.clear()


# --------------------------------------------------------------------------------------------------------
# Session-wide material: binary, keys, secret
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def binary() -> Path:
    if not (BINARY.is_file() and os.access(BINARY, os.X_OK)):
        pytest.fail(f"flows-fcgi binary not found at {BINARY}: build it (swift build) or set FLOWS_FCGI_BIN")
    return BINARY


@pytest.fixture(scope="session")
def material_dir():
    # Not under pytest's 0700 tmp dir: the Apache CGI test runs the responder as www-data.
    d = Path(tempfile.mkdtemp(prefix="flows-it-keys-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def keys(material_dir) -> KeyPair:
    """The endpoint's key pair: encrypted PKCS#8 with a generated passphrase."""
    return generate_keypair(str(material_dir), "endpoint")


@pytest.fixture(scope="session")
def old_keys(material_dir) -> KeyPair:
    """A previous key pair (PKCS#1, legacy DES-EDE3 encryption like Meta's generator) for rotation tests."""
    return generate_keypair(str(material_dir), "previous", style="pkcs1", passphrase=None)


@pytest.fixture(scope="session")
def stranger_keys(material_dir) -> KeyPair:
    """A key pair the endpoint does not have: envelopes for it are undecryptable (421)."""
    return generate_keypair(str(material_dir), "stranger", passphrase=None)


@pytest.fixture(scope="session")
def app_secret() -> str:
    return secrets.token_hex(16)


def write_config(path: Path, keys: KeyPair, app_secret: str, workdir: Path, **extra: str) -> Path:
    """A ``--config`` file for the responder; ``extra`` adds or overrides KEY=VALUE lines."""
    values = {
        "APP_SECRET": app_secret,
        "PRIVATE_KEY_FILE": keys.private_pem,
        "DATABASE_URL": f"sqlite:{workdir / 'flows.db'}",
        "LOG_FILE": str(workdir / "responder.log"),
        "LOG_LEVEL": "debug",
        "MAX_BODY_BYTES": str(TEST_MAX_BODY),
        "SIGNATURE_CHECK": "on",
    }
    if keys.passphrase_file:
        values["PASSPHRASE_FILE"] = keys.passphrase_file
    values.update(extra)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    path.chmod(0o644)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a responder: no stray settings from the caller's environment."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------------
# A deployment: one web server + responder(s), reachable over HTTP on 127.0.0.1
# --------------------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    name: str
    address: tuple[str, int]
    keys: KeyPair
    app_secret: str
    workdir: Path
    processes: Processes
    log_files: list[Path] = field(default_factory=list)
    responder_pids: Callable[[], list[int]] = lambda: []
    prefix: str = PREFIX
    # How this web server turns a duplicated signature header into FastCGI/CGI params.
    duplicate_header_style: str = "repeat"  # or "underscore" (lighttpd)
    initial_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.initial_pids = list(self.responder_pids())

    def path(self, suffix: str) -> str:
        return self.prefix + suffix

    def client(self, keys: KeyPair | None = None, secret: str | None = None) -> WhatsAppClient:
        keys = keys or self.keys
        return WhatsAppClient(self.address, keys.public_key(), secret or self.app_secret)

    def request(self, method: str, suffix: str, body: bytes = b"",
                headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
        return http_request(self.address, method, self.path(suffix), body, list(headers))

    def post_signed(self, suffix: str, body: bytes, secret: str | None = None) -> HttpResponse:
        return self.request("POST", suffix, body, [
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", sign(secret or self.app_secret, body)),
        ])

    def logs(self) -> str:
        return "\n".join(f"--- {p} ---\n{tail(p)}" for p in self.log_files)


def pytest_configure(config):
    config.addinivalue_line("markers", "expense: the expense flow journey (skipped if the binary lacks the flow)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tails of the deployment's logs (web server error log, responder log)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Deployment):
                report.sections.append((f"logs of {value.name}", value.logs()))


# --------------------------------------------------------------------------------------------------------
# Web servers
# --------------------------------------------------------------------------------------------------------

NGINX_OUTER = """\
# Test harness around the shipped site: root workers (sockets live in 0700 temp dirs), files in {dir}.
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/tmp/body;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    proxy_temp_path {dir}/tmp/proxy;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{extra}
    include sites-enabled/flows-fcgi;
}}
"""


def start_nginx(workdir: Path, processes: Processes, fastcgi_pass: str, extra_http: str = "") -> tuple[str, int]:
    """nginx with the shipped example site + snippet; ``fastcgi_pass`` replaces the snippet's socket.

    ``fastcgi_pass`` is ``unix:/path`` or ``127.0.0.1:PORT``. ``extra_http`` goes into the harness's http
    block (inherited by the shipped server and location).
    """
    d = workdir / "nginx"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    install_shipped(REPO / "nginx" / "flows-fcgi.conf", d / "snippets" / "flows-fcgi.conf",
                    {f"unix:{SHIPPED_NGINX_SOCKET}": fastcgi_pass})
    install_shipped(REPO / "nginx" / "example-site.conf", d / "sites-enabled" / "flows-fcgi", {
        "listen 80;": f"listen 127.0.0.1:{port};",
        "/var/log/nginx/": f"{d}/",
    })
    shutil.copy("/etc/nginx/fastcgi_params", d / "fastcgi_params")
    conf = d / "nginx.conf"
    conf.write_text(NGINX_OUTER.format(dir=d, extra=extra_http))
    test = subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(d), "-e", str(d / "nginx-error.log")],
                          capture_output=True, text=True)
    assert test.returncode == 0, f"nginx -t failed:\n{test.stderr}"
    popen = processes.start(["nginx", "-c", str(conf), "-p", str(d), "-e", str(d / "nginx-error.log")],
                            "nginx", d / "nginx.out")
    wait_for_listener(("127.0.0.1", port), alive=lambda: popen.poll() is None, log=d / "nginx-error.log")
    return ("127.0.0.1", port)


def nginx_logs(workdir: Path) -> list[Path]:
    d = workdir / "nginx"
    return [d / "nginx-error.log", d / "flows-fcgi.error.log", d / "nginx.out"]


# --------------------------------------------------------------------------------------------------------
# Responders
# --------------------------------------------------------------------------------------------------------


def start_spawn_fcgi(binary: Path, config: Path, workdir: Path, processes: Processes,
                     count: int = 2, threads: int | None = None) -> tuple[str, list[int]]:
    """The shipped nginx/spawn-fcgi.sh (its environment settings point into ``workdir``); returns
    (socket path, PIDs)."""
    sock = workdir / "flows-fcgi.sock"
    pidfile = workdir / "flows-fcgi.pid"
    env = clean_env(
        FLOWS_FCGI_BIN=str(binary),
        FLOWS_FCGI_CONFIG=str(config),
        FLOWS_FCGI_SOCKET=str(sock),
        FLOWS_FCGI_LOG=str(workdir / "responder.log"),
        FLOWS_FCGI_PIDFILE=str(pidfile),
        FLOWS_FCGI_PROCESSES=str(count),
    )
    if threads:
        env["FLOWS_FCGI_THREADS"] = str(threads)
    result = subprocess.run(["sh", str(REPO / "nginx" / "spawn-fcgi.sh"), "start"], env=env,
                            capture_output=True, text=True, timeout=30)
    pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
    for pid in pids:
        processes.adopt(pid, "flows-fcgi (spawn-fcgi)")
    assert result.returncode == 0, f"spawn-fcgi.sh failed: {result.stdout}{result.stderr}"
    assert len(pids) == count, f"expected {count} PIDs in {pidfile}, got {pids}: {result.stdout}"
    return str(sock), pids


def start_listen(binary: Path, config: Path, workdir: Path, processes: Processes, listen: str,
                 extra_args: Iterable[str] = (), env: dict | None = None,
                 label: str = "flows-fcgi --listen") -> subprocess.Popen:
    """``flows-fcgi --listen ADDRESS`` on its own socket, waits until it accepts connections."""
    argv = [str(binary), "--config", str(config), "--listen", listen, *extra_args]
    popen = processes.start(argv, label, workdir / "responder.out", env=env or clean_env())
    if listen.startswith("unix:"):
        address: tuple[str, int] | str = listen[len("unix:"):]
    else:
        host, _, port = listen.rpartition(":")
        address = (host, int(port))
    try:
        wait_for_listener(address, alive=lambda: popen.poll() is None)
    except RuntimeError:
        raise AssertionError(f"{' '.join(argv)} exited with {popen.returncode}:\n"
                             f"{tail(workdir / 'responder.out')}")
    return popen


def make_database(binary: Path, config: Path, workdir: Path) -> None:
    """The database of ``config`` as the responder leaves it: started once (creating and migrating the file) and
    stopped again (the operator commands never create one)."""
    processes = Processes()
    try:
        start_listen(binary, config, workdir, processes, f"unix:{workdir / 'make-database.sock'}")
    finally:
        processes.stop_all()


def shipped_unit_value(unit: str, key: str) -> str:
    for line in (REPO / "nginx" / unit).read_text().splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1:].strip()
    raise AssertionError(f"{key}= not found in nginx/{unit}")


def unit_stop_hint(unit_text: str) -> str:
    """The shell command of a service unit's ``ExecStopPost=/bin/sh -c '...'`` (systemd's continuation lines
    joined, its ``$$`` unescaped): what the unit writes to the journal when the responder has stopped."""
    joined = re.sub(r"\\\n", " ", unit_text)
    line = next(line for line in joined.splitlines() if line.startswith("ExecStopPost="))
    command = line.split("=", 1)[1]
    prefix = "/bin/sh -c '"
    assert command.startswith(prefix) and command.endswith("'"), command
    return command[len(prefix):-1].replace("$$", "$")


def help_setting_names(binary: Path) -> set[str]:
    """Every setting name ``flows-fcgi --help`` lists (the code's own lists)."""
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30).stdout
    section = text.split("\nsettings (", 1)[1].split("\noperator commands", 1)[0].split("\n", 1)[1]
    names = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", section))
    assert "APP_SECRET" in names and "DATABASE_URL" in names, section
    return names


def start_socket_activated(binary: Path, config: Path, workdir: Path, processes: Processes) -> tuple[str, subprocess.Popen]:
    """The shipped unit pair run by ``systemd-socket-activate``: ListenStream from flows-fcgi.socket (path
    substituted), ExecStart from flows-fcgi.service (binary and config substituted). The responder gets
    the socket as fd 3 with LISTEN_FDS=1 and LISTEN_PID=its own pid."""
    listen = shipped_unit_value("flows-fcgi.socket", "ListenStream")
    assert listen == SHIPPED_NGINX_SOCKET, listen
    sock = str(workdir / "activated.sock")
    exec_start = substitute(shipped_unit_value("flows-fcgi.service", "ExecStart"),
                            {SHIPPED_BIN: str(binary), SHIPPED_CONFIG: str(config)})
    argv = ["systemd-socket-activate", "-l", sock, "--", *shlex.split(exec_start)]
    popen = processes.start(argv, "flows-fcgi (socket-activated)", workdir / "responder.out", env=clean_env())
    # systemd-socket-activate listens first and execs the responder on the first connection.
    wait_for_listener(sock, alive=lambda: popen.poll() is None, log=workdir / "responder.out")
    return sock, popen


# --------------------------------------------------------------------------------------------------------
# Deployment fixtures (one per serving mode); module-scoped so each module starts its servers once
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="module")
def module_processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])


def make_deployment(kind: str, binary: Path, keys: KeyPair, app_secret: str, workdir: Path,
                    processes: Processes, children: int = 2, **config_extra: str) -> Deployment:
    """Start ``kind``: nginx+spawn-fcgi (``children`` processes), lighttpd, nginx+systemd, nginx+listen-unix,
    nginx+listen-tcp, apache-cgi."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "flows.env", keys, app_secret, workdir, **config_extra)
    logs = [workdir / "responder.log", workdir / "responder.out"]
    if kind == "nginx+spawn-fcgi":
        sock, pids = start_spawn_fcgi(binary, config, workdir, processes, count=children)
        address = start_nginx(workdir, processes, f"unix:{sock}")
        return Deployment(kind, address, keys, app_secret, workdir, processes, nginx_logs(workdir) + logs,
                          lambda: [p for p in pids if pid_alive(p)])
    if kind == "nginx+systemd":
        sock, popen = start_socket_activated(binary, config, workdir, processes)
        address = start_nginx(workdir, processes, f"unix:{sock}")
        return Deployment(kind, address, keys, app_secret, workdir, processes, nginx_logs(workdir) + logs,
                          lambda: [popen.pid] if popen.poll() is None else [])
    if kind == "nginx+listen-unix":
        sock = workdir / "own.sock"
        popen = start_listen(binary, config, workdir, processes, f"unix:{sock}",
                             ["--socket-mode", "0660", "--threads", "2"])
        address = start_nginx(workdir, processes, f"unix:{sock}")
        return Deployment(kind, address, keys, app_secret, workdir, processes, nginx_logs(workdir) + logs,
                          lambda: [popen.pid] if popen.poll() is None else [])
    if kind == "nginx+listen-tcp":
        port = free_port()
        popen = start_listen(binary, config, workdir, processes, f"127.0.0.1:{port}",
                             ["--processes", "2", "--backlog", "64"])
        address = start_nginx(workdir, processes, f"127.0.0.1:{port}")
        return Deployment(kind, address, keys, app_secret, workdir, processes, nginx_logs(workdir) + logs,
                          lambda: [popen.pid] if popen.poll() is None else [])
    if kind == "lighttpd":
        return start_lighttpd(binary, config, workdir, processes, keys, app_secret, logs)
    if kind == "apache-cgi":
        return start_apache(binary, workdir, processes, keys, app_secret, config_extra)
    raise ValueError(kind)


LIGHTTPD_OUTER = """\
# Test harness around the shipped lighttpd/flows-fcgi.conf; runs as root, files in {dir}.
server.document-root = "{dir}/htdocs"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/lighttpd-error.log"
server.upload-dirs = ( "{dir}/tmp" )
include "flows-fcgi.conf"
"""


def start_lighttpd(binary: Path, config: Path, workdir: Path, processes: Processes, keys: KeyPair,
                   app_secret: str, logs: list[Path]) -> Deployment:
    d = workdir / "lighttpd"
    for sub in ("htdocs", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    install_shipped(REPO / "lighttpd" / "flows-fcgi.conf", d / "flows-fcgi.conf", {
        SHIPPED_LIGHTTPD_SOCKET: str(d / "flows-fcgi.socket"),
        SHIPPED_BIN: str(binary),
        SHIPPED_CONFIG: str(config),
        SHIPPED_LOG: str(workdir / "responder.log"),
    })
    conf = d / "lighttpd.conf"
    conf.write_text(LIGHTTPD_OUTER.format(dir=d, port=port))
    test = subprocess.run(["lighttpd", "-tt", "-f", str(conf)], capture_output=True, text=True)
    assert test.returncode == 0, f"lighttpd -tt failed:\n{test.stdout}{test.stderr}"
    popen = processes.start(["lighttpd", "-D", "-f", str(conf)], "lighttpd", d / "lighttpd.out")
    wait_for_listener(("127.0.0.1", port), alive=lambda: popen.poll() is None, log=d / "lighttpd-error.log")

    def backends() -> list[int]:
        # lighttpd's only children are the responders it spawned (bin-path).
        return children_of(popen.pid)

    # lighttpd spawned max-procs responders; adopt them so they are stopped even if lighttpd is not.
    for pid in wait_until(lambda: len(backends()) >= 2 and backends(), 10, "lighttpd's two responders"):
        processes.adopt(pid, "flows-fcgi (lighttpd bin-path)")
    return Deployment("lighttpd", ("127.0.0.1", port), keys, app_secret, workdir, processes,
                      [d / "lighttpd-error.log", d / "lighttpd.out", *logs], backends,
                      duplicate_header_style="underscore")


APACHE_OUTER = """\
# Test harness: a minimal Apache serving {dir}/htdocs, where the shipped apache/ files are installed.
ServerRoot "/etc/apache2"
ServerName localhost
DefaultRuntimeDir "{dir}/run"
PidFile "{dir}/run/httpd.pid"
Mutex file:{dir}/run default
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
TypesConfig /dev/null
LoadModule cgi_module /usr/lib/apache2/modules/mod_cgi.so
LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so
StartServers 1
MinSpareServers 1
MaxSpareServers 2
User www-data
Group www-data
Listen 127.0.0.1:{port}
ErrorLog "{dir}/apache-error.log"
LogLevel warn
DocumentRoot "{dir}/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{dir}/htdocs">
    AllowOverride All
    Require all granted
</Directory>
"""


def start_apache(binary: Path, workdir: Path, processes: Processes, keys: KeyPair, app_secret: str,
                 config_extra: dict) -> Deployment:
    """Apache (prefork + mod_cgi) with the shipped .htaccess and flows.cgi in htdocs/flows-fcgi/.

    Apache refuses to run its children as root, so the CGI runs as www-data: everything it touches lives
    in a world-traversable directory outside pytest's 0700 tmp dir, and the data directory belongs to
    www-data.
    """
    if shutil.which("apache2") is None:
        pytest.skip("apache2 is not installed (apt-get install apache2)")
    d = Path(tempfile.mkdtemp(prefix="flows-it-apache-"))
    processes_cleanup_dirs.append(d)
    d.chmod(0o755)
    (d / "run").mkdir()
    data = d / "data"
    data.mkdir()
    shutil.chown(data, "www-data", "www-data")
    private_copy = d / "private.pem"
    shutil.copy(keys.private_pem, private_copy)
    shutil.chown(private_copy, "www-data", "www-data")
    os.chmod(private_copy, 0o600)
    extra = dict(config_extra)
    extra.setdefault("LOG_FILE", str(data / "responder.log"))
    config = write_config(d / "flows.env", KeyPair(str(private_copy), keys.public_pem, keys.passphrase,
                                                   keys.passphrase_file), app_secret, data, **extra)
    if keys.passphrase_file:
        pass_copy = d / "passphrase.txt"
        shutil.copy(keys.passphrase_file, pass_copy)
        shutil.chown(pass_copy, "www-data", "www-data")
        os.chmod(pass_copy, 0o600)
        config.write_text(config.read_text().replace(keys.passphrase_file, str(pass_copy)))
    site = d / "htdocs" / "flows-fcgi"
    site.mkdir(parents=True)
    shutil.copy(REPO / "apache" / ".htaccess", site / ".htaccess")
    install_shipped(REPO / "apache" / "flows.cgi", site / "flows.cgi",
                    {SHIPPED_BIN: str(binary), SHIPPED_CONFIG: str(config)}, mode=0o755)
    for p in d.rglob("*"):
        if p.is_dir():
            p.chmod(p.stat().st_mode | 0o755)
    port = free_port()
    conf = d / "httpd.conf"
    conf.write_text(APACHE_OUTER.format(dir=d, port=port))
    test = subprocess.run(["apache2", "-t", "-f", str(conf)], capture_output=True, text=True)
    assert test.returncode == 0, f"apache2 -t failed:\n{test.stdout}{test.stderr}"
    popen = processes.start(["apache2", "-f", str(conf), "-DFOREGROUND"], "apache2", d / "apache.out",
                            env=clean_env())
    wait_for_listener(("127.0.0.1", port), alive=lambda: popen.poll() is None, log=d / "apache-error.log")
    return Deployment("apache-cgi", ("127.0.0.1", port), keys, app_secret, d, processes,
                      [d / "apache-error.log", d / "apache.out", data / "responder.log"],
                      lambda: [], duplicate_header_style="merged")


processes_cleanup_dirs: list[Path] = []


# --------------------------------------------------------------------------------------------------------
# No personal data in any log: checked after every test
# --------------------------------------------------------------------------------------------------------

# The files the servers of a test write their logs and stderr to: the responder's LOG_FILE (responder.log),
# the stdout/stderr of every process the harness started (*.out), the web servers' error logs (where a
# FastCGI or CGI responder's stderr ends up). Not the web servers' access logs: they hold the URLs the tests
# themselves typed (read API filters) and never a request body.
LOG_SUFFIXES = (".log", ".out")

# How far each log file has been checked, so each line is checked once (a module's servers live across tests).
_checked_up_to: dict[Path, int] = {}


def log_files(roots: Iterable[Path]) -> list[Path]:
    found = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.name.endswith(LOG_SUFFIXES) and "access" not in p.name
                      and p.is_file()]
    return sorted(found)


def personal_data_in_logs(roots: Iterable[Path], values: Iterable[str]) -> list[str]:
    """Every line written to a log under ``roots`` since the last call that holds one of ``values``, with
    the value masked (the message must not repeat what it found)."""
    values = sorted(values, key=len, reverse=True)
    found = []
    for path in log_files(roots):
        start = _checked_up_to.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            continue
        # Only whole lines: a line being written is checked next time.
        end = data.rfind(b"\n") + 1
        _checked_up_to[path] = start + end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            hits = [v for v in values if v in line]
            if hits:
                for value in hits:
                    line = line.replace(value, "<personal data>")
                found.append(f"{path}: {line[:400]}")
    return found


@pytest.fixture(autouse=True)
def no_personal_data_in_logs(tmp_path_factory):
    """After each test: no flow token, name, email, phone or message text any client sent (flowclient's
    ``SENT_PERSONAL``) appears in a log the test's servers wrote."""
    yield
    roots = [tmp_path_factory.getbasetemp(), *processes_cleanup_dirs]
    leaks = personal_data_in_logs(roots, SENT_PERSONAL)
    if leaks:
        pytest.fail("personal data in a log (value masked):\n" + "\n".join(leaks[:20]), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    for d in processes_cleanup_dirs:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------
# The store: one test definition, run on SQLite and on PostgreSQL (issue 18)
# --------------------------------------------------------------------------------------------------------

STORES = ["sqlite", "postgres"]


class Store:
    """Where a test's responders keep their data: a SQLite file in the test's folder, or a fresh database on the
    session's PostgreSQL server (``pg_cluster``). ``database_url`` goes into ``DATABASE_URL``; ``rows`` reads
    with the engine's own client, the values as Python ints, strs and Nones."""

    def __init__(self, kind: str, workdir: Path, cluster=None, database_url: str | None = None):
        self.kind = kind
        self.workdir = workdir
        self.cluster = cluster
        if database_url:  # an existing database (the ``flows`` database of a server of the test's own)
            self.database_url = database_url
        elif kind == "postgres":
            self.name = "t_" + secrets.token_hex(6)
            cluster.psql(f"CREATE DATABASE {self.name} OWNER flows", superuser=True)
            self.database_url = f"postgresql://flows:{cluster.password}@127.0.0.1:{cluster.port}/{self.name}"
        else:
            self.database_url = f"sqlite:{workdir / 'flows.db'}"

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of ``sql`` (also an UPDATE, with its changes committed), ``?`` bound to ``params``."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.workdir / "flows.db") as conn:
                return conn.execute(sql, params).fetchall()
        parts = sql.split("?")
        assert len(parts) == len(params) + 1, sql
        literal = [str(p) if isinstance(p, int) else "'" + str(p).replace("'", "''") + "'" for p in params]
        sql = "".join(part + (literal[i] if i < len(literal) else "") for i, part in enumerate(parts))
        out = self.cluster.psql(sql, url=self.database_url, separator="\x1f", null="\\N")

        def value(text: str):
            if text == "\\N":
                return None
            return int(text) if text.lstrip("-").isdigit() else text
        return [tuple(value(v) for v in line.split("\x1f")) for line in out.split("\n") if line]

    def tables(self) -> list[str]:
        """Every table of the schema."""
        if self.kind == "sqlite":
            return [name for (name,) in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [name for (name,) in self.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL server for the session (each test's ``Store`` gets a database of its own), stopped at the
    end. Without the server binaries the PostgreSQL cases are skipped, except under CI=true, where they fail."""
    from pgserver import PostgresServer, server_binaries
    try:
        server_binaries()
    except RuntimeError as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(error))
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def make_store(kind: str, workdir: Path, request) -> Store:
    """A ``Store`` of ``kind`` in ``workdir`` (the PostgreSQL cluster started on first use)."""
    return Store(kind, workdir, request.getfixturevalue("pg_cluster") if kind == "postgres" else None)


DEPLOYMENTS = ["nginx+spawn-fcgi", "lighttpd", "nginx+systemd", "nginx+listen-unix", "nginx+listen-tcp",
               "apache-cgi"]


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployment(request, binary, keys, app_secret, tmp_path_factory) -> Deployment:
    """Each serving mode in turn, started once per module and stopped by PID afterwards."""
    processes = Processes()
    workdir = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    try:
        dep = make_deployment(request.param, binary, keys, app_secret, workdir, processes)
    except BaseException:
        processes.stop_all()
        raise
    yield dep
    processes.stop_all()


@pytest.fixture
def crypto_for(keys, stranger_keys):
    return {"endpoint": FlowCrypto.from_file(keys.public_pem),
            "stranger": FlowCrypto.from_file(stranger_keys.public_pem)}
