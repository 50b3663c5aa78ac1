"""Checks a decrypted answer against the shipped Flow JSON (``flows/*.json``), as WhatsApp does.

The same rules as the unit tests' ``FlowJSONChecker`` (shared spec, section 3):

* a 427 (``error_msg``) is always allowed;
* ``SUCCESS`` carries only ``extension_message_response``, whose ``params.flow_token`` is the request's token, and
  never answers INIT;
* any other screen exists in the flow's file and is allowed by its ``routing_model``: the entry screen for INIT
  (or for a request from a screen the file does not know), the current screen or one of its edges for
  ``data_exchange``, the current screen or one with an edge to it for ``BACK``;
* its ``data`` has every field the screen declares, with the declared JSON type, and nothing else but a string
  ``error_message`` (the client's own snackbar field).

* a ``data_exchange`` from a screen with sidecar ``routes`` (``<name>.rules.json``) answers the screen again or the
  ``next`` of the first route whose ``when`` holds for the values the token sent so far.

``RequestContext.decrypt_answer`` (flowclient.py) runs ``answer_problems`` on every answer it decrypts, so every
integration test's answers are checked. The flow is found by screen id (the shipped flows' ids differ); a test that
serves flows from a folder of its own (``FLOWS_DIR``) makes them known with ``register``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FLOWS = Path(__file__).resolve().parents[2] / "flows"
FLOW_ACTIONS = ("INIT", "data_exchange", "BACK")


class FlowJSON:
    """One Flow JSON file: its screens' declared data and its routing model."""

    def __init__(self, path: Path):
        self.path = path
        root = json.loads(path.read_text(encoding="utf-8"))
        self.order = [screen["id"] for screen in root["screens"]]
        self.declared = {screen["id"]: screen.get("data", {}) for screen in root["screens"]}
        self.routes = {screen: list(targets) for screen, targets in root["routing_model"].items()}
        targets = {target for edges in self.routes.values() for target in edges}
        entries = [screen for screen in self.order if screen not in targets]
        self.entry = entries[0] if len(entries) == 1 else None
        rules = path.with_name(path.stem + ".rules.json")
        self.sidecar_routes = (json.loads(rules.read_text(encoding="utf-8")).get("routes", {})
                               if rules.exists() else {})
        # What each flow token sent on the screens it left (the values a sidecar route reads).
        self.sent: dict[str, dict] = {}

    def answer_problems(self, request: dict, answer: dict) -> list[str]:
        """Everything wrong with ``answer`` (a decrypted 200 answer) to the flow request ``request``."""
        action, current, token = request.get("action"), screen_of(request), request.get("flow_token")
        if set(answer) != {"screen", "data"} or not isinstance(answer["data"], dict):
            return [f"the answer is not {{screen, data}}: {str(answer)[:80]}"]
        shown, data = answer["screen"], answer["data"]
        if shown == "SUCCESS":
            problems = ["SUCCESS answered to INIT"] if action == "INIT" else []
            if set(data) != {"extension_message_response"}:
                problems.append("SUCCESS data must hold only extension_message_response")
            params = (data.get("extension_message_response") or {}).get("params")
            if not isinstance(params, dict):
                return problems + ["SUCCESS without extension_message_response.params"]
            if params.get("flow_token") != token:
                problems.append("SUCCESS params.flow_token is not the request's flow token")
            return problems
        if shown not in self.declared:
            return [f"answer names unknown screen {shown}"]
        problems = []
        known = current in self.declared
        if action == "INIT" or not known:
            if shown != self.entry:
                problems.append(f"{action} from {current or 'nowhere'} answered with {shown}, not the entry screen")
        elif action == "data_exchange":
            if shown != current and shown not in self.routes.get(current, []):
                problems.append(f"{current} -> {shown} is neither a refresh nor an edge of routing_model")
            elif shown != current:
                sent = self.sent.setdefault(str(token), {})
                if isinstance(request.get("data"), dict):
                    sent.update(request["data"])
                picked = route_picked(self.sidecar_routes.get(current), sent)
                if picked is not None and shown != picked:
                    problems.append(f"{current} -> {shown}: the sidecar's routes pick {picked}")
        elif action == "BACK":
            predecessors = [screen for screen, edges in self.routes.items() if current in edges]
            if shown != current and shown not in predecessors:
                problems.append(f"BACK to {current} answered with {shown}")
        declared = self.declared[shown]
        for name in sorted(data):
            if name == "error_message" and name not in declared:
                if not isinstance(data[name], str):
                    problems.append(f"{shown}: data.error_message is not a string")
                continue
            if name not in declared:
                problems.append(f"{shown}: data.{name} is not declared")
                continue
            problems += conformance(data[name], declared[name], f"{shown}: data.{name}")
        problems += [f"{shown}: declared data.{name} is missing" for name in sorted(declared) if name not in data]
        return problems


