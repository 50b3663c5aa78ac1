"""TEXT WITH U+0000 AND FLOW TOKEN LIMITS (issue 16), through nginx and spawn-fcgi with the real binary.

* Free text keeps its NUL: a booking's ``more_details`` ``"a\\u0000b"`` and a message text are stored whole
  (checked with sqlite3 and read back through the read API, which writes ``\\u0000``).
* Where a NUL makes no sense it is refused before anything is stored: a flow token (400), a webhook message id
  (the batch is 400 and stores nothing, and a later, different message ``wamid.x`` is stored), a read API query
  parameter (400 naming it), a name on DETAILS (the screen's ``error_message``).
* Flow tokens: 1,024 bytes are accepted, 1,025 bytes and 700,000 characters get 400.
"""

from __future__ import annotations

import json
import secrets
import sqlite3

import pytest

from conftest import Deployment, Processes, make_deployment
from test_appointment import CATALOG, PERSON, write_catalog

API_TOKEN = "api-" + secrets.token_hex(16)
AUTH = [("Authorization", "Bearer " + API_TOKEN)]
TOKEN_LIMIT = 1024  # README: "Flow tokens and text, for every flow"


@pytest.fixture(scope="module")
def dep(binary, keys, app_secret, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("text-integrity")
    processes = Processes()
    try:
        # A body cap above a 700,000-character token's envelope, so the token rule answers, not the body cap.
        yield make_deployment("nginx+spawn-fcgi", binary, keys, app_secret, workdir, processes,
                              API_TOKEN=API_TOKEN, APPOINTMENT_CATALOG=str(write_catalog(workdir)),
                              MAX_BODY_BYTES="2000000")
    finally:
        processes.stop_all()


def send(dep: Deployment, token: str, action: str, screen: str = "", data: dict | None = None, flow="appointment"):
    request = {"version": "3.0", "action": action, "flow_token": token, "screen": screen, "data": data or {}}
    return dep.client().send(dep.path(f"/flows/{flow}"), request)


def ok(dep: Deployment, *args, **kw) -> dict:
    exchange = send(dep, *args, **kw)
    assert exchange.status == 200, (exchange.response, dep.logs())
    return exchange.answer()


def slot_fields(dep: Deployment, token: str) -> dict:
    """INIT and the three dropdowns: the fields of DETAILS for tomorrow's first free time."""
    ok(dep, token, "INIT")
    choice = {"department": CATALOG["departments"][0]["id"], "location": CATALOG["locations"][0]["id"]}
    answer = ok(dep, token, "data_exchange", "APPOINTMENT", {"trigger": "location_selected", **choice})
    choice["date"] = answer["data"]["date"][1]["id"]  # tomorrow: the catalog is open all day, every day
    answer = ok(dep, token, "data_exchange", "APPOINTMENT", {"trigger": "date_selected", **choice})
    choice["time"] = next(t["id"] for t in answer["data"]["time"] if t.get("enabled", True))
    return {**choice, **PERSON}


def database(dep: Deployment) -> sqlite3.Connection:
    return sqlite3.connect(dep.workdir / "flows.db")


def read_api(dep: Deployment, suffix: str):
    return dep.request("GET", suffix, headers=AUTH)


def test_booking_details_with_a_nul_are_stored_whole(dep: Deployment):
    token = "nul-details-" + secrets.token_hex(4)
    fields = {**slot_fields(dep, token), "more_details": "a\u0000b"}
    summary = ok(dep, token, "data_exchange", "DETAILS", fields)
    assert summary["screen"] == "SUMMARY", summary
    done = ok(dep, token, "data_exchange", "SUMMARY", fields)
    assert done["screen"] == "SUCCESS", done
    with database(dep) as conn:
        stored = conn.execute("SELECT more_details, length(CAST(more_details AS BLOB)) FROM appointment_bookings "
                              "WHERE flow_token = ?", (token,)).fetchall()
    assert stored == [("a\u0000b", 3)]
    listed = read_api(dep, "/bookings")
    assert listed.status == 200, listed
    assert b'"more_details":"a\\u0000b"' in listed.body
    booking = next(b for b in json.loads(listed.body)["data"] if b["flow_token"] == token)
    assert booking["more_details"] == "a\u0000b"


def test_names_emails_and_phones_with_a_nul_get_the_screens_error_message(dep: Deployment):
    for field, value in [("name", "Test\u0000Customer"), ("email", "customer\u0000@example.com"),
                         ("phone", "+44 20\u00007946 0000")]:
        token = f"nul-{field}-" + secrets.token_hex(4)
        fields = {**slot_fields(dep, token), field: value}
        answer = ok(dep, token, "data_exchange", "DETAILS", fields)
        assert answer["screen"] == "DETAILS", (field, answer)
        assert answer["data"].get("error_message"), (field, answer)


def test_flow_token_with_a_nul_is_400_and_stores_nothing(dep: Deployment):
    prefix = "nul-token-" + secrets.token_hex(4)
    fields = slot_fields(dep, prefix)  # the token before it: a cut token would collide with this session
    for flow, screen, data in [("appointment", "DETAILS", fields),
                               ("expense", "EXPENSE_FORM", {"amount": "12.50", "category": "food"})]:
        exchange = send(dep, prefix + "\u0000x", "data_exchange", screen, data, flow=flow)
        assert exchange.status == 400, exchange.response
        assert exchange.response.text == "flow_token contains a NUL character (U+0000)\n"
    with database(dep) as conn:
        assert conn.execute("SELECT flow_token FROM appointment_sessions WHERE flow_token LIKE ?",
                            (prefix + "%",)).fetchall() == [(prefix,)]
        assert conn.execute("SELECT count(*) FROM expenses WHERE flow_token LIKE ?",
                            (prefix + "%",)).fetchone() == (0,)
    # The session of the token before it is untouched: DETAILS still goes on to SUMMARY.
    assert ok(dep, prefix, "data_exchange", "DETAILS", fields)["screen"] == "SUMMARY"


@pytest.mark.parametrize("flow", ["appointment", "expense"])
def test_flow_token_length_limit(dep: Deployment, flow: str):
    longest = secrets.token_hex(TOKEN_LIMIT // 2)
    assert len(longest.encode()) == TOKEN_LIMIT
    assert send(dep, longest, "INIT", flow=flow).status == 200
    for token in [longest + "x", "é" * (TOKEN_LIMIT // 2) + "x", "t" * 700_000]:
        exchange = send(dep, token, "INIT", flow=flow)
        assert exchange.status == 400, (len(token), exchange.response)
        assert exchange.response.text == f"flow_token is longer than {TOKEN_LIMIT} bytes\n"


def webhook_body(*messages: dict) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": list(messages)}}]}]}).encode()


def text_message(wamid: str, text: str) -> dict:
    return {"from": "15550004321", "id": wamid, "timestamp": "1795435200", "type": "text", "text": {"body": text}}


def test_webhook_message_id_with_a_nul_is_400_and_a_later_message_is_stored(dep: Deployment):
    wamid = "wamid.nul-" + secrets.token_hex(4)
    refused = dep.post_signed("/webhook", webhook_body(text_message(wamid + "-first", "first message"),
                                                       text_message(wamid + "\u00002", "the one with a NUL")))
    assert refused.status == 400, refused
    assert refused.text == ("malformed webhook: entry[0].changes[0].value.messages[1].id: contains a NUL character "
                            "(U+0000)\n")
    later = dep.post_signed("/webhook", webhook_body(text_message(wamid, "the later message")))
    assert later.status == 200, later
    assert json.loads(later.body) == {"received": 1}
    with database(dep) as conn:
        assert conn.execute("SELECT id, text FROM webhook_messages WHERE id LIKE ? ORDER BY id",
                            (wamid + "%",)).fetchall() == [(wamid, "the later message")]


def test_message_text_with_a_nul_is_stored_whole(dep: Deployment):
    wamid = "wamid.text-" + secrets.token_hex(4)
    assert dep.post_signed("/webhook", webhook_body(text_message(wamid, "hi\u0000there"))).status == 200
    listed = read_api(dep, "/messages?from=15550004321")
    assert listed.status == 200, listed
    assert b'"text":"hi\\u0000there"' in listed.body
    assert [m["text"] for m in json.loads(listed.body)["data"] if m["id"] == wamid] == ["hi\u0000there"]


@pytest.mark.parametrize("query,name", [("q=%00zzz", "q"), ("from=1555%00", "from"), ("limit=5&q=zz%00", "q")])
def test_read_api_parameter_with_a_nul_is_400_naming_it(dep: Deployment, query: str, name: str):
    assert dep.post_signed("/webhook", webhook_body(text_message("wamid.q-" + secrets.token_hex(4), "hello"))
                           ).status == 200
    refused = read_api(dep, "/messages?" + query)
    assert refused.status == 400, refused
    assert json.loads(refused.body) == {"error": f"parameter '{name}' contains a NUL character (%00)"}
