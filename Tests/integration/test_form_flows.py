"""FORM FLOWS (issue 17): flows served from their Flow JSON alone, through nginx + spawn-fcgi with SQLite.

* The shipped catalog (default ``FLOWS_DIR``: the ``flows/`` folder of the source tree): feedback (both branches),
  calendar-preferences, schedule and budget walked end to end, every answer checked against its Flow JSON by the
  client (flowjson.py: every declared field, nothing undeclared but ``error_message``, transitions allowed, the
  sidecar's routes), each submission read back through ``/submissions`` and ``flows-fcgi submissions --csv``.
* A Flow JSON written here (``TEST_FLOW``, not shipped) in a temporary ``FLOWS_DIR``: every validation attribute
  rejected with a screen ``error_message`` and accepted at its boundary, walked, stored and read back.
* The guarantees of the coded flows: racing final submits from several processes store one submission, a retried
  final submit gets the same SUCCESS, a completed or expired token gets 427, a purge leaves a tombstone, an
  ``nfm_reply`` confirms a submission, ``/stats`` and ``/metrics`` list every flow; a broken Flow JSON stops startup
  (exit 78) with its file and JSON pointer, and ``flows-fcgi check`` reports it.
"""

from __future__ import annotations

import copy
import csv
import datetime
import io
import json
import re
import secrets
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import flowjson
from conftest import (STORES, Deployment, HttpResponse, Processes, clean_env, http_request, make_deployment,
                      make_store, serving_pids, sign, write_config)

API_TOKEN = "api-" + secrets.token_hex(16)
CATALOG = ("feedback", "calendar-preferences", "schedule", "budget")
CODED = ("appointment", "expense")
TEST_NAME = "it-form"
DAY = 86400

# --------------------------------------------------------------------------------------------------------
# The test's own flow: every validation attribute the engine checks, a sidecar route, checks and values
# --------------------------------------------------------------------------------------------------------


def footer(label: str, payload: dict) -> dict:
    return {"type": "Footer", "label": label, "on-click-action": {"name": "data_exchange", "payload": payload}}


def options(*ids: str, disabled: tuple[str, ...] = ()) -> list[dict]:
    return [{"id": i, "title": i.upper(), **({"enabled": False} if i in disabled else {})} for i in ids]


PROFILE = [
    {"type": "TextInput", "name": "name", "label": "Your name", "required": True, "min-chars": 2, "max-chars": 40},
    {"type": "TextInput", "name": "email", "label": "Email", "input-type": "email", "required": True},
    {"type": "TextInput", "name": "phone", "label": "Phone", "input-type": "phone", "required": False},
    {"type": "TextInput", "name": "amount", "label": "Amount", "input-type": "number", "required": False},
    {"type": "TextInput", "name": "code", "label": "Code", "pattern": "[A-Z]{2}[0-9]{4}", "required": False,
     "helper-text": "two letters, four digits"},
    {"type": "TextArea", "name": "notes", "label": "Notes", "max-length": 20, "required": False},
]
CHOICES = [
    {"type": "DatePicker", "name": "start", "label": "First day", "required": True,
     "min-date": "${data.min_date}", "max-date": "${data.max_date}"},
    {"type": "DatePicker", "name": "end", "label": "Last day", "required": True,
     "min-date": "${data.min_date}", "max-date": "${data.max_date}"},
    {"type": "DatePicker", "name": "visit", "label": "Visit", "required": False, "min-date": "2030-01-10",
     "max-date": "2030-01-20", "unavailable-dates": ["2030-01-15"]},
    {"type": "CheckboxGroup", "name": "topics", "label": "Topics", "required": True, "min-selected-items": 2,
     "max-selected-items": 3, "data-source": options("a", "b", "c", "d", "x", disabled=("x",))},
    {"type": "Dropdown", "name": "color", "label": "Color", "required": True,
     "data-source": options("red", "blue", "green")},
    {"type": "RadioButtonsGroup", "name": "size", "label": "Size", "required": True, "data-source": "${data.sizes}"},
]
CONFIRM = [
    {"type": "TextBody", "text": "${data.name}"},
    {"type": "TextBody", "text": "${data.email}"},
    {"type": "TextInput", "name": "people", "label": "People", "input-type": "number", "required": True},
    {"type": "OptIn", "name": "terms", "label": "I accept the terms", "required": True},
]
STRING = {"type": "string", "__example__": "x"}
TEST_FLOW = {
    "version": "7.0",
    "data_api_version": "3.0",
    "routing_model": {"IT_PROFILE": ["IT_CHOICES"], "IT_CHOICES": ["IT_SHADE", "IT_CONFIRM"],
                      "IT_SHADE": ["IT_CONFIRM"], "IT_CONFIRM": []},
    "screens": [
        {"id": "IT_PROFILE", "title": "Profile", "layout": {"type": "SingleColumnLayout", "children": [
            *PROFILE, footer("Continue", {c["name"]: "${form.%s}" % c["name"] for c in PROFILE})]}},
        {"id": "IT_CHOICES", "title": "Choices",
         "data": {"min_date": STRING, "max_date": STRING,
                  "sizes": {"type": "array", "items": {"type": "object", "properties": {
                      "id": {"type": "string"}, "title": {"type": "string"}}},
                      "__example__": [{"id": "s", "title": "Small"}]}},
         "layout": {"type": "SingleColumnLayout", "children": [
             *CHOICES, footer("Continue", {c["name"]: "${form.%s}" % c["name"] for c in CHOICES})]}},
        {"id": "IT_SHADE", "title": "Shade", "data": {"color": STRING},
         "layout": {"type": "SingleColumnLayout", "children": [
             {"type": "TextBody", "text": "${data.color}"},
             {"type": "TextInput", "name": "shade", "label": "Shade", "required": False, "max-chars": 10},
             footer("Continue", {"shade": "${form.shade}"})]}},
        {"id": "IT_CONFIRM", "title": "Confirm", "terminal": True, "success": True,
         "data": {"name": STRING, "email": STRING},
         "layout": {"type": "SingleColumnLayout", "children": [
             *CONFIRM, footer("Send", {"people": "${form.people}", "terms": "${form.terms}"})]}},
    ],
}
TEST_RULES = {
    "routes": {"IT_CHOICES": [{"when": {"field": "color", "in": ["red", "green"]}, "next": "IT_SHADE"},
                              {"next": "IT_CONFIRM"}]},
    "checks": [
        {"screen": "IT_CHOICES", "field": "end", "not_before": "start",
         "message": "The last day cannot be before the first day"},
        {"screen": "IT_CONFIRM", "field": "people", "min": 1, "max": 20,
         "message": "People: a whole number from 1 to 20"},
    ],
    "values": {"IT_CHOICES": {"min_date": {"today": 0}, "max_date": {"today": 60},
                              "sizes": [{"id": "s", "title": "Small"}, {"id": "l", "title": "Large"}]}},
}


