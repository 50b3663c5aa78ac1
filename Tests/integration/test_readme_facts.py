"""README STATEMENTS pinned through the real binary and the real tools: the `since` example of the read API exactly
as written, the `openssl genrsa` key forms on OpenSSL 3 (both load), and what a purge does to the table gauges of
/metrics."""

from __future__ import annotations

import re
import shlex
import subprocess
import time

from conftest import REPO, clean_env, make_database, parse_cgi_output, write_config
from flowclient import KeyPair
from test_maintenance import seed
from test_operator_commands import run

README = (REPO / "README.md").read_text()
TOKEN = "readme-facts-token-0123456789"


def cgi_get(binary, config, path: str, query: str = "") -> tuple[int, str]:
    env = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", SCRIPT_NAME=path, QUERY_STRING=query,
                    SERVER_PROTOCOL="HTTP/1.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    result = subprocess.run([str(binary), "--config", str(config)], env=env, capture_output=True, timeout=30)
    answer = parse_cgi_output(result.stdout)
    return answer.status, answer.body.decode(errors="replace")


def test_since_example_with_an_offset_works_as_written(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, API_TOKEN=TOKEN)
    make_database(binary, config, tmp_path)
    row = next(line for line in README.splitlines() if line.startswith("| `/messages` |"))
    examples = re.findall(r"`(since=[^`]+)`", row)
    assert examples, row
    for example in examples:
        status, body = cgi_get(binary, config, "/messages", example)
        assert status == 200, (example, status, body)
    raw = examples[0].replace("%2B", "+")
    assert raw != examples[0]
    status, body = cgi_get(binary, config, "/messages", raw)
    assert status == 400 and "%2B" in body, (status, body)


def test_openssl_genrsa_forms_as_the_readme_says_and_both_load(binary, app_secret, tmp_path):
    section = README.split("## Uploading the public key", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in section.splitlines()
                if line.startswith("    openssl ")]
    genrsa = next(c for c in commands if c.startswith("openssl genrsa"))
    pubout = next(c for c in commands if c.startswith("openssl rsa"))
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("readme passphrase\n")
    passphrase.chmod(0o600)
    expected = {"": "BEGIN ENCRYPTED PRIVATE KEY", "-traditional": "BEGIN RSA PRIVATE KEY"}
    for option, header in expected.items():
        assert f"`{header}`" in section and (not option or f"`{option}`" in section)
        directory = tmp_path / (option.strip("-") or "default")
        directory.mkdir()
        generate = shlex.split(genrsa)  # the key size stays last, where genrsa wants it
        extra = ([option] if option else []) + ["-passout", f"file:{passphrase}"]
        subprocess.run(generate[:-1] + extra + generate[-1:], cwd=directory, check=True, capture_output=True)
        subprocess.run(shlex.split(pubout) + ["-passin", f"file:{passphrase}"], cwd=directory, check=True,
                       capture_output=True)
        pem = (directory / "private.pem").read_text()
        assert pem.startswith(f"-----{header}-----"), pem[:80]
        if option:
            assert "DEK-Info: DES-EDE3-CBC" in pem
        keys = KeyPair(str(directory / "private.pem"), str(directory / "public.pem"), "readme passphrase",
                       str(passphrase))
        config = write_config(directory / "flows.env", keys, app_secret, directory)
        config.chmod(0o600)
        checked = subprocess.run([str(binary), "check", "--config", str(config)], capture_output=True, text=True,
                                 env=clean_env(), timeout=60)
        assert f"private key {keys.private_pem}: RSA-2048" in checked.stdout, checked.stdout + checked.stderr


def gauges(binary, config) -> dict[str, int]:
    status, body = cgi_get(binary, config, "/metrics")
    assert status == 200, body
    names = ("flows_bookings_total", "flows_expenses_total", "flows_webhook_messages_total")
    return {name: int(float(re.search(rf"^{name} (\S+)$", body, re.MULTILINE).group(1))) for name in names}


def test_purge_lowers_the_messages_gauge_but_not_bookings_or_expenses(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, API_TOKEN=TOKEN, RETENTION_DAYS="90")
    make_database(binary, config, tmp_path)
    seed(tmp_path / "flows.db", int(time.time()))
    before = gauges(binary, config)
    assert before == {"flows_bookings_total": 2, "flows_expenses_total": 2, "flows_webhook_messages_total": 2}
    assert run(binary, config, "purge").returncode == 0
    after = gauges(binary, config)
    assert after == {"flows_bookings_total": 2, "flows_expenses_total": 2, "flows_webhook_messages_total": 1}
    assert "anonymises bookings and expenses, whose rows and so\nwhose gauges stay" in README
