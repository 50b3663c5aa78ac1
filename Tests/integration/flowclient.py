"""A stand-in for WhatsApp talking to a Flows data endpoint.

Independent of the responder's code: it only follows the protocol (shared spec, section 2).

* ``generate_keypair`` makes an RSA key pair with the openssl command-line tool.
* ``FlowCrypto`` encrypts a clear-text request for an endpoint's public key and decrypts its answer
  (RSA-OAEP with SHA-256 for both the OAEP hash and MGF1, AES-128-GCM, answer IV = request IV with every
  bit inverted).
* ``sign`` computes the ``X-Hub-Signature-256`` header value.
* ``http_request`` / ``HttpConnection`` is a small HTTP/1.1 client over a raw socket, so callers control
  every header line (including duplicates), can send a body slowly, or hang up in the middle.

Only the Python standard library and the ``cryptography`` package are used. Every decrypted answer of a shipped
flow is checked against its Flow JSON (flowjson.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import flowjson

__all__ = [
    "KeyPair",
    "generate_keypair",
    "load_public_key",
    "FlowCrypto",
    "RequestContext",
    "sign",
    "remember_personal",
    "SENT_PERSONAL",
    "HttpResponse",
    "HttpConnection",
    "http_request",
]


# --------------------------------------------------------------------------------------------------------
# Keys (openssl CLI)
# --------------------------------------------------------------------------------------------------------


@dataclass
class KeyPair:
    """Paths of a generated key pair, and the passphrase protecting the private key (None: unencrypted)."""

    private_pem: str
    public_pem: str
    passphrase: str | None
    passphrase_file: str | None

    def public_key(self) -> rsa.RSAPublicKey:
        with open(self.public_pem, "rb") as f:
            return load_public_key(f.read())


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def generate_keypair(
    directory: str,
    name: str = "flows",
    bits: int = 2048,
    passphrase: str | None = "generate",
    style: str = "pkcs8",
) -> KeyPair:
    """Generate an RSA key pair in ``directory`` with the openssl CLI.

    ``passphrase``: ``"generate"`` (default) makes a random one, ``None`` leaves the key unencrypted, any
    other string is used as is. ``style``: ``"pkcs8"`` writes ``BEGIN (ENCRYPTED) PRIVATE KEY`` (what
    ``openssl genrsa -des3`` writes on OpenSSL 3); ``"pkcs1"`` writes ``BEGIN RSA PRIVATE KEY`` (with the
    legacy ``Proc-Type``/``DEK-Info`` header when encrypted, like Meta's key generator).
    The public key is written as SPKI PEM (``BEGIN PUBLIC KEY``), the form uploaded to WhatsApp.
    Files: ``<name>-private.pem``, ``<name>-public.pem`` and, when encrypted, ``<name>-passphrase.txt``
    (mode 0600).
    """
    os.makedirs(directory, exist_ok=True)
    private = os.path.join(directory, f"{name}-private.pem")
    public = os.path.join(directory, f"{name}-public.pem")
    if passphrase == "generate":
        passphrase = secrets.token_urlsafe(24)
    pass_file = None
    plain = os.path.join(directory, f".{name}-plain.pem")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", plain)
    try:
        os.chmod(plain, 0o600)
        if passphrase is None:
            if style == "pkcs1":
                _openssl("pkey", "-in", plain, "-traditional", "-out", private)
            else:
                _openssl("pkey", "-in", plain, "-out", private)
        else:
            pass_file = os.path.join(directory, f"{name}-passphrase.txt")
            fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(passphrase + "\n")
            if style == "pkcs1":
                _openssl("rsa", "-in", plain, "-traditional", "-des3", "-passout", f"file:{pass_file}",
                         "-out", private)
            else:
                _openssl("pkcs8", "-topk8", "-in", plain, "-v2", "aes-256-cbc", "-passout",
                         f"file:{pass_file}", "-out", private)
        os.chmod(private, 0o600)
        _openssl("pkey", "-in", plain, "-pubout", "-out", public)
    finally:
        os.unlink(plain)
    return KeyPair(private, public, passphrase, pass_file)


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """Load an SPKI (``BEGIN PUBLIC KEY``) PEM."""
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


# --------------------------------------------------------------------------------------------------------
# Personal data the client sent: conftest checks every log the servers wrote for it after each test
# --------------------------------------------------------------------------------------------------------

#: Keys whose string values are personal data or flow tokens, in clear requests and webhook bodies.
PERSONAL_KEYS = frozenset({"flow_token", "name", "email", "phone", "more_details", "description", "from",
                           "recipient_id", "wa_id", "body"})
#: Shorter values are not recorded: they would match unrelated log text.
PERSONAL_MIN_LENGTH = 4
#: Every such value a client in this test process encrypted or signed.
SENT_PERSONAL: set[str] = set()


def remember_personal(value: object, key: str | None = None) -> None:
    """Record the personal values in ``value`` (a clear request, a webhook body, or a part of one); an
    ``nfm_reply``'s ``response_json`` string is opened and searched too (its ``name`` and ``body`` name the
    Flow, not a person)."""
    if isinstance(value, dict):
        if key == "nfm_reply":
            value = {"response_json": value.get("response_json")}
        for k, v in value.items():
            remember_personal(v, k)
    elif isinstance(value, list):
        for v in value:
            remember_personal(v, key)
    elif isinstance(value, str):
        if key == "response_json":
            try:
                remember_personal(json.loads(value))
            except ValueError:
                pass
        elif key in PERSONAL_KEYS and len(value) >= PERSONAL_MIN_LENGTH:
            SENT_PERSONAL.add(value)


def _remember_json(data: bytes) -> None:
    try:
        remember_personal(json.loads(data))
    except (ValueError, RecursionError):  # not JSON, or nested too deep (malformed-input tests): nothing to record
        pass


# --------------------------------------------------------------------------------------------------------
# Envelope crypto
# --------------------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def invert_iv(iv: bytes) -> bytes:
    """The answer's IV: every bit of the request IV inverted (not reversed)."""
    return bytes(b ^ 0xFF for b in iv)