def today(offset: int = 0) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=offset)).isoformat()


def valid_steps() -> dict[str, dict]:
    """A valid payload for each screen of TEST_FLOW."""
    return {
        "IT_PROFILE": {"name": "Robin Formtester", "email": "robin@example.com", "phone": "+44 20 7946 0001",
                       "amount": "12.5", "code": "AB1234", "notes": "fine"},
        "IT_CHOICES": {"start": today(1), "end": today(3), "visit": "2030-01-12", "topics": ["a", "b"],
                       "color": "blue", "size": "s"},
        "IT_SHADE": {"shade": "dark"},
        "IT_CONFIRM": {"people": "3", "terms": True},
    }


def write_flows_dir(folder: Path, flow: dict = TEST_FLOW, rules: dict | None = TEST_RULES,
                    name: str = TEST_NAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(flow, indent=2))
    if rules is not None:
        (folder / f"{name}.rules.json").write_text(json.dumps(rules, indent=2))
    (folder / "README.md").write_text("Not a flow: ignored.\n")
    return folder


# --------------------------------------------------------------------------------------------------------
# The client side of a form flow
# --------------------------------------------------------------------------------------------------------


class FormClient:
    """Drives one form flow of a deployment as WhatsApp does; every answer is checked by flowjson."""

    def __init__(self, dep: Deployment, name: str):
        self.dep, self.name, self.client = dep, name, dep.client()
        self.path = dep.path(f"/flows/{name}")

    @staticmethod
    def token() -> str:
        return "it-form-" + secrets.token_hex(8)

    def send(self, token: str, action: str, screen: str = "", data: dict | None = None) -> tuple[int, dict]:
        request = {"version": "3.0", "action": action, "flow_token": token, "screen": screen, "data": data or {}}
        exchange = self.client.send(self.path, request)
        assert exchange.status in (200, 427), (action, screen, exchange.response, self.dep.logs())
        return exchange.status, exchange.answer()

    def post(self, body: bytes, headers: list[tuple[str, str]]) -> HttpResponse:
        """One prepared (encrypted and signed) request."""
        return http_request(self.dep.address, "POST", self.path, body, headers)

    def ok(self, token: str, action: str, screen: str = "", data: dict | None = None) -> dict:
        status, answer = self.send(token, action, screen, data)
        assert status == 200, (action, screen, answer)
        return answer

    def next(self, token: str, screen: str, data: dict, expected: str) -> dict:
        """A valid step: the answer shows ``expected`` without an error message."""
        answer = self.ok(token, "data_exchange", screen, data)
        assert answer["screen"] == expected and "error_message" not in answer["data"], (screen, answer)
        return answer

    def refused(self, token: str, screen: str, data: dict) -> str:
        """An invalid step: the same screen again with every declared field and an error message; returns it."""
        answer = self.ok(token, "data_exchange", screen, data)
        assert answer["screen"] == screen, (screen, data, answer)
        message = answer["data"].get("error_message")
        assert isinstance(message, str) and message, answer
        return message


def success_params(answer: dict) -> dict:
    assert answer.get("screen") == "SUCCESS", answer
    return answer["data"]["extension_message_response"]["params"]


def submissions(dep: Deployment, query: str) -> dict:
    r = dep.request("GET", "/submissions?" + query, headers=[("Authorization", "Bearer " + API_TOKEN)])
    assert r.status == 200, (query, r)
    return json.loads(r.body)


def submission_of(dep: Deployment, name: str, token: str) -> dict | None:
    """The submission of ``token`` in ``/submissions?flow=name``, paged through; None when there is none."""
    found, offset, total = [], 0, 1
    while offset < total:
        page = submissions(dep, f"flow={name}&limit=100&offset={offset}")
        found += [s for s in page["data"] if s["flow_token"] == token]
        offset, total = offset + 100, page["total"]
    assert len(found) <= 1, found
    return found[0] if found else None


def cli(binary: Path, dep: Deployment, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args, "--config", str(dep.workdir / "flows.env")], capture_output=True,
                          text=True, env=clean_env(), timeout=30)


def csv_rows(binary: Path, dep: Deployment, name: str) -> list[dict]:
    out = cli(binary, dep, "submissions", "--flow", name, "--csv")
    assert out.returncode == 0, out
    return list(csv.DictReader(io.StringIO(out.stdout)))


def check_read_back(binary: Path, dep: Deployment, name: str, token: str, params: dict, sent: dict) -> dict:
    """The submission of ``token`` through /submissions (every value sent, as sent) and the CSV export."""
    assert params["flow"] == name and params["flow_token"] == token, params
    stored = submission_of(dep, name, token)
    assert stored is not None, (name, token)
    assert str(stored["id"]) == str(params["submission_id"]) and stored["flow"] == name, stored
    assert isinstance(stored["created_at"], (int, str)) and stored["created_at"], stored
    for key, value in sent.items():
        assert stored["values"].get(key) == value, (key, stored["values"])
    rows = [row for row in csv_rows(binary, dep, name) if row.get("flow_token") == token]
    assert len(rows) == 1, rows
    assert rows[0]["id"] == str(params["submission_id"]) and rows[0]["created_at"] == stored["created_at"], rows[0]
    for key, value in sent.items():
        cell = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        # A cell starting with = + - @ gets a leading ' (spreadsheet formula guard).
        assert rows[0][key] in (cell, "'" + cell), (key, rows[0])
    return stored


# --------------------------------------------------------------------------------------------------------
# Deployments
# --------------------------------------------------------------------------------------------------------


