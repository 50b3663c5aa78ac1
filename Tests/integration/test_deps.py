"""scripts/deps on a machine that already has a /usr/sbin/policy-rc.d: it must be put back exactly as it was.

scripts/deps forbids service starts while it installs nginx, lighttpd and apache2 (a policy-rc.d that exits 101).
These tests run the real script with stand-ins for apt-get, dpkg-query, sudo and swift on the PATH and the policy
file at a temporary path (FLOWS_FCGI_POLICY_RC_D), so no system file is touched.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STUBS = {
    # Every package is missing, so scripts/deps runs apt-get update and install.
    "dpkg-query": "#!/bin/sh\nexit 1\n",
    # install: record what policy-rc.d said while packages were installed, then succeed or fail on request.
    "apt-get": """#!/bin/sh
case " $* " in
  *" install "*)
    { echo "policy:"; cat "$FLOWS_FCGI_POLICY_RC_D"; } >> "$STUB_LOG"
    exit "${STUB_INSTALL_STATUS:-0}" ;;
esac
exit 0
""",
    "sudo": "#!/bin/sh\nexec \"$@\"\n",
    "swift": "#!/bin/sh\nexit 0\n",
}


def run_deps(tmp_path: Path, install_status: int = 0) -> tuple[subprocess.CompletedProcess[str], str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    log = tmp_path / "stub.log"
    log.write_text("")
    env = dict(os.environ, PATH=f"{stubs}:/usr/bin:/bin", FLOWS_FCGI_POLICY_RC_D=str(tmp_path / "sbin" / "policy-rc.d"),
               STUB_LOG=str(log), STUB_INSTALL_STATUS=str(install_status))
    done = subprocess.run([str(REPO / "scripts" / "deps")], env=env, capture_output=True, text=True, timeout=60)
    return done, log.read_text()


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    st = path.lstat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns


def existing_policy(tmp_path: Path) -> Path:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    policy = sbin / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# the site's own policy\nexit 0\n")
    policy.chmod(0o750)
    os.utime(policy, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return policy


def test_an_existing_policy_rc_d_is_put_back_exactly(tmp_path: Path) -> None:
    policy = existing_policy(tmp_path)
    before = snapshot(policy)
    done, log = run_deps(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "policy:\n#!/bin/sh\nexit 101\n" in log, "services were not forbidden during the install"
    assert snapshot(policy) == before
    assert sorted(p.name for p in policy.parent.iterdir()) == ["policy-rc.d"], "a leftover beside policy-rc.d"


def test_a_failed_install_still_puts_the_policy_back(tmp_path: Path) -> None:
    policy = existing_policy(tmp_path)
    before = snapshot(policy)
    done, log = run_deps(tmp_path, install_status=100)
    assert done.returncode != 0
    assert "exit 101" in log
    assert snapshot(policy) == before
    assert sorted(p.name for p in policy.parent.iterdir()) == ["policy-rc.d"]


def test_without_a_policy_rc_d_ours_is_removed_afterwards(tmp_path: Path) -> None:
    (tmp_path / "sbin").mkdir()
    done, log = run_deps(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exit 101" in log
    assert list((tmp_path / "sbin").iterdir()) == []
