"""tools.credentials: the sheet from `pulumi stack output --json`, run against a stand-in `pulumi` on PATH.

The stand-in answers with what the program really exports for the stack (the offline plan's outputs,
serialized as the SDK registers them) and blinds secrets as the CLI does without --show-secrets: each
secret value becomes the string "[secret]" where it is marked (pulumi/pulumi pkg/backend/display/json.go).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools import credentials, harness

ROOT = Path(__file__).resolve().parent.parent

FAKE_PULUMI = """#!/bin/sh
echo "pulumi $*" >> "$FAKE_DIR/calls.log"
if [ -n "${FAKE_ERROR:-}" ]; then echo "$FAKE_ERROR" >&2; exit 255; fi
case "$*" in
  *--show-secrets*) cat "$FAKE_DIR/shown.json" ;;
  *) cat "$FAKE_DIR/blinded.json" ;;
esac
"""


def secret_values(value: Any) -> set[str]:
    """Every plaintext under a secret marker."""
    if harness.is_secret(value):
        inner = harness.plain(value)
        return {inner} if isinstance(inner, str) else {str(v) for v in _leaves(inner)}
    if isinstance(value, dict):
        return set().union(*(secret_values(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(secret_values(v) for v in value)) if value else set()
    return set()


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def outputs_of(stack: str, where: Path) -> set[str]:
    """Write the stand-in's two answers for `stack`; return the plaintext secrets."""
    plan = harness.plan_stack(ROOT / f"Pulumi.{stack}.yaml")
    (where / "blinded.json").write_text(json.dumps(harness.masked(plan.outputs)))
    (where / "shown.json").write_text(json.dumps(harness.plain(plan.outputs)))
    return secret_values(plan.outputs)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    where = tmp_path_factory.mktemp("fake-pulumi")
    (where / "bin").mkdir()
    (where / "bin" / "pulumi").write_text(FAKE_PULUMI)
    (where / "bin" / "pulumi").chmod(0o755)
    return where, outputs_of("clienteA", where)


def run(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (where / "calls.log").unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "tools.credentials", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": f"{where / 'bin'}:{os.environ['PATH']}", "FAKE_DIR": str(where), **env},
    )


def calls(where: Path) -> list[str]:
    return (where / "calls.log").read_text().splitlines()


def test_the_sheet_without_secrets_has_every_url_and_login(fake: tuple[Path, set[str]]) -> None:
    where, secrets = fake
    result = run(where, "clienteA")
    assert result.returncode == 0, result.stderr
    assert calls(where) == ["pulumi stack output --stack clienteA --json"]
    out = result.stdout
    for url in (
        "https://clientea.com",
        "https://hub.clientea.com",
        "https://chat.clientea.com",
        "https://flow.clientea.com",
        "https://agent.clientea.com",
    ):
        assert url in out
    assert "login     Administrator" in out
    assert "login     soporte@clientea.com" in out
    assert "login     automatizacion@clientea.com" in out
    assert "password  [secret]  (--show-secrets)" in out
    assert "token     [secret]  (--show-secrets)" in out
    assert "backup   s3:https://s3.us-east-005.backblazeb2.com/versatilehub-backups/clientea" in out
    assert "secrets: python -m tools.credentials clienteA --show-secrets" in out
    assert secrets, "the program exports secrets"
    leaked = {s for s in secrets if s in out or s in result.stderr}
    assert not leaked


def test_secrets_only_with_the_flag_and_only_on_stdout(fake: tuple[Path, set[str]]) -> None:
    where, _ = fake
    shown = json.loads((where / "shown.json").read_text())
    result = run(where, "clienteA", "--show-secrets")
    assert result.returncode == 0, result.stderr
    assert calls(where) == ["pulumi stack output --stack clienteA --json --show-secrets"]
    for service in ("hub", "chat", "flow"):
        password = shown[service].get("adminPassword") or shown[service]["ownerPassword"]
        assert f"password  {password}" in result.stdout
    assert f"token     {shown['agent']['gatewayToken']}" in result.stdout
    assert shown["backup"]["repositoryPassword"] in result.stdout
    assert result.stderr == "" and "[secret]" not in result.stdout
    # Encryption keys are not logins: they stay out of the sheet (secretCommands reads them).
    assert shown["flow"]["encryptionKey"] not in result.stdout


def test_json_carries_the_same_fields(fake: tuple[Path, set[str]]) -> None:
    where, secrets = fake
    result = run(where, "clienteA", "--json")
    doc = json.loads(result.stdout)
    assert doc["hub"] == {
        "url": "https://hub.clientea.com",
        "adminUser": "Administrator",
        "adminPassword": "[secret]",
    }
    assert doc["backup"]["repositoryPassword"] == "[secret]"
    assert not {s for s in secrets if s in result.stdout}


def test_a_cli_failure_is_one_line(fake: tuple[Path, set[str]]) -> None:
    where, _ = fake
    result = run(where, "clienteZ", FAKE_ERROR="error: no stack named 'clienteZ' found")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "credentials: pulumi stack output --stack clienteZ failed: error: no stack named 'clienteZ' found "
        "(same PULUMI_BACKEND_URL and PULUMI_CONFIG_PASSPHRASE_FILE as tools/deploy.sh?)\n"
    )


def test_no_pulumi_cli(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tools.credentials", "clienteA"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert "pulumi is not installed on this machine: curl -fsSL https://get.pulumi.com | sh" in result.stderr


def test_a_standalone_lab_says_how_to_reach_its_loopback_url(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pulumi").write_text(FAKE_PULUMI)
    (tmp_path / "bin" / "pulumi").chmod(0o755)
    outputs_of("labHub", tmp_path)
    result = run(tmp_path, "labHub")
    assert result.returncode == 0, result.stderr
    assert "hub      http://127.0.0.1:18080" in result.stdout
    assert "reach it through an SSH tunnel" in result.stdout
    assert "traefik" not in result.stdout and "portal" not in result.stdout


def test_the_sheet_reads_only_keys_the_program_exports(fake: tuple[Path, set[str]]) -> None:
    where, _ = fake
    shown = json.loads((where / "shown.json").read_text())
    exported = {k for section in shown.values() if isinstance(section, dict) for k in section}
    assert set(credentials.LOGIN_KEYS) - {"user"} <= exported
    assert set(credentials.SECRET_KEYS) - {"password"} <= exported