def start(binary, keys, app_secret, workdir: Path, processes: Processes, children: int = 2, **extra) -> Deployment:
    dep = make_deployment("nginx+spawn-fcgi", binary, keys, app_secret, workdir, processes, children=children,
                          API_TOKEN=API_TOKEN, LOG_LEVEL="info", **extra)
    probe = dep.client().send(dep.path("/flows/feedback" if "FLOWS_DIR" not in extra else f"/flows/{TEST_NAME}"),
                              {"version": "3.0", "action": "ping"})
    if probe.status == 404:
        pytest.skip("the binary does not serve form flows yet (ping got 404)")
    assert probe.status == 200, (probe.response, dep.logs())
    return dep


@pytest.fixture(scope="module")
def shipped(binary, keys, app_secret, tmp_path_factory):
    """The shipped catalog: FLOWS_DIR left at its default (the source tree's flows/)."""
    processes = Processes()
    try:
        yield start(binary, keys, app_secret, tmp_path_factory.mktemp("forms-shipped"), processes)
    finally:
        processes.stop_all()


@pytest.fixture(scope="module", params=STORES)
def custom(request, binary, keys, app_secret, tmp_path_factory):
    """TEST_FLOW alone in a temporary FLOWS_DIR, four spawn-fcgi processes; no automatic purge (RETENTION_DAYS 0);
    on SQLite, then on PostgreSQL (``dep.store``)."""
    workdir = tmp_path_factory.mktemp("forms-custom")
    folder = write_flows_dir(workdir / "flows")
    registered = flowjson.register(folder)
    processes = Processes()
    try:
        store = make_store(request.param, workdir, request)
        dep = start(binary, keys, app_secret, workdir, processes, children=4, FLOWS_DIR=str(folder),
                    RETENTION_DAYS="0", DATABASE_URL=store.database_url)
        dep.store = store
        yield dep
    finally:
        processes.stop_all()
        for flow in registered:
            flowjson.REGISTERED.remove(flow)


def walk_test_flow(form: FormClient, token: str, steps: dict, until: str | None = None) -> dict:
    """TEST_FLOW from INIT to ``until`` (shown, not submitted) or to the end; returns the last answer."""
    answer = form.ok(token, "INIT")
    assert answer["screen"] == "IT_PROFILE" and answer["data"] == {}, answer
    order = ["IT_PROFILE", "IT_CHOICES"] + (["IT_SHADE"] if steps["IT_CHOICES"]["color"] != "blue" else [])
    order.append("IT_CONFIRM")
    for screen, following in zip(order, order[1:] + ["SUCCESS"]):
        if screen == until:
            return answer
        if following == "SUCCESS":
            return form.ok(token, "data_exchange", screen, steps[screen])
        answer = form.next(token, screen, steps[screen], following)
    return answer


# --------------------------------------------------------------------------------------------------------
# The shipped catalog, end to end
# --------------------------------------------------------------------------------------------------------


def test_the_test_flow_passes_metas_rules_and_the_engines():
    """The test's own flow is a valid form flow by the client's static checks (so the endpoint must serve it)."""
    assert flowjson.static_problems(TEST_FLOW) == []
    assert flowjson.sidecar_problems(TEST_FLOW, TEST_RULES) == []


@pytest.mark.parametrize("follow_up", ["yes", "no"])
def test_feedback_walked_on_both_branches(shipped, binary, follow_up):
    form, token = FormClient(shipped, "feedback"), FormClient.token()
    assert form.ok(token, "INIT")["screen"] == "FEEDBACK_RATING"
    rating = {"rating": "4", "comments": f"Quick and friendly ({follow_up})"}
    assert form.refused(token, "FEEDBACK_RATING", {**rating, "rating": "9"}) == \
        "Your overall rating: choose one of the listed options."
    form.next(token, "FEEDBACK_RATING", rating, "FEEDBACK_FOLLOW_UP")
    sent = {**rating, "follow_up": follow_up}
    if follow_up == "yes":
        form.next(token, "FEEDBACK_FOLLOW_UP", {"follow_up": "yes"}, "FEEDBACK_CONTACT")
        contact = {"contact_name": "Kim Formtester", "contact_channel": "call", "contact_time": "evening"}
        assert "Best time of day" in form.refused(token, "FEEDBACK_CONTACT", {**contact, "contact_time": "night"})
        thanks = form.next(token, "FEEDBACK_CONTACT", contact, "FEEDBACK_THANKS")
        sent.update(contact)
    else:
        thanks = form.next(token, "FEEDBACK_FOLLOW_UP", {"follow_up": "no"}, "FEEDBACK_THANKS")
    assert thanks["data"] == {"rating": "4", "follow_up": follow_up}, thanks
    params = success_params(form.ok(token, "data_exchange", "FEEDBACK_THANKS", {}))
    stored = check_read_back(binary, shipped, "feedback", token, params, sent)
    if follow_up == "no":
        assert "contact_name" not in stored["values"], stored
    # The completed token: 427 for anything but the identical retry.
    assert form.send(token, "INIT")[0] == 427
    assert success_params(form.ok(token, "data_exchange", "FEEDBACK_THANKS", {})) == params


def test_calendar_preferences_walked(shipped, binary):
    form, token = FormClient(shipped, "calendar-preferences"), FormClient.token()
    assert form.ok(token, "INIT")["screen"] == "CALENDAR_PREFERENCES"
    prefs = {"notify_channels": ["whatsapp", "email"], "reminder": "1_hour", "daily_agenda": True,
             "time_zone": "Europe/Lisbon"}
    assert form.refused(token, "CALENDAR_PREFERENCES", {**prefs, "notify_channels": []}) == \
        "Notify me by: choose at least 1 option."
    assert form.refused(token, "CALENDAR_PREFERENCES", {**prefs, "time_zone": "Mars/Olympus"}) == \
        "Time zone: choose one of the listed options."
    confirm = form.next(token, "CALENDAR_PREFERENCES", prefs, "CALENDAR_CONFIRM")
    assert confirm["data"] == {"reminder": "1_hour", "time_zone": "Europe/Lisbon"}, confirm
    params = success_params(form.ok(token, "data_exchange", "CALENDAR_CONFIRM", {}))
    check_read_back(binary, shipped, "calendar-preferences", token, params, prefs)


