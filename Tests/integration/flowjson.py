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

``RequestContext.decrypt_answer`` (flowclient.py) runs ``answer_problems`` on every answer it decrypts, so every
integration test's answers are checked. The flow is found by screen id (the shipped flows' ids differ).
"""

from __future__ import annotations

import json
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


def shipped() -> list[FlowJSON]:
    """Every Flow JSON under ``flows/`` (the catalog file is not one)."""
    return [FlowJSON(path) for path in sorted(FLOWS.glob("*.json")) if "routing_model" in path.read_text("utf-8")]


SHIPPED = shipped() if FLOWS.is_dir() else []


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
    for flow in SHIPPED:
        if screen_of(request) in flow.declared or screen_of(answer) in flow.declared:
            return flow.answer_problems(request, answer)
    return []
