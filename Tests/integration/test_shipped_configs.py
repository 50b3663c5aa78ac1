"""Static checks of the shipped files that the live tests cannot see (the live tests run them for real)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import (
    REPO,
    SHIPPED_BIN,
    SHIPPED_CONFIG,
    SHIPPED_NGINX_SOCKET,
    help_setting_names,
    substitute,
    unit_stop_hint,
)

WHATSAPP_TIMEOUT_S = 10


def read(*parts: str) -> str:
    return (REPO.joinpath(*parts)).read_text()


def test_every_recipe_uses_the_same_socket_binary_and_config():
    snippet = read("nginx", "flows-fcgi.conf")
    assert f"fastcgi_pass unix:{SHIPPED_NGINX_SOCKET};" in snippet
    assert f"ListenStream={SHIPPED_NGINX_SOCKET}" in read("nginx", "flows-fcgi.socket")
    spawn = read("nginx", "spawn-fcgi.sh")
    assert f"FLOWS_FCGI_SOCKET:-{SHIPPED_NGINX_SOCKET}" in spawn
    assert f"FLOWS_FCGI_BIN:-{SHIPPED_BIN}" in spawn and f"FLOWS_FCGI_CONFIG:-{SHIPPED_CONFIG}" in spawn
    assert f"ExecStart={SHIPPED_BIN} --config {SHIPPED_CONFIG}" in read("nginx", "flows-fcgi.service")
    assert f'"bin-path"    => "{SHIPPED_BIN} --config {SHIPPED_CONFIG}"' in read("lighttpd", "flows-fcgi.conf")
    assert f"exec {SHIPPED_BIN} --config {SHIPPED_CONFIG}" in read("apache", "flows.cgi")


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert m, value
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": n * 60, None: n}[m.group(2)]


def test_nginx_snippet_settings():
    snippet = read("nginx", "flows-fcgi.conf")
    directives = [line.split("#")[0].strip() for line in snippet.splitlines()]
    directives = [d for d in directives if d]
    location = next(i for i, d in enumerate(directives) if d.startswith("location"))
    assert "include fastcgi_params;" in directives[location:], "fastcgi_params must be included in the location"
    assert not any(d.startswith("fastcgi_keep_conn") and "on" in d for d in directives), "keep_conn must stay off"
    assert any(d.startswith("client_max_body_size") for d in directives)
    timeouts = {d.split()[0]: _seconds(d.split()[1].rstrip(";")) for d in directives
                if d.split()[0] in ("fastcgi_connect_timeout", "fastcgi_send_timeout", "fastcgi_read_timeout")}
    assert set(timeouts) == {"fastcgi_connect_timeout", "fastcgi_send_timeout", "fastcgi_read_timeout"}, timeouts
    assert all(t < WHATSAPP_TIMEOUT_S for t in timeouts.values()), timeouts


def test_lighttpd_config_settings():
    conf = read("lighttpd", "flows-fcgi.conf")
    assert '"check-local" => "disable"' in conf
    assert re.search(r'"max-procs"\s*=>\s*2', conf)
    assert '"bin-environment"' in conf
    assert '"mod_fastcgi"' in conf


@pytest.mark.parametrize("script", ["nginx/spawn-fcgi.sh", "apache/flows.cgi"])
def test_shell_scripts_parse_and_are_executable(script):
    path = REPO / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path, binary):
    for unit in ("flows-fcgi.socket", "flows-fcgi.service"):
        text = read("nginx", unit)
        if unit.endswith(".service"):
            text = substitute(text, {SHIPPED_BIN: str(binary)})
        (tmp_path / unit).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "flows-fcgi.socket"),
                             str(tmp_path / "flows-fcgi.service")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flows-fcgi" not in result.stderr, result.stderr  # warnings about our units


def test_debian_package_version_is_the_binarys(binary):
    changelog = subprocess.run(["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"), "-S", "Version"],
                               capture_output=True, text=True, check=True).stdout.strip()
    printed = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.split()
    assert printed == ["flows-fcgi", changelog], (printed, changelog)


def test_package_env_file_lists_every_setting_once(binary):
    listed = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", read("debian", "flows-fcgi.env"), re.M)
    assert sorted(listed) == sorted(help_setting_names(binary))
    # Only what the package sets up is active: the rest are commented defaults.
    active = re.findall(r"^([A-Z][A-Z0-9_]*)=", read("debian", "flows-fcgi.env"), re.M)
    assert active == ["DATABASE_URL", "LOG_FILE"], active


def test_man_page_lists_every_setting_command_and_signal(binary):
    page = read("packaging", "man", "flows-fcgi.1").replace("\\-", "-")
    missing = [name for name in sorted(help_setting_names(binary)) if not re.search(rf"\b{name}\b", page)]
    assert missing == [], missing
    usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True).stdout
    commands = re.findall(r"^  ([a-z][a-z-]+)  ", usage.split("\noperator commands", 1)[1], re.M)
    assert len(commands) >= 10, commands
    assert [c for c in commands if not re.search(rf"^\.B[IR]? \"?{c}\b", page, re.M)] == []
    for signal in ("TERM", "HUP", "USR1"):
        assert signal in page.split(".SH SIGNALS", 1)[1], signal
    if shutil.which("man"):
        rendered = subprocess.run(["man", "--warnings", "-l", str(REPO / "packaging" / "man" / "flows-fcgi.1")],
                                  capture_output=True, text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr


def test_service_stays_down_on_a_configuration_error_and_says_what_to_do():
    unit = read("nginx", "flows-fcgi.service")
    assert "RestartPreventExitStatus=78" in unit
    hint = unit_stop_hint(unit)
    told = subprocess.run(["sh", "-c", hint], capture_output=True, text=True, env={"EXIT_STATUS": "78"}).stdout
    for step in ("flows-fcgi keygen --out /var/lib/flows-fcgi", f"edit {SHIPPED_CONFIG}: APP_SECRET",
                 f"flows-fcgi check --config {SHIPPED_CONFIG}", "systemctl enable --now flows-fcgi.socket"):
        assert step in told, told
    for status in ("0", "1", ""):
        assert subprocess.run(["sh", "-c", hint], capture_output=True, text=True,
                              env={"EXIT_STATUS": status}).stdout == ""


@pytest.mark.parametrize("asked", ["0.0.1", "{v}", "{v}-1", "{v}+", "{v}~rc1", ""])
def test_build_deb_refuses_a_version_that_is_not_a_rebuild_of_the_binarys(asked):
    """`scripts/build-deb --version` takes only <changelog version>+<suffix>, which is higher and keeps the binary's
    version as its first part; anything else is a usage error before anything is built."""
    current = subprocess.run(["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"), "-S", "Version"],
                             capture_output=True, text=True, check=True).stdout.strip()
    result = subprocess.run([str(REPO / "scripts" / "build-deb"), "--version", asked.format(v=current)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--version" in result.stderr and "Building" not in result.stdout + result.stderr, result.stderr