def test_schedule_walked_with_its_computed_dates_and_checks(shipped, binary):
    form, token = FormClient(shipped, "schedule"), FormClient.token()
    dates = form.ok(token, "INIT")
    assert dates["screen"] == "SCHEDULE_DATES"
    assert dates["data"] == {"min_date": today(0), "max_date": today(365)}, dates
    assert form.refused(token, "SCHEDULE_DATES", {"start_date": today(-1), "end_date": today(2)}) == \
        f"First day cannot be before {today(0)}."
    assert form.refused(token, "SCHEDULE_DATES", {"start_date": today(0), "end_date": today(366)}) == \
        f"Last day cannot be after {today(365)}."
    assert form.refused(token, "SCHEDULE_DATES", {"start_date": today(5), "end_date": today(4)}) == \
        "The last day cannot be before the first day"
    chosen = {"start_date": today(0), "end_date": today(0)}  # a one-day range on the first allowed day
    days = form.next(token, "SCHEDULE_DATES", chosen, "SCHEDULE_DAYS")
    assert days["data"] == chosen, days
    form.next(token, "SCHEDULE_DAYS", {"days": ["mon", "fri"]}, "SCHEDULE_TIMES")
    form.next(token, "SCHEDULE_TIMES", {"time_of_day": "morning", "duration": "90"}, "SCHEDULE_DETAILS")
    details = {"place": "online", "people": "20", "notes": "Bring the slides"}
    assert form.refused(token, "SCHEDULE_DETAILS", {**details, "people": "21"}) == \
        "Number of people: a whole number from 1 to 20"
    summary = form.next(token, "SCHEDULE_DETAILS", details, "SCHEDULE_SUMMARY")
    assert summary["data"] == {**chosen, "time_of_day": "morning", "duration": "90", "place": "online"}, summary
    params = success_params(form.ok(token, "data_exchange", "SCHEDULE_SUMMARY", {}))
    check_read_back(binary, shipped, "schedule", token, params,
                    {**chosen, "days": ["mon", "fri"], "time_of_day": "morning", "duration": "90", **details})


def test_budget_walked(shipped, binary):
    form, token = FormClient(shipped, "budget"), FormClient.token()
    assert form.ok(token, "INIT")["screen"] == "BUDGET_BASICS"
    basics = {"period": "monthly", "currency": "CHF", "categories": ["housing", "groceries"]}
    limits_screen = form.next(token, "BUDGET_BASICS", basics, "BUDGET_LIMITS")
    assert limits_screen["data"] == {"currency": "CHF"}, limits_screen
    limits = {"limit_housing": "1500", "limit_groceries": "400", "limit_transport": "", "limit_leisure": "",
              "limit_other": ""}
    assert form.refused(token, "BUDGET_LIMITS", {**limits, "limit_housing": "15.5"}) == \
        "Housing is not in the expected format (Whole amount per period; empty if you do not track it)."
    assert form.refused(token, "BUDGET_LIMITS", {**limits, "limit_groceries": "12345678"}) == \
        "Groceries can have at most 7 characters."
    form.next(token, "BUDGET_LIMITS", limits, "BUDGET_ALERTS")
    alerts = {"warn_percent": "80", "over_limit_alert": True}
    assert form.refused(token, "BUDGET_ALERTS", {**alerts, "warn_percent": "101"}) == \
        "Warn at: a whole number from 1 to 100"
    params = success_params(form.ok(token, "data_exchange", "BUDGET_ALERTS", alerts))
    check_read_back(binary, shipped, "budget", token, params, {**basics, **alerts, "limit_housing": "1500"})


# --------------------------------------------------------------------------------------------------------
# A flow written here, served from a temporary FLOWS_DIR: every validation attribute at its boundary
# --------------------------------------------------------------------------------------------------------

