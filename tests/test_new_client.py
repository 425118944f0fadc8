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


def args(
    *extra: str, services: str = "hub,chat", stack: str = "clienteE", acme: bool = True, size: bool = True
) -> list[str]:
    settings = {"hub": ["--set", "hub.country=AR"], "chat": ["--set", "chat.adminEmail=soporte@clientee.com"]}
    return [
        stack,
        "--domain", "clientee.com",
        "--company", "Cliente E S.A.",
        "--timezone", "America/Argentina/Buenos_Aires",
        "--services", services,
        *(["--acme-email", "ops@clientee.com"] if acme else []),
        *(["--memory-mb", "16384", "--cpus", "8"] if size else []),
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
    code, _, err = run(tmp_path, args("--mode", "attach", acme=False), capsys)
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / "Pulumi.clienteE.yaml").read_text())["config"]
    assert doc["versatilehub:webNetwork"] == {"create": False}
    # Attach mode implies it: asking for the contrary is refused before anything is written.
    argv = args("--mode", "attach", "--set", "webNetwork.create=true", acme=False, stack="clienteF")
    code, _, err = run(tmp_path, argv, capsys)
    assert code == 2 and not (tmp_path / "Pulumi.clienteF.yaml").exists()
    assert err == (
        "--set webNetwork.create: mode attach joins the server's existing web network (new_client writes "
        "webNetwork.create false); drop it\n"
    )


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


def test_services_that_do_not_fit_the_default_host_get_a_size_that_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(tmp_path, args(size=False), capsys)
    assert code == 2 and not (tmp_path / "Pulumi.clienteE.yaml").exists()
    # hub,chat with the default 8192 MB / 4 cores: 3.89 cores of caps is 97% of 4 (budget 70%).
    assert err == (
        "hub,chat in mode suite do not fit the default host (8192 MB, 4 cores): their limits add up to "
        "5856 MB and 3.89 cores, so the server needs at least 7320 MB and 5.56 cores (budgets 80% of the "
        "RAM, 70% of the cores); a server of 8192 MB and 6 cores fits: pass the real size, e.g. "
        "--memory-mb 8192 --cpus 6\n"
    )
    # The proposal fits: the same command with it writes a stack that plans.
    code, out, err = run(tmp_path, [*args(size=False), "--memory-mb", "8192", "--cpus", "6"], capsys)
    assert code == 0, err
    harness.run(with_secrets(tmp_path / "Pulumi.clienteE.yaml", secret_keys(out.split("Optional")[0])))


def test_a_size_given_by_the_operator_gets_the_models_own_fix_not_a_proposal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(tmp_path, [*args(size=False), "--memory-mb", "8192", "--cpus", "4"], capsys)
    assert code == 2
    assert err.startswith("versatilehub:host.cpus: CPU limits add up to 3.89 cores, 97% of this host's 4")
    assert "do not fit the default host" not in err


def test_the_hub_site_name_is_said_to_be_permanent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tmp_path, args(), capsys)
    assert code == 0, err
    assert (
        "The Hub's site is named hub.clientee.com for good: it names ERPNext's site folder and database"
        in out
    )
    assert "run again with --set hub.siteName=<name>" in out
    code, out, _ = run(tmp_path, args(services="flow", stack="flowOnly"), capsys)
    assert code == 0 and "site is named" not in out


@pytest.mark.parametrize(
    ("country", "language"),
    [("AR", "es-AR"), ("MX", "es-MX"), ("ES", "es"), ("Uruguay", "es"), ("BR", "pt"), ("US", "en-US"),
     ("DE", "de"), ("JP", "en")],
)  # fmt: skip
def test_hub_language_follows_the_country_unless_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], country: str, language: str
) -> None:
    argv = [a if a != "hub.country=AR" else f"hub.country={country}" for a in args(services="hub")]
    code, out, err = run(tmp_path, argv, capsys)
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / "Pulumi.clienteE.yaml").read_text())["config"]
    assert doc["versatilehub:hub"].get("language", "en") == language
    assert f"hub.language is {language}" in out
    # The program reads it back as written (the config model's own check of a language code).
    cfg, _, problems = new_client.required_secrets(
        "clienteE", {k.split(":", 1)[1]: v for k, v in doc.items()}
    )
    assert cfg is not None and cfg.hub.language == language, problems


def test_an_explicit_language_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(tmp_path, args("--set", "hub.language=en", services="hub"), capsys)
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / "Pulumi.clienteE.yaml").read_text())["config"]
    assert doc["versatilehub:hub"] == {"country": "AR", "language": "en"}


def test_the_derived_languages_are_in_frappes_list() -> None:
    # frappe/frappe frappe/geo/languages.csv (commit 0e573fc7): the codes a site can be created with.
    frappe_codes = {
        "ar", "de", "en", "en-GB", "en-US", "es", "es-AR", "es-BO", "es-CL", "es-CO", "es-DO", "es-EC",
        "es-GT", "es-MX", "es-NI", "es-PE", "fr", "it", "nl", "pt", "zh", "zh-TW",
    }  # fmt: skip
    assert set(new_client.COUNTRY_LANGUAGE.values()) <= frappe_codes


@pytest.mark.parametrize(
    ("extra", "mode", "message"),
    [
        (["--standalone-port", "18080"], "suite",
         "--standalone-port does nothing in mode suite: only a standalone stack publishes on "
         "127.0.0.1:<port>; drop it, or add --mode standalone"),
        (["--acme-email", "ops@clientee.com"], "attach",
         "--acme-email does nothing in mode attach: the suite stack's Traefik on that server holds the ACME "
         "account and its settings; drop it"),
        (["--acme-staging"], "standalone",
         "--acme-staging does nothing in mode standalone: a standalone stack runs no Traefik and gets no "
         "certificate; drop it"),
        (["--set", "traefik.dashboard=true"], "attach",
         "--set traefik.dashboard does nothing in mode attach: only a suite stack runs Traefik and the "
         "portal; drop it"),
        (["--host-key", "ssh-ed25519 AAAA"], "suite",
         "--host-key does nothing without --host ssh://user@host: the local socket needs no host key; drop "
         "it, or add --host"),
    ],
)  # fmt: skip
def test_options_that_do_nothing_in_the_mode_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], mode: str, message: str
) -> None:
    argv = args("--mode", mode, *extra, services="flow", acme=False)
    code, out, err = run(tmp_path, argv, capsys)
    assert (code, out, err) == (2, "", message + "\n")
    assert not list(tmp_path.iterdir())


def test_attach_keeps_the_cert_resolver_it_shares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = args("--mode", "attach", "--set", "traefik.certResolver=le2", services="flow", acme=False)
    code, _, err = run(tmp_path, argv, capsys)
    assert code == 0, err


def test_chat_without_mail_says_how_agents_get_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16 item 9: without SMTP Chatwoot cannot invite agents; the Super Admin console creates them with
    a password (chatwoot app/dashboards/user_dashboard.rb: the form has email, password and confirmed_at)."""
    code, out, err = run(tmp_path, args(), capsys)
    assert code == 0, err
    assert "Chat has no mail server (chat.smtp.address)" in out
    assert "https://chat.clientee.com/super_admin" in out
    mail = ["--set", "chat.smtp.address=smtp.clientee.com", "--set", "chat.smtp.sender=chat@clientee.com"]
    code, out, err = run(tmp_path, args(*mail, stack="withMail"), capsys)
    assert code == 0, err
    assert "no mail server" not in out
