"""OPERATOR TOOLKIT: `flows-fcgi keygen` (files, modes, no overwrite, passphrase from a file or a terminal prompt,
never from argv; the key loads in the responder and decrypts what WhatsApp encrypts to the printed public key),
`flows-fcgi check` (all-OK exit 0; each broken condition reported on its own line with exit 1, or 78 when the
configuration does not load) and `GET .../health/ready` through a real FastCGI socket."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pexpect

from conftest import Processes, clean_env, fcgi_request, start_listen, write_config
from flowclient import KeyPair
from test_configuration import cgi, ping_status

PASSPHRASE = "correct horse battery staple"


def run(binary, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env or clean_env(), timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keygen(binary, directory: Path, *extra: str) -> tuple[KeyPair, subprocess.CompletedProcess]:
    """keygen with a 0600 passphrase file; returns the key pair as the conftest helpers know it."""
    directory.mkdir(exist_ok=True)
    pass_file = directory / "passphrase.txt"
    fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PASSPHRASE + "\n")
    result = run(binary, "keygen", "--out", str(directory), "--passphrase-file", str(pass_file), *extra)
    assert result.returncode == 0, result.stderr
    keys = KeyPair(str(directory / "private.pem"), str(directory / "public.pem"), PASSPHRASE, str(pass_file))
    return keys, result


def good_setup(binary, tmp_path: Path, app_secret: str, **extra: str) -> tuple[KeyPair, Path]:
    """Generated keys, a 0600 config file and a database the responder created (one CGI request)."""
    keys, _ = keygen(binary, tmp_path / "keys")
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, **extra)
    config.chmod(0o600)
    return keys, config


# ----------------------------------------------------------------------------------------------------------------
# keygen
# ----------------------------------------------------------------------------------------------------------------


def test_keygen_writes_modes_refuses_overwrite_and_the_key_serves(binary, app_secret, tmp_path):
    keys, result = keygen(binary, tmp_path / "keys")
    private, public = Path(keys.private_pem), Path(keys.public_pem)
    assert mode(private) == 0o600 and mode(public) == 0o644
    assert private.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert public.read_text() in result.stdout, "the public key PEM is printed"
    assert "whatsapp_business_encryption" in result.stdout and "business_public_key" in result.stdout
    assert f"PRIVATE_KEY_FILE={private}" in result.stdout and f"PASSPHRASE_FILE={keys.passphrase_file}" in result.stdout
    fingerprint = subprocess.run(f"openssl pkey -pubin -in {public} -outform DER | sha256sum", shell=True,
                                 capture_output=True, text=True, check=True).stdout.split()[0]
    assert f"SHA-256 fingerprint: {fingerprint}" in result.stdout
    assert PASSPHRASE not in result.stdout + result.stderr

    before = private.read_bytes()
    again = run(binary, "keygen", "--out", str(tmp_path / "keys"), "--passphrase-file", keys.passphrase_file)
    assert again.returncode == 1 and "already exists" in again.stderr and str(private) in again.stderr
    assert private.read_bytes() == before, "the existing key was not touched"

    # The responder loads the key and WhatsApp's side encrypts to the printed public key.
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    assert ping_status(binary, keys.public_pem, app_secret, {}, ["--config", str(config)]) == 200


def test_keygen_pkcs1_from_environment_passphrase(binary, app_secret, tmp_path):
    out = tmp_path / "legacy"
    out.mkdir()
    result = run(binary, "keygen", "--out", str(out), "--format", "pkcs1", "--bits", "3072",
                 env=clean_env(PASSPHRASE=PASSPHRASE))
    assert result.returncode == 0, result.stderr
    assert "Proc-Type: 4,ENCRYPTED" in (out / "private.pem").read_text()
    env = {"APP_SECRET": app_secret, "PRIVATE_KEY_FILE": str(out / "private.pem"), "PASSPHRASE": PASSPHRASE,
           "DATABASE_URL": f"sqlite:{tmp_path / 'flows.db'}"}
    assert ping_status(binary, str(out / "public.pem"), app_secret, env) == 200


def test_keygen_never_takes_the_passphrase_from_argv(binary, tmp_path):
    result = run(binary, "keygen", "--out", str(tmp_path), "--passphrase", PASSPHRASE)
    assert result.returncode == 2 and "never taken from the command line" in result.stderr
    assert PASSPHRASE not in result.stdout + result.stderr
    assert not (tmp_path / "private.pem").exists()


def prompt(binary, out: Path, first: str, second: str) -> tuple[int, str, str]:
    """keygen asking on a pseudo-terminal; returns (status, everything the terminal showed, its argv)."""
    shown = io.StringIO()
    child = pexpect.spawn(str(binary), ["keygen", "--out", str(out)], env=clean_env(), timeout=60,
                          encoding="utf-8")
    child.logfile_read = shown
    child.expect("Passphrase for the new private key: ")
    argv = Path(f"/proc/{child.pid}/cmdline").read_bytes().decode().replace("\0", " ")
    child.sendline(first)
    child.expect("again: ")
    child.sendline(second)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, shown.getvalue(), argv


def test_keygen_prompts_twice_with_echo_off(binary, tmp_path):
    out = tmp_path / "prompted"
    out.mkdir()
    status, shown, argv = prompt(binary, out, PASSPHRASE, PASSPHRASE)
    assert status == 0, shown
    assert PASSPHRASE not in shown, "the passphrase was echoed or printed"
    assert PASSPHRASE not in argv
    assert mode(out / "private.pem") == 0o600
    check = subprocess.run(["openssl", "pkey", "-in", str(out / "private.pem"), "-passin", f"pass:{PASSPHRASE}",
                            "-noout"], capture_output=True)
    assert check.returncode == 0, "the key opens with the typed passphrase"


def test_keygen_prompt_mismatch_writes_nothing(binary, tmp_path):
    status, shown, _ = prompt(binary, tmp_path, PASSPHRASE, PASSPHRASE + "!")
    assert status == 1 and "differ" in shown
    assert not (tmp_path / "private.pem").exists() and not (tmp_path / "public.pem").exists()


# ----------------------------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------------------------


def test_check_all_well(binary, app_secret, tmp_path):
    keys, config = good_setup(binary, tmp_path, app_secret)
    # Before the responder ran: the database does not exist yet, which is fine.
    fresh = run(binary, "check", "--config", str(config))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "does not exist yet" in fresh.stdout and not (tmp_path / "flows.db").exists(), "check created nothing"

    assert cgi(binary, b"", None, {}, ["--config", str(config)], path="/f/health", method="GET").status == 200
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROBLEM" not in result.stdout and result.stdout.endswith("all is well\n")
    fingerprint = subprocess.run(f"openssl pkey -pubin -in {keys.public_pem} -outform DER | sha256sum", shell=True,
                                 capture_output=True, text=True, check=True).stdout.split()[0]
    for expected in (f"private key {keys.private_pem}: RSA-2048", fingerprint, "APP_SECRET is set",
                     "is writable", "WAL mode", "migrations applied", f"log file {tmp_path / 'responder.log'}"):
        assert expected in result.stdout, (expected, result.stdout)
    assert app_secret not in result.stdout + result.stderr and PASSPHRASE not in result.stdout + result.stderr


def test_check_wrong_passphrase_is_a_configuration_error(binary, app_secret, tmp_path):
    keys, config = good_setup(binary, tmp_path, app_secret)
    Path(keys.passphrase_file).write_text("not the passphrase\n")
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 78, result.stdout + result.stderr
    assert keys.private_pem in result.stderr and "wrong passphrase" in result.stderr
    assert "not the passphrase" not in result.stdout + result.stderr


def test_check_damaged_key_file_is_a_configuration_error(binary, app_secret, tmp_path):
    # One base64 character changed: OpenSSL still parses the key, whose numbers no longer fit together. The test
    # key and position are fixed (a few positions make the file unreadable instead, a different message).
    keys, config = good_setup(binary, tmp_path, app_secret)
    plain = (Path(__file__).parents[1] / "Fixtures" / "keys" / "pkcs8.pem").read_bytes()
    assert plain[400:401] not in (b"\n", b"A")
    damaged = plain[:400] + b"A" + plain[401:]
    Path(keys.private_pem).write_bytes(damaged)
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 78, result.stdout + result.stderr
    assert f"private key {keys.private_pem}: damaged RSA key: its parts do not fit together" in result.stderr
    assert damaged.decode().splitlines()[5] not in result.stdout + result.stderr


def test_check_key_file_readable_by_others(binary, app_secret, tmp_path):
    keys, config = good_setup(binary, tmp_path, app_secret)
    os.chmod(keys.private_pem, 0o644)
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 1, result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and keys.private_pem in problems[0] and "0644" in problems[0], problems


def test_check_signature_off_without_app_secret(binary, app_secret, tmp_path):
    _, config = good_setup(binary, tmp_path, app_secret, SIGNATURE_CHECK="off")
    config.write_text("".join(line + "\n" for line in config.read_text().splitlines()
                              if not line.startswith("APP_SECRET=")))
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert any("APP_SECRET is not set" in p for p in problems), problems
    assert any("SIGNATURE_CHECK=off" in p for p in problems), problems


def test_check_database_directory_cannot_hold_a_database(binary, app_secret, tmp_path):
    # A path under a regular file fails for root too.
    _, config = good_setup(binary, tmp_path, app_secret, DATABASE_URL="sqlite:/etc/passwd/flows.db")
    result = run(binary, "check", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and "/etc/passwd/flows.db" in problems[0] and "not a directory" in problems[0].lower()


def test_check_config_that_does_not_load(binary, tmp_path):
    result = run(binary, "check", "--config", str(tmp_path / "missing.env"))
    assert result.returncode == 78 and "missing.env" in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# /health/ready
# ----------------------------------------------------------------------------------------------------------------


def test_health_ready_through_a_real_server(binary, app_secret, tmp_path):
    _, config = good_setup(binary, tmp_path, app_secret, DATABASE_BUSY_TIMEOUT_MS="100")
    sock = tmp_path / "ready.sock"
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        for path in ("/x/health/ready", "/x/health", "/x/health/live"):
            r = fcgi_request(str(sock), "GET", path)
            assert r.status == 200, (path, r)
        assert fcgi_request(str(sock), "GET", "/x/health/ready").body.strip() == b"ready"

        # Another process holds the write lock longer than the busy timeout: not ready, still live.
        other = sqlite3.connect(tmp_path / "flows.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            r = fcgi_request(str(sock), "GET", "/x/health/ready")
            assert r.status == 503 and b"database is locked" in r.body, r
            assert fcgi_request(str(sock), "GET", "/x/health").status == 200
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert fcgi_request(str(sock), "GET", "/x/health/ready").status == 200
    finally:
        processes.stop_all()


def test_health_ready_503_when_the_database_becomes_read_only(binary, app_secret):
    """The responder runs as `nobody` (root writes whatever the mode says); making its database file read-only
    turns /health/ready to 503 at once, and back to 200 when fixed, without a restart."""
    import shutil
    import tempfile

    from conftest import wait_for_listener
    from flowclient import generate_keypair

    work = Path(tempfile.mkdtemp(prefix="flows-ready-ro-"))
    processes = Processes()
    try:
        keys = generate_keypair(str(work), "ro", passphrase=None)
        config = write_config(work / "flows.env", keys, app_secret, work)
        for path in [work, *work.iterdir()]:
            os.chown(path, 65534, 65534)
        sock = work / "ready.sock"
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                str(binary), "--config", str(config), "--listen", f"unix:{sock}", "--socket-mode", "0666"]
        popen = processes.start(argv, "flows-fcgi as nobody", work / "responder.out", env=clean_env())
        wait_for_listener(str(sock), alive=lambda: popen.poll() is None)
        assert fcgi_request(str(sock), "GET", "/x/health/ready").status == 200

        os.chmod(work / "flows.db", 0o444)
        r = fcgi_request(str(sock), "GET", "/x/health/ready")
        assert r.status == 503 and b"read-only" in r.body, r
        assert str(work).encode() not in r.body  # no file names in the answer
        assert fcgi_request(str(sock), "GET", "/x/health").status == 200  # still live

        os.chmod(work / "flows.db", 0o644)
        assert fcgi_request(str(sock), "GET", "/x/health/ready").status == 200
    finally:
        processes.stop_all()
        shutil.rmtree(work, ignore_errors=True)
