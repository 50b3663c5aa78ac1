#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (Fuzz/corpus/<target>/) and their dictionaries (Fuzz/dict/).

Seeds are real examples: Flows clear texts as WhatsApp sends them (ping, INIT, data_exchange, BACK, error
notifications, a whole booking journey), a real envelope for the pkcs8 test key, the test PEM keys, a webhook
body from Meta's documentation (via pywa's test data), the params nginx's fastcgi_params sends. Envelopes are
encrypted with fresh random keys, so running this again changes those files: run it only when the seeds must change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "integration"))
from flowclient import FlowCrypto  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

CORPUS = ROOT / "Fuzz" / "corpus"
DICTS = ROOT / "Fuzz" / "dict"
FIXTURES = ROOT / "Tests" / "Fixtures"
APP_SECRET = b"fuzz-app-secret"  # FuzzService.appSecret
API_TOKEN = "fuzz-api-token-0123456789"  # FuzzService.apiToken
VERIFY_TOKEN = "fuzz-verify-token"  # FuzzService.verifyToken


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(flow_token: str) -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(compact({"flow_token": flow_token}))
    signature = hmac.new(APP_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def request(action: str, screen: str = "", data: dict | None = None, token: str = "fuzz-token",
            version: str = "3.0") -> dict:
    value = {"version": version, "action": action, "flow_token": token}
    if action != "INIT" or screen:
        value["screen"] = screen
    if data is not None:
        value["data"] = data
    return value


PING = {"version": "3.0", "action": "ping"}
ERROR = request("data_exchange", "APPOINTMENT", {"error": "invalid-screen-transition",
                                                  "error_message": "The screen does not exist"})
FIELDS = {"department": "beauty", "location": "1", "date": "2026-03-04", "time": "11:30", "name": "Alex Example",
          "email": "alex@example.com", "phone": "+44 20 7946 0000", "more_details": "A skin care consultation"}


def flows() -> None:
    journey = [
        request("INIT", data={}),
        request("data_exchange", "APPOINTMENT", {"trigger": "department_selected", "department": "beauty"}),
        request("data_exchange", "APPOINTMENT", {"trigger": "location_selected", "department": "beauty",
                                                 "location": "1"}),
        request("data_exchange", "APPOINTMENT", {"trigger": "date_selected", "department": "beauty",
                                                 "location": "1", "date": "2026-03-04"}),
        request("data_exchange", "DETAILS", FIELDS),
        request("data_exchange", "SUMMARY", FIELDS),
        request("data_exchange", "SUMMARY", FIELDS),
        request("INIT", data={}),
    ]
    write("appointment", "journey", b"\0".join(compact(r) for r in journey))
    write("appointment", "ping", compact(PING))
    write("appointment", "error-notification", compact(ERROR))
    write("appointment", "back", compact(request("BACK", "APPOINTMENT", {})))
    write("appointment", "terms", compact(request("data_exchange", "TERMS", {})))
    write("appointment", "details-invalid", compact(request(
        "data_exchange", "DETAILS", dict(FIELDS, email="not an email", phone="12"), token="other")))
    write("appointment", "v4-signed", compact(dict(request("INIT", data={}, token="signed-token", version="4.0"),
                                                   flow_token_signature=jwt("signed-token"))))
    # pywa's real decrypted INIT (Tests/Fixtures/pywa-interop.json), with its own spacing.
    interop = json.loads((FIXTURES / "pywa-interop.json").read_text())
    write("appointment", "pywa-init", json.dumps(interop["decrypted_request"]).encode())

    submit = {"amount": "12.50", "category": "food", "description": "Team lunch", "date": "2026-03-01",
              "currency": "EUR"}
    write("expense", "journey", b"\0".join(compact(r) for r in [
        request("INIT", data={}, token="expense-token"),
        request("data_exchange", "EXPENSE_FORM", dict(submit, amount="12.505"), token="expense-token"),
        request("data_exchange", "EXPENSE_FORM", submit, token="expense-token"),
        request("data_exchange", "EXPENSE_FORM", submit, token="expense-token"),
        request("BACK", "EXPENSE_FORM", {}, token="expense-token"),
    ]))
    write("expense", "ping", compact(PING))
    write("expense", "error-notification", compact(dict(ERROR, screen="EXPENSE_FORM")))
    write("expense", "future-date", compact(request("data_exchange", "EXPENSE_FORM",
                                                    dict(submit, date="2099-01-01", amount="1e3"))))
    write("expense", "wrong-types", compact(request("data_exchange", "EXPENSE_FORM",
                                                    {"amount": 12.5, "category": ["food"], "date": None})))
    write("expense", "v4-signed", compact(dict(request("INIT", data={}, token="signed-token", version="4.0"),
                                               flow_token_signature=jwt("signed-token"))))


def envelope_for_test_key(clear: bytes) -> bytes:
    pem = (FIXTURES / "keys" / "pkcs8.pem").read_bytes()
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    return FlowCrypto(public).encrypt(clear).body


def envelopes() -> None:
    interop = json.loads((FIXTURES / "pywa-interop.json").read_text())
    write("envelope", "pywa-envelope", json.dumps(interop["request_envelope"]).encode())
    write("envelope", "test-key-ping", envelope_for_test_key(compact(PING)))
    write("envelope", "escapes", rb'{"a":"\u00e9\ud83d\ude00\n\t\"\\\/","b":[1,-0.5,2e10,true,false,null],"c":{}}')
    write("envelope", "nested", b'{"x":' + b"[" * 20 + b"{}" + b"]" * 20 + b"}")
    write("envelope", "numbers", b"[0,-0,1.0e+2,123456789012345678901234567890,-1E-7]")

    fields = interop["request_envelope"]
    write("base64", "envelope-fields", "\n".join(
        [fields["encrypted_flow_data"], fields["encrypted_aes_key"], fields["initial_vector"]]).encode())
    write("base64", "iv", base64.b64encode(bytes(range(16))))
    write("base64", "padding", b"QQ==")
    write("base64", "jwt", jwt("fuzz-token").encode())
    write("base64", "binary", bytes(range(256)))


def pems() -> None:
    keys = FIXTURES / "keys"
    for name, passphrase in [("pkcs1.pem", False), ("pkcs8.pem", False), ("pkcs8-enc.pem", True),
                             ("pkcs1-des3.pem", True), ("ec.pem", False), ("rsa1024.pem", False),
                             ("ec-enc.pem", True), ("ec-sec1.pem", False), ("ed25519.pem", False)]:
        write("pem", name, (b"\x01" if passphrase else b"\x00") + (keys / name).read_bytes())
    # Other PEM blocks before the key: an EC key, then the RSA key (the reader skips the first).
    write("pem", "ec-then-pkcs1.pem", b"\x00" + (keys / "ec.pem").read_bytes() + (keys / "pkcs1.pem").read_bytes())


def webhooks() -> None:
    interop = json.loads((FIXTURES / "pywa-interop.json").read_text())
    write("webhook", "pywa-body", interop["webhook_signature"]["body"].encode())
    meta = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [
                {"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                 "timestamp": "1749416383", "type": "interactive", "interactive": {
                     "type": "nfm_reply", "nfm_reply": {
                         "response_json": compact({"flow_token": "fuzz-token", "booking_id": 1}).decode(),
                         "body": "Sent", "name": "flow"}}},
                {"from": "16505551234", "id": "wamid.text-1", "timestamp": "1749416390", "type": "text",
                 "text": {"body": "Does it work?"}},
                {"from": "16505551234", "id": "wamid.image-1", "timestamp": 1749416391, "type": "image",
                 "image": {"caption": "a photo", "mime_type": "image/jpeg", "id": "1234"}}],
            "statuses": [{"id": "wamid.sent-1", "status": "delivered", "timestamp": "1749416400",
                          "recipient_id": "16505551234"}]}},
        {"field": "flows", "value": {"event": "FLOW_STATUS_CHANGE", "message": "Flow Webhook status changed",
                                     "flow_id": "987654321", "old_status": "DRAFT", "new_status": "PUBLISHED"}}]}]}
    write("webhook", "messages-statuses-flows", compact(meta))


