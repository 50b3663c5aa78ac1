"""THE DEBIAN PACKAGE (scripts/build-deb): installed as root with apt-get, checked file by file, configured as
README.Debian says, serving through a test-owned nginx that includes the INSTALLED snippet (and a lighttpd with the
installed module), upgraded to a rebuilt higher version, removed, then purged.

Where PID 1 is systemd the package's own units would serve; this machine's test path (no systemd as PID 1) runs the
installed binary under the installed /usr/share/flows-fcgi/spawn-fcgi.sh with the installed env file, on the
package's socket /run/flows-fcgi/flows-fcgi.sock; the installed units are checked with systemd-analyze verify.

Safety: it runs only as root (skipped otherwise, failed under CI=true), refuses to start when a flows-fcgi package
or any of the package's paths is already there (it would purge them), touches no system file it did not create
(nginx and lighttpd run from their own configuration in a temporary folder), and purges the package, removes the
flows-fcgi user it made and stops everything it started when the module ends, passed or not.

The tests run in file order and share the installation (module fixture ``pkg``).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (
    REPO,
    Processes,
    clean_env,
    free_port,
    help_setting_names,
    pid_alive,
    tail,
    unit_stop_hint,
    wait_for_listener,
    wait_until,
)
from flowclient import WhatsAppClient
from test_appointment import PERSON, success_params

ENV = Path("/etc/flows-fcgi/flows-fcgi.env")
STATE = Path("/var/lib/flows-fcgi")
LOGS = Path("/var/log/flows-fcgi")
RUN = Path("/run/flows-fcgi")
SOCKET = RUN / "flows-fcgi.sock"
PIDFILE = RUN / "flows-fcgi.pid"
SPAWN = Path("/usr/share/flows-fcgi/spawn-fcgi.sh")
SNIPPET = Path("/etc/nginx/snippets/flows-fcgi.conf")
LIGHTTPD_MODULE = Path("/etc/lighttpd/conf-available/90-flows-fcgi.conf")
UNITS = [Path("/lib/systemd/system/flows-fcgi.socket"), Path("/lib/systemd/system/flows-fcgi.service")]
# Paths the package owns or its scripts create: none may exist before the test (purge would delete them).
OWN_PATHS = [ENV.parent, STATE, LOGS, RUN, SNIPPET, LIGHTTPD_MODULE, Path("/etc/logrotate.d/flows-fcgi"),
             Path("/usr/bin/flows-fcgi"), Path("/usr/share/flows-fcgi"), *UNITS]
VERSION = "3.0"
APPOINTMENT = "/flows-fcgi/flows/appointment"
UPGRADE_SUFFIX = "+debtest1"
# Where PID 1 is systemd the installed units serve; elsewhere (containers, this CI) the installed spawn-fcgi script.
SYSTEMD = Path("/proc/1/comm").read_text().strip() == "systemd"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def run(argv: list[str], timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


def package_status() -> str:
    """dpkg's status of flows-fcgi: "install ok installed", "deinstall ok config-files", or "" when unknown."""
    result = run(["dpkg-query", "-W", "-f=${Status}", "flows-fcgi"], check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def package_version() -> str:
    return run(["dpkg-query", "-W", "-f=${Version}", "flows-fcgi"]).stdout.strip()


def owner(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


def as_service_user(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(["runuser", "-u", "flows-fcgi", "--", *argv], env=env or clean_env(), check=check, timeout=120)


def set_settings(values: dict[str, str]) -> None:
    """Uncomments (or adds) ``NAME=value`` lines in the installed env file, writing it in place (owner, mode kept)."""
    text = ENV.read_text()
    for name, value in values.items():
        line = f"{name}={value}"
        text, count = re.subn(rf"^#?{name}=.*$", lambda _: line, text, count=1, flags=re.M)
        if not count:
            text += line + "\n"
    with open(ENV, "w") as f:
        f.write(text)


def changelog_version() -> str:
    return run(["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"), "-S", "Version"]).stdout.strip()


def deb_path(version: str) -> Path:
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    return REPO / "dist" / f"flows-fcgi_{version}_{arch}.deb"


class Package:
    """What the module installed and started, and the means to serve through it."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes = Processes()
        self.version = changelog_version()
        self.secret = secrets.token_hex(16)
        self.passphrase = secrets.token_hex(12)
        self.installed_files: list[Path] = []
        self.address: tuple[str, int] | None = None
        self.lighttpd_address: tuple[str, int] | None = None
        self.responders: list[int] = []

    def client(self, address: tuple[str, int] | None = None) -> WhatsAppClient:
        return WhatsAppClient(address or self.address, (STATE / "public.pem").read_bytes(), self.secret)

    def start_responders(self) -> None:
        """Where PID 1 is systemd, the installed flows-fcgi.socket (the service starts on the first connection);
        else the installed spawn-fcgi script with its defaults: /usr/bin/flows-fcgi, the installed env file, the
        package's socket (www-data may connect), two responders as the flows-fcgi user."""
        if SYSTEMD:
            run(["systemctl", "start", "flows-fcgi.socket"])
            return
        RUN.mkdir(mode=0o755, exist_ok=True)
        result = run(["sh", str(SPAWN), "start"], env=clean_env(), check=False, timeout=60)
        pids = [int(p) for p in PIDFILE.read_text().split()] if PIDFILE.exists() else []
        for pid in pids:
            self.processes.adopt(pid, "flows-fcgi (installed spawn-fcgi.sh)")
        assert result.returncode == 0, \
            f"{SPAWN} start: {result.stdout}{result.stderr}\n{tail(LOGS / 'flows-fcgi.log')}"
        assert len(pids) == 2, pids
        self.responders = pids

    def responder_pids(self) -> list[int]:
        if SYSTEMD:
            main = run(["systemctl", "show", "-P", "MainPID", "flows-fcgi.service"]).stdout.strip()
            return [int(main)] if main not in ("", "0") else []
        return list(self.responders)

    def stop_responders(self) -> None:
        if SYSTEMD:
            run(["systemctl", "stop", "flows-fcgi.socket", "flows-fcgi.service"], check=False, timeout=60)
            run(["systemctl", "reset-failed", "flows-fcgi.socket", "flows-fcgi.service"], check=False)
            return
        if SPAWN.exists():
            run(["sh", str(SPAWN), "stop"], env=clean_env(), check=False, timeout=60)
        for pid in self.responders:
            wait_until(lambda: not pid_alive(pid), 20, f"responder {pid} to stop")
        self.responders = []


@pytest.fixture(scope="module")
def pkg():
    if os.geteuid() != 0:
        message = "installs a Debian package: runs as root only"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true)")
        pytest.skip(message)
    if package_status():
        pytest.fail(f"a flows-fcgi package is already on this machine ({package_status()}), not installed by this "
                    "test: refusing to install over it and purge it")
    present = [str(p) for p in OWN_PATHS if p.exists() or p.is_symlink()]
    if present:
        pytest.fail(f"refusing to run: {', '.join(present)} already exist(s), and purging the package would delete "
                    "them")
    deb = deb_path(changelog_version())
    # Built from this tree now (the release build is already there in scripts/test): a .deb left in dist/ by an
    # earlier build may ship other conffiles than the upgrade package built below.
    run([str(REPO / "scripts" / "build-deb")], timeout=1800)
    assert deb.is_file(), deb
    user_existed = _exists(pwd.getpwnam, "flows-fcgi")
    group_existed = _exists(grp.getgrnam, "flows-fcgi")
    workdir = Path(tempfile.mkdtemp(prefix="flows-deb-"))
    workdir.chmod(0o755)  # nginx's and lighttpd's workers run as www-data
    package = Package(workdir)
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)], env=APT_ENV, timeout=600)
        package.installed_files = [Path(p) for p in run(["dpkg", "-L", "flows-fcgi"]).stdout.split()]
        yield package
    finally:
        if SYSTEMD and package_status():
            package.stop_responders()
        package.processes.stop_all()
        if package_status():
            run(["apt-get", "purge", "-y", "-q", "flows-fcgi"], env=APT_ENV, check=False, timeout=600)
        # None of these existed before (checked above): what purge leaves on purpose (files an admin adds to
        # /etc/flows-fcgi) or a failed test left, goes too.
        for made in (ENV.parent, STATE, LOGS, RUN):
            shutil.rmtree(made, ignore_errors=True)
        if not user_existed and _exists(pwd.getpwnam, "flows-fcgi"):
            run(["deluser", "--system", "--quiet", "flows-fcgi"], check=False)
        if not group_existed and _exists(grp.getgrnam, "flows-fcgi"):
            run(["delgroup", "--system", "--quiet", "flows-fcgi"], check=False)
        for extra in (REPO / "dist").glob(f"flows-fcgi_*{UPGRADE_SUFFIX}_*.deb"):
            extra.unlink()
        shutil.rmtree(workdir, ignore_errors=True)