def conformance(value, schema: dict, path: str) -> list[str]:
    """Where ``value`` does not match the declared ``schema`` (``type``, array ``items``, object ``properties``)."""
    kind = schema.get("type")
    python_types = {"string": str, "boolean": bool, "array": list, "object": dict}
    if kind in ("number", "integer"):
        wrong = isinstance(value, bool) or not isinstance(value, (int, float))
        if wrong or kind == "integer" and isinstance(value, float):
            return [f"{path}: expected {kind}, got {value!r:.60}"]
        return []
    if kind not in python_types:
        return [f"{path}: the declaration has no known type"]
    if not isinstance(value, python_types[kind]):
        return [f"{path}: expected {kind}, got {json.dumps(value)[:60]}"]
    if kind == "array" and "items" in schema:
        return [problem for index, item in enumerate(value)
                for problem in conformance(item, schema["items"], f"{path}[{index}]")]
    if kind == "object" and "properties" in schema:
        problems = []
        for key in sorted(value):
            if key not in schema["properties"]:
                problems.append(f"{path}.{key} is not declared")
            else:
                problems += conformance(value[key], schema["properties"][key], f"{path}.{key}")
        return problems
    return []


def screen_of(message: dict) -> str:
    """The ``screen`` of a request or answer, ``""`` when it is absent or not a string (as the endpoint reads it)."""
    screen = message.get("screen")
    return screen if isinstance(screen, str) else ""


FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def shipped() -> list[FlowJSON]:
    """Every Flow JSON under ``flows/``: ``<name>.json`` with no second dot (``appointment.catalog.json`` and the
    ``<name>.rules.json`` sidecars are companions, not flows)."""
    return [FlowJSON(path) for path in sorted(FLOWS.glob("*.json")) if FLOW_NAME.match(path.stem)]


SHIPPED = shipped() if FLOWS.is_dir() else []
#: Flows of other folders a test serves (``register``), looked up before the shipped ones.
REGISTERED: list[FlowJSON] = []


def register(folder: Path) -> list[FlowJSON]:
    """Make the flows of ``folder`` (a test's ``FLOWS_DIR``: ``<name>.json`` and their sidecars) known to
    ``answer_problems``; returns them."""
    flows = [FlowJSON(path) for path in sorted(Path(folder).glob("*.json")) if FLOW_NAME.match(path.stem)]
    REGISTERED[:0] = flows
    return flows


def route_picked(routes: list | None, values: dict) -> str | None:
    """The ``next`` of the first sidecar route whose ``when`` holds for ``values`` (None without routes)."""
    for route in routes or []:
        when = route.get("when")
        if when is None:
            return route["next"]
        value = values.get(when["field"])
        if "equals" in when:
            holds = value == when["equals"]
        elif "in" in when:
            holds = value in when["in"]
        else:
            holds = (value not in (None, "", [], False)) == when["present"]
        if holds:
            return route["next"]
    return None


