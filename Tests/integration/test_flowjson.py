"""The integration client's Flow JSON check (flowjson.py), which every decrypted answer goes through."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import flowjson
from flowclient import FlowCrypto, invert_iv

APPOINTMENT = next(flow for flow in flowjson.SHIPPED if flow.path.name == "appointment.json")
EXPENSE = next(flow for flow in flowjson.SHIPPED if flow.path.name == "expense.json")
TOKEN = "flowjson-token"

FIRST_SCREEN = {
    "department": [{"id": "beauty", "title": "Beauty & Personal Care"}],
    "location": [{"id": "1", "title": "King’s Cross, London"}],
    "is_location_enabled": False,
    "date": [{"id": "none", "title": "Choose a location first", "enabled": False}],
    "is_date_enabled": False,
    "time": [{"id": "none", "title": "Choose a date first", "enabled": False}],
    "is_time_enabled": False,
}
SLOT = {"department": "beauty", "location": "1", "date": "2026-03-02", "time": "11:30"}


def request(action: str, screen: str = "", data: dict | None = None) -> dict:
    return {"version": "3.0", "action": action, "flow_token": TOKEN, "screen": screen, "data": data or {}}


def without(data: dict, name: str) -> dict:
    return {k: v for k, v in data.items() if k != name}


def test_the_shipped_flows_are_found_by_distinct_screen_ids():
    assert sorted(flow.path.name for flow in flowjson.SHIPPED) == [
        "appointment.json", "budget.json", "calendar-preferences.json", "expense.json", "feedback.json",
        "schedule.json"]
    ids = [screen for flow in flowjson.SHIPPED for screen in flow.order]
    assert len(ids) == len(set(ids)) and "APPOINTMENT" in ids and "EXPENSE_FORM" in ids, ids


def test_every_navigate_payload_fills_its_targets_declaration():
    for flow in flowjson.SHIPPED:
        root = json.loads(flow.path.read_text(encoding="utf-8"))
        navigations = []
        for screen in root["screens"]:
            for action in flowjson.actions(screen["layout"]):
                if action["name"] == "navigate":
                    target = action["next"]["name"]
                    navigations.append((screen["id"], target))
                    assert set(action.get("payload", {})) == set(flow.declared[target]), (screen["id"], target)
        expected = {"appointment.json": [("APPOINTMENT", "DETAILS"), ("SUMMARY", "TERMS")]}
        assert navigations == expected.get(flow.path.name, [])


def test_error_message_is_declared_only_where_the_layout_shows_it():
    for flow in flowjson.SHIPPED:
        root = json.loads(flow.path.read_text(encoding="utf-8"))
        for screen in root["screens"]:
            shown = "${data.error_message}" in json.dumps(screen["layout"])
            assert ("error_message" in screen.get("data", {})) == shown, (flow.path.name, screen["id"])


def test_valid_answers_pass():
    assert flowjson.answer_problems(request("INIT"), {"screen": "APPOINTMENT", "data": FIRST_SCREEN}) == []
    refresh = {**FIRST_SCREEN, "error_message": "Please choose again."}
    assert flowjson.answer_problems(request("data_exchange", "APPOINTMENT", {"department": "x"}),
                                    {"screen": "APPOINTMENT", "data": refresh}) == []
    assert flowjson.answer_problems(request("BACK", "APPOINTMENT"),
                                    {"screen": "APPOINTMENT", "data": FIRST_SCREEN}) == []
    assert flowjson.answer_problems(request("data_exchange", "DETAILS"),
                                    {"screen": "DETAILS", "data": {**SLOT, "error_message": "x"}}) == []
    success = {"screen": "SUCCESS", "data": {"extension_message_response": {"params": {"flow_token": TOKEN}}}}
    assert flowjson.answer_problems(request("data_exchange", "SUMMARY"), success) == []
    assert flowjson.answer_problems(request("INIT"), {"error_msg": "expired"}) == []
    assert flowjson.answer_problems({"version": "3.0", "action": "ping"}, {"data": {"status": "active"}}) == []


WRONG = [
    ("a declared field left out", request("INIT"), {"screen": "APPOINTMENT", "data": without(FIRST_SCREEN, "time")},
     "APPOINTMENT: declared data.time is missing"),
    ("an undeclared field", request("INIT"), {"screen": "APPOINTMENT", "data": {**FIRST_SCREEN, "extra": 1}},
     "APPOINTMENT: data.extra is not declared"),
    ("error_message not a string", request("BACK", "APPOINTMENT"),
     {"screen": "APPOINTMENT", "data": {**FIRST_SCREEN, "error_message": 5}}, "data.error_message is not a string"),
    ("a wrong type inside a list", request("INIT"),
     {"screen": "APPOINTMENT", "data": {**FIRST_SCREEN, "location": [{"id": 1, "title": "x"}]}},
     "APPOINTMENT: data.location[0].id: expected string"),
    ("a boolean as a string", request("INIT"),
     {"screen": "APPOINTMENT", "data": {**FIRST_SCREEN, "is_date_enabled": "false"}}, "expected boolean"),
    ("INIT answered with a later screen", request("INIT"), {"screen": "DETAILS", "data": SLOT},
     "not the entry screen"),
    ("a screen skipped", request("data_exchange", "APPOINTMENT"), {"screen": "SUMMARY", "data": {}},
     "APPOINTMENT -> SUMMARY is neither a refresh nor an edge"),
    ("sent backwards", request("data_exchange", "SUMMARY"), {"screen": "DETAILS", "data": SLOT},
     "SUMMARY -> DETAILS is neither a refresh nor an edge"),
    ("BACK to an unrelated screen", request("BACK", "APPOINTMENT"), {"screen": "DETAILS", "data": SLOT},
     "BACK to APPOINTMENT answered with DETAILS"),
    ("DETAILS without its slot", request("data_exchange", "DETAILS"),
     {"screen": "DETAILS", "data": {"error_message": "x"}}, "DETAILS: declared data.department is missing"),
    ("SUCCESS for another token", request("data_exchange", "SUMMARY"),
     {"screen": "SUCCESS", "data": {"extension_message_response": {"params": {"flow_token": "other"}}}},
     "flow_token is not the request's flow token"),
    ("the expense form without max_date", request("INIT"),
     {"screen": "EXPENSE_FORM", "data": {"categories": [], "currency": "EUR", "amount_label": "Amount (EUR)",
                                         "amount": "", "category": "", "description": "", "date": "2026-01-01"}},
     "EXPENSE_FORM: declared data.max_date is missing"),
]


@pytest.mark.parametrize("label,sent,answer,expected", WRONG, ids=[case[0] for case in WRONG])
def test_wrong_answers_are_reported(label, sent, answer, expected):
    problems = flowjson.answer_problems(sent, answer)
    assert any(expected in problem for problem in problems), (label, problems)


def test_the_client_refuses_to_decrypt_an_answer_that_breaks_the_flow_json(keys):
    """The check runs inside RequestContext.decrypt_answer, the one way every test reads an answer."""
    context = FlowCrypto.from_file(keys.public_pem).encrypt(request("INIT"))

    def sealed(answer: dict) -> bytes:
        clear = json.dumps(answer).encode()
        return base64.b64encode(AESGCM(context.aes_key).encrypt(invert_iv(context.iv), clear, None))

    good = {"screen": "APPOINTMENT", "data": FIRST_SCREEN}
    assert context.decrypt_answer(sealed(good)) == good
    with pytest.raises(AssertionError, match="declared data.is_time_enabled is missing"):
        context.decrypt_answer(sealed({"screen": "APPOINTMENT", "data": without(FIRST_SCREEN, "is_time_enabled")}))
    # The exact clear text sent (bytes) is read the same way.
    context = FlowCrypto.from_file(keys.public_pem).encrypt(json.dumps(request("INIT")).encode())
    with pytest.raises(AssertionError, match="data.extra is not declared"):
        context.decrypt_answer(sealed({"screen": "APPOINTMENT", "data": {**FIRST_SCREEN, "extra": True}}))


def test_the_feedback_branch_follows_the_sidecar_routes():
    """FEEDBACK_FOLLOW_UP has two edges; flows/feedback.rules.json picks FEEDBACK_CONTACT only for "yes"."""
    thanks = {"screen": "FEEDBACK_THANKS", "data": {"rating": "4", "follow_up": "no"}}
    contact = {"screen": "FEEDBACK_CONTACT", "data": {}}
    for token, answer, sent, wrong in [("fj-no", thanks, "no", None), ("fj-yes", contact, "yes", None),
                                       ("fj-no-2", contact, "no", "pick FEEDBACK_THANKS"),
                                       ("fj-yes-2", thanks, "yes", "pick FEEDBACK_CONTACT")]:
        step = {"version": "3.0", "action": "data_exchange", "flow_token": token, "screen": "FEEDBACK_FOLLOW_UP",
                "data": {"follow_up": sent}}
        problems = flowjson.answer_problems(step, answer)
        assert (problems == []) if wrong is None else any(wrong in p for p in problems), (token, problems)
    # The values a token sent on earlier screens count too: a route on a value of the first screen.
    flow = next(flow for flow in flowjson.SHIPPED if flow.path.name == "feedback.json")
    flow.sidecar_routes["FEEDBACK_FOLLOW_UP"] = [{"when": {"field": "rating", "in": ["1", "2"]},
                                                 "next": "FEEDBACK_CONTACT"}, {"next": "FEEDBACK_THANKS"}]
    try:
        first = {"version": "3.0", "action": "data_exchange", "flow_token": "fj-low", "screen": "FEEDBACK_RATING",
                 "data": {"rating": "1", "comments": ""}}
        assert flowjson.answer_problems(first, {"screen": "FEEDBACK_FOLLOW_UP", "data": {}}) == []
        second = {**first, "screen": "FEEDBACK_FOLLOW_UP", "data": {"follow_up": "no"}}
        assert "FEEDBACK_FOLLOW_UP -> FEEDBACK_THANKS: the sidecar's routes pick FEEDBACK_CONTACT" in \
            flowjson.answer_problems(second, thanks)
    finally:
        flow.sidecar_routes = json.loads((flowjson.FLOWS / "feedback.rules.json").read_text())["routes"]


def test_flows_of_a_test_folder_are_checked_once_registered(tmp_path):
    root = {"version": "7.3", "data_api_version": "3.0", "routing_model": {"FJ_ONLY": []},
            "screens": [{"id": "FJ_ONLY", "terminal": True, "data": {"n": {"type": "string", "__example__": "x"}},
                         "layout": {"type": "SingleColumnLayout", "children": []}}]}
    (tmp_path / "fj-test.json").write_text(json.dumps(root))
    (tmp_path / "fj-test.rules.json").write_text("{}")  # a companion, not a flow
    init = {"version": "3.0", "action": "INIT", "flow_token": TOKEN, "screen": "", "data": {}}
    assert flowjson.answer_problems(init, {"screen": "FJ_ONLY", "data": {}}) == []  # unknown: nothing to check
    registered = flowjson.register(tmp_path)
    try:
        assert [flow.path.name for flow in registered] == ["fj-test.json"]
        assert flowjson.answer_problems(init, {"screen": "FJ_ONLY", "data": {}}) == [
            "FJ_ONLY: declared data.n is missing"]
    finally:
        flowjson.REGISTERED.remove(registered[0])