def _exists(lookup, name: str) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------------------------------------
# Servers owned by the test: their configuration in the module's folder, the installed files included
# --------------------------------------------------------------------------------------------------------

NGINX_CONF = """\
# Test-owned nginx: workers as www-data (the socket's owner), the INSTALLED snippet in a server block.
user www-data;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    proxy_temp_path {dir}/tmp/proxy;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        include {snippet};
    }}
}}
"""

LIGHTTPD_CONF = """\
# Test-owned lighttpd as www-data with the INSTALLED module (it connects to the package's socket).
server.document-root = "{dir}/htdocs"
server.bind = "127.0.0.1"
server.port = {port}
server.username = "www-data"
server.groupname = "www-data"
server.errorlog = "{dir}/log/error.log"
server.upload-dirs = ( "{dir}/tmp" )
include "{module}"
"""


def start_nginx(package: Package) -> tuple[str, int]:
    d = package.workdir / "nginx"
    (d / "tmp").mkdir(parents=True)
    # The snippet's `include fastcgi_params;` is relative to the configuration's folder.
    shutil.copy("/etc/nginx/fastcgi_params", d / "fastcgi_params")
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=d, port=port, snippet=SNIPPET))
    run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(d), "-e", str(d / "error.log")])
    popen = package.processes.start(["nginx", "-c", str(conf), "-p", str(d), "-e", str(d / "error.log")],
                                    "nginx", d / "nginx.out")
    wait_for_listener(("127.0.0.1", port), alive=lambda: popen.poll() is None, log=d / "error.log")
    return ("127.0.0.1", port)