def answer_problems(request, answer: dict) -> list[str]:
    """The problems of ``answer`` (decrypted) to ``request`` (a dict, or the clear-text bytes sent): nothing to
    check for a ping, an error notification, a 427 (``error_msg``) or a flow none of the shipped files knows."""
    if isinstance(request, (bytes, str)):
        try:
            request = json.loads(request)
        except ValueError:
            return []
    if not isinstance(request, dict) or request.get("action") not in FLOW_ACTIONS or "error_msg" in answer:
        return []
    data = request.get("data")
    if isinstance(data, dict) and (data.get("error") is not None or data.get("error_key") is not None):
        return []
    for flow in REGISTERED + SHIPPED:
        if screen_of(request) in flow.declared or screen_of(answer) in flow.declared:
            return flow.answer_problems(request, answer)
    return []


# --------------------------------------------------------------------------------------------------------
# Static checks of a Flow JSON file and of its sidecar (``<name>.rules.json``), as Meta and the form engine read them
# --------------------------------------------------------------------------------------------------------

INPUT_TYPES = {"TextInput", "TextArea", "Dropdown", "RadioButtonsGroup", "CheckboxGroup", "DatePicker",
               "CalendarPicker", "OptIn", "ChipsSelector"}
REFERENCE = re.compile(r"\$\{(data|form)\.([A-Za-z0-9_]+)\}")
# Meta's character limits (components reference) for the properties the catalog uses.
LIMITS = {("TextInput", "label"): 20, ("TextArea", "label"): 20, ("TextInput", "helper-text"): 80,
          ("TextArea", "helper-text"): 80, ("Dropdown", "label"): 20, ("RadioButtonsGroup", "label"): 30,
          ("CheckboxGroup", "label"): 30, ("DatePicker", "label"): 40, ("DatePicker", "helper-text"): 80,
          ("OptIn", "label"): 30, ("Footer", "label"): 35, ("TextHeading", "text"): 80,
          ("TextSubheading", "text"): 80, ("TextCaption", "text"): 409, ("TextBody", "text"): 4096}


def components(value):
    """Every component (an object with a ``type``) inside ``value``, depth first."""
    if isinstance(value, dict):
        if "type" in value and isinstance(value["type"], str):
            yield value
        for member in value.values():
            yield from components(member)
    elif isinstance(value, list):
        for member in value:
            yield from components(member)


def inputs(screen: dict) -> list[dict]:
    """The input components (fields the user fills) of ``screen``, in order."""
    return [c for c in components(screen.get("layout", {})) if c["type"] in INPUT_TYPES]


def footer_action(screen: dict) -> dict | None:
    footers = [c for c in components(screen.get("layout", {})) if c["type"] == "Footer"]
    return footers[0].get("on-click-action") if len(footers) == 1 else None