# (label, screen, changes to the valid payload (a callable: dates move with today), the error_message or None when
# the step is accepted). A change to None leaves the key out.
CASES = [
    ("max-chars 40 accepted", "IT_PROFILE", lambda: {"name": "a" * 40}, None),
    ("max-chars 41 refused", "IT_PROFILE", lambda: {"name": "a" * 41}, "Your name can have at most 40 characters."),
    ("max-chars counts characters, not bytes", "IT_PROFILE", lambda: {"name": "é" * 40}, None),
    ("min-chars 2 accepted", "IT_PROFILE", lambda: {"name": "ab"}, None),
    ("min-chars 1 refused", "IT_PROFILE", lambda: {"name": "a"}, "Your name needs at least 2 characters."),
    ("text is trimmed before counting", "IT_PROFILE", lambda: {"name": "  a  "},
     "Your name needs at least 2 characters."),
    ("required: empty", "IT_PROFILE", lambda: {"name": ""}, "Your name is required."),
    ("required: left out", "IT_PROFILE", lambda: {"name": None}, "Your name is required."),
    ("required: spaces", "IT_PROFILE", lambda: {"email": "   "}, "Email is required."),
    ("email refused", "IT_PROFILE", lambda: {"email": "robin@"},
     "Email must be an email address, like name@example.com."),
    ("phone refused", "IT_PROFILE", lambda: {"phone": "12ab"},
     "Phone must be a phone number: 7 to 15 digits, optionally starting with +."),
    ("phone 7 digits accepted", "IT_PROFILE", lambda: {"phone": "+1234567"}, None),
    ("phone 6 digits refused", "IT_PROFILE", lambda: {"phone": "123456"},
     "Phone must be a phone number: 7 to 15 digits, optionally starting with +."),
    ("phone 15 digits accepted", "IT_PROFILE", lambda: {"phone": "123456789012345"}, None),
    ("phone 16 digits refused", "IT_PROFILE", lambda: {"phone": "1234567890123456"},
     "Phone must be a phone number: 7 to 15 digits, optionally starting with +."),
    ("optional phone empty accepted", "IT_PROFILE", lambda: {"phone": ""}, None),
    ("number refused", "IT_PROFILE", lambda: {"amount": "12.5.1"}, "Amount must be a number, like 12 or 12.5."),
    ("number with a decimal comma accepted", "IT_PROFILE", lambda: {"amount": "-3,25"}, None),
    ("pattern accepted", "IT_PROFILE", lambda: {"code": "ZZ0000"}, None),
    ("pattern refused: too long", "IT_PROFILE", lambda: {"code": "AB12345"},
     "Code is not in the expected format (two letters, four digits)."),
    ("pattern refused: lower case", "IT_PROFILE", lambda: {"code": "ab1234"},
     "Code is not in the expected format (two letters, four digits)."),
    ("max-length 20 accepted", "IT_PROFILE", lambda: {"notes": "x" * 20}, None),
    ("max-length 21 refused", "IT_PROFILE", lambda: {"notes": "x" * 21}, "Notes can have at most 20 characters."),
    ("a key the Footer does not send", "IT_PROFILE", lambda: {"admin": True},
     "Something went wrong: this screen sent a field it does not have (admin). Please try again."),
    ("min-date (sidecar today) accepted", "IT_CHOICES", lambda: {"start": today(0), "end": today(0)}, None),
    ("min-date (sidecar today) refused", "IT_CHOICES", lambda: {"start": today(-1)},
     f"First day cannot be before {today(0)}."),
    ("max-date (sidecar today + 60) accepted", "IT_CHOICES", lambda: {"end": today(60)}, None),
    ("max-date (sidecar today + 60) refused", "IT_CHOICES", lambda: {"end": today(61)},
     f"Last day cannot be after {today(60)}."),
    ("literal min-date accepted", "IT_CHOICES", lambda: {"visit": "2030-01-10"}, None),
    ("literal min-date refused", "IT_CHOICES", lambda: {"visit": "2030-01-09"}, "Visit cannot be before 2030-01-10."),
    ("literal max-date accepted", "IT_CHOICES", lambda: {"visit": "2030-01-20"}, None),
    ("literal max-date refused", "IT_CHOICES", lambda: {"visit": "2030-01-21"}, "Visit cannot be after 2030-01-20."),
    ("unavailable-dates refused", "IT_CHOICES", lambda: {"visit": "2030-01-15"},
     "Visit: that date is not available. Please pick another one."),
    ("not a calendar date", "IT_CHOICES", lambda: {"visit": "2030-02-30"},
     "Visit must be a date picked from the calendar."),
    ("sidecar not_before refused", "IT_CHOICES", lambda: {"start": today(5), "end": today(4)},
     "The last day cannot be before the first day"),
    ("sidecar not_before: the same day accepted", "IT_CHOICES", lambda: {"start": today(4), "end": today(4)}, None),
    ("min-selected-items 2 accepted", "IT_CHOICES", lambda: {"topics": ["c", "d"]}, None),
    ("min-selected-items refused", "IT_CHOICES", lambda: {"topics": ["a"]}, "Topics: choose at least 2 options."),
    ("max-selected-items 3 accepted", "IT_CHOICES", lambda: {"topics": ["a", "b", "c"]}, None),
    ("max-selected-items refused", "IT_CHOICES", lambda: {"topics": ["a", "b", "c", "d"]},
     "Topics: choose at most 3 options."),
    ("a checkbox id not listed", "IT_CHOICES", lambda: {"topics": ["a", "zz"]},
     "Topics: choose among the listed options."),
    ("a disabled checkbox option", "IT_CHOICES", lambda: {"topics": ["a", "x"]},
     "Topics: choose among the listed options."),
    ("a dropdown id not listed", "IT_CHOICES", lambda: {"color": "purple"},
     "Color: choose one of the listed options."),
    ("a required dropdown empty", "IT_CHOICES", lambda: {"color": ""}, "Color is required: choose an option."),
    ("a radio id not in the sidecar's list", "IT_CHOICES", lambda: {"size": "xl"},
     "Size: choose one of the listed options."),
    ("a radio id of the sidecar's list", "IT_CHOICES", lambda: {"size": "l"}, None),
    ("OptIn required: not ticked", "IT_CONFIRM", lambda: {"terms": False},
     "I accept the terms: this must be ticked to continue."),
    ("OptIn required: left out", "IT_CONFIRM", lambda: {"terms": None},
     "I accept the terms: this must be ticked to continue."),
    ("sidecar max 20 accepted", "IT_CONFIRM", lambda: {"people": "20"}, None),
    ("sidecar max refused", "IT_CONFIRM", lambda: {"people": "21"}, "People: a whole number from 1 to 20"),
    ("sidecar min 1 accepted", "IT_CONFIRM", lambda: {"people": "1"}, None),
    ("sidecar min refused", "IT_CONFIRM", lambda: {"people": "0"}, "People: a whole number from 1 to 20"),
    ("a number sent as a JSON number", "IT_CONFIRM", lambda: {"people": 7}, None),
    ("not a number", "IT_CONFIRM", lambda: {"people": "many"}, "People must be a number, like 12 or 12.5."),
]


@pytest.mark.parametrize("label,screen,changes,expected", CASES, ids=[case[0] for case in CASES])
def test_each_validation_attribute_at_its_boundary(custom, label, screen, changes, expected):
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    walk_test_flow(form, token, steps, until=screen)
    payload = {**steps[screen], **changes()}
    payload = {key: value for key, value in payload.items() if value is not None}
    if expected is not None:
        assert form.refused(token, screen, payload) == expected, label
        # Refused: nothing moved on; the valid payload is still accepted on the same screen.
        payload = steps[screen]
    answer = form.ok(token, "data_exchange", screen, payload)
    assert answer["screen"] != screen and "error_message" not in answer["data"], (label, answer)
    if screen == "IT_CONFIRM":
        assert submission_of(custom, TEST_NAME, token)["values"]["people"] == str(payload["people"]), label


@pytest.mark.parametrize("color,route", [("blue", ["IT_CONFIRM"]), ("green", ["IT_SHADE", "IT_CONFIRM"])])
def test_the_test_flow_walked_stored_and_read_back(custom, binary, color, route):
    """Served with no code change: walked along both sidecar routes, stored, read back (API and CSV)."""
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    steps["IT_CHOICES"]["color"] = color
    assert form.ok(token, "INIT")["screen"] == "IT_PROFILE"
    choices = form.next(token, "IT_PROFILE", steps["IT_PROFILE"], "IT_CHOICES")
    assert choices["data"] == {"min_date": today(0), "max_date": today(60),
                               "sizes": TEST_RULES["values"]["IT_CHOICES"]["sizes"]}, choices
    answer = form.next(token, "IT_CHOICES", steps["IT_CHOICES"], route[0])
    if route[0] == "IT_SHADE":
        assert answer["data"] == {"color": color}, answer
        answer = form.next(token, "IT_SHADE", steps["IT_SHADE"], "IT_CONFIRM")
    # The summary shows what was typed on the first screen, under the same names.
    assert answer["data"] == {"name": "Robin Formtester", "email": "robin@example.com"}, answer
    params = success_params(form.ok(token, "data_exchange", "IT_CONFIRM", steps["IT_CONFIRM"]))
    sent = {**steps["IT_PROFILE"], **steps["IT_CHOICES"], **steps["IT_CONFIRM"]}
    if color != "blue":
        sent.update(steps["IT_SHADE"])
    stored = check_read_back(binary, custom, TEST_NAME, token, params, sent)
    assert set(stored["values"]) == set(sent), stored["values"]