def start_lighttpd(package: Package) -> tuple[str, int]:
    d = package.workdir / "lighttpd"
    for sub in ("htdocs", "tmp", "log"):  # lighttpd opens its error log as www-data
        (d / sub).mkdir(parents=True)
        shutil.chown(d / sub, "www-data", "www-data")
    port = free_port()
    conf = d / "lighttpd.conf"
    conf.write_text(LIGHTTPD_CONF.format(dir=d, port=port, module=LIGHTTPD_MODULE))
    run(["lighttpd", "-tt", "-f", str(conf)])
    popen = package.processes.start(["lighttpd", "-D", "-f", str(conf)], "lighttpd", d / "lighttpd.out")
    wait_for_listener(("127.0.0.1", port), alive=lambda: popen.poll() is None, log=d / "lighttpd.out")
    return ("127.0.0.1", port)


# --------------------------------------------------------------------------------------------------------
# Flows through the installed package
# --------------------------------------------------------------------------------------------------------


def ping(client: WhatsAppClient) -> dict:
    exchange = client.send("/flows-fcgi/flows/appointment", {"version": VERSION, "action": "ping"})
    assert exchange.status == 200, exchange.response
    return exchange.answer()


def book_appointment(client: WhatsAppClient) -> dict:
    """INIT, the three dropdowns, DETAILS, confirm: the SUCCESS params (with the booking id)."""
    token = "deb-" + secrets.token_hex(8)

    def ok(action: str, screen: str = "", data: dict | None = None) -> dict:
        exchange = client.send(APPOINTMENT, {"version": VERSION, "action": action, "flow_token": token,
                                             "screen": screen, "data": data or {}})
        assert exchange.status == 200, (action, screen, exchange.response)
        return exchange.answer()

    def enabled(options: list[dict]) -> list[str]:
        return [o["id"] for o in options if o.get("enabled", True)]

    first = ok("INIT")
    assert first["screen"] == "APPOINTMENT", first
    department = enabled(first["data"]["department"])[0]
    answer = ok("data_exchange", "APPOINTMENT", {"trigger": "department_selected", "department": department})
    location = enabled(answer["data"]["location"])[0]
    answer = ok("data_exchange", "APPOINTMENT",
                {"trigger": "location_selected", "department": department, "location": location})
    date = enabled(answer["data"]["date"])[-1]  # the last day offered: its slots are all ahead, whatever the hour
    answer = ok("data_exchange", "APPOINTMENT",
                {"trigger": "date_selected", "department": department, "location": location, "date": date})
    time_id = enabled(answer["data"]["time"])[0]
    fields = {"department": department, "location": location, "date": date, "time": time_id, **PERSON}
    summary = ok("data_exchange", "DETAILS", fields)
    assert summary["screen"] == "SUMMARY" and "error_message" not in summary["data"], summary
    params = success_params(ok("data_exchange", "SUMMARY", fields))
    assert params and params["booking_id"], params
    return params