def static_problems(root: dict, form_flow: bool = True) -> list[str]:
    """What breaks Meta's rules (shared spec, section 3) in a Flow JSON with an endpoint: the routing model (screens
    exist, an entry screen no edge points to, forward edges only, every route ends at a terminal screen, at most 10
    edges), every ``${data.x}`` declared with an ``__example__``, every ``${form.x}`` a component of its screen,
    ``error_message`` declared only where shown, every navigate payload filling exactly its target's declaration
    along an edge, character limits; and for a form flow (``form_flow``), what the form engine needs: each screen
    submitting by one Footer with ``data_exchange`` (a terminal screen) or ``navigate``, payload values that are
    references, no dead end but a terminal screen. (Meta's own appointment template has a dead-end TERMS screen
    without a Footer, reached by an OptIn's navigate.)"""
    problems = []
    screens = {s["id"]: s for s in root.get("screens", [])}
    routes = root.get("routing_model", {})
    if set(routes) != set(screens):
        problems.append(f"routing_model names {sorted(routes)}, the screens are {sorted(screens)}")
    edges = [(a, b) for a, targets in routes.items() for b in targets]
    problems += [f"routing_model: {a} -> {b}: no such screen" for a, b in edges if b not in screens]
    if len(edges) > 10:
        problems.append(f"routing_model has {len(edges)} edges (at most 10)")
    entries = [s for s in screens if all(b != s for _, b in edges)]
    if len(entries) != 1:
        problems.append(f"entry screens (no edge points to them): {entries}, expected exactly one")
    # Forward edges only: no cycle (B -> A next to A -> B is a backward edge).
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in routes.get(node, []):
            if state.get(target) == 1:
                problems.append(f"routing_model: a backward edge {node} -> {target} (cycle {path + [target]})")
            elif target in screens and target not in state:
                visit(target, path + [target])
        state[node] = 2

    for entry in entries:
        visit(entry, [entry])
    problems += [f"{s}: not reachable from the entry screen" for s in screens if s not in state]
    for sid, screen in screens.items():
        where = f"{sid}"
        if form_flow and not routes.get(sid) and not screen.get("terminal"):
            problems.append(f"{where}: no edge leaves it and it is not terminal")
        declared = screen.get("data", {})
        for name, schema in declared.items():
            if "__example__" not in schema:
                problems.append(f"{where}: data.{name} has no __example__")
        layout = json.dumps(screen.get("layout", {}))
        names = {c["name"] for c in inputs(screen)}
        for kind, name in REFERENCE.findall(layout):
            if kind == "data" and name not in declared:
                problems.append(f"{where}: ${{data.{name}}} is not declared")
            if kind == "form" and name not in names:
                problems.append(f"{where}: ${{form.{name}}} is not a component of the screen")
        if ("error_message" in declared) != ("${data.error_message}" in layout):
            problems.append(f"{where}: error_message must be declared exactly where the layout shows it")
        if len(names) != len(inputs(screen)):
            problems.append(f"{where}: two components share a name")
        for component in components(screen.get("layout", {})):
            for (kind, prop), limit in LIMITS.items():
                text = component.get(prop)
                if component["type"] == kind and isinstance(text, str) and not REFERENCE.fullmatch(text):
                    if len(text) > limit:
                        problems.append(f"{where}: {kind} {prop} '{text}' is longer than {limit} characters")
                    if not text.strip():
                        problems.append(f"{where}: {kind} {prop} is empty")
            for item in component.get("data-source", []) if isinstance(component.get("data-source"), list) else []:
                if len(item.get("title", "")) > 30:
                    problems.append(f"{where}: option title '{item['title']}' is longer than 30 characters")
        for action in actions(screen.get("layout", {})):
            if action.get("name") == "navigate":
                target = action.get("next", {}).get("name")
                if target not in routes.get(sid, []):
                    problems.append(f"{where}: navigate to {target} is not an edge of routing_model")
                elif set(action.get("payload", {})) != set(screens[target].get("data", {})):
                    problems.append(f"{where}: the navigate payload does not fill {target}'s declaration")
        action = footer_action(screen)
        if not form_flow:
            continue
        if action is None or action.get("name") not in ("data_exchange", "navigate"):
            problems.append(f"{where}: no single Footer submitting by data_exchange or navigate")
        elif screen.get("terminal") and action["name"] != "data_exchange":
            problems.append(f"{where}: the terminal screen does not submit by data_exchange")
        elif action["name"] == "data_exchange":
            for key, value in action.get("payload", {}).items():
                if not isinstance(value, str) or not REFERENCE.fullmatch(value):
                    problems.append(f"{where}: payload {key} is not a ${{form.x}} or ${{data.x}} reference")
    return problems


def actions(value):
    """Every ``*-action`` object inside ``value``."""
    if isinstance(value, dict):
        for key, member in value.items():
            if key.endswith("-action"):
                yield member
            yield from actions(member)
    elif isinstance(value, list):
        for member in value:
            yield from actions(member)


def collected_before(root: dict, rules: dict) -> dict[str, set[str]]:
    """For each screen, the values collected on every way to it (the input names of the screens before it on each
    route from the entry screen): what a screen's declared data can be filled from."""
    screens = {s["id"]: s for s in root["screens"]}
    routes = root["routing_model"]
    targets = {b for bs in routes.values() for b in bs}
    result: dict[str, set[str]] = {}

    def walk(sid: str, seen: set[str], path: tuple[str, ...]) -> None:
        result[sid] = seen if sid not in result else result[sid] & seen
        names = seen | {c["name"] for c in inputs(screens[sid])}
        for target in routes.get(sid, []):
            if target in screens and target not in path:  # a cycle is static_problems' to report
                walk(target, names, path + (target,))

    for entry in [s for s in screens if s not in targets]:
        walk(entry, set(), (entry,))
    return result


