"""A host step that receives secrets and streams nothing (components/core/host.py private_log_body,
core/scripts/steplog.sh), run for real under bash: its output goes to a private log on the host with the
secrets masked, and a failure is one line naming the step, its exit status and the log, so pulumi-command's
error (which carries a failing command's whole output) holds nothing the step printed (#13 item 3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from components.core.host import PREAMBLE, private_log_body

SECRET = "s3cr3t-Value"


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    body = PREAMBLE + private_log_body("clientea-hub-admin", script, ["VH_PASSWORD"])
    return subprocess.run(
        ["/bin/bash", "-c", body],
        env={"PATH": "/usr/bin:/bin", "VH_PASSWORD": SECRET, "VH_STEP_LOG_DIR": str(tmp_path / "logs")},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_a_failing_secret_step_prints_one_line_and_logs_privately(tmp_path: Path) -> None:
    done = _run(tmp_path, 'echo "login admin:$VH_PASSWORD"\necho "boom: $VH_PASSWORD" >&2\nexit 7\n')
    log = tmp_path / "logs" / "clientea-hub-admin.log"
    assert done.returncode == 7
    assert done.stdout == ""
    assert done.stderr == f"clientea-hub-admin failed (exit status 7); its output: {log} on " + (
        subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
        + " (mode 0600)\n"
    )
    assert log.read_text() == "login admin:[secret]\nboom: [secret]\n"
    assert (log.stat().st_mode & 0o777) == 0o600 and (log.parent.stat().st_mode & 0o777) == 0o700


def test_a_successful_secret_step_prints_nothing_and_its_log_is_rewritten(tmp_path: Path) -> None:
    _run(tmp_path, "echo first; exit 1\n")
    done = _run(tmp_path, 'echo "second $VH_PASSWORD"\n')
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (tmp_path / "logs" / "clientea-hub-admin.log").read_text() == "second [secret]\n"
