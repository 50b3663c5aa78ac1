"""THE DEMO as a newcomer runs it: `scripts/demo start` in its own state folder (DEMO_DIR) on a free port, then
every URL and command it prints and every URL of the README's set-up section, then `status`, `stop`, `status`.
The URLs are read from the demo's output and from the README, so neither can drift from what answers."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import urllib.error
import urllib.request

from conftest import REPO, clean_env, free_port, pid_alive

SETUP_HEADING = "## Set up on a new Debian 12 machine"


def setup_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split(SETUP_HEADING, 1)[1].split("\n## ", 1)[0]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_readme_setup_has_exactly_two_commands():
    commands = [line.strip() for line in setup_section().splitlines() if line.startswith("    ")]
    assert commands == ["scripts/demo", "scripts/test"], commands


def test_demo_start_answers_on_every_printed_url_then_status_and_stop(binary, tmp_path):
    state = tmp_path / "state"
    port = free_port()
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = clean_env(DEMO_DIR=str(state), DEMO_PORT=str(port), DEMO_BIN=str(binary),
                    PATH=path + ":/usr/sbin:/sbin" + ("" if "/opt/swift" in path else ":/opt/swift/usr/bin"))

    def demo(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "scripts" / "demo"), *arguments], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)

    try:
        started = demo("start", timeout=300)
        output = started.stdout
        assert started.returncode == 0, output[-3000:] + started.stderr[-3000:]
        assert not (REPO / "demo-run" / "port").exists() or (REPO / "demo-run" / "port").read_text().strip() != \
            str(port), "the demo wrote into the repository's demo-run/ instead of DEMO_DIR"
        assert (state / "flows.db").exists() and (state / "api-token").exists()

        # Every curl command it prints, run as printed (with --fail, so an HTTP error fails it).
        curls = [line.split("curl ", 1)[1] for line in output.splitlines() if re.match(r"\s+(\w+\s+)?curl ", line)]
        printed = {re.search(r"(http://\S+)", c).group(1).rsplit("/", 1)[1] for c in curls}
        assert {"health", "ready", "messages", "stats", "metrics"} <= printed, output[-2000:]
        for arguments in curls:
            result = subprocess.run(["curl", "--fail", "--silent", "--show-error", *shlex.split(arguments)],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (arguments, result.stderr)
            if arguments.endswith("/messages") or arguments.endswith("/expenses"):
                assert result.stdout.startswith('{"data":') or '"data"' in result.stdout, result.stdout[:300]
            if arguments.endswith("/metrics"):
                assert "flows_requests_total" in result.stdout
        assert "flows_expenses_total" in subprocess.run(
            ["curl", "-sS", *shlex.split([c for c in curls if c.endswith("/metrics")][0])],
            capture_output=True, text=True, timeout=30).stdout

        # Every other URL it prints answers from the responder (the flow endpoint is POST only: 405, not 404;
        # the read API without its token: 401).
        authorized = {re.search(r"(http://\S+)", c).group(1) for c in curls if "Authorization" in c}
        for url in set(re.findall(r"(http://127\.0\.0\.1:\d+/\S*[\w/])", output)):
            status, body = get(url)
            expected = 405 if "/flows/" in url else 401 if url in authorized else 200
            assert status == expected, (url, status, body[:200])

        # The commands it prints, run as printed by a shell in the repository: the operator command, the client
        # walk (continued over two lines) and, at the end, status and stop, which must find this demo by
        # themselves (the environment that started it is not passed on).
        printed_commands = dict(re.findall(r"^(Operator commands|Walk it again|Status|Stop it):\s+(.*?(?:\\\n.*)?)$",
                                           output, re.MULTILINE))
        assert set(printed_commands) == {"Operator commands", "Walk it again", "Status", "Stop it"}, output[-1500:]
        plain_env = {k: v for k, v in env.items() if not k.startswith("DEMO_")}

        def shell(label: str) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", "-c", printed_commands[label]], cwd=REPO, env=plain_env,
                                  capture_output=True, text=True, timeout=120)

        for label in ("Operator commands", "Walk it again"):
            result = shell(label)
            assert result.returncode == 0, (label, result.stdout[-2000:], result.stderr[-2000:])

        # The README's set-up URLs, on this demo's port.
        readme_urls = set(re.findall(r"(http://127\.0\.0\.1:8080\S*[\w/])", setup_section()))
        assert any(u.endswith("/health") for u in readme_urls), readme_urls
        token = (state / "api-token").read_text().strip()
        for url in readme_urls:
            status, body = get(url.replace(":8080", f":{port}"))
            expected = 405 if "/flows/" in url else 404 if url.rstrip("/").endswith(":8080") else 200
            assert status == expected, (url, status, body[:200])
        for resource in re.findall(r"`(/flows-fcgi/\w+)`", setup_section()):
            status, body = get(f"http://127.0.0.1:{port}{resource}", {"Authorization": f"Bearer {token}"})
            assert status == 200, (resource, status, body[:200])

        running = shell("Status")
        assert running.returncode == 0, running.stdout + running.stderr
        assert f"127.0.0.1:{port}" in running.stdout
        nginx_pid = int((state / "nginx" / "nginx.pid").read_text())
        responders = [int(p) for p in (state / "flows-fcgi.pid").read_text().split()]
        assert shell("Stop it").returncode == 0
        stopped = shell("Status")
        assert stopped.returncode != 0, stopped.stdout
        assert "not running" in stopped.stdout
        assert not pid_alive(nginx_pid) and not any(pid_alive(p) for p in responders)
        assert demo("status").returncode != 0
    finally:
        demo("stop")
