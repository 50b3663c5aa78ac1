"""MALFORMED INPUT TABLE: every class of bad input, the status it gets, and proof that the same responder process
keeps serving afterwards (a ping answers 200 from the same PID). One real responder (`--listen unix:`, one worker
thread, SQLite), FastCGI spoken directly so that the exact bytes reach it."""

from __future__ import annotations

import json
import os

import pytest

from conftest import TEST_MAX_BODY, Processes, start_listen, write_config
from flowclient import FlowCrypto, sign
from test_appointment import FastCGIPost

APPOINTMENT = "/flows/appointment"


@pytest.fixture(scope="module")
def responder(binary, keys, app_secret, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("malformed")
    config = write_config(workdir / "flows.env", keys, app_secret, workdir)
    sock = workdir / "malformed.sock"
    processes = Processes()
    try:
        popen = start_listen(binary, config, workdir, processes, f"unix:{sock}", ["--threads", "1"])
        yield {"sock": str(sock), "pid": popen.pid, "popen": popen, "crypto": FlowCrypto(keys.public_key()),
               "secret": app_secret}
    finally:
        processes.stop_all()


def post_raw(r, body: bytes, path: str = APPOINTMENT):
    return FastCGIPost(r["sock"], path, body, sign(r["secret"], body)).send()


def post_clear(r, clear: bytes, path: str = APPOINTMENT):
    """An envelope that decrypts to exactly ``clear``."""
    context = r["crypto"].encrypt(clear)
    response = FastCGIPost(r["sock"], path, context.body, sign(r["secret"], context.body)).send()
    answer = context.decrypt_answer(response.body) if response.status in (200, 427) else None
    return response, answer


def still_serving(r):
    assert r["popen"].poll() is None, "the responder exited"
    response, answer = post_clear(r, b'{"version":"3.0","action":"ping"}')
    assert response.status == 200 and answer == {"data": {"status": "active"}}


ENVELOPE_CASES = [
    # (class, raw body, status)
    ("empty body", b"", 400),
    ("huge body", b'{"encrypted_flow_data":"' + b"A" * (TEST_MAX_BODY + 10) + b'"}', 413),
    ("truncated JSON", b'{"encrypted_flow_data":"AAAA","encrypted_aes_key":"AA', 400),
    ("wrong types", b'{"encrypted_flow_data":1,"encrypted_aes_key":[],"initial_vector":null}', 400),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, 400),
    ("invalid UTF-8", b'{"encrypted_flow_data":"\xff\xfe","encrypted_aes_key":"a","initial_vector":"b"}', 400),
    ("NUL bytes", b'{"encrypted_flow_data":"a\x00","encrypted_aes_key":"a","initial_vector":"b"}', 400),
    ("duplicate keys", b'{"encrypted_flow_data":"a","encrypted_flow_data":"b","encrypted_aes_key":"a",'
                       b'"initial_vector":"b"}', 400),
    ("not base64 inside", b'{"encrypted_flow_data":"%%%","encrypted_aes_key":"%%%","initial_vector":"%%%"}', 421),
    ("JSON array", b"[1,2,3]", 400),
    ("binary noise", os.urandom(2048), 400),
]


@pytest.mark.parametrize("label,body,status", ENVELOPE_CASES, ids=[c[0] for c in ENVELOPE_CASES])
def test_envelope_level(responder, label, body, status):
    response = post_raw(responder, body)
    assert response.status == status, (label, response)
    assert response.status == 413 or len(response.body) < 1000  # a short plain message, no stack trace
    still_serving(responder)


TOKEN = "malformed-token"
CLEAR_CASES = [
    # (class, exact clear text, status, screen expected in a 200 answer or None)
    ("clear: deep nesting", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", 421, None),
    ("clear: invalid UTF-8", b'{"version":"3.0","action":"\xc3\x28"}', 421, None),
    ("clear: NUL byte", b'{"version":"3.0","action":"ping\x00"}', 421, None),
    ("clear: duplicate keys", b'{"version":"3.0","action":"ping","action":"INIT"}', 421, None),
    ("clear: truncated", b'{"version":"3.0","action":"pi', 421, None),
    ("clear: not an object", b'"ping"', 421, None),
    ("wrong type: action", json.dumps({"version": "3.0", "action": 5}).encode(), 400, None),
    ("wrong type: version", json.dumps({"version": 3.0, "action": "ping"}).encode(), 400, None),
    ("wrong type: flow_token", json.dumps({"version": "3.0", "action": "INIT", "flow_token": 7}).encode(), 400, None),
    ("unknown action", json.dumps({"version": "3.0", "action": "DANCE", "flow_token": TOKEN}).encode(), 400, None),
    ("unknown screen", json.dumps({"version": "3.0", "action": "data_exchange", "screen": "NOPE",
                                   "flow_token": TOKEN, "data": {}}).encode(), 200, "APPOINTMENT"),
    ("wrong type: data", json.dumps({"version": "3.0", "action": "data_exchange", "screen": "APPOINTMENT",
                                     "flow_token": TOKEN, "data": [1, 2]}).encode(), 200, "APPOINTMENT"),
    ("non-string ids", json.dumps({"version": "3.0", "action": "data_exchange", "screen": "APPOINTMENT",
                                   "flow_token": TOKEN, "data": {"trigger": "department_selected",
                                                                 "department": 5}}).encode(), 200, "APPOINTMENT"),
    ("absurd field lengths", json.dumps({"version": "3.0", "action": "data_exchange", "screen": "DETAILS",
                                         "flow_token": TOKEN, "data": {"name": "x" * 12000, "email": "y" * 12000,
                                                                       "department": "z" * 12000}}).encode(),
     200, "DETAILS"),
    # Past the documented 1,024-byte flow token limit.
    ("absurd token length", json.dumps({"version": "3.0", "action": "INIT", "flow_token": "t" * 30000}).encode(),
     400, None),
    ("unknown flow", None, 404, None),
]


@pytest.mark.parametrize("label,clear,status,screen", CLEAR_CASES, ids=[c[0] for c in CLEAR_CASES])
def test_decrypted_level(responder, label, clear, status, screen):
    if clear is None:
        response, answer = post_clear(responder, b'{"version":"3.0","action":"ping"}', path="/flows/nope")
    else:
        response, answer = post_clear(responder, clear)
    assert response.status == status, (label, response)
    if screen is not None:
        assert answer["screen"] == screen, answer
        # A screen the flow does not know and ids it cannot match are said so; `data` that is not an object is
        # read as no data (a plain refresh), and any token is just a key.
        if label in ("unknown screen", "non-string ids", "absurd field lengths"):
            assert answer["data"].get("error_message"), answer
    still_serving(responder)


def test_same_process_served_the_whole_table(responder):
    assert responder["popen"].poll() is None
    still_serving(responder)
