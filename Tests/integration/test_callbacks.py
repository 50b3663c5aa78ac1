"""CALLBACK OUTBOX: a completion confirmed by an nfm_reply webhook is forwarded to CALLBACK_URL, also when the
business system was down at first (retried with backoff), and only once however often Meta redelivers it.
The business system is a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import http.server
import json
import sqlite3
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (STORES, Processes, Store, clean_env, fcgi_request, free_port, make_deployment, make_store, sign,
                      start_listen, wait_until, write_config)


class Receiver:
    """The business system: records every POSTed JSON body."""

    def __init__(self, port: int):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                length = int(self.headers["Content-Length"])
                received.append((self.path, self.headers["Content-Type"], json.loads(self.rfile.read(length))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def nfm_reply_webhook(params: dict, sender: str, message_id: str) -> tuple[dict, bytes]:
    """A webhook delivering one completed flow (an nfm_reply carrying ``params``): the message and the body."""
    message = {"from": sender, "id": message_id, "timestamp": "1795435200", "type": "interactive",
               "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                                  "response_json": json.dumps(params)}}}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [message]}}]}]}).encode()
    return message, body


def outbox(db) -> list[tuple]:
    """The outbox rows of a SQLite file or a ``Store``."""
    sql = ("SELECT flow_token, attempts, CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END, last_error "
           "FROM webhook_outbox")
    if isinstance(db, Store):
        return db.rows(sql)
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("kind", STORES)
def test_completion_forwarded_after_the_business_system_comes_back(kind, request, binary, keys, app_secret,
                                                                   tmp_path):
    port = free_port()  # nothing listens here yet: the first attempt is refused
    processes = Processes()
    receiver = None
    try:
        db = make_store(kind, tmp_path, request)
        dep = make_deployment("nginx+listen-unix", binary, keys, app_secret, tmp_path, processes,
                              CALLBACK_URL=f"http://127.0.0.1:{port}/flows/completed", DATABASE_URL=db.database_url)
        params = {"flow_token": "cb-" + str(port), "booking_id": 7}
        message, body = nfm_reply_webhook(params, "15550001234", f"wamid.cb-{port}")
        ok = dep.post_signed("/webhook", body)
        assert ok.status == 200, (ok.body, dep.logs())

        rows = wait_until(lambda: [r for r in outbox(db) if r[1] >= 1] or None, 10, "a failed first attempt")
        token, attempts, delivered, error = rows[0]
        assert (token, delivered) == (params["flow_token"], 0)
        assert "cannot connect" in error, error

        receiver = Receiver(port)
        wait_until(lambda: receiver.received, 20, "the retried delivery")
        path, content_type, payload = receiver.received[0]
        assert path == "/flows/completed" and content_type == "application/json"
        assert payload["flow_token"] == params["flow_token"]
        assert payload["response"] == params
        assert payload["message_id"] == message["id"] and payload["from"] == "15550001234"
        wait_until(lambda: outbox(db)[0][2] == 1, 5, "the delivery recorded")

        # Meta redelivers the same webhook: stored once, forwarded once.
        assert dep.post_signed("/webhook", body).status == 200
        time.sleep(2.5)
        assert len(receiver.received) == 1
        assert len(outbox(db)) == 1
        assert "callback delivered" in dep.logs()
    finally:
        if receiver:
            receiver.stop()
        processes.stop_all()


def test_completion_forwarded_over_https(binary, keys, app_secret, tmp_path):
    """CALLBACK_URL=https://...: the certificate is verified against SSL_CERT_FILE of the responder's environment."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    port = free_port()
    receiver = Receiver(port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    processes = Processes()
    try:
        config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path,
                              CALLBACK_URL=f"https://localhost:{port}/hooks/completed")
        sock = str(tmp_path / "own.sock")
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}", env=clean_env(SSL_CERT_FILE=str(cert)))
        params = {"flow_token": "tls-" + str(port), "expense_id": 3}
        _, body = nfm_reply_webhook(params, "15550004321", f"wamid.tls-{port}")
        ok = fcgi_request(sock, "POST", "/webhook", body, [("X-Hub-Signature-256", sign(app_secret, body))])
        assert ok.status == 200, ok.body
        wait_until(lambda: receiver.received, 20, "the delivery over https")
        path, content_type, payload = receiver.received[0]
        assert path == "/hooks/completed" and payload["response"] == params
        wait_until(lambda: outbox(tmp_path / "flows.db")[0][2] == 1, 5, "the delivery recorded")
    finally:
        receiver.stop()
        processes.stop_all()
