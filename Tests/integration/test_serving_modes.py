"""The same checks through every serving mode, each a real web server in front of the real binary:

* nginx+spawn-fcgi    the shipped nginx snippet/site, responders forked by the shipped nginx/spawn-fcgi.sh (-F 2)
* lighttpd            the shipped lighttpd/flows-fcgi.conf: lighttpd spawns the responder (bin-path, max-procs 2)
* nginx+systemd       the shipped unit pair under systemd-socket-activate (socket on fd 3, LISTEN_FDS=1)
* nginx+listen-unix   ``--listen unix:PATH`` (own socket)
* nginx+listen-tcp    ``--listen 127.0.0.1:PORT --processes 2`` (own socket, prefork)
* apache-cgi          Apache + mod_cgi with the shipped apache/.htaccess and flows.cgi (plain CGI)

Requests are encrypted for the endpoint's public key and signed with the app secret like WhatsApp's.
"""

from __future__ import annotations

import base64
import json

from conftest import TEST_MAX_BODY, Deployment
from flowclient import FlowCrypto, sign

FLOW = "/flows/expense"
PING = {"version": "3.0", "action": "ping"}


def signed_headers(secret: str, body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("X-Hub-Signature-256", sign(secret, body))]


def test_health(deployment: Deployment):
    r = deployment.request("GET", "/health")
    assert r.status == 200, r
    assert r.body.strip() == b"ok", r
    r = deployment.request("HEAD", "/health")
    assert r.status == 200, r


def test_ping(deployment: Deployment):
    ex = deployment.client().send(deployment.path(FLOW), PING)
    assert ex.status == 200, ex.response
    assert (ex.response.header("Content-Type") or "").startswith("text/plain"), ex.response
    assert ex.answer() == {"data": {"status": "active"}}


def test_ping_version_4(deployment: Deployment):
    ex = deployment.client().send(deployment.path(FLOW), {"version": "4.0", "action": "ping"})
    assert ex.status == 200, ex.response
    assert ex.answer() == {"data": {"status": "active"}}


def test_error_notification_is_acknowledged(deployment: Deployment):
    client = deployment.client()
    notification = {
        "version": "3.0", "action": "data_exchange", "screen": "EXPENSE_FORM", "flow_token": "it-error-1",
        "data": {"error": "invalid-screen-transition", "error_message": "SUCCESS is not a valid next screen"},
    }
    ex = client.send(deployment.path(FLOW), notification)
    assert ex.status == 200, ex.response
    assert ex.answer() == {"data": {"acknowledged": True}}
    keyed = {"version": "3.0", "action": "INIT", "flow_token": "it-error-2",
             "data": {"error_key": "flow_token_invalid", "error_message": "bad"}}
    ex = client.send(deployment.path(FLOW), keyed)
    assert ex.status == 200, ex.response
    assert ex.answer() == {"data": {"acknowledged": True}}


def test_missing_or_wrong_signature_is_432(deployment: Deployment):
    body = FlowCrypto.from_file(deployment.keys.public_pem).encrypt(PING).body
    r = deployment.request("POST", FLOW, body, [("Content-Type", "application/json")])
    assert r.status == 432, f"no signature: {r}"
    r = deployment.request("POST", FLOW, body, signed_headers("not-the-app-secret", body))
    assert r.status == 432, f"wrong secret: {r}"
    r = deployment.request("POST", FLOW, body, [("X-Hub-Signature-256", "sha256=" + "0" * 64)])
    assert r.status == 432, f"zero digest: {r}"
    r = deployment.request("POST", FLOW, body, [("X-Hub-Signature-256", sign(deployment.app_secret, body)[7:])])
    assert r.status == 432, f"digest without sha256= prefix: {r}"
    # The signature covers the exact bytes: a valid signature of other bytes is rejected.
    r = deployment.request("POST", FLOW, body + b" ", signed_headers(deployment.app_secret, body))
    assert r.status == 432, f"signature of other bytes: {r}"