@dataclass
class RequestContext:
    """What the client keeps from one request to read its answer."""

    aes_key: bytes
    iv: bytes
    body: bytes  # the raw JSON envelope that was (or will be) POSTed
    request: dict | bytes | None = None  # the clear-text request, for checking the answer against the Flow JSON

    def decrypt_answer(self, body: bytes | str) -> dict:
        """Decrypt a 200 (or 427) answer body: base64(AES-GCM(ciphertext || tag)) under the inverted IV.

        An answer of a shipped flow (``flows/*.json``) must satisfy that Flow JSON (flowjson.py): every declared
        field, nothing undeclared but ``error_message``, a transition the ``routing_model`` allows.
        """
        if isinstance(body, bytes):
            body = body.decode("ascii")
        blob = base64.b64decode(body.strip(), validate=True)
        clear = AESGCM(self.aes_key).decrypt(invert_iv(self.iv), blob, None)
        answer = json.loads(clear.decode("utf-8"))
        problems = flowjson.answer_problems(self.request, answer) if self.request is not None else []
        assert not problems, f"the answer breaks the Flow JSON: {problems}"
        return answer


class FlowCrypto:
    """Builds encrypted envelopes for one endpoint public key."""

    def __init__(self, public_key: rsa.RSAPublicKey | bytes | str):
        if not isinstance(public_key, rsa.RSAPublicKey):
            public_key = load_public_key(public_key)
        self.public_key = public_key

    @classmethod
    def from_file(cls, path: str) -> "FlowCrypto":
        with open(path, "rb") as f:
            return cls(f.read())

    def wrap_key(self, aes_key: bytes) -> bytes:
        return self.public_key.encrypt(
            aes_key,
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )

    def encrypt(
        self,
        request: dict | bytes,
        aes_key: bytes | None = None,
        iv: bytes | None = None,
        extra: dict | None = None,
    ) -> RequestContext:
        """Envelope for ``request`` (a dict serialised as JSON, or exact clear-text bytes).

        Fresh random 16-byte AES key and 16-byte IV unless given. ``extra`` adds members to the envelope.
        """
        aes_key = aes_key if aes_key is not None else os.urandom(16)
        iv = iv if iv is not None else os.urandom(16)
        clear = request if isinstance(request, bytes) else json.dumps(request).encode("utf-8")
        _remember_json(clear)
        envelope = {
            "encrypted_flow_data": _b64(AESGCM(aes_key).encrypt(iv, clear, None)),
            "encrypted_aes_key": _b64(self.wrap_key(aes_key)),
            "initial_vector": _b64(iv),
        }
        if extra:
            envelope.update(extra)
        return RequestContext(aes_key, iv, json.dumps(envelope).encode("utf-8"), request)