def sidecar_problems(root: dict, rules: dict) -> list[str]:
    """What is wrong with a sidecar (FORMS.md): unknown keys, routes naming missing screens or edges, a last route
    with a condition, a screen with several edges and no routes, conditions and checks naming values not collected
    by then, values for undeclared fields, and declared data that neither the values collected on every way to the
    screen nor the sidecar's values fill."""
    problems = []
    screens = {s["id"]: s for s in root["screens"]}
    routes = root["routing_model"]
    collected = collected_before(root, rules)

    def known_by(sid: str) -> set[str]:
        return collected.get(sid, set()) | {c["name"] for c in inputs(screens[sid])}

    problems += [f"/{key}: unknown key" for key in rules if key not in ("routes", "checks", "values")]
    for sid, choices in rules.get("routes", {}).items():
        if sid not in screens:
            problems.append(f"/routes/{sid}: no such screen")
            continue
        for i, choice in enumerate(choices):
            if set(choice) - {"when", "next"}:
                problems.append(f"/routes/{sid}/{i}: unknown key")
            if choice.get("next") not in routes[sid]:
                problems.append(f"/routes/{sid}/{i}/next: {choice.get('next')} is not an edge of {sid}")
            when = choice.get("when")
            if (when is None) != (i == len(choices) - 1):
                problems.append(f"/routes/{sid}/{i}: only the last route has no condition")
            if when is not None:
                ops = set(when) - {"field"}
                if len(ops) != 1 or not ops <= {"equals", "in", "present"}:
                    problems.append(f"/routes/{sid}/{i}/when: one of equals, in, present")
                if when.get("field") not in known_by(sid):
                    problems.append(f"/routes/{sid}/{i}/when/field: {when.get('field')} is not collected by then")
    for sid, targets in routes.items():
        if len(targets) > 1 and sid not in rules.get("routes", {}):
            problems.append(f"{sid} has {len(targets)} edges and no routes entry")
    for i, check in enumerate(rules.get("checks", [])):
        sid, field = check.get("screen"), check.get("field")
        if sid not in screens:
            problems.append(f"/checks/{i}/screen: no such screen {sid}")
            continue
        if field not in {c["name"] for c in inputs(screens[sid])}:
            problems.append(f"/checks/{i}/field: {field} is not a component of {sid}")
        rule = set(check) - {"screen", "field", "message"}
        if not rule or not rule <= {"not_before", "not_after", "min", "max"}:
            problems.append(f"/checks/{i}: expected not_before, not_after, min or max")
        for key in ("not_before", "not_after"):
            if key in check and check[key] not in known_by(sid):
                problems.append(f"/checks/{i}/{key}: {check[key]} is not collected by then")
        for key in ("min", "max"):
            if key in check and (isinstance(check[key], bool) or not isinstance(check[key], (int, float))):
                problems.append(f"/checks/{i}/{key}: not a number")
        if not isinstance(check.get("message"), str) or not check["message"].strip():
            problems.append(f"/checks/{i}/message: missing")
    computed: dict[str, set[str]] = {}
    for sid, fields in rules.get("values", {}).items():
        if sid not in screens:
            problems.append(f"/values/{sid}: no such screen")
            continue
        for field, value in fields.items():
            if field not in screens[sid].get("data", {}):
                problems.append(f"/values/{sid}/{field}: not declared by {sid}")
            if isinstance(value, dict) and (set(value) - {"today", "today_millis"} or len(value) != 1
                                            or not isinstance(next(iter(value.values())), int)):
                problems.append(f"/values/{sid}/{field}: expected {{\"today\": N}} or {{\"today_millis\": N}}")
            computed.setdefault(sid, set()).add(field)
    for sid, screen in screens.items():
        for field in screen.get("data", {}):
            if field not in collected.get(sid, set()) and field not in computed.get(sid, set()):
                problems.append(f"{sid}: data.{field} is filled neither by a value collected before it on every "
                                "route nor by the sidecar's values")
    return problems
