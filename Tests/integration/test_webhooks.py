"""WEBHOOKS through nginx (the shipped snippet) and ``--listen unix:``: Meta's verification handshake, one
signed delivery stored once however often it is sent, and the read API behind its bearer token; on SQLite, then
the same on PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse

import pytest

from conftest import STORES, Deployment, Processes, make_deployment, make_store, sign

VERIFY_TOKEN = "verify-" + secrets.token_hex(8)
API_TOKEN = "api-" + secrets.token_hex(16)


@pytest.fixture(scope="module", params=STORES)
def hooks(request, binary, keys, app_secret, tmp_path_factory):
    processes = Processes()
    try:
        workdir = tmp_path_factory.mktemp("webhooks")
        store = make_store(request.param, workdir, request)
        dep = make_deployment("nginx+listen-unix", binary, keys, app_secret, workdir, processes,
                              VERIFY_TOKEN=VERIFY_TOKEN, API_TOKEN=API_TOKEN, DATABASE_URL=store.database_url)
        probe = dep.request("GET", "/webhook?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1")
        if probe.status == 404:
            pytest.skip("the binary does not serve .../webhook yet (404)")
        yield dep
    finally:
        processes.stop_all()


def handshake(dep: Deployment, token: str, challenge: str = "1158201444"):
    query = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge})
    return dep.request("GET", "/webhook?" + query)


def test_verification_handshake(hooks: Deployment):
    ok = handshake(hooks, VERIFY_TOKEN, "challenge 42+x")
    assert ok.status == 200, (ok.body, hooks.logs())
    assert ok.body == b"challenge 42+x"
    assert handshake(hooks, "wrong").status == 403
    refused = hooks.request("PUT", "/webhook", b"{}")
    assert refused.status == 405
    assert refused.header("Allow") == "GET, POST"


def test_signed_delivery_stored_once_and_read_back(hooks: Deployment):
    wamid = "wamid.it-" + secrets.token_hex(6)
    message = {"from": "15550001234", "id": wamid, "timestamp": "1795435200", "type": "text",
               "text": {"body": "Integration hello"}}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [message]}},
        {"field": "flows", "value": {"event": "ENDPOINT_LATENCY", "flow_id": "77"}},
    ]}]}).encode()

    unsigned = hooks.request("POST", "/webhook", body, [("Content-Type", "application/json")])
    assert unsigned.status == 401
    forged = hooks.post_signed("/webhook", body, secret="not-the-secret")
    assert forged.status == 401
    assert hooks.post_signed("/webhook", b'{"entry": 1}').status == 400

    for _ in range(3):
        ok = hooks.post_signed("/webhook", body)
        assert ok.status == 200, (ok.body, hooks.logs())
        assert json.loads(ok.body) == {"received": 2}

    auth = [("Authorization", "Bearer " + API_TOKEN)]
    assert hooks.request("GET", "/messages").status == 401
    assert hooks.request("GET", "/messages", headers=[("Authorization", "Bearer wrong")]).status == 401
    listed = hooks.request("GET", "/messages?q=INTEGRATION&from=15550001234", headers=auth)
    assert listed.status == 200, listed.body
    answer = json.loads(listed.body)
    assert answer["total"] == 1
    assert [m["id"] for m in answer["data"]] == [wamid]
    assert hooks.request("GET", "/messages?limit=0", headers=auth).status == 400

    stats = json.loads(hooks.request("GET", "/stats", headers=auth).body)
    assert stats["total_messages"] == 1
    assert stats["total_flow_alerts"] == 1
    # Every served flow: the coded ones and the shipped form flows (FLOWS_DIR defaults to flows/).
    assert set(stats["flows"]) == {"appointment", "expense", "feedback", "calendar-preferences", "schedule", "budget"}

    log = (hooks.workdir / "responder.log").read_text()
    assert "ENDPOINT_LATENCY" in log
    assert "15550001234" not in log and "Integration hello" not in log
    assert API_TOKEN not in log and VERIFY_TOKEN not in log


def test_large_batch_passes_the_flows_body_cap(hooks: Deployment):
    """A webhook batch far above MAX_BODY_BYTES (64 KiB in the test config) but under WEBHOOK_MAX_BODY_BYTES is
    read whole by the FastCGI transport and stored; the same size to a flow is still 413."""
    messages = [{"from": "15550009999", "id": f"wamid.big-{i}-" + secrets.token_hex(4), "timestamp": "1795435200",
                 "type": "text", "text": {"body": "x" * 2000}} for i in range(200)]
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": messages}}]}]}).encode()
    assert len(body) > 6 * 65536
    ok = hooks.post_signed("/webhook", body)
    assert ok.status == 200, (ok.body[:300], hooks.logs())
    assert json.loads(ok.body) == {"received": 200}
    assert hooks.post_signed("/flows/expense", body).status == 413
