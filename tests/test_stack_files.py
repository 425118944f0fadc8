"""Any stack file, however broken, gives one line naming the file (and the line) in every offline tool:
never a traceback, and a bad file is one row of the fleet, not the end of it (issue 18 item 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import harness

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "string": ('config: "hello"\n', "`config:` is a str, not a mapping of `versatilehub:<key>: <value>`"),
    "list": ("config:\n  - a\n", "`config:` is a list, not a mapping"),
    "syntax": ("config:\n  versatilehub:client: [a\n", "Pulumi.syntax.yaml:3:1: YAML error: expected ','"),
    "duplicate": (
        "config:\n  versatilehub:client: a\n  versatilehub:client: b\n",
        "Pulumi.duplicate.yaml:3:3: YAML error: key `versatilehub:client` appears twice (first at line 2)",
    ),
    "namespace": (
        "config:\n  other:client: a\n  other:domain: b\n",
        "found 2 key(s) under `other:`; this project reads `versatilehub:`",
    ),
    "outside": (
        "versatilehub:client: a\nconfig: {}\n",
        "found 1 key(s) outside `config:` (versatilehub:client); move them under `config:`",
    ),
    "scalar": ("just text\n", "not a Pulumi stack file"),
}


def _write(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"Pulumi.{case}.yaml"
    path.write_text(CASES[case][0])
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_stack_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path, case)
    with pytest.raises(ValueError) as info:
        harness.read_stack_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path.name) in message and CASES[case][1] in message, message


@pytest.mark.parametrize("tool", ["tools.plan", "tools.policy"])
@pytest.mark.parametrize("case", ["string", "syntax", "duplicate"])
def test_the_tools_exit_2_with_the_line_and_no_traceback(tmp_path: Path, tool: str, case: str) -> None:
    path = _write(tmp_path, case)
    done = subprocess.run(
        [sys.executable, "-m", tool, str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and CASES[case][1] in done.stderr, done.stderr


def test_fleet_shows_a_broken_file_as_one_row_and_keeps_the_others(tmp_path: Path) -> None:
    bad = _write(tmp_path, "string")
    done = subprocess.run(
        [sys.executable, "-m", "tools.fleet", str(bad), str(ROOT / "Pulumi.clienteB.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "file: " in done.stdout and "`config:` is a str" in done.stdout
    assert "clienteb" in done.stdout, "the good stack is still listed"
    assert done.returncode == 1


def test_a_stack_name_in_the_wrong_case_gets_did_you_mean() -> None:
    with pytest.raises(FileNotFoundError, match=r"did you mean clienteA\?"):
        harness.read_stack_file("clientea")
