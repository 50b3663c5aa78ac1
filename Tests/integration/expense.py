"""The expense flow as the simulated WhatsApp client sees it: the one flow-specific part of the client.

Used by test_expense_journey.py and scripts/demo, so a change of screen or field names is made here only.
Endpoint: ``.../flows/expense``; Flow JSON: ``flows/expense.json``.
"""

from __future__ import annotations

FLOW_NAME = "expense"
FORM_SCREEN = "EXPENSE_FORM"
VERSION = "3.0"


def init(token: str) -> dict:
    """What WhatsApp sends when the user opens the Flow."""
    return {"version": VERSION, "action": "INIT", "flow_token": token, "screen": "", "data": {}}


def submit(token: str, amount: str, category: str, description: str = "", date: str | None = None) -> dict:
    """The form's submit button: ``data_exchange`` on the form screen with the typed values."""
    data = {"amount": amount, "category": category, "description": description}
    if date is not None:
        data["date"] = date
    return {"version": VERSION, "action": "data_exchange", "flow_token": token, "screen": FORM_SCREEN,
            "data": data}


def categories(form_answer: dict) -> list[dict]:
    """The ``[{id, title}]`` list the form offers."""
    return form_answer["data"]["categories"]


def error_message(form_answer: dict) -> str | None:
    return form_answer.get("data", {}).get("error_message")


def success_params(answer: dict) -> dict:
    """The ``params`` of a completion (they reach the business in the nfm_reply webhook)."""
    assert answer.get("screen") == "SUCCESS", answer
    return answer["data"]["extension_message_response"]["params"]