def sign(secret: str | bytes, body: bytes) -> str:
    """``X-Hub-Signature-256`` value: ``sha256=<lowercase hex HMAC-SHA256(secret, raw body)>``."""
    _remember_json(body)  # a webhook body: senders, texts, flow tokens
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------------
# HTTP/1.1 over a raw socket
# --------------------------------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:  # short, for assertion messages
        body = self.body[:300]
        return f"HttpResponse({self.status} {self.reason}, headers={self.headers}, body={body!r})"


class HttpConnection:
    """One HTTP/1.1 connection (``Connection: close``) to ``127.0.0.1:port`` or a unix socket path.

    Lower level than ``http_request``: ``send_head``, ``send`` (body pieces), ``read_response``, ``close``.
    """

    def __init__(self, address: tuple[str, int] | str, timeout: float = 15.0):
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            host_header = "localhost"
        else:
            host, port = address
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ValueError("this client only talks to the loopback interface")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            host_header = f"{host}:{port}"
        self.host_header = host_header
        self.sock.settimeout(timeout)
        self.sock.connect(address)

    def send_head(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        content_length: int | None = None,
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}", "Connection: close"]
        names = {k.lower() for k, _ in headers}
        if content_length is not None and "content-length" not in names:
            lines.append(f"Content-Length: {content_length}")
        lines += [f"{k}: {v}" for k, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_slowly(self, data: bytes, pieces: int, duration: float) -> None:
        """Send ``data`` in ``pieces`` chunks spread over ``duration`` seconds."""
        step = max(1, -(-len(data) // pieces))
        chunks = [data[i:i + step] for i in range(0, len(data), step)]
        pause = duration / max(1, len(chunks))
        for chunk in chunks:
            self.sock.sendall(chunk)
            time.sleep(pause)

    def read_response(self, head_only: bool = False) -> HttpResponse:
        """Read one response; ``head_only`` for answers to HEAD (headers, no body)."""
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a full response head: {bytes(buf)!r}")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        response = HttpResponse(status, reason, headers)
        te = (response.header("Transfer-Encoding") or "").lower()
        length = response.header("Content-Length")
        body = bytearray(rest)
        if head_only or response.status in (204, 304) or 100 <= response.status < 200:
            response.body = b""
        elif "chunked" in te:
            response.body = self._read_chunked(body)
        elif length is not None:
            n = int(length)
            while len(body) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed inside the body")
                body += chunk
            response.body = bytes(body[:n])
        else:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            response.body = bytes(body)
        return response

    def _read_chunked(self, buf: bytearray) -> bytes:
        out = bytearray()

        def need(n: int) -> None:
            while len(buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed inside a chunked body")
                buf.extend(chunk)

        while True:
            while b"\r\n" not in buf:
                need(len(buf) + 1)
            line, _, remainder = bytes(buf).partition(b"\r\n")
            buf[:] = remainder
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                return bytes(out)
            need(size + 2)
            out += buf[:size]
            del buf[: size + 2]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "HttpConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_request(
    address: tuple[str, int] | str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = 15.0,
) -> HttpResponse:
    """One request on a fresh connection; ``headers`` are sent exactly as given, duplicates included."""
    headers = list(headers)
    with HttpConnection(address, timeout) as conn:
        has_body = bool(body) or method in ("POST", "PUT")
        conn.send_head(method, path, headers, len(body) if has_body else None)
        if body:
            conn.send(body)
        return conn.read_response(head_only=method == "HEAD")


# --------------------------------------------------------------------------------------------------------
# A whole client: envelope + signature + POST + decryption
# --------------------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request/answer round trip of ``WhatsAppClient.send``."""

    request: dict
    context: RequestContext
    response: HttpResponse

    @property
    def status(self) -> int:
        return self.response.status

    def answer(self) -> dict:
        """The decrypted answer (200, or 427 with a body)."""
        return self.context.decrypt_answer(self.response.body)


class WhatsAppClient:
    """Signs and encrypts clear-text requests for one endpoint URL the way WhatsApp does."""

    def __init__(
        self,
        address: tuple[str, int] | str,
        public_key: rsa.RSAPublicKey | bytes | str,
        app_secret: str,
        timeout: float = 15.0,
    ):
        self.address = address
        self.crypto = FlowCrypto(public_key)
        self.app_secret = app_secret
        self.timeout = timeout

    def send(self, path: str, request: dict, extra_headers: Sequence[tuple[str, str]] = ()) -> Exchange:
        ctx = self.crypto.encrypt(request)
        headers = [
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", sign(self.app_secret, ctx.body)),
            *extra_headers,
        ]
        response = http_request(self.address, "POST", path, ctx.body, headers, self.timeout)
        return Exchange(request, ctx, response)
