"""A throwaway PostgreSQL server for the tests (issue 18), started and stopped by the tests themselves.

Debian's postgresql package provides the binaries (/usr/lib/postgresql/N/bin); nothing of the system cluster is
used: no /etc/postgresql, no pg_ctlcluster, no port 5432. ``initdb`` writes a new cluster into a temporary folder
owned by the ``postgres`` system user (the commands run as that user through ``runuser -u postgres --`` when the
tests run as root, as the current user otherwise). The server listens on a free port of 127.0.0.1 and on a unix
socket in that folder, with scram-sha-256 authentication everywhere; a role ``flows`` with a random password owns
a database ``flows``.

    with PostgresServer() as pg:          # or the ``postgres`` pytest fixture below
        pg.url                            # postgresql://flows:PASSWORD@127.0.0.1:PORT/flows
        pg.stop(mode="immediate")         # every server process quits at once, as in a crash
        pg.start()                        # recovers from the WAL, same port, same data

``python3 Tests/integration/pgserver.py`` starts one, prints its URL and keeps it until SIGINT/SIGTERM or the end
of its stdin, then stops it and removes the folder (for bench runs and manual tries).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import pytest
except ImportError:  # used as a script without pytest
    pytest = None

SERVER_USER = "postgres"


def server_binaries() -> Path:
    """The folder of initdb, pg_ctl and psql: ``PG_BINDIR``, else the newest /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: install Debian's postgresql package (scripts/deps) "
                           "or set PG_BINDIR")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One cluster in its own temporary folder; ``start`` the first time runs ``initdb`` and creates the role."""

    #: The tests' server settings: no fsync (a test never survives a power cut; a crash of the server, which the
    #: restart tests cause, loses nothing without it).
    TEST_SETTINGS = {"fsync": "off"}

    def __init__(self, parent: str | None = None, settings: dict[str, str] | None = None):
        """A cluster in a new temporary folder under ``parent`` (the system's temporary folder by default),
        started with ``settings`` (``-c name=value`` each; default ``TEST_SETTINGS``)."""
        self.bin = server_binaries()
        self.settings = dict(self.TEST_SETTINGS if settings is None else settings)
        self.root = Path(tempfile.mkdtemp(prefix="flows-pg-", dir=parent))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.password = "flows-" + secrets.token_hex(12)
        self._super_password = "super-" + secrets.token_hex(12)
        self._as_server_user: list[str] = []
        self.socket_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]
        self._initialised = False

    # -- URLs ------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ``flows`` role's URL over TCP, password included."""
        return f"postgresql://flows:{self.password}@127.0.0.1:{self.port}/flows"

    @property
    def socket_url(self) -> str:
        """The same over the unix socket (the folder as the ``host`` parameter)."""
        return f"postgresql://flows:{self.password}@/flows?host={self.socket_dir}&port={self.port}"

    # -- control ---------------------------------------------------------------------------------------------

    def _run(self, *args: str) -> str:
        done = subprocess.run([*self._as_server_user, *args], cwd="/tmp", stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}: {done.stdout}{done.stderr}"
                               f"\n--- server log ---\n{self.server_log()}")
        return done.stdout

    def server_log(self, limit: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def start(self) -> "PostgresServer":
        """Starts the server (creating the cluster, role and database the first time) and waits until it accepts
        connections."""
        if not self._initialised:
            pwfile = self.root / "superpassword"
            pwfile.write_text(self._super_password + "\n")
            if self._as_server_user:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            pwfile.chmod(0o600)
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
            pwfile.unlink()
        options = "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1{options}", "start")
        if not self._initialised:
            self.psql(f"CREATE ROLE flows LOGIN PASSWORD '{self.password}'", superuser=True)
            self.psql("CREATE DATABASE flows OWNER flows", superuser=True)
            self._initialised = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: ``fast`` (clients disconnected, a clean shutdown), ``immediate`` (every server process
        quits at once, as in a crash; the next start recovers) or ``smart``."""
        assert mode in ("smart", "fast", "immediate")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int | None:
        """The server's PID while it runs (the first line of postmaster.pid), else None."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def psql(self, sql: str, superuser: bool = False, url: str | None = None, separator: str = "|",
             null: str = "") -> str:
        """Runs ``sql`` with psql (unaligned, tuples only, fields split by ``separator``, NULL shown as ``null``) as
        ``flows``, or as the superuser; fails on any error."""
        env = dict(os.environ)
        if superuser:
            env["PGPASSWORD"] = self._super_password
            target = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        else:
            target = url or self.url
        done = subprocess.run([str(self.bin / "psql"), target, "-X", "-A", "-t", "-F", separator, "-P",
                               f"null={null}", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql exited with {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    def cleanup(self) -> None:
        """Stops the server if it still runs (immediate mode) and removes the folder."""
        if self.postmaster_pid() is not None:
            try:
                self.stop("immediate")
            except RuntimeError:
                pid = self.postmaster_pid()
                if pid:
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()


if pytest is not None:
    @pytest.fixture
    def postgres():
        """A running server of the test's own, removed at the end (import it into the test module)."""
        with PostgresServer() as server:
            yield server


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    with PostgresServer() as server:
        print(server.url, flush=True)
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