def params(entries: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}={value}".encode() + b"\0" for name, value in entries) + b"\0"


def nginx(method: str, uri: str, query: str = "", length: int = 0, content_type: str = "",
          extra: list[tuple[str, str]] | None = None) -> bytes:
    """What nginx's fastcgi_params sends for a request to location /flows-fcgi/."""
    entries = [("QUERY_STRING", query), ("REQUEST_METHOD", method), ("CONTENT_TYPE", content_type),
               ("CONTENT_LENGTH", str(length) if length else ""), ("SCRIPT_NAME", uri),
               ("REQUEST_URI", uri + ("?" + query if query else "")), ("DOCUMENT_URI", uri),
               ("DOCUMENT_ROOT", "/usr/share/nginx/html"), ("SERVER_PROTOCOL", "HTTP/1.1"),
               ("REQUEST_SCHEME", "https"), ("HTTPS", "on"), ("GATEWAY_INTERFACE", "CGI/1.1"),
               ("SERVER_SOFTWARE", "nginx/1.22.1"), ("REMOTE_ADDR", "31.13.64.1"), ("REMOTE_PORT", "52144"),
               ("SERVER_ADDR", "10.0.0.5"), ("SERVER_PORT", "443"), ("SERVER_NAME", "flows.example.com"),
               ("REDIRECT_STATUS", "200"), ("HTTP_HOST", "flows.example.com"),
               ("HTTP_USER_AGENT", "facebookexternalua"), ("HTTP_ACCEPT", "*/*"),
               ("HTTP_X_REQUEST_ID", "5f0c6a1e-2b7d-4c1e-9a51-0d3f7a2b9c11")]
    if content_type:
        entries.append(("HTTP_CONTENT_TYPE", content_type))
    if length:
        entries.append(("HTTP_CONTENT_LENGTH", str(length)))
    return params(entries + (extra or []))


