"""`flows-fcgi upload-flow NAME --flow-id ID` against a local stand-in for Meta's Graph API: the exact multipart
request Meta documents for updating a Flow's JSON (`POST /<version>/<FLOW_ID>/assets`, `name=flow.json`,
`asset_type=FLOW_JSON`, `file`), FLOWS_DIR (setting, --config file, and the shipped flows/ folder found from the
binary), Meta's validation errors and error answers printed, an unknown flow name, and --dry-run sending nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, clean_env
from test_probe import TOKEN, GraphStandIn, run, token_file  # noqa: F401 (token_file is a fixture)

FLOW_ID = "1234567890123456"
# A flow written by the test, with bytes that must arrive unchanged (non-ASCII text, no trailing newline).
FLOW = {"version": "7.3", "data_api_version": "3.0", "routing_model": {"HELLO": []},
        "screens": [{"id": "HELLO", "title": "Olá, São Paulo", "terminal": True, "layout": {
            "type": "SingleColumnLayout", "children": [
                {"type": "TextBody", "text": "Grüße — ünïcødé ✓"},
                {"type": "Footer", "label": "Send", "on-click-action": {"name": "data_exchange", "payload": {}}}]}}]}


@pytest.fixture
def flows_dir(tmp_path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "hello.json").write_bytes(json.dumps(FLOW, ensure_ascii=False, indent=1).encode())
    (folder / "hello.rules.json").write_text("{}")
    (folder / "README.md").write_text("not a flow")
    return folder


def upload(binary, token_file, base: str, *extra: str, env=None, name="hello"):
    return run(binary, "upload-flow", name, "--flow-id", FLOW_ID, "--token-file", str(token_file),
               "--base-url", base, *extra, env=env)


def multipart(headers: dict, body: bytes) -> list[tuple[dict, bytes]]:
    """The parts of a multipart/form-data body, read strictly (RFC 7578 framing, CRLF line ends)."""
    kind, _, parameter = headers["Content-Type"].partition("; ")
    assert kind == "multipart/form-data" and parameter.startswith("boundary="), headers["Content-Type"]
    boundary = b"--" + parameter.removeprefix("boundary=").encode()
    pieces = body.split(boundary)
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n", body[-60:]
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n") and piece.endswith(b"\r\n"), piece[:60]
        head, _, content = piece[2:-2].partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields, content))
    return parts


def check_request(stand_in: GraphStandIn, flow_bytes: bytes) -> None:
    assert len(stand_in.requests) == 1
    method, path, headers, body = stand_in.requests[0]
    assert method == "POST" and path == f"/v21.0/{FLOW_ID}/assets"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    parts = multipart(headers, body.encode())
    assert [(fields["Content-Disposition"], fields.get("Content-Type")) for fields, _ in parts] == [
        ('form-data; name="name"', None), ('form-data; name="asset_type"', None),
        ('form-data; name="file"; filename="flow.json"', "application/json")]
    assert [content for _, content in parts] == [b"flow.json", b"FLOW_JSON", flow_bytes]


def test_upload_sends_the_flow_json_as_meta_documents(binary, token_file, flows_dir):
    stand_in = GraphStandIn(answer=(200, {"success": True, "validation_errors": []}))
    try:
        result = upload(binary, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0/",
                        env=clean_env(FLOWS_DIR=str(flows_dir)))
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert result.stdout == f"uploaded {flows_dir}/hello.json ({len((flows_dir / 'hello.json').read_bytes())} " \
            f"bytes) as the Flow JSON of flow {FLOW_ID}\n"
        assert TOKEN not in result.stdout + result.stderr
        check_request(stand_in, (flows_dir / "hello.json").read_bytes())
    finally:
        stand_in.stop()


def test_flows_dir_from_the_config_file_and_the_shipped_folder_by_default(binary, token_file, flows_dir, tmp_path):
    stand_in = GraphStandIn(answer=(200, {"success": True}))
    try:
        base = f"http://127.0.0.1:{stand_in.port}/v21.0"
        config = tmp_path / "flows.env"
        config.write_text(f"FLOWS_DIR={flows_dir}\n")
        result = upload(binary, token_file, base, "--config", str(config))
        assert result.returncode == 0, (result.stdout, result.stderr)
        check_request(stand_in, (flows_dir / "hello.json").read_bytes())
        # Nothing configured: the binary finds the shipped flows/ folder of its source tree.
        stand_in.requests.clear()
        result = upload(binary, token_file, base, name="feedback")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert f"uploaded {REPO / 'flows' / 'feedback.json'} " in result.stdout
        check_request(stand_in, (REPO / "flows" / "feedback.json").read_bytes())
    finally:
        stand_in.stop()


def test_metas_validation_errors_are_printed(binary, token_file, flows_dir):
    errors = [
        {"error": "INVALID_PROPERTY_VALUE", "error_type": "FLOW_JSON_ERROR",
         "message": "Invalid value found for property 'type'.", "line_start": 10, "line_end": 10,
         "column_start": 21, "column_end": 34,
         "pointers": [{"line_start": 10, "line_end": 10, "column_start": 21, "column_end": 34,
                       "path": "screens[0].layout.children[0].type"}]},
        {"error": "MISSING_REQUIRED_PROPERTY", "error_type": "JSON_SCHEMA_ERROR",
         "message": "The property \"title\" is required."},
    ]
    stand_in = GraphStandIn(answer=(200, {"success": True, "validation_errors": errors}))
    try:
        result = upload(binary, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0",
                        env=clean_env(FLOWS_DIR=str(flows_dir)))
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr == (
            f"Meta reported 2 validation errors in {flows_dir}/hello.json (flow {FLOW_ID}); fix and upload again:\n"
            "  FLOW_JSON_ERROR INVALID_PROPERTY_VALUE: Invalid value found for property 'type'. (line 10, column 21; "
            "at screens[0].layout.children[0].type)\n"
            "  JSON_SCHEMA_ERROR MISSING_REQUIRED_PROPERTY: The property \"title\" is required.\n")
        assert len(stand_in.requests) == 1
    finally:
        stand_in.stop()


def test_metas_error_answer_is_printed_without_the_token(binary, token_file, flows_dir):
    error = {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}}
    stand_in = GraphStandIn(answer=(400, error), chunked=True)
    try:
        result = upload(binary, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0",
                        env=clean_env(FLOWS_DIR=str(flows_dir)))
        assert result.returncode == 1
        assert result.stderr == "flows-fcgi: Meta refused the Flow JSON (HTTP 400): (#100) Invalid parameter\n"
        assert TOKEN not in result.stdout + result.stderr
    finally:
        stand_in.stop()


@pytest.mark.parametrize("name", ["nope", "hello.rules", "README", "../flows/hello", "Hello"])
def test_an_unknown_flow_name_sends_nothing(binary, token_file, flows_dir, name):
    stand_in = GraphStandIn()
    try:
        result = upload(binary, token_file, f"http://127.0.0.1:{stand_in.port}/v21.0", name=name,
                        env=clean_env(FLOWS_DIR=str(flows_dir)))
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert f"upload-flow: no flow '{name}' in {flows_dir} (flows there: hello)" in result.stderr
        assert stand_in.requests == []
    finally:
        stand_in.stop()


def test_dry_run_prints_the_request_and_sends_nothing(binary, token_file, flows_dir):
    stand_in = GraphStandIn()
    try:
        base = f"http://127.0.0.1:{stand_in.port}/v21.0"
        for extra in (["--token-file", str(token_file)], []):  # the token file is optional for a dry run
            result = run(binary, "upload-flow", "hello", "--flow-id", FLOW_ID, "--base-url", base, "--dry-run",
                         *extra, env=clean_env(FLOWS_DIR=str(flows_dir)))
            assert result.returncode == 0, (result.stdout, result.stderr)
            lines = result.stdout.splitlines()
            assert lines[0] == f"POST {base}/{FLOW_ID}/assets"
            assert lines[1].startswith("Content-Type: multipart/form-data; boundary=")
            assert lines[2] == f"Authorization: Bearer <the token in {extra[1] if extra else 'FILE'}>"
            assert lines[4:] == ["name=flow.json", "asset_type=FLOW_JSON",
                                 f"file=@{flows_dir}/hello.json ({len((flows_dir / 'hello.json').read_bytes())} bytes)"]
            assert TOKEN not in result.stdout + result.stderr
        assert stand_in.requests == []
    finally:
        stand_in.stop()


def test_usage_errors(binary, token_file, flows_dir):
    env = clean_env(FLOWS_DIR=str(flows_dir))
    for args, message in [
        (["hello", "--token-file", str(token_file)], "needs --flow-id ID (digits)"),
        (["hello", "--flow-id", "12a", "--token-file", str(token_file)], "needs --flow-id ID (digits)"),
        (["--flow-id", FLOW_ID, "--token-file", str(token_file)], "needs the flow's NAME"),
        (["hello", "--flow-id", FLOW_ID], "needs --token-file FILE"),
        (["hello", "--flow-id", FLOW_ID, "--token", "x"], "unknown option --token"),
    ]:
        result = run(binary, "upload-flow", *args, env=env)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    result = run(binary, "upload-flow", "hello", "--flow-id", FLOW_ID, "--dry-run",
                 env=clean_env(FLOWS_DIR=str(flows_dir / "missing")))
    assert result.returncode == 78 and f"FLOWS_DIR={flows_dir / 'missing'}: not a folder" in result.stderr
