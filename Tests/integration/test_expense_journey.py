"""EXPENSE JOURNEY: a user fills in the expense form through nginx + spawn-fcgi (the shipped configs), with
SQLite storage, then the same on PostgreSQL, as WhatsApp would drive it. The flow-specific names are in expense.py.
"""

from __future__ import annotations

import secrets

import pytest

import expense
from conftest import STORES, Deployment, Processes, make_deployment, make_store

PATH = "/flows/" + expense.FLOW_NAME


@pytest.fixture(scope="module", params=STORES)
def nginx_deployment(request, binary, keys, app_secret, tmp_path_factory):
    processes = Processes()
    try:
        workdir = tmp_path_factory.mktemp("expense")
        store = make_store(request.param, workdir, request)
        dep = make_deployment("nginx+spawn-fcgi", binary, keys, app_secret, workdir, processes,
                              DATABASE_URL=store.database_url)
        yield dep
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def flow(nginx_deployment: Deployment):
    """The client, once the binary is known to serve the expense flow."""
    client = nginx_deployment.client()
    probe = client.send(nginx_deployment.path(PATH), {"version": "3.0", "action": "ping"})
    if probe.status == 404:
        pytest.skip(f"the binary does not serve the '{expense.FLOW_NAME}' flow yet (ping got 404)")
    assert probe.status == 200, probe.response
    return client


def send(deployment: Deployment, client, request: dict):
    return client.send(deployment.path(PATH), request)


@pytest.mark.expense
def test_expense_journey_init_invalid_then_valid_submit(nginx_deployment, flow):
    token = "it-expense-" + secrets.token_hex(8)

    # INIT: the form, with the categories to choose from and the currency.
    ex = send(nginx_deployment, flow, expense.init(token))
    assert ex.status == 200, ex.response
    form = ex.answer()
    assert form["screen"] == expense.FORM_SCREEN, form
    cats = expense.categories(form)
    assert cats == [{"id": "food", "title": "Food"}, {"id": "transport", "title": "Transport"},
                    {"id": "lodging", "title": "Lodging"}, {"id": "entertainment", "title": "Entertainment"},
                    {"id": "other", "title": "Other"}], form  # the default EXPENSE_CATEGORIES
    assert isinstance(form["data"].get("currency"), str) and form["data"]["currency"], form
    assert expense.error_message(form) is None, form

    # An invalid amount: the same screen again, with an error message for the snackbar.
    ex = send(nginx_deployment, flow, expense.submit(token, "twelve", cats[0]["id"], "Team lunch"))
    assert ex.status == 200, ex.response
    again = ex.answer()
    assert again["screen"] == expense.FORM_SCREEN, again
    assert expense.error_message(again), again

    # An unknown category: refused as well.
    ex = send(nginx_deployment, flow, expense.submit(token, "12.50", "no-such-category", "Team lunch"))
    assert ex.status == 200, ex.response
    assert ex.answer()["screen"] == expense.FORM_SCREEN and expense.error_message(ex.answer()), ex.answer()

    # A valid submit completes the flow; the params carry the flow token and what was stored.
    category = cats[0]["id"]
    valid = expense.submit(token, "12.50", category, "Team lunch")
    ex = send(nginx_deployment, flow, valid)
    assert ex.status == 200, ex.response
    done = ex.answer()
    params = expense.success_params(done)
    assert params["flow_token"] == token, params
    assert params["amount"] == "12.50", params
    assert params["category"] == category, params
    assert params.get("expense_id") not in (None, ""), params

    # WhatsApp retrying the very same submit gets the same completion (one expense per token).
    ex = send(nginx_deployment, flow, valid)
    assert ex.status == 200, ex.response
    assert expense.success_params(ex.answer())["expense_id"] == params["expense_id"], ex.answer()

    # Anything else on the completed token: 427, with an encrypted error_msg for the user.
    for request in (expense.init(token), expense.submit(token, "99.00", category, "Second try")):
        ex = send(nginx_deployment, flow, request)
        assert ex.status == 427, (request["action"], ex.response)
        assert isinstance(ex.answer().get("error_msg"), str) and ex.answer()["error_msg"], ex.answer()


@pytest.mark.expense
def test_expense_tokens_are_independent(nginx_deployment, flow):
    first, second = ("it-expense-" + secrets.token_hex(8) for _ in range(2))
    form = send(nginx_deployment, flow, expense.init(first)).answer()
    category = expense.categories(form)[-1]["id"]
    one = expense.success_params(send(nginx_deployment, flow, expense.submit(first, "3.20", category)).answer())
    # A new token still gets the form, and its own expense.
    ex = send(nginx_deployment, flow, expense.init(second))
    assert ex.status == 200 and ex.answer()["screen"] == expense.FORM_SCREEN, ex.response
    two = expense.success_params(send(nginx_deployment, flow, expense.submit(second, "7", category)).answer())
    assert two["flow_token"] == second and one["flow_token"] == first
    assert two["expense_id"] != one["expense_id"]
    assert two["amount"] == "7.00", two