def cgi() -> None:
    # Flags byte: 1 sign the body, 2 bearer API token, 4 JSON log lines, 8 CONTENT_LENGTH. Then the chunk size.
    ping = envelope_for_test_key(compact(PING))
    write("cgi", "flow-ping", bytes([1 | 8, 0]) + nginx("POST", "/flows-fcgi/flows/appointment", length=len(ping),
                                                         content_type="application/json") + ping)
    write("cgi", "flow-unsigned", bytes([4, 7]) + nginx(
        "POST", "/flows-fcgi/flows/expense", length=len(ping), content_type="application/json",
        extra=[("HTTP_X_HUB_SIGNATURE_256", "sha256=" + "0" * 64)]) + ping)
    body = (CORPUS / "webhook" / "messages-statuses-flows").read_bytes()
    write("cgi", "webhook-post", bytes([1 | 8, 64]) + nginx("POST", "/flows-fcgi/webhook", length=len(body),
                                                            content_type="application/json") + body)
    write("cgi", "webhook-verify", bytes([4, 0]) + nginx(
        "GET", "/flows-fcgi/webhook",
        query=f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"))
    for route, query in [("messages", "limit=5&offset=0"), ("stats", ""), ("bookings", "from=2026-03-01"),
                         ("expenses", "limit=2"), ("metrics", "")]:
        write("cgi", f"read-{route}", bytes([2, 0]) + nginx("GET", f"/flows-fcgi/{route}", query=query))
    write("cgi", "health-ready", bytes([0, 0]) + nginx("HEAD", "/flows-fcgi/health/ready"))
    write("cgi", "cgi-path-info", bytes([0, 0]) + params([
        ("GATEWAY_INTERFACE", "CGI/1.1"), ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/cgi-bin/flows-fcgi"),
        ("PATH_INFO", "/health/live"), ("QUERY_STRING", ""), ("HTTP_AUTHORIZATION", "Bearer wrong")]))
    write("cgi", "too-large", bytes([1, 255]) + nginx("POST", "/flows-fcgi/flows/expense", length=1500)
          + b"{" + b" " * 1498 + b"}")


def dictionaries() -> None:
    DICTS.mkdir(parents=True, exist_ok=True)
    json_tokens = ['"{"', '"}"', '"["', '"]"', '":"', '","', '"\\""', '"true"', '"false"', '"null"', '"-0.5e+3"',
                   '"\\\\u0000"', '"\\\\ud83d\\\\ude00"', '"\\\\n"', '"\\xc3\\xa9"', '"\\xed\\xa0\\x80"', '"\\xff"']
    envelope = json_tokens + ['"\\"encrypted_flow_data\\""', '"\\"encrypted_aes_key\\""', '"\\"initial_vector\\""']
    flow = json_tokens + [f'"\\"{word}\\""' for word in [
        "version", "action", "screen", "data", "flow_token", "flow_token_signature", "ping", "INIT",
        "data_exchange", "BACK", "3.0", "4.0", "error", "error_key", "error_message", "trigger",
        "department_selected", "location_selected", "date_selected", "APPOINTMENT", "DETAILS", "SUMMARY", "TERMS",
        "department", "location", "date", "time", "name", "email", "phone", "more_details", "beauty", "shopping",
        "clothing", "home", "electronics", "2026-03-04", "11:30", "EXPENSE_FORM", "amount", "category",
        "description", "currency", "food", "transport", "EUR", "12.50"]]
    webhook = json_tokens + [f'"\\"{word}\\""' for word in [
        "object", "whatsapp_business_account", "entry", "id", "changes", "field", "value", "messages", "statuses",
        "flows", "from", "timestamp", "type", "text", "body", "interactive", "nfm_reply", "response_json",
        "button", "image", "caption", "status", "recipient_id", "event", "flow_id", "FLOW_STATUS_CHANGE",
        "button_reply", "title", "flow_token", "delivered", "read", "failed"]]
    pem = ['"-----BEGIN "', '"-----END "', '"PRIVATE KEY-----"', '"RSA PRIVATE KEY-----"', '"EC PRIVATE KEY-----"',
           '"OPENSSH PRIVATE KEY-----"', '"PUBLIC KEY-----"', '"CERTIFICATE-----"',
           '"ENCRYPTED PRIVATE KEY-----"', '"Proc-Type: 4,ENCRYPTED"', '"DEK-Info: DES-EDE3-CBC,"',
           '"DEK-Info: AES-256-CBC,"', '"MIIE"', '"MII"', '"\\x0a"', '"="']
    cgi = [f'"{name}="' for name in [
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "DOCUMENT_URI", "REQUEST_URI", "QUERY_STRING",
        "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_X_HUB_SIGNATURE_256", "HTTP_AUTHORIZATION", "HTTP_X_REQUEST_ID"]] + [
        f'"{word}"' for word in [
            "GET", "POST", "HEAD", "PUT", "/flows/appointment", "/flows/expense", "/flows/", "/webhook", "/health",
            "/health/ready", "/health/live", "/messages", "/stats", "/bookings", "/expenses", "/metrics",
            "hub.mode=subscribe", "hub.verify_token=", VERIFY_TOKEN, "hub.challenge=", "limit=", "offset=",
            "from=", "to=", "sender=", "Bearer ", API_TOKEN, "sha256=", "%2F", "%ZZ", "+", "&", "?"]] + ['"\\x00"']
    base64_tokens = ['"="', '"=="', '"+"', '"/"', '"-"', '"_"', '"."', '"\\x0a"', '"AAAA"', '"eyJ"']
    for name, tokens in [("envelope", envelope), ("appointment", flow), ("expense", flow), ("webhook", webhook),
                         ("pem", pem), ("cgi", cgi + envelope), ("base64", base64_tokens)]:
        (DICTS / f"{name}.dict").write_text("\n".join(dict.fromkeys(tokens)) + "\n")


def main() -> None:
    flows()
    envelopes()
    pems()
    webhooks()
    cgi()
    dictionaries()


if __name__ == "__main__":
    main()
