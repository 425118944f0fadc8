"""tools/deploy.sh, the README's deploy command, run against recording stand-ins for pulumi, docker and uv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "deploy.sh"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """`pulumi`, `docker` and `uv` that only record how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("pulumi", "docker", "uv"):
        script = bin_dir / tool
        fail_select = 'if [ "$1 $2" = "stack select" ]; then exit 255; fi\n' if tool == "pulumi" else ""
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{fail_select}exit 0\n')
        script.chmod(0o755)
    return bin_dir


def run(fake_bin: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(fake_bin.parent)}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=False,
        cwd=ROOT,
    )


def calls(fake_bin: Path) -> list[str]:
    log = fake_bin.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_first_deploy_creates_the_stack_on_the_local_backend_then_runs_up_with_the_policy_pack(
    fake_bin: Path,
) -> None:
    result = run(fake_bin, "clienteA", "--yes", PULUMI_CONFIG_PASSPHRASE_FILE="/dev/null")
    assert result.returncode == 0, result.stderr
    backend = f"file://{fake_bin.parent}/.pulumi-versatilehub"
    assert calls(fake_bin) == [
        "uv sync --locked --quiet --compile-bytecode",
        f"pulumi login {backend}",
        "pulumi stack select clienteA",
        "pulumi stack init clienteA --secrets-provider passphrase",
        "pulumi up --diff --stack clienteA --policy-pack policies --yes",
    ]
    assert (fake_bin.parent / ".pulumi-versatilehub").is_dir()


def test_refuses_without_a_passphrase(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA")
    assert result.returncode == 2 and "PULUMI_CONFIG_PASSPHRASE_FILE" in result.stderr
    assert calls(fake_bin) == []


def test_refuses_an_unknown_stack_and_a_missing_cli(fake_bin: Path) -> None:
    result = run(fake_bin, "nosuchclient", PULUMI_CONFIG_PASSPHRASE="x")
    assert result.returncode == 2 and "python -m tools.new_client" in result.stderr
    os.remove(fake_bin / "pulumi")
    result = run(fake_bin, "clienteA", PULUMI_CONFIG_PASSPHRASE="x")
    assert result.returncode == 2 and "pulumi is not installed" in result.stderr
    assert calls(fake_bin) == []


def test_usage_without_a_stack(fake_bin: Path) -> None:
    result = run(fake_bin)
    assert result.returncode == 2 and "usage: bash tools/deploy.sh <stack>" in result.stderr