def test_duplicated_signature_header_is_432(deployment: Deployment):
    body = FlowCrypto.from_file(deployment.keys.public_pem).encrypt(PING).body
    good = sign(deployment.app_secret, body)
    # Both copies valid: the responder must still refuse a request whose signature param repeats (or, on
    # servers that merge repeated headers into "a, b", is not one well-formed value).
    r = deployment.request("POST", FLOW, body, [("X-Hub-Signature-256", good), ("X-Hub-Signature-256", good)])
    assert r.status == 432, f"X-Hub-Signature-256 twice: {r}"
    if deployment.duplicate_header_style == "underscore":
        # lighttpd maps both spellings to HTTP_X_HUB_SIGNATURE_256 and passes it twice.
        r = deployment.request("POST", FLOW, body, [("X_Hub_Signature_256", good), ("X-Hub-Signature-256", good)])
        assert r.status == 432, f"X_Hub_Signature_256 + X-Hub-Signature-256: {r}"
        r = deployment.request("POST", FLOW, body, [("X-Hub-Signature-256", good), ("X_Hub_Signature_256", good)])
        assert r.status == 432, f"X-Hub-Signature-256 + X_Hub_Signature_256: {r}"


def test_undecryptable_is_421(deployment: Deployment, stranger_keys):
    # Encrypted for a key the endpoint does not hold (WhatsApp with a stale public key).
    ctx = FlowCrypto.from_file(stranger_keys.public_pem).encrypt(PING)
    r = deployment.post_signed(FLOW, ctx.body)
    assert r.status == 421, f"other key: {r}"
    # Right key, but the AES-GCM tag does not verify.
    ctx = FlowCrypto.from_file(deployment.keys.public_pem).encrypt(PING)
    envelope = json.loads(ctx.body)
    blob = bytearray(base64.b64decode(envelope["encrypted_flow_data"]))
    blob[-1] ^= 0x01
    envelope["encrypted_flow_data"] = base64.b64encode(bytes(blob)).decode()
    r = deployment.post_signed(FLOW, json.dumps(envelope).encode())
    assert r.status == 421, f"bad GCM tag: {r}"


def test_not_an_envelope_is_400(deployment: Deployment):
    for body in (b'{"hello":"world"}', b"not json at all", b"[1,2,3]"):
        r = deployment.post_signed(FLOW, body)
        assert r.status == 400, f"{body!r}: {r}"


def test_oversized_body_is_413(deployment: Deployment):
    # Validly signed, above the responder's MAX_BODY_BYTES (64 KiB in the test config) but below the web
    # server's own limit (4 MiB in the shipped configs), so the 413 is the responder's.
    ctx = FlowCrypto.from_file(deployment.keys.public_pem).encrypt(PING, extra={"padding": "x" * (3 * TEST_MAX_BODY)})
    r = deployment.post_signed(FLOW, ctx.body)
    assert r.status == 413, r
    # The responder is still fine afterwards.
    ex = deployment.client().send(deployment.path(FLOW), PING)
    assert ex.status == 200, ex.response


def test_routing_404_and_405(deployment: Deployment):
    ctx = FlowCrypto.from_file(deployment.keys.public_pem).encrypt(PING)
    r = deployment.post_signed("/flows/no-such-flow", ctx.body)
    assert r.status == 404, f"unknown flow: {r}"
    r = deployment.request("GET", "/no-such-path")
    assert r.status == 404, f"unknown path: {r}"
    r = deployment.request("GET", FLOW)
    assert r.status == 405, f"GET on a flow: {r}"
    assert "POST" in (r.header("Allow") or ""), r
    r = deployment.request("POST", "/health", b"x")
    assert r.status == 405, f"POST on health: {r}"
    assert "GET" in (r.header("Allow") or ""), r


def test_processes_survive(deployment: Deployment):
    """After all the above, the responders are still the ones started (no crash, no respawn)."""
    pids = deployment.responder_pids()
    if deployment.name in ("nginx+spawn-fcgi", "lighttpd"):
        assert len(pids) == 2, f"{deployment.name}: expected 2 responder processes, found {pids}"
    elif deployment.name != "apache-cgi":
        assert len(pids) == 1, f"{deployment.name}: responder not running"
    assert sorted(pids) == sorted(deployment.initial_pids), f"responders restarted: {deployment.initial_pids} -> {pids}"
    ex = deployment.client().send(deployment.path(FLOW), PING)
    assert ex.status == 200, ex.response
