"""Settings as the binary's contract describes them, checked through plain CGI mode (one process per
request, GATEWAY_INTERFACE set, request on stdin, answer on stdout): no web server needed, so these are fast.
Apache runs the same mode for real in test_serving_modes.py (apache-cgi).
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import clean_env, parse_cgi_output, write_config
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