def test_a_screen_the_token_never_reached_is_not_submitted(custom):
    """The endpoint does not trust the client to have walked the screens: a submit of the terminal screen by a token
    that never reached it (skipping every required field before it) completes nothing. The answer must still be
    one the phone accepts (shared spec, section 3: the endpoint never sends the user backwards): 427, or that
    screen again with an error_message. Not the entry screen: flowjson rejects that transition."""
    form = FormClient(custom, TEST_NAME)
    fresh, started = FormClient.token(), FormClient.token()
    form.ok(started, "INIT")
    form.next(started, "IT_PROFILE", valid_steps()["IT_PROFILE"], "IT_CHOICES")
    for token in (fresh, started):
        status, answer = form.send(token, "data_exchange", "IT_CONFIRM", valid_steps()["IT_CONFIRM"])
        if status == 200:
            assert answer["screen"] == "IT_CONFIRM" and answer["data"].get("error_message"), answer
        assert submission_of(custom, TEST_NAME, token) is None
    # The token that stopped on IT_CHOICES goes on from there.
    form.next(started, "IT_CHOICES", valid_steps()["IT_CHOICES"], "IT_CONFIRM")
    success_params(form.ok(started, "data_exchange", "IT_CONFIRM", valid_steps()["IT_CONFIRM"]))


# --------------------------------------------------------------------------------------------------------
# Once and only once: racing final submits, retries, completed, expired and purged tokens
# --------------------------------------------------------------------------------------------------------


def stored_rows(dep: Deployment, token: str) -> list[tuple]:
    return dep.store.rows("SELECT id, flow, values_json FROM form_submissions WHERE flow_token = ?", (token,))


def test_racing_final_submits_store_one_submission(custom):
    """24 final submits of one token at once through four spawn-fcgi processes, half of them with another value:
    one submission is stored; every SUCCESS is the same one, for the payload stored; the other payload gets 427."""
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    walk_test_flow(form, token, steps, until="IT_CONFIRM")
    payloads = [{"people": "3", "terms": True}, {"people": "4", "terms": True}]
    racers = 24
    prepared = []
    for i in range(racers):
        request = {"version": "3.0", "action": "data_exchange", "flow_token": token, "screen": "IT_CONFIRM",
                   "data": payloads[i % 2]}
        context = form.client.crypto.encrypt(request)
        prepared.append((i % 2, context, [("Content-Type", "application/json"),
                                           ("X-Hub-Signature-256", sign(custom.app_secret, context.body))]))
    barrier = threading.Barrier(racers)
    log = custom.workdir / "responder.log"
    since = log.stat().st_size

    def submit(item):
        group, context, headers = item
        barrier.wait()
        response = form.post(context.body, headers)
        return group, response.status, context.decrypt_answer(response.body)

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(submit, prepared))
    assert {status for _, status, _ in results} <= {200, 427}, results
    winners = [(group, success_params(answer)) for group, status, answer in results if status == 200]
    assert winners and len({json.dumps(params, sort_keys=True) for _, params in winners}) == 1, winners
    won = {group for group, _ in winners}
    assert len(won) == 1, results  # only the stored payload's submits got SUCCESS
    losers = [(group, answer) for group, status, answer in results if status == 427]
    assert all(group not in won for group, _ in losers), results
    assert all(isinstance(answer.get("error_msg"), str) and answer["error_msg"] for _, answer in losers), losers
    rows = stored_rows(custom, token)
    assert len(rows) == 1 and str(rows[0][0]) == str(winners[0][1]["submission_id"]), rows
    assert json.loads(rows[0][2])["people"] == payloads[won.pop()]["people"], rows
    served = serving_pids(log, since, "IT_CONFIRM")
    assert len(served) >= 2, f"only {served} served the racing submits"

    # A retried identical final submit (a lost SUCCESS) gets the same SUCCESS; nothing more is stored.
    group = winners[0][0]
    again = form.ok(token, "data_exchange", "IT_CONFIRM", payloads[group])
    assert success_params(again) == winners[0][1]
    assert form.send(token, "data_exchange", "IT_CONFIRM", payloads[1 - group])[0] == 427
    assert len(stored_rows(custom, token)) == 1


def test_a_completed_token_gets_427_for_anything_else(custom):
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    params = success_params(walk_test_flow(form, token, steps))
    for action, screen, data in [("INIT", "", {}), ("BACK", "IT_CONFIRM", {}),
                                 ("data_exchange", "IT_PROFILE", steps["IT_PROFILE"]),
                                 ("data_exchange", "IT_CONFIRM", {**steps["IT_CONFIRM"], "people": "5"})]:
        status, answer = form.send(token, action, screen, data)
        assert status == 427 and isinstance(answer.get("error_msg"), str), (action, screen, answer)
    assert success_params(form.ok(token, "data_exchange", "IT_CONFIRM", steps["IT_CONFIRM"])) == params
    assert len(stored_rows(custom, token)) == 1


def age(dep: Deployment, token: str, seconds: int) -> None:
    """Moves a token's session and submission ``seconds`` into the past."""
    for table, columns in (("form_sessions", ("created_at", "updated_at")), ("form_submissions", ("created_at",))):
        for column in columns:
            dep.store.rows(f"UPDATE {table} SET {column} = {column} - ? WHERE flow_token = ?", (seconds, token))


