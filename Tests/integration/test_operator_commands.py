"""OPERATOR COMMANDS on a real database written by real requests: `flows-fcgi bookings`, `cancel-booking` (the seat
becomes free again: another flow token can book it) and `expenses` (table and CSV with the formula guard)."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from urllib.parse import quote

from conftest import REPO, Processes, clean_env, make_database, start_listen, write_config
from test_appointment import AppointmentClient, bookings, success_params, tomorrow, write_catalog


def run(binary, config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args, "--config", str(config)], capture_output=True, text=True,
                          env=clean_env(), timeout=30)


def test_bookings_list_and_cancel_frees_the_seat(binary, keys, app_secret, tmp_path):
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path,
                          APPOINTMENT_CATALOG=str(write_catalog(tmp_path)))
    sock = tmp_path / "ops.sock"
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        client = AppointmentClient(str(sock), keys, app_secret)
        fields = client.journey_to_summary("ops-1", tomorrow, lambda times: "10:00")
        params = success_params(client.ok("ops-1", "data_exchange", "SUMMARY", fields))
        assert params is not None
        booking_id = int(params["booking_id"])

        listed = run(binary, config, "bookings")
        assert listed.returncode == 0, listed.stderr
        assert f"{booking_id} " in listed.stdout and "10:00" in listed.stdout and "Test Customer" in listed.stdout

        # The slot is full for a second token (capacity 1) ...
        fields2 = client.journey_to_summary("ops-2", tomorrow, lambda times: "10:15")
        taken = client.ok("ops-2", "data_exchange", "SUMMARY", {**fields2, "time": "10:00"})
        assert success_params(taken) is None, taken

        cancelled = run(binary, config, "cancel-booking", str(booking_id))
        assert cancelled.returncode == 0, cancelled.stderr
        assert "free again" in cancelled.stdout
        assert run(binary, config, "cancel-booking", str(booking_id)).returncode == 1  # already cancelled
        assert run(binary, config, "cancel-booking", "999999").returncode == 1
        assert f"{booking_id} " not in run(binary, config, "bookings").stdout
        assert "cancelled" in run(binary, config, "bookings", "--all").stdout

        # ... and free again after the cancellation.
        fields3 = client.journey_to_summary("ops-3", tomorrow, lambda times: "10:00")
        assert fields3["time"] == "10:00"
        again = success_params(client.ok("ops-3", "data_exchange", "SUMMARY", fields3))
        assert again is not None and again["time"] == "10:00"
        assert [row[4] for row in bookings(tmp_path / "flows.db")] == ["cancelled", "booked"]
    finally:
        processes.stop_all()


def test_expenses_table_and_csv(binary, keys, app_secret, tmp_path):
    from flowclient import FlowCrypto, sign
    from test_appointment import FastCGIPost

    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    sock = tmp_path / "ops.sock"
    processes = Processes()
    try:
        start_listen(binary, config, tmp_path, processes, f"unix:{sock}")
        crypto = FlowCrypto(keys.public_key())
        for token, amount, description in (("e-1", "12.50", "=HYPERLINK(\"x\")"), ("e-2", "7", "taxi, airport")):
            request = {"version": "3.0", "action": "data_exchange", "screen": "EXPENSE_FORM", "flow_token": token,
                       "data": {"amount": amount, "category": "food", "description": description}}
            context = crypto.encrypt(request)
            response = FastCGIPost(str(sock), "/flows/expense", context.body, sign(app_secret, context.body)).send()
            assert response.status == 200, response
            assert context.decrypt_answer(response.body)["screen"] == "SUCCESS"

        table = run(binary, config, "expenses")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:3] == ["id", "date", "amount"]
        assert "7.00" in lines[1] and "12.50" in lines[2]  # newest first

        exported = run(binary, config, "expenses", "--csv")
        assert exported.returncode == 0, exported.stderr
        rows = list(csv.reader(io.StringIO(exported.stdout)))
        assert rows[0][:4] == ["id", "created_at", "expense_date", "amount"]
        assert [r[3] for r in rows[1:]] == ["12.50", "7.00"]
        assert rows[1][6] == "'=HYPERLINK(\"x\")"  # neutralised for spreadsheets
        assert rows[2][6] == "taxi, airport"
    finally:
        processes.stop_all()


def test_commands_without_a_database_fail_clearly(binary, tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run(binary, empty, "expenses")
    assert result.returncode == 1
    assert "DATABASE_URL is not set" in result.stderr
    assert os.path.exists(tmp_path / "empty.env")


# --------------------------------------------------------------------------------------------------------
# Arguments, read-only opening, usage texts
# --------------------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (["bookings", "--from", "garbage"], "--from must be a date written YYYY-MM-DD"),
    (["bookings", "--to", "2026-02-30"], "--to must be a date written YYYY-MM-DD"),
    (["bookings", "--from"], "--from needs a value"),
    (["bookings", "--from", "2026-01-01", "--from", "2026-01-02"], "--from given more than once"),
    (["bookings", "--everything"], "unknown option --everything"),
    (["expenses", "--limit", "abc"], "--limit must be a whole number from 1 to 100"),
    (["expenses", "--limit", "-1"], "--limit must be a whole number from 1 to 100"),
    (["expenses", "--limit=101"], "--limit must be a whole number from 1 to 100"),
    (["expenses", "--offset", "x"], "--offset must be a whole number from 0"),
    (["expenses", "--csv=yes"], "--csv takes no value"),
    (["expenses", "extra"], "unexpected argument extra"),
    (["cancel-booking", "abc"], "needs one booking id"),
    (["purge", "--days", "-5"], "--days must be a whole number from 0 to 36500"),
    (["purge", "--days", "ten"], "--days must be a whole number from 0 to 36500"),
    (["check", "--verbose"], "unknown option --verbose"),
]


def test_bad_arguments_exit_2_naming_the_argument(binary, keys, app_secret, tmp_path):
    """Checked before anything is opened: the database here does not even exist."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    for arguments, message in BAD_ARGUMENTS:
        result = run(binary, config, *arguments)
        assert result.returncode == 2, (arguments, result.returncode, result.stdout, result.stderr)
        assert message in result.stderr, (arguments, result.stderr)
        assert f"flows-fcgi {arguments[0]} --help" in result.stderr, result.stderr
        assert "RETENTION_DAYS" not in result.stderr
    assert not (tmp_path / "flows.db").exists()
    keygen = subprocess.run([str(binary), "keygen", "--out", str(tmp_path), "--bits", "1024"], capture_output=True,
                            text=True, env=clean_env(), timeout=30)
    assert keygen.returncode == 2 and "--bits must be a whole number from 2048 to 8192" in keygen.stderr


