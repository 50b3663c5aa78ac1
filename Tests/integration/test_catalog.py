"""The shipped catalog of form flows (issue 17): flows/feedback.json, calendar-preferences.json, schedule.json and
budget.json with their sidecars, checked statically against Meta's rules and the form engine's contract
(../helpers FORMS.md, README "Form flows"): the issue's screen and field counts, routing and declarations, navigate
payloads, sidecars naming existing screens, fields and edges, data every summary screen can be filled with, and the
feedback survey's branch. (Serving them is the form engine's part; its end-to-end walks live with it.)"""

from __future__ import annotations

import copy
import json
import zoneinfo

import pytest

import flowjson

# The table: name -> (screens, fields the user fills).
CATALOG = {"feedback": (4, 6), "calendar-preferences": (2, 4), "schedule": (5, 8), "budget": (3, 10)}
CODED = {"appointment", "expense"}


def load(name: str) -> tuple[dict, dict]:
    root = json.loads((flowjson.FLOWS / f"{name}.json").read_text(encoding="utf-8"))
    rules_path = flowjson.FLOWS / f"{name}.rules.json"
    rules = json.loads(rules_path.read_text(encoding="utf-8")) if rules_path.exists() else {}
    return root, rules


def test_the_folder_holds_the_catalog_the_coded_flows_and_their_companions():
    names = sorted(path.name for path in flowjson.FLOWS.glob("*.json"))
    assert names == ["appointment.catalog.json", "appointment.json", "budget.json", "budget.rules.json",
                     "calendar-preferences.json", "expense.json", "feedback.json", "feedback.rules.json",
                     "schedule.json", "schedule.rules.json"]
    assert sorted(flow.path.stem for flow in flowjson.SHIPPED) == sorted(CATALOG.keys() | CODED)
    # Every sidecar has its flow.
    for path in flowjson.FLOWS.glob("*.rules.json"):
        assert (flowjson.FLOWS / (path.name.removesuffix(".rules.json") + ".json")).exists(), path


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_counts_versions_and_meta_rules(name):
    root, rules = load(name)
    screens, fields = CATALOG[name]
    assert root["version"] == "7.3" and root["data_api_version"] == "3.0"
    assert len(root["screens"]) == screens
    assert sum(len(flowjson.inputs(screen)) for screen in root["screens"]) == fields
    assert flowjson.static_problems(root) == []
    assert flowjson.sidecar_problems(root, rules) == []
    # Exactly one terminal screen, the last one, and it stores by data_exchange.
    terminal = [screen for screen in root["screens"] if screen.get("terminal")]
    assert [screen["id"] for screen in terminal] == [root["screens"][-1]["id"]]
    assert flowjson.footer_action(terminal[0])["name"] == "data_exchange"


def test_the_coded_flows_still_pass_metas_rules():
    for name in sorted(CODED):
        root, _ = load(name)
        assert flowjson.static_problems(root, form_flow=False) == [], name


def test_screen_ids_differ_across_every_shipped_flow():
    """The integration client finds an answer's flow by its screen ids."""
    ids = [screen for flow in flowjson.SHIPPED for screen in flow.order]
    assert len(ids) == len(set(ids)), ids


def test_the_feedback_follow_up_screen_only_when_asked_for():
    root, rules = load("feedback")
    assert root["routing_model"]["FEEDBACK_FOLLOW_UP"] == ["FEEDBACK_CONTACT", "FEEDBACK_THANKS"]
    assert rules["routes"]["FEEDBACK_FOLLOW_UP"] == [
        {"when": {"field": "follow_up", "equals": "yes"}, "next": "FEEDBACK_CONTACT"}, {"next": "FEEDBACK_THANKS"}]
    follow_up = next(c for c in flowjson.inputs(root["screens"][1]) if c["name"] == "follow_up")
    assert [option["id"] for option in follow_up["data-source"]] == ["yes", "no"] and follow_up["required"]
    # Both ways reach the terminal screen, which shows only what every way collected.
    assert flowjson.collected_before(root, rules)["FEEDBACK_THANKS"] == {"rating", "comments", "follow_up"}


def test_the_schedule_dates_are_checked_and_not_in_the_past():
    root, rules = load("schedule")
    dates = root["screens"][0]
    pickers = [c for c in flowjson.inputs(dates) if c["type"] == "DatePicker"]
    assert [p["name"] for p in pickers] == ["start_date", "end_date"]
    assert all(p["min-date"] == "${data.min_date}" and p["required"] for p in pickers)
    assert rules["values"]["SCHEDULE_DATES"]["min_date"] == {"today": 0}
    assert {"screen": "SCHEDULE_DATES", "field": "end_date", "not_before": "start_date"}.items() \
        <= rules["checks"][0].items()


def test_budget_limits_per_category_and_a_checked_threshold():
    root, rules = load("budget")
    categories = next(c for c in flowjson.inputs(root["screens"][0]) if c["name"] == "categories")
    limits = [c["name"] for c in flowjson.inputs(root["screens"][1])]
    assert limits == ["limit_" + option["id"] for option in categories["data-source"]]
    assert rules["checks"] == [{"screen": "BUDGET_ALERTS", "field": "warn_percent", "min": 1, "max": 100,
                                "message": "Warn at: a whole number from 1 to 100"}]


