"""FastCGI spoken directly (responder role, one request per connection), with the exact bytes under the caller's
control: a whole request as one message, or its pieces (to stop half-way, trickle the body, or hang up before the
answer). Used by the fault tests and by scripts/leakcheck (a fast client: no subprocess per request).
"""

from __future__ import annotations

import socket
import struct
from typing import Iterable

from flowclient import HttpResponse, sign

BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
HEADER = struct.Struct(">BBHHBx")  # version, type, request id, content length, padding length


def records(kind: int, content: bytes, request_id: int = 1) -> bytes:
    """``content`` as records of ``kind`` (at most 65535 bytes each); an empty record when ``content`` is empty
    (the end of a stream)."""
    out = bytearray()
    for start in range(0, max(len(content), 1), 65535):
        chunk = content[start:start + 65535]
        pad = -len(chunk) % 8
        out += HEADER.pack(1, kind, request_id, len(chunk), pad) + chunk + bytes(pad)
    return bytes(out)


def name_value(name: str, value: str) -> bytes:
    """One FastCGI name-value pair (1-byte lengths below 128, else 4 bytes with the high bit set)."""
    n, v = name.encode("latin-1"), value.encode("latin-1")
    lengths = b"".join(bytes([len(d)]) if len(d) < 128 else struct.pack(">I", len(d) | 1 << 31) for d in (n, v))
    return lengths + n + v


def cgi_params(method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = (),
               query: str = "") -> dict[str, str]:
    """The params a web server sends: ``headers`` become ``HTTP_*``."""
    params = {"REQUEST_METHOD": method, "SCRIPT_NAME": path, "REQUEST_URI": path + ("?" + query if query else ""),
              "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    if body or method == "POST":
        params["CONTENT_LENGTH"] = str(len(body))
        params["CONTENT_TYPE"] = "application/json"
    for name, value in headers:
        params["HTTP_" + name.upper().replace("-", "_")] = value
    return params


def begin(params: dict[str, str]) -> bytes:
    """BEGIN_REQUEST (responder role, connection closed after the request) and the whole params stream."""
    pairs = b"".join(name_value(k, v) for k, v in params.items())
    return records(BEGIN_REQUEST, struct.pack(">HB5x", 1, 0)) + records(PARAMS, pairs) + records(PARAMS, b"")


def message(method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = (),
            query: str = "") -> bytes:
    """A complete request: begin, the body as STDIN and the end of STDIN."""
    return begin(cgi_params(method, path, body, headers, query)) + records(STDIN, body) + records(STDIN, b"")


def signed_post(path: str, body: bytes, secret: str) -> bytes:
    """A POST signed like Meta signs it (``X-Hub-Signature-256``)."""
    return message("POST", path, body, [("X-Hub-Signature-256", sign(secret, body))])


def connect(address: str | tuple[str, int], timeout: float = 20.0) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def read_answer(sock: socket.socket) -> HttpResponse:
    """Reads records until END_REQUEST; STDOUT is the CGI answer (``Status:``, headers, blank line, body)."""
    buffer = bytearray()
    stdout = bytearray()
    while True:
        chunk = sock.recv(262144)
        if not chunk:
            raise ConnectionError(f"the responder closed the connection before END_REQUEST ({len(stdout)} bytes)")
        buffer += chunk
        while len(buffer) >= 8:
            _, kind, _, length, pad = HEADER.unpack_from(buffer)
            if len(buffer) < 8 + length + pad:
                break
            if kind == STDOUT:
                stdout += buffer[8:8 + length]
            elif kind == END_REQUEST:
                return parse_answer(bytes(stdout))
            del buffer[:8 + length + pad]


def parse_answer(raw: bytes) -> HttpResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, headers = 200, []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return HttpResponse(status, "", headers, body)


def exchange(address: str | tuple[str, int], request: bytes, timeout: float = 20.0) -> HttpResponse:
    """Sends one whole request on a new connection and reads the answer."""
    with connect(address, timeout) as sock:
        sock.sendall(request)
        return read_answer(sock)