def read_api_status(binary, config, resource: str, query: str, token: str) -> int:
    """The read API's answer to ``GET .../resource?query`` through the binary as a plain CGI program."""
    from conftest import parse_cgi_output
    env = clean_env(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", SCRIPT_NAME=f"/{resource}",
                    QUERY_STRING=query, SERVER_PROTOCOL="HTTP/1.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    result = subprocess.run([str(binary), "--config", str(config)], env=env, capture_output=True, timeout=30)
    return parse_cgi_output(result.stdout).status


def test_command_line_and_read_api_accept_the_same_values(binary, keys, app_secret, tmp_path):
    token = "api-token-" + "x" * 16
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, API_TOKEN=token)
    make_database(binary, config, tmp_path)
    cases = [("expenses", "limit", value) for value in ("abc", "-1", "0", "1", "100", "101", "+5", "12345678901")]
    cases += [("expenses", "offset", value) for value in ("-1", "0", "7", "1000000001")]
    cases += [("bookings", name, value) for name in ("from", "to")
              for value in ("garbage", "2026-02-30", "2026-02-28", "2028-02-29", "2026-2-1", "2026-01-01T00:00")]
    for resource, name, value in cases:
        api = read_api_status(binary, config, resource, f"{name}={quote(value, safe='')}", token)
        cli = run(binary, config, resource, f"--{name}", value)
        assert api in (200, 400), (resource, name, value, api)
        assert cli.returncode in (0, 2), (resource, name, value, cli.stderr)
        assert (api == 200) == (cli.returncode == 0), (resource, name, value, api, cli.returncode, cli.stderr)