def bookings() -> list[str]:
    """The booking ids in the installed database, read as the service user (so SQLite's -wal and -shm files, if it
    makes them, stay the service's)."""
    result = as_service_user("sqlite3", "-readonly", str(STATE / "flows.db"),
                             "SELECT id FROM appointment_bookings ORDER BY id")
    return result.stdout.split()


# --------------------------------------------------------------------------------------------------------
# Tests, in order
# --------------------------------------------------------------------------------------------------------


def test_installs_every_file_with_its_owner_and_mode(pkg):
    assert package_status() == "install ok installed"
    assert package_version() == pkg.version
    version = run(["/usr/bin/flows-fcgi", "--version"]).stdout.split()
    assert version == ["flows-fcgi", pkg.version], version
    needed = run(["readelf", "-d", "/usr/bin/flows-fcgi"]).stdout
    assert not re.search(r"NEEDED.*(swift|Foundation|icu)", needed, re.I), needed  # the stdlib is static
    expected = {
        "/usr/bin/flows-fcgi": ("root", "root", 0o755),
        str(ENV): ("root", "flows-fcgi", 0o640),
        str(ENV.parent / "flows"): ("root", "root", 0o755),
        str(STATE): ("flows-fcgi", "flows-fcgi", 0o750),
        str(LOGS): ("flows-fcgi", "flows-fcgi", 0o750),
        "/lib/systemd/system/flows-fcgi.socket": ("root", "root", 0o644),
        "/lib/systemd/system/flows-fcgi.service": ("root", "root", 0o644),
        "/etc/logrotate.d/flows-fcgi": ("root", "root", 0o644),
        str(SNIPPET): ("root", "root", 0o644),
        str(LIGHTTPD_MODULE): ("root", "root", 0o644),
        "/usr/share/man/man1/flows-fcgi.1.gz": ("root", "root", 0o644),
        str(SPAWN): ("root", "root", 0o755),
        "/usr/share/flows-fcgi/flows/appointment.json": ("root", "root", 0o644),
    }
    assert {path: owner(Path(path)) for path in expected} == expected
    shipped = sorted(p.name for p in (REPO / "flows").iterdir())
    assert sorted(p.name for p in Path("/usr/share/flows-fcgi/flows").iterdir()) == shipped
    user = pwd.getpwnam("flows-fcgi")
    assert user.pw_uid < 1000 and user.pw_dir == str(STATE) and user.pw_shell.endswith("nologin"), user
    # The env file lists every setting the installed binary knows, each once.
    listed = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV.read_text(), re.M)
    assert sorted(listed) == sorted(help_setting_names(Path("/usr/bin/flows-fcgi"))), listed
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "flows-fcgi"]).stdout
    for path in (ENV, SNIPPET, LIGHTTPD_MODULE, Path("/etc/logrotate.d/flows-fcgi")):
        assert f" {path} " in conffiles, conffiles
    # Nothing enabled or started, and nothing changed in nginx or lighttpd.
    assert not Path("/etc/systemd/system/sockets.target.wants/flows-fcgi.socket").exists()
    assert not Path("/etc/lighttpd/conf-enabled/90-flows-fcgi.conf").exists()
    sites = Path("/etc/nginx/sites-enabled")
    assert not any("flows-fcgi" in p.name for p in (sites.iterdir() if sites.is_dir() else [])), sites
    # The man page renders without warnings.
    man = run(["man", "--warnings", "-l", "/usr/share/man/man1/flows-fcgi.1.gz"], env={**clean_env(), "MANWIDTH": "80"})
    assert "keygen" in man.stdout and not man.stderr, man.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_installed_units_verify(pkg):
    result = run(["systemd-analyze", "verify", *map(str, UNITS)], check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flows-fcgi" not in result.stderr, result.stderr
    service = UNITS[1].read_text()
    assert "ExecStart=/usr/bin/flows-fcgi --config /etc/flows-fcgi/flows-fcgi.env" in service
    assert "RestartPreventExitStatus=78" in service
    assert "ListenStream=/run/flows-fcgi/flows-fcgi.sock" in UNITS[0].read_text()


def test_refuses_to_serve_before_it_is_configured_and_says_what_to_do(pkg):
    sock = pkg.workdir / "unconfigured.sock"
    result = as_service_user("/usr/bin/flows-fcgi", "--config", str(ENV), "--listen", f"unix:{sock}", check=False)
    assert result.returncode == 78, result
    assert "APP_SECRET" in result.stderr, result.stderr
    # What the unit adds to the journal after an exit with status 78 (and only then).
    hint = unit_stop_hint(UNITS[1].read_text())
    told = run(["sh", "-c", hint], env={**clean_env(), "EXIT_STATUS": "78"}).stdout
    for step in ("runuser -u flows-fcgi -- flows-fcgi keygen --out /var/lib/flows-fcgi", str(ENV),
                 f"flows-fcgi check --config {ENV}", "systemctl enable --now flows-fcgi.socket"):
        assert step in told, told
    assert run(["sh", "-c", hint], env={**clean_env(), "EXIT_STATUS": "0"}).stdout == ""
    if SYSTEMD:
        # Started anyway, the service fails once (no restart loop) and its status shows the steps.
        run(["systemctl", "start", "flows-fcgi.service"], check=False, timeout=60)
        wait_until(lambda: run(["systemctl", "is-failed", "flows-fcgi.service"], check=False).returncode == 0, 30,
                   "flows-fcgi.service to fail")
        assert run(["systemctl", "show", "-P", "NRestarts", "flows-fcgi.service"]).stdout.strip() == "0"
        status = run(["systemctl", "status", "-n", "20", "flows-fcgi.service"], check=False).stdout
        assert "APP_SECRET" in status and "systemctl enable --now flows-fcgi.socket" in status, status
        pkg.stop_responders()


def test_configured_as_readme_debian_says_it_serves_a_ping_and_a_booking_through_the_installed_snippet(pkg):
    as_service_user("/usr/bin/flows-fcgi", "keygen", "--out", str(STATE),
                    env={**clean_env(), "PASSPHRASE": pkg.passphrase})
    assert owner(STATE / "private.pem") == ("flows-fcgi", "flows-fcgi", 0o600)
    set_settings({"APP_SECRET": pkg.secret, "PRIVATE_KEY_FILE": str(STATE / "private.pem"),
                  "PASSPHRASE": pkg.passphrase})
    assert owner(ENV) == ("root", "flows-fcgi", 0o640)
    check = as_service_user("/usr/bin/flows-fcgi", "check", "--config", str(ENV), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "/usr/share/flows-fcgi/flows" in check.stdout, check.stdout  # the shipped flows, FLOWS_DIR unset

    pkg.start_responders()
    assert owner(SOCKET) == ("www-data", "www-data", 0o660)
    pkg.address = start_nginx(pkg)
    assert ping(pkg.client()) == {"data": {"status": "active"}}
    responders = pkg.responder_pids()
    assert responders, "no responder runs after a ping"
    for pid in responders:
        assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == "flows-fcgi", pid
    booked = book_appointment(pkg.client())
    assert bookings() == [str(booked["booking_id"])]
    assert owner(STATE / "flows.db")[:2] == ("flows-fcgi", "flows-fcgi")
    assert owner(STATE / "flows.db")[2] & 0o077 == 0  # no one else reads the personal data
    log = (LOGS / "flows-fcgi.log").read_text()
    assert "action=ping" in log or '"action":"ping"' in log, log[-2000:]


def test_installed_logrotate_file_rotates_and_the_responders_reopen(pkg):
    log = LOGS / "flows-fcgi.log"
    state = pkg.workdir / "logrotate.state"  # logrotate's own state stays in the test's folder
    run(["logrotate", "--force", "--state", str(state), "/etc/logrotate.d/flows-fcgi"])
    assert (LOGS / "flows-fcgi.log.1").is_file()
    wait_until(log.exists, 10, "the log file to be created again")
    assert owner(log)[0] == "flows-fcgi", owner(log)
    assert ping(pkg.client()) == {"data": {"status": "active"}}
    # The postrotate's SIGHUP (to the spawn-fcgi PIDs, or the unit's processes) made them write to the new file.
    wait_until(lambda: "action=ping" in log.read_text(), 10, "the ping in the new log file")


def test_lighttpd_module_serves_through_the_same_socket(pkg):
    pkg.lighttpd_address = start_lighttpd(pkg)
    assert ping(pkg.client(pkg.lighttpd_address)) == {"data": {"status": "active"}}


def test_business_flows_folder_serves_the_shipped_flows_and_its_own(pkg):
    own = ENV.parent / "flows"
    for shipped in Path("/usr/share/flows-fcgi/flows").iterdir():
        (own / shipped.name).symlink_to(shipped)
    shutil.copy("/usr/share/flows-fcgi/flows/feedback.json", own / "our-survey.json")
    shutil.copy("/usr/share/flows-fcgi/flows/feedback.rules.json", own / "our-survey.rules.json")
    set_settings({"FLOWS_DIR": str(own)})
    pkg.stop_responders()
    pkg.start_responders()
    client = pkg.client()
    for flow in ("our-survey", "feedback"):
        exchange = client.send(f"/flows-fcgi/flows/{flow}", {"version": VERSION, "action": "INIT",
                                                            "flow_token": "deb-" + secrets.token_hex(8)})
        assert exchange.status == 200, (flow, exchange.response)
        assert exchange.answer()["screen"], exchange.answer()
    assert ping(client) == {"data": {"status": "active"}}


def test_upgrade_keeps_the_edited_conffile_and_the_database(pkg):
    newer = pkg.version + UPGRADE_SUFFIX
    run([str(REPO / "scripts" / "build-deb"), "--version", newer], timeout=1800)
    set_settings({"LOG_LEVEL": "debug"})
    edited = ENV.read_text()
    before = bookings()
    running = pkg.responder_pids()
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb_path(newer))], env=APT_ENV, timeout=600)
    assert package_version() == newer
    assert ENV.read_text() == edited
    assert owner(ENV) == ("root", "flows-fcgi", 0o640)
    assert not list(ENV.parent.glob("flows-fcgi.env.dpkg-*")), list(ENV.parent.iterdir())
    assert bookings() == before
    assert owner(STATE) == ("flows-fcgi", "flows-fcgi", 0o750)
    if SYSTEMD:
        # The postinst restarted the running service (SIGTERM, a graceful stop) and left the socket listening.
        assert run(["systemctl", "is-active", "flows-fcgi.socket"], check=False).stdout.strip() == "active"
        assert not set(running) & set(pkg.responder_pids()), (running, pkg.responder_pids())
    else:
        # Without systemd no maintainer script can restart them: the administrator does, with the script.
        pkg.stop_responders()
        pkg.start_responders()
    booked = book_appointment(pkg.client())
    assert bookings() == before + [str(booked["booking_id"])]


def test_remove_keeps_configuration_and_data(pkg):
    pkg.stop_responders()
    edited = ENV.read_text()
    run(["apt-get", "remove", "-y", "-q", "flows-fcgi"], env=APT_ENV, timeout=600)
    assert package_status() == "deinstall ok config-files"
    assert not Path("/usr/bin/flows-fcgi").exists()
    assert ENV.read_text() == edited
    assert (STATE / "flows.db").is_file() and (STATE / "private.pem").is_file()
    assert len(bookings()) == 2


def test_purge_leaves_nothing_of_the_package(pkg):
    # What the business added to /etc/flows-fcgi/flows is theirs: take it away first, as an admin would.
    for extra in (ENV.parent / "flows").iterdir():
        extra.unlink()
    run(["apt-get", "purge", "-y", "-q", "flows-fcgi"], env=APT_ENV, timeout=600)
    assert package_status() in ("", "unknown ok not-installed"), package_status()
    left = [str(p) for p in pkg.installed_files if p.exists() and not p.is_dir()]
    assert left == [], left
    for folder in (ENV.parent, STATE, LOGS, Path("/usr/share/flows-fcgi"), Path("/usr/share/doc/flows-fcgi")):
        assert not folder.exists(), folder
