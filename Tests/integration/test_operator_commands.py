"""OPERATOR COMMANDS on a real database written by real requests: `flows-fcgi bookings`, `cancel-booking` (the seat
becomes free again: another flow token can book it) and `expenses` (table and CSV with the formula guard)."""

from __future__ import annotations

import csv
import io
import os
import subprocess

from conftest import Processes, clean_env, start_listen, write_config
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