def test_an_expired_token_gets_427(custom):
    """FORM_SESSION_HOURS (24 by default) after its first saved step a token is no longer valid."""
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    walk_test_flow(form, token, steps, until="IT_CONFIRM")
    age(custom, token, 25 * 3600)
    status, answer = form.send(token, "data_exchange", "IT_CONFIRM", steps["IT_CONFIRM"])
    assert status == 427 and answer.get("error_msg"), answer
    assert form.send(token, "INIT")[0] == 427
    assert stored_rows(custom, token) == []
    # A token 23 hours old is still served.
    fresh = FormClient.token()
    walk_test_flow(form, fresh, steps, until="IT_CONFIRM")
    age(custom, fresh, 23 * 3600)
    success_params(form.ok(fresh, "data_exchange", "IT_CONFIRM", steps["IT_CONFIRM"]))


def test_purge_removes_submitted_values_and_the_token_stays_refused(custom, binary):
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    steps = valid_steps()
    steps["IT_PROFILE"]["name"] = "Purgeable Person " + secrets.token_hex(3)
    params = success_params(walk_test_flow(form, token, steps))
    recent = FormClient.token()
    recent_params = success_params(walk_test_flow(form, recent, valid_steps()))
    age(custom, token, 100 * DAY)

    dry = cli(binary, custom, "purge", "--days", "30", "--dry-run")
    assert dry.returncode == 0 and "form_submissions" in dry.stdout, dry
    assert submission_of(custom, TEST_NAME, token) is not None
    done = cli(binary, custom, "purge", "--days", "30")
    assert done.returncode == 0, done
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("  form_")]
    assert [(words[0], words[-1]) for words in lines if TEST_NAME in words] == [
        ("form_submissions", "1"), ("form_sessions", "1")], done.stdout
    assert steps["IT_PROFILE"]["name"] not in done.stdout + done.stderr

    # The values are gone from the read API and from every table; the recent submission is untouched.
    left = submission_of(custom, TEST_NAME, token)
    assert left is None or not left["values"], left
    for table in custom.store.tables():
        for row in custom.store.rows(f"SELECT * FROM \"{table}\""):
            assert steps["IT_PROFILE"]["name"] not in json.dumps(row, default=str), (table, row)
    assert submission_of(custom, TEST_NAME, recent)["id"] == recent_params["submission_id"]
    # The old token still gets 427, never a new start, and nothing is stored again.
    for action, screen, data in [("INIT", "", {}), ("data_exchange", "IT_CONFIRM", steps["IT_CONFIRM"]),
                                 ("data_exchange", "IT_PROFILE", steps["IT_PROFILE"])]:
        assert form.send(token, action, screen, data)[0] == 427, (action, screen)
    left = submission_of(custom, TEST_NAME, token)
    assert left is None or (not left["values"] and str(left["id"]) == str(params["submission_id"])), left


# --------------------------------------------------------------------------------------------------------
# Webhook confirmation, statistics, metrics, the read API's parameters
# --------------------------------------------------------------------------------------------------------


def nfm_reply(params: dict, message_id: str) -> bytes:
    """The webhook WhatsApp sends when the user finishes a flow: its response_json carries the SUCCESS params."""
    message = {"from": "15550004321", "id": message_id, "timestamp": "1795435200", "type": "interactive",
               "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                                  "response_json": json.dumps(params)}}}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [message]}}]}]}).encode()


def stats(dep: Deployment) -> dict:
    r = dep.request("GET", "/stats", headers=[("Authorization", "Bearer " + API_TOKEN)])
    assert r.status == 200, r
    return json.loads(r.body)


def test_nfm_reply_confirms_the_submission(custom):
    form, token = FormClient(custom, TEST_NAME), FormClient.token()
    params = success_params(walk_test_flow(form, token, valid_steps()))
    before = stats(custom)["flows"][TEST_NAME]
    assert before["completed"] >= 1, before
    message_id = "wamid.form-" + secrets.token_hex(6)
    body = nfm_reply(params, message_id)
    for _ in range(2):  # redelivered: stored and confirmed once
        r = custom.post_signed("/webhook", body)
        assert r.status == 200, (r, custom.logs())
    r = custom.request("GET", "/messages?from=15550004321&limit=100",
                       headers=[("Authorization", "Bearer " + API_TOKEN)])
    assert r.status == 200 and [m["id"] for m in json.loads(r.body)["data"]].count(message_id) == 1, r
    after = stats(custom)["flows"][TEST_NAME]
    assert after["confirmed"] == before["confirmed"] + 1, (before, after)
    assert after["completed"] == before["completed"], (before, after)
    confirmed = custom.store.rows("SELECT confirmed_at FROM form_submissions WHERE flow_token = ?", (token,))
    assert confirmed and confirmed[0][0], confirmed
    assert submission_of(custom, TEST_NAME, token)["confirmed"] is True
    # A token no flow holds is stored as a message and confirms nothing.
    other = nfm_reply({"flow_token": FormClient.token(), "flow": TEST_NAME}, "wamid.form-" + secrets.token_hex(6))
    assert custom.post_signed("/webhook", other).status == 200
    assert stats(custom)["flows"][TEST_NAME]["confirmed"] == after["confirmed"]


def test_stats_and_metrics_list_every_flow(shipped, custom):
    form, token = FormClient(shipped, "budget"), FormClient.token()
    form.ok(token, "INIT")
    form.next(token, "BUDGET_BASICS", {"period": "weekly", "currency": "EUR", "categories": ["other"]},
              "BUDGET_LIMITS")
    listed = stats(shipped)["flows"]
    assert set(listed) == set(CATALOG) | set(CODED), listed
    for name in CATALOG:
        assert set(listed[name]) >= {"started", "completed", "confirmed"}, listed[name]
    assert listed["budget"]["started"] >= 1, listed["budget"]
    assert set(stats(custom)["flows"]) == {TEST_NAME} | set(CODED)

    r = shipped.request("GET", "/metrics", headers=[("Authorization", "Bearer " + API_TOKEN)])
    assert r.status == 200, r
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    for name in CATALOG:
        assert samples[f'flows_submissions_total{{flow="{name}"}}'] == len(
            submissions(shipped, f"flow={name}&limit=100")["data"]), name
    assert exposition_problems(r.text) == [], r.text


def exposition_problems(text: str) -> list[str]:
    """Where ``text`` breaks the Prometheus text format (0.0.4) as its parser reads it: HELP and TYPE name a metric
    family (no labels), once each, before the family's samples, which stand together."""
    problems, typed, current = [], set(), None
    name = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            family = line.split(" ")[2]
            if not name.fullmatch(family):
                problems.append(f"{line[:7]}names {family}, not a metric family")
            elif line.startswith("# TYPE "):
                if family in typed:
                    problems.append(f"a second TYPE line for {family}")
                typed.add(family)
                current = family
        elif line and not line.startswith("#"):
            family = re.sub(r"_(bucket|sum|count)$", "", name.match(line).group(0))
            if family != current and name.match(line).group(0) != current:
                problems.append(f"{line}: its family {family} is not the one typed last ({current})")
    return problems


def test_the_submissions_read_api(custom, binary):
    form = FormClient(custom, TEST_NAME)
    tokens = [FormClient.token() for _ in range(3)]
    for token in tokens:
        success_params(walk_test_flow(form, token, valid_steps()))
    auth = [("Authorization", "Bearer " + API_TOKEN)]
    assert custom.request("GET", f"/submissions?flow={TEST_NAME}").status == 401
    everything = submissions(custom, f"flow={TEST_NAME}&limit=100")
    assert everything["total"] >= 3 and everything["limit"] == 100 and everything["offset"] == 0, everything
    ids = [s["id"] for s in everything["data"]]
    assert len(ids) == len(set(ids)) == min(everything["total"], 100)
    assert all(s["flow"] == TEST_NAME for s in everything["data"])
    # Newest first, paged with limit and offset.
    newest = [s["flow_token"] for s in everything["data"][:3]]
    assert newest == tokens[::-1], newest
    page = submissions(custom, f"flow={TEST_NAME}&limit=1&offset=1")
    assert [s["id"] for s in page["data"]] == ids[1:2] and page["total"] == everything["total"], page
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).date().isoformat()
    assert submissions(custom, f"flow={TEST_NAME}&since={future}")["data"] == []
    assert submissions(custom, f"flow={TEST_NAME}&since=2020-01-01")["total"] == everything["total"]
    for query in (f"flow={TEST_NAME}&limit=0", f"flow={TEST_NAME}&since=yesterday", f"flow={TEST_NAME}&x=1",
                  "flow=no-such-flow", ""):
        r = custom.request("GET", "/submissions?" + query, headers=auth)
        assert r.status == 400, (query, r)
    # The command line: the same listing, the same limits, an unknown flow named.
    listed = cli(binary, custom, "submissions", "--flow", TEST_NAME, "--limit", "3")
    assert listed.returncode == 0, listed
    listed_ids = [line.split()[0] for line in listed.stdout.splitlines() if line[:1].isdigit()]
    assert listed_ids == [str(i) for i in ids[:3]], listed.stdout
    for args, named in [(("--flow", "no-such-flow"), "no-such-flow"), ((), "--flow"),
                        (("--flow", TEST_NAME, "--limit", "0"), "--limit")]:
        refused = cli(binary, custom, "submissions", *args)
        assert refused.returncode == 2 and named in refused.stderr, (args, refused)