def test_calendar_time_zones_are_real_zones():
    root, _ = load("calendar-preferences")
    zone = next(c for c in flowjson.inputs(root["screens"][0]) if c["name"] == "time_zone")
    assert zone["type"] == "Dropdown" and 20 <= len(zone["data-source"]) <= 200
    for option in zone["data-source"]:
        zoneinfo.ZoneInfo(option["id"])  # raises for a name the tz database does not know


def test_summaries_show_what_was_entered():
    """Each terminal screen's declared data are values collected by the same name before it."""
    for name in ("feedback", "calendar-preferences", "schedule"):
        root, rules = load(name)
        summary = root["screens"][-1]
        assert summary.get("data"), name
        assert set(summary["data"]) <= flowjson.collected_before(root, rules)[summary["id"]], name
        layout = json.dumps(summary["layout"])
        assert all("${data.%s}" % field in layout for field in summary["data"]), name


# The checks themselves find what they are for (each broken on purpose).
BROKEN = [
    ("a backward edge", "feedback", lambda r, s: r["routing_model"]["FEEDBACK_THANKS"].append("FEEDBACK_CONTACT"),
     "backward edge"),
    ("an undeclared data reference", "schedule",
     lambda r, s: r["screens"][0]["data"].pop("max_date"), "${data.max_date} is not declared"),
    ("a declaration without example", "schedule",
     lambda r, s: r["screens"][0]["data"]["min_date"].pop("__example__"), "no __example__"),
    ("a form reference to another screen", "budget",
     lambda r, s: r["screens"][1]["layout"]["children"][-1]["on-click-action"]["payload"].update(
         period="${form.period}"), "${form.period} is not a component"),
    ("error_message declared but not shown", "budget",
     lambda r, s: r["screens"][0].update(data={"error_message": {"type": "string", "__example__": "x"}}),
     "error_message must be declared exactly where"),
    ("a terminal screen completing on the phone", "budget",
     lambda r, s: r["screens"][-1]["layout"]["children"][-1]["on-click-action"].update(name="complete"),
     "no single Footer"),
    ("a navigate payload short of its target's data", "schedule",
     lambda r, s: r["screens"][0]["layout"]["children"][-1].update({"on-click-action": {
         "name": "navigate", "next": {"type": "screen", "name": "SCHEDULE_DAYS"},
         "payload": {"start_date": "${form.start_date}"}}}), "does not fill SCHEDULE_DAYS's declaration"),
    ("a navigate along no edge", "schedule",
     lambda r, s: r["screens"][0]["layout"]["children"][-1].update({"on-click-action": {
         "name": "navigate", "next": {"type": "screen", "name": "SCHEDULE_TIMES"}, "payload": {}}}),
     "navigate to SCHEDULE_TIMES is not an edge"),
    ("a label too long", "feedback",
     lambda r, s: r["screens"][2]["layout"]["children"][1].update(label="Your full name, please"),
     "longer than 20"),
]

SIDECAR_BROKEN = [
    ("no routes for a branch", "feedback", lambda r, s: s.pop("routes"), "2 edges and no routes"),
    ("a route that is no edge", "feedback",
     lambda r, s: s["routes"]["FEEDBACK_FOLLOW_UP"][0].update(next="FEEDBACK_RATING"), "is not an edge"),
    ("a condition on a later value", "feedback",
     lambda r, s: s["routes"]["FEEDBACK_FOLLOW_UP"][0]["when"].update(field="contact_name"), "not collected by"),
    ("a last route with a condition", "feedback",
     lambda r, s: s["routes"]["FEEDBACK_FOLLOW_UP"].pop(), "only the last route"),
    ("a check on a missing field", "schedule", lambda r, s: s["checks"][0].update(field="finish"),
     "finish is not a component"),
    ("a value for an undeclared field", "schedule",
     lambda r, s: s["values"]["SCHEDULE_DATES"].update(start={"today": 1}), "not declared by"),
    ("an unknown key", "budget", lambda r, s: s.update(check=[]), "/check: unknown key"),
    ("a summary field no route collects", "feedback",
     lambda r, s: r["screens"][-1]["data"].update(contact_name={"type": "string", "__example__": "Ana"}),
     "data.contact_name is filled neither"),
]


@pytest.mark.parametrize("label,name,breaks,expected", BROKEN + SIDECAR_BROKEN,
                         ids=[case[0] for case in BROKEN + SIDECAR_BROKEN])
def test_the_checks_find_a_broken_copy(label, name, breaks, expected):
    root, rules = (copy.deepcopy(part) for part in load(name))
    breaks(root, rules)
    problems = flowjson.static_problems(root) + flowjson.sidecar_problems(root, rules)
    assert any(expected in problem for problem in problems), (label, problems)


def test_the_container_image_ships_the_flows_where_the_binary_looks():
    """FLOWS_DIR's default for an installed binary is <its folder>/../share/flows-fcgi/flows."""
    text = (flowjson.FLOWS.parent / "container" / "Containerfile").read_text()
    assert "COPY .build/release/flows-fcgi /usr/local/bin/flows-fcgi\n" in text
    assert "COPY flows/ /usr/local/share/flows-fcgi/flows/\n" in text
