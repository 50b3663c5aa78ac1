"""Settings as the binary's contract describes them, checked through plain CGI mode (one process per
request, GATEWAY_INTERFACE set, request on stdin, answer on stdout): no web server needed, so these are fast.
Apache runs the same mode for real in test_serving_modes.py (apache-cgi).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess

import pytest

from conftest import clean_env, fcgi_request, parse_cgi_output, start_listen, tail, write_config
from flowclient import FlowCrypto, generate_keypair, sign

PING = {"version": "3.0", "action": "ping"}


def cgi(binary, body: bytes, signature: str | None, env: dict, args=(), path="/cgi-bin/flows/flows/expense",
        method="POST"):
    environ = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD=method, SCRIPT_NAME=path,
                        SERVER_PROTOCOL="HTTP/1.1", CONTENT_LENGTH=str(len(body)), CONTENT_TYPE="application/json")
    if signature is not None:
        environ["HTTP_X_HUB_SIGNATURE_256"] = signature
    environ.update(env)
    result = subprocess.run([str(binary), *args], input=body, env=environ, capture_output=True, timeout=20)
    assert result.returncode == 0, f"CGI run exited {result.returncode}: {result.stderr!r}"
    return parse_cgi_output(result.stdout)


def ping_status(binary, public_pem, secret, env, args=()):
    ctx = FlowCrypto.from_file(public_pem).encrypt(PING)
    r = cgi(binary, ctx.body, sign(secret, ctx.body) if secret else None, env, args)
    if r.status == 200:
        assert ctx.decrypt_answer(r.body) == {"data": {"status": "active"}}
    return r.status


def test_cgi_ping(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    assert ping_status(binary, keys.public_pem, app_secret, {}, ["--config", str(config)]) == 200
    r = cgi(binary, b"", None, {}, ["--config", str(config)], path="/cgi-bin/flows/health", method="GET")
    assert r.status == 200 and r.body.strip() == b"ok", r


def test_key_rotation_tries_every_configured_key(binary, keys, old_keys, stranger_keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path,
                          PRIVATE_KEY_FILE=f"{keys.private_pem},{old_keys.private_pem}")
    args = ["--config", str(config)]
    assert ping_status(binary, keys.public_pem, app_secret, {}, args) == 200, "newest key"
    assert ping_status(binary, old_keys.public_pem, app_secret, {}, args) == 200, "previous key"
    assert ping_status(binary, stranger_keys.public_pem, app_secret, {}, args) == 421, "unknown key"


def test_legacy_pkcs1_encrypted_key_with_inline_passphrase(binary, app_secret, tmp_path):
    legacy = generate_keypair(str(tmp_path), "legacy", style="pkcs1", passphrase="correct horse")
    assert "Proc-Type: 4,ENCRYPTED" in open(legacy.private_pem).read()
    env = {"APP_SECRET": app_secret, "PRIVATE_KEY_FILE": legacy.private_pem, "PASSPHRASE": "correct horse",
           "DATABASE_URL": f"sqlite:{tmp_path / 'flows.db'}"}
    assert ping_status(binary, legacy.public_pem, app_secret, env) == 200


def test_inline_private_key(binary, keys, app_secret, tmp_path):
    env = {"APP_SECRET": app_secret, "PRIVATE_KEY": open(keys.private_pem).read(), "PASSPHRASE": keys.passphrase,
           "DATABASE_URL": f"sqlite:{tmp_path / 'flows.db'}"}
    assert ping_status(binary, keys.public_pem, app_secret, env) == 200


def test_previous_app_secret_accepted_during_rotation(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, APP_SECRET_PREVIOUS="old-secret")
    args = ["--config", str(config)]
    assert ping_status(binary, keys.public_pem, app_secret, {}, args) == 200
    assert ping_status(binary, keys.public_pem, "old-secret", {}, args) == 200
    assert ping_status(binary, keys.public_pem, "some-other-secret", {}, args) == 432


def test_environment_wins_over_config_file(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, "file-secret", tmp_path)
    args = ["--config", str(config)]
    assert ping_status(binary, keys.public_pem, "file-secret", {}, args) == 200
    assert ping_status(binary, keys.public_pem, app_secret, {"APP_SECRET": app_secret}, args) == 200
    assert ping_status(binary, keys.public_pem, "file-secret", {"APP_SECRET": app_secret}, args) == 432


def test_signature_check_off_for_development(binary, keys, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, "unused", tmp_path, APP_SECRET=None, SIGNATURE_CHECK="off")
    assert ping_status(binary, keys.public_pem, None, {}, ["--config", str(config)]) == 200


@pytest.mark.parametrize("how", ["env", "option"])
def test_body_limit(binary, keys, app_secret, tmp_path, how):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, MAX_BODY_BYTES=None)
    env, args = {}, ["--config", str(config)]
    if how == "env":
        env["MAX_BODY_BYTES"] = "2000"
    else:
        args += ["--max-body", "2000"]
    small = FlowCrypto.from_file(keys.public_pem).encrypt(PING)
    assert len(small.body) < 2000
    assert cgi(binary, small.body, sign(app_secret, small.body), env, args).status == 200
    big = FlowCrypto.from_file(keys.public_pem).encrypt(PING, extra={"padding": "x" * 3000})
    assert cgi(binary, big.body, sign(app_secret, big.body), env, args).status == 413
    # The option wins over the environment.
    if how == "option":
        assert cgi(binary, big.body, sign(app_secret, big.body), {"MAX_BODY_BYTES": "100000"}, args).status == 413
    # Without a limit set, the default (1 MiB) lets the 5 KB body through.
    assert cgi(binary, big.body, sign(app_secret, big.body), {}, ["--config", str(config)]).status == 200


# --------------------------------------------------------------------------------------------------------
# Secrets never appear in messages: a bad value of a secret setting, or a URL with a password in it, is
# reported by the setting's name only (startup in each mode and `check`)
# --------------------------------------------------------------------------------------------------------

CANARY = "cAnArY" + secrets.token_hex(8)
PEM_WITH_CANARY = f'"-----BEGIN PRIVATE KEY-----\\n{CANARY}\\n-----END PRIVATE KEY-----\\n"'

# (the setting named in the message, the settings written to the config file); None removes a default line.
BAD_SECRETS = {
    "APP_SECRET": ("APP_SECRET", {"APP_SECRET": f'"{CANARY}\\tx"'}),
    "APP_SECRET_PREVIOUS": ("APP_SECRET_PREVIOUS", {"APP_SECRET_PREVIOUS": f'"{CANARY} x"'}),
    "API_TOKEN": ("API_TOKEN", {"API_TOKEN": f'"{CANARY} {CANARY}"'}),
    "VERIFY_TOKEN": ("VERIFY_TOKEN", {"VERIFY_TOKEN": f'"{CANARY}\\n"'}),
    "PASSPHRASE": ("passphrase", {"PASSPHRASE": CANARY, "PASSPHRASE_FILE": None}),
    "PRIVATE_KEY": ("PRIVATE_KEY", {"PRIVATE_KEY": PEM_WITH_CANARY, "PRIVATE_KEY_FILE": None}),
    "DATABASE_URL password": ("DATABASE_URL",
                              {"DATABASE_URL": f"postgres://flows:{CANARY}@db.example/flows?no_such_parameter=1"}),
    "DATABASE_URL user info": ("DATABASE_URL", {"DATABASE_URL": f"mysql://{CANARY}@db.example/flows"}),
    "CALLBACK_URL password": ("CALLBACK_URL", {"CALLBACK_URL": f"https://hook:{CANARY}@hooks.example/done"}),
    "CALLBACK_URL query token": ("CALLBACK_URL", {"CALLBACK_URL": f"https://hooks.example:99999/d?token={CANARY}"}),
}


def assert_no_canary(where: str, *texts: str) -> None:
    for text in texts:
        assert CANARY not in text, f"the secret appears in {where}:\n{text}"


@pytest.mark.parametrize("case", sorted(BAD_SECRETS))
def test_a_bad_secret_setting_is_named_but_never_shown(case, binary, keys, app_secret, tmp_path):
    named, extra = BAD_SECRETS[case]
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, **extra)
    config.chmod(0o600)
    log = tmp_path / "responder.log"
    runs = {
        "serving startup": [str(binary), "--config", str(config), "--listen", f"unix:{tmp_path / 's.sock'}"],
        "check": [str(binary), "check", "--config", str(config)],
    }
    if named == "DATABASE_URL":  # the operator commands that read only the database's settings
        runs["purge"] = [str(binary), "purge", "--config", str(config), "--dry-run"]
    for what, argv in runs.items():
        result = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=30)
        assert result.returncode == 78, f"{what}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        assert named.lower() in result.stderr.lower(), f"{what} does not name {named}: {result.stderr}"
        assert_no_canary(what, result.stdout, result.stderr, log.read_text() if log.exists() else "")
    ctx = FlowCrypto.from_file(keys.public_pem).encrypt(PING)
    environ = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST", SCRIPT_NAME="/f/flows/expense",
                        CONTENT_LENGTH=str(len(ctx.body)), HTTP_X_HUB_SIGNATURE_256=sign(app_secret, ctx.body))
    result = subprocess.run([str(binary), "--config", str(config)], input=ctx.body, env=environ,
                            capture_output=True, timeout=30)
    assert result.returncode == 78 and not result.stdout, result
    assert_no_canary("CGI", result.stdout.decode("latin-1"), result.stderr.decode("latin-1"),
                     log.read_text() if log.exists() else "")


def test_check_and_serving_never_show_configured_secrets(binary, keys, app_secret, tmp_path, processes):
    values = {"APP_SECRET": app_secret, "APP_SECRET_PREVIOUS": "prev" + CANARY, "API_TOKEN": "api" + CANARY,
              "VERIFY_TOKEN": "verify" + CANARY, "PASSPHRASE": keys.passphrase, "PASSPHRASE_FILE": None,
              "CALLBACK_URL": f"https://127.0.0.1:9/done?token=cb{CANARY}&flow=expense"}
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, **values)
    config.chmod(0o600)
    hidden = [CANARY, app_secret, keys.passphrase]
    result = subprocess.run([str(binary), "check", "--config", str(config)], capture_output=True, text=True,
                            env=clean_env(), timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    sock = tmp_path / "s.sock"
    responder = start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
    assert fcgi_request(str(sock), "GET", "/x/health/ready").status == 200
    os.kill(responder.pid, signal.SIGTERM)
    assert responder.wait(10) == 0
    shown = result.stdout + result.stderr + (tmp_path / "responder.log").read_text() + tail(
        tmp_path / "responder.out", 100000)
    for secret in hidden:
        assert secret not in shown, f"a secret appears:\n{shown}"
