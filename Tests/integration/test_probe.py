"""OPERATOR TOOLKIT: `flows-fcgi probe` against a real responder (its FastCGI socket, and nginx over HTTP), and
`flows-fcgi register-key` against local stand-ins for Meta's Graph API (plain HTTP and HTTPS with a self-signed
certificate trusted through SSL_CERT_FILE)."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from conftest import PREFIX, clean_env, free_port, make_deployment, write_config


def run(binary: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, env=env or clean_env())


@pytest.fixture(scope="module")
def deployment(binary, keys, app_secret, module_dir, module_processes):
    return make_deployment("nginx+listen-unix", binary, keys, app_secret, module_dir / "probe", module_processes)


def test_probe_pings_the_fastcgi_socket(binary, deployment):
    sock = deployment.workdir / "own.sock"
    result = run(binary, "probe", f"unix:{sock}", "--config", str(deployment.workdir / "flows.env"))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "HTTP 200" in result.stdout
    assert '"status": "active"' in result.stdout, result.stdout


def test_probe_init_over_nginx(binary, deployment):
    url = f"http://{deployment.address[0]}:{deployment.address[1]}{PREFIX}"
    result = run(binary, "probe", url, "--init", "--flow", "expense", "--config", str(deployment.workdir / "flows.env"))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert '"screen": "EXPENSE_FORM"' in result.stdout, result.stdout
    # The flow may also be named by the URL itself.
    result = run(binary, "probe", url + "/flows/expense", "--config", str(deployment.workdir / "flows.env"))
    assert result.returncode == 0 and '"status": "active"' in result.stdout, (result.stdout, result.stderr)


def test_probe_explains_a_wrong_app_secret(binary, deployment, keys, tmp_path):
    config = write_config(tmp_path / "probe.env", keys, "not-the-app-secret", tmp_path)
    result = run(binary, "probe", f"unix:{deployment.workdir / 'own.sock'}", "--config", str(config))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "432" in result.stderr and "APP_SECRET" in result.stderr, result.stderr
    assert "not-the-app-secret" not in result.stdout + result.stderr


def test_probe_explains_a_key_mismatch(binary, deployment, stranger_keys):
    url = f"http://{deployment.address[0]}:{deployment.address[1]}{PREFIX}/flows/appointment"
    fingerprint = subprocess.run(
        f"openssl pkey -pubin -in {stranger_keys.public_pem} -outform DER | sha256sum", shell=True,
        capture_output=True, text=True, check=True).stdout.split()[0]
    result = run(binary, "probe", url, "--public-key", stranger_keys.public_pem,
                 "--config", str(deployment.workdir / "flows.env"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "421" in result.stderr and "public key" in result.stderr, result.stderr
    assert fingerprint in result.stderr


def test_probe_explains_an_unknown_flow(binary, deployment):
    sock = deployment.workdir / "own.sock"
    result = run(binary, "probe", f"unix:{sock}", "--flow", "nonexistent", "--config",
                 str(deployment.workdir / "flows.env"))
    assert result.returncode == 1
    assert "404" in result.stderr and "/flows/nonexistent" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------------------
# register-key against a stand-in for the Graph API
# --------------------------------------------------------------------------------------------------------

TOKEN = "EAAG-test-token-0123456789"


class GraphStandIn:
    """Records each request; answers with ``answer`` (status, JSON)."""

    def __init__(self, answer=(200, {"success": True}), context: ssl.SSLContext | None = None,
                 chunked: bool = False):
        self.requests = requests = []
        self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                length = int(self.headers["Content-Length"])
                requests.append(("POST", self.path, dict(self.headers), self.rfile.read(length).decode()))
                payload = json.dumps(answer[1]).encode()
                self.send_response(answer[0])
                self.send_header("Content-Type", "application/json")
                if chunked:  # in two chunks, as a proxy in front of the Graph API may answer
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(payload) // 2
                    for part in (payload[:half], payload[half:], b""):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        Handler.protocol_version = "HTTP/1.1"
        self.server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        if context:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def tls_material(tmp_path) -> tuple[Path, ssl.SSLContext]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return cert, context


def register(binary, keys, token_file, base: str, env=None, *extra: str) -> subprocess.CompletedProcess:
    return run(binary, "register-key", "--phone-number-id", "106540352242922", "--public-key", keys.public_pem,
               "--token-file", str(token_file), "--base-url", base, *extra, env=env)


def check_upload(stand_in: GraphStandIn, keys) -> None:
    assert len(stand_in.requests) == 1
    method, path, headers, body = stand_in.requests[0]
    assert method == "POST" and path == "/v21.0/106540352242922/whatsapp_business_encryption"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(body, strict_parsing=True)
    assert list(form) == ["business_public_key"]
    assert form["business_public_key"][0].strip() == Path(keys.public_pem).read_text().strip()


def test_register_key_uploads_the_public_key(binary, keys, token_file):
    stand_in = GraphStandIn()
    try:
        result = register(binary, keys, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0/")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "uploaded the public key" in result.stdout
        assert TOKEN not in result.stdout + result.stderr
        check_upload(stand_in, keys)
    finally:
        stand_in.stop()


def test_register_key_from_the_configuration_and_dry_run(binary, keys, app_secret, token_file, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    result = run(binary, "register-key", "--phone-number-id", "42", "--config", str(config), "--token-file",
                 str(token_file), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "POST https://graph.facebook.com/v21.0/42/whatsapp_business_encryption" in result.stdout
    assert "business_public_key=-----BEGIN+PUBLIC+KEY-----%0A" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_register_key_prints_metas_error(binary, keys, token_file):
    error = {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}}
    stand_in = GraphStandIn(answer=(400, error), chunked=True)
    try:
        result = register(binary, keys, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0")
        assert result.returncode == 1
        assert "(HTTP 400): (#100) Invalid parameter\n" in result.stderr, result.stderr
        assert TOKEN not in result.stdout + result.stderr
    finally:
        stand_in.stop()


def test_register_key_over_https(binary, keys, token_file, tls_material):
    cert, context = tls_material
    stand_in = GraphStandIn(context=context)
    try:
        base = f"https://localhost:{stand_in.port}/v21.0"
        result = register(binary, keys, token_file, base, clean_env(SSL_CERT_FILE=str(cert)))
        assert result.returncode == 0, (result.stdout, result.stderr)
        check_upload(stand_in, keys)

        # Without the stand-in's certificate in the trust store the upload is refused before anything is sent.
        result = register(binary, keys, token_file, base, clean_env(SSL_CERT_FILE="/nonexistent"))
        assert result.returncode == 1
        assert "TLS handshake" in result.stderr and "certificate" in result.stderr, result.stderr
        assert len(stand_in.requests) == 1
    finally:
        stand_in.stop()
