"""tools/new_client: a valid stack file or one line per problem, never an overwrite, and the next commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config
from tools import harness, new_client

REPO = "s3:https://s3.us-east-005.backblazeb2.com/versatilehub-backups/clientee"


def args(*extra: str, services: str = "hub,chat", stack: str = "clienteE") -> list[str]:
    settings = {"hub": ["--set", "hub.country=AR"], "chat": ["--set", "chat.adminEmail=soporte@clientee.com"]}
    return [
        stack,
        "--domain", "clientee.com",
        "--company", "Cliente E S.A.",
        "--timezone", "America/Argentina/Buenos_Aires",
        "--services", services,
        "--acme-email", "ops@clientee.com",
        "--memory-mb", "16384",
        "--cpus", "8",
        "--backup-repository", REPO,
        *(a for s in services.split(",") for a in settings.get(s, [])),
        *extra,
    ]  # fmt: skip


def run(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = new_client.main([*argv, "--dir", str(tmp_path)])
    out, err = capsys.readouterr()
    return code, out, err


def secret_keys(out: str) -> list[str]:
    """The stack keys of the `pulumi config set --secret` commands printed, in order."""
    return re.findall(r"pulumi config set --stack \S+ --secret(?: --path)? 'versatilehub:([^']+)'", out)


def with_secrets(path: Path, keys: list[str]) -> harness.StackConfig:
    """The stack file as it is once the printed secret commands have run (`secure:` leaves)."""
    doc = yaml.safe_load(path.read_text())["config"]
    for key in keys:
        top, *rest = key.split(".")
        if not rest:
            doc[f"versatilehub:{top}"] = {"secure": "v1:set"}
            continue
        node = doc.setdefault(f"versatilehub:{top}", {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = {"secure": "v1:set"}
    return harness.stack_config(path.name.split(".")[1], doc)


def test_writes_a_stack_the_program_plans_once_its_secrets_are_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tmp_path, args(), capsys)
    assert code == 0, err
    path = tmp_path / "Pulumi.clienteE.yaml"
    doc = yaml.safe_load(path.read_text())["config"]
    assert doc["versatilehub:client"] == "clientee"
    assert doc["versatilehub:services"] == ["hub", "chat"]
    assert doc["versatilehub:host"] == {"memoryMb": 16384, "cpus": 8}
    assert "secure" not in path.read_text(), "no secret, not even a placeholder, lands in the file"
    required = out.split("Optional")[0]
    # The S3 repository needs its key: the model says so, new_client passes it on.
    assert secret_keys(required) == ["backup.keyId", "backup.applicationKey"]
    plan = harness.run(with_secrets(path, secret_keys(required)))
    assert {c.inputs["name"] for c in plan.containers()} >= {"clientee-hub-backend", "clientee-chat-rails"}


def test_prints_the_exact_commands_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(tmp_path, args(), capsys)
    commands = [line.strip() for line in out.splitlines() if line.startswith("   ")]
    order = [
        "pulumi stack init clienteE --secrets-provider passphrase",
        "pulumi config set --stack clienteE --secret --path 'versatilehub:backup.keyId'",
        ".venv/bin/python -m tools.plan clienteE",
        "pulumi preview --diff --stack clienteE --policy-pack policies",
        "bash tools/deploy.sh clienteE",
    ]
    positions = [commands.index(c) for c in order]
    assert positions == sorted(positions)
    for c in commands:
        if c.startswith("pulumi config set") and "--secret" in c:
            # The CLI prompts for the value: nothing secret on the command line or in the history.
            assert shlex.split(c)[-1].startswith("versatilehub:"), c
    assert "hub.clientee.com, chat.clientee.com, clientee.com" in out, "the names DNS must point here"


def test_secrets_follow_the_services_and_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = args("--set", "agent.model=openai/gpt-5", services="flow,agent")
    code, out, err = run(tmp_path, argv, capsys)
    assert code == 0, err
    required = secret_keys(out.split("Optional")[0])
    # The model's provider needs its key (the model's own rule, not a list kept in new_client).
    assert set(required) == {"agent.providerKeys.openai", "backup.keyId", "backup.applicationKey"}
    optional = secret_keys(out.split("Optional")[1])
    assert "agent.providerKeys.anthropic" in optional and "agent.channels.telegram" in optional
    assert not [k for k in optional if k.startswith(("hub.", "chat."))], "services not enabled ask nothing"
    harness.run(with_secrets(tmp_path / "Pulumi.clienteE.yaml", required))


def test_a_lab_without_backups_or_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "labFlow", "--domain", "lab.example.com", "--company", "Lab", "--timezone", "UTC",
        "--services", "flow", "--mode", "standalone", "--standalone-port", "15678",
        "--set", "backup.enabled=false",
    ]  # fmt: skip
    code, out, err = run(tmp_path, argv, capsys)
    assert code == 0, err
    assert "2. No secret to set" in out and "Point DNS" not in out
    doc = yaml.safe_load((tmp_path / "Pulumi.labFlow.yaml").read_text())["config"]
    assert doc["versatilehub:mode"] == "standalone" and doc["versatilehub:backup"] == {"enabled": False}
    plan = harness.run(harness.read_stack_file(tmp_path / "Pulumi.labFlow.yaml"))
    assert plan.container("labflow-flow-n8n").inputs["ports"][0]["ip"] == "127.0.0.1"


def test_attach_mode_joins_the_existing_web_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(tmp_path, args("--mode", "attach"), capsys)
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / "Pulumi.clienteE.yaml").read_text())["config"]
    assert doc["versatilehub:webNetwork"] == {"create": False}


def test_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "Pulumi.clienteE.yaml"
    existing.write_text("config: {}\n")
    code, out, err = run(tmp_path, args(), capsys)
    assert code == 2 and out == ""
    assert "Pulumi.clienteE.yaml exists" in err
    assert existing.read_text() == "config: {}\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("--domain", "not_a_domain"), "versatilehub:domain: is not a DNS name like cliente.com"),
        (("--services", "hub,crm"), "versatilehub:services[1]:"),
        (("--timezone", "Mars/Olympus"), "versatilehub:timezone: is not an IANA time zone"),
        (
            ("--host", "ssh://deploy@203.0.113.10"),
            "versatilehub:host.sshHostKey: an ssh:// host needs its host key",
        ),
        (("--memory-mb", "4096"), "versatilehub:host.memoryMb: memory limits add up to"),
    ],
)
def test_bad_input_is_one_line_naming_the_option_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], expected: str
) -> None:
    argv = args()
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += list(change)
    code, out, err = run(tmp_path, argv, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not list(tmp_path.iterdir())


def test_a_missing_service_setting_points_at_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in args() if a != "hub.country=AR"]
    argv.remove("--set")  # the --set that went with it
    code, _, err = run(tmp_path, argv, capsys)
    assert code == 2
    assert err.startswith("versatilehub:hub.country:") and err.rstrip().endswith(
        "[new_client: --set hub.country=<value>]"
    )
    code, _, err = run(tmp_path, args("--memory-mb", "4096"), capsys)
    assert "[new_client: --memory-mb]" in err


@pytest.mark.parametrize("company", ['Cliente "E" S.A.: #1 <b>&', "Ñandú S.R.L.", "yes", "- dash", "123"])
def test_company_names_round_trip_through_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], company: str
) -> None:
    argv = args()
    argv[argv.index("--company") + 1] = company
    code, _, err = run(tmp_path, argv, capsys)
    assert code == 0, err
    stack = harness.read_stack_file(tmp_path / "Pulumi.clienteE.yaml")
    raw: dict[str, Any] = {k.split(":", 1)[1]: v for k, v in stack.values.items()}
    assert raw["company"] == company
    assert config.parse({**raw, "backup": '{"enabled": false}'}).company == company


def test_refuses_a_bad_stack_name_and_a_bad_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, args(stack="../evil"), capsys)[0] == 2
    code, _, err = run(tmp_path, args("--set", "no-equals-sign"), capsys)
    assert code == 2 and "expected KEY=VALUE" in err
    assert not list(tmp_path.iterdir())