def test_commands_never_create_a_database(binary, keys, app_secret, tmp_path):
    """A typo in the path: each command says there is no database there (exit 1) and creates nothing."""
    typo = tmp_path / "flwos.db"
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path, DATABASE_URL=f"sqlite:{typo}")
    for arguments in (["bookings"], ["bookings", "--csv"], ["expenses"], ["expenses", "--csv"],
                      ["cancel-booking", "1"], ["purge"], ["purge", "--dry-run"]):
        result = run(binary, config, *arguments)
        assert result.returncode == 1, (arguments, result.stdout, result.stderr)
        assert str(typo) in result.stderr and "no database there" in result.stderr, result.stderr
        assert "(none)" not in result.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.env"], arguments


def test_read_commands_open_a_stopped_responders_database_read_only(binary, keys, app_secret, tmp_path):
    """After the responder stopped (WAL checkpointed and removed), listing reads the file without writing it; an
    empty file is refused as not a database of this program instead of being migrated."""
    config = write_config(tmp_path / "flows.env", keys, app_secret, tmp_path)
    database = tmp_path / "flows.db"
    make_database(binary, config, tmp_path)
    assert not (tmp_path / "flows.db-wal").exists()
    database.chmod(0o444)
    before = database.read_bytes()
    for arguments in (["bookings"], ["bookings", "--all", "--from", "2026-01-01"], ["expenses", "--limit", "5"]):
        result = run(binary, config, *arguments)
        assert result.returncode == 0, (arguments, result.stderr)
        assert "(none)" in result.stdout
    assert database.read_bytes() == before

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    config = write_config(tmp_path / "empty.env", keys, app_secret, tmp_path, DATABASE_URL=f"sqlite:{empty}")
    result = run(binary, config, "expenses")
    assert result.returncode == 1 and "not a flows-fcgi database" in result.stderr, result.stderr
    assert empty.read_bytes() == b""


def main_help(binary) -> str:
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_each_command_prints_its_own_usage(binary):
    listed = main_help(binary).split("operator commands", 1)[1]
    commands = re.findall(r"^  ([a-z][a-z-]+)  ", listed, re.MULTILINE)
    assert {"bookings", "cancel-booking", "expenses", "purge", "keygen", "check", "probe",
            "register-key"} <= set(commands), commands
    assert "fcgi://HOST:PORT" in listed  # the probe's FastCGI form
    for command in commands:
        for flag in ("--help", "-h"):
            result = subprocess.run([str(binary), command, flag], capture_output=True, text=True, env=clean_env(),
                                    timeout=30)
            assert result.returncode == 0, (command, result.stderr)
            assert result.stdout.startswith(f"usage: flows-fcgi {command}"), (command, result.stdout[:200])
            others = [c for c in commands if c != command and f"usage: flows-fcgi {c} " in result.stdout]
            assert not others, (command, others)


def settings_the_code_reads() -> set[str]:
    """Every setting name in the sources: read through Settings (``settings["X"]``, ``.integer("X"``,
    ``.flag("X"``, ``.overriding("X"``) or listed in a ``settingNames`` array."""
    names: set[str] = set()
    read = re.compile(r'(?:settings|self)\s*(?:\[|\.integer\(|\.flag\(|\.overriding\()\s*"([A-Z][A-Z0-9_]+)"')
    listed = re.compile(r"settingNames\s*(?::\s*\[String\])?\s*=\s*\[([^\]]*)\]", re.DOTALL)
    for source in (REPO / "Sources").rglob("*.swift"):
        text = source.read_text()
        names.update(read.findall(text))
        for block in listed.findall(text):
            names.update(re.findall(r'"([A-Z][A-Z0-9_]+)"', block))
    return names


def test_help_and_readme_list_every_setting_the_code_reads(binary):
    names = settings_the_code_reads()
    assert len(names) >= 25 and {"APP_SECRET", "API_TOKEN", "EXPENSE_CURRENCY", "RETENTION_DAYS"} <= names, names
    help_text = main_help(binary)
    settings_part = help_text.split("settings (", 1)[1].split("operator commands", 1)[0]
    missing_help = sorted(n for n in names if not re.search(rf"\b{n}\b", settings_part))
    readme = (REPO / "README.md").read_text()
    # The configuration reference: table rows whose first cell names the setting.
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", readme, re.MULTILINE))
    documented |= {m for row in re.findall(r"^\| (`[A-Z_]+` / `[A-Z_]+`)", readme, re.MULTILINE)
                   for m in re.findall(r"`([A-Z_]+)`", row)}
    missing_readme = sorted(names - documented)
    assert not missing_help and not missing_readme, (missing_help, missing_readme)