# --------------------------------------------------------------------------------------------------------
# A broken Flow JSON stops startup with its file and pointer; check reports it
# --------------------------------------------------------------------------------------------------------

BROKEN_FLOW = copy.deepcopy(TEST_FLOW)
BROKEN_FLOW["screens"][0]["layout"]["children"][0]["max-chars"] = -1
BROKEN_POINTER = "/screens/0/layout/children/0/max-chars"


def startup(binary: Path, config: Path, workdir: Path) -> tuple[int, str]:
    """``flows-fcgi --listen`` with ``config``, expected to stop at once: its exit status and what it said (stderr,
    stdout and the log file)."""
    sock = workdir / "own.sock"
    try:
        result = subprocess.run([str(binary), "--config", str(config), "--listen", f"unix:{sock}"],
                                env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=10)
    except subprocess.TimeoutExpired:  # run() has killed it
        pytest.fail("the responder started serving instead of stopping")
    log = workdir / "responder.log"
    assert not sock.exists(), "it listened"
    return result.returncode, result.stderr + result.stdout + (log.read_text() if log.exists() else "")


def check_problems(binary: Path, config: Path, file: str) -> list[str]:
    """The lines of ``flows-fcgi check`` naming ``file``."""
    checked = subprocess.run([str(binary), "check", "--config", str(config)], env=clean_env(),
                             capture_output=True, text=True, timeout=30)
    lines = [line for line in (checked.stdout + checked.stderr).splitlines() if file in line]
    assert checked.returncode != 0 or not lines, checked
    return lines


def test_a_broken_flow_json_stops_startup_with_its_file_and_pointer(binary, keys, app_secret, tmp_path):
    folder = write_flows_dir(tmp_path / "flows", BROKEN_FLOW, TEST_RULES, name="it-broken")
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, FLOWS_DIR=str(folder))
    status, said = startup(binary, config, tmp_path)
    assert status == 78, said
    assert re.search(rf"it-broken\.json:? ?{re.escape(BROKEN_POINTER)}", said), said
    assert any(BROKEN_POINTER in line and "PROBLEM" in line for line in check_problems(binary, config,
                                                                                         "it-broken.json"))

    # A sidecar without its flow is an error too.
    shutil.copy(folder / "it-broken.rules.json", folder / "it-orphan.rules.json")
    (folder / "it-broken.json").write_text(json.dumps(TEST_FLOW))
    status, said = startup(binary, config, tmp_path)
    assert status == 78 and "it-orphan.rules.json" in said, said
    assert check_problems(binary, config, "it-orphan.rules.json")
    # Fixed: check finds nothing wrong with the flows.
    (folder / "it-orphan.rules.json").unlink()
    assert not [line for line in check_problems(binary, config, "it-broken") if "PROBLEM" in line]


def test_a_broken_sidecar_stops_startup_with_its_pointer(binary, keys, app_secret, tmp_path):
    rules = copy.deepcopy(TEST_RULES)
    rules["routes"]["IT_CHOICES"][0]["next"] = "IT_PROFILE"  # not an edge of IT_CHOICES
    folder = write_flows_dir(tmp_path / "flows", TEST_FLOW, rules, name="it-sidecar")
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, FLOWS_DIR=str(folder))
    status, said = startup(binary, config, tmp_path)
    assert status == 78, said
    assert "it-sidecar.rules.json" in said and "/routes/IT_CHOICES/0/next" in said, said
