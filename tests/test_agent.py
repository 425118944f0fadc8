"""Agent: the OpenClaw gateway, its program-written config, its secrets, routing, data and backups."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import config
from components.core import catalog
from components.core.deployment import AppBackupCommand, FileSet
from components.core.secrets import ENV_FILE_WRAPPER
from components.services.agent import component as agent_module
from components.suite import Suite, deploy
from tests.conftest import BASE_STACK, PlanFn, env_file_of, env_of, labels_of, make_stack, networks_of
from tools import harness

GATEWAY = "clientea-agent-gateway"
MODEL = "anthropic/claude-sonnet-4-5"


def secure(name: str) -> dict[str, str]:
    """A `pulumi config set --secret` leaf as the stack file stores it."""
    return {"secure": f"v1:test:{name}"}


def agent_section(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "providerKeys": {"anthropic": secure("anthropic")}, **extra}


def gateway_config(p: harness.Plan) -> dict[str, Any]:
    """The openclaw.json the host step writes, as the gateway will read it."""
    env = harness.plain(p.named("agent-config-file").inputs["environment"])
    return json.loads(env["OPENCLAW_CONFIG_JSON"])


def placeholder(path: str) -> str:
    return harness.placeholder(f"versatilehub:agent.{path}")


# -- the container -------------------------------------------------------------------------------------


def test_gateway_runs_pinned_unprivileged_read_only_with_scratch_tmpfs(plan: PlanFn) -> None:
    gw = plan(["agent"]).container(GATEWAY)
    i = gw.plain_inputs
    assert i["image"] == "ghcr.io/openclaw/openclaw:2026.10.1"
    assert i["user"] == "1000:1000"
    assert i["capabilities"] == {"drops": ["ALL"]}
    assert i["readOnly"] is True and "io.versatilehub.writable-reason" not in labels_of(gw)
    assert i["securityOpts"] == ["no-new-privileges:true"]
    # Logs under /tmp/openclaw; SQLite's temporary directory under ~/.cache, owned by the gateway's user.
    assert set(i["tmpfs"]) == {"/tmp", "/home/node/.cache"}
    assert "uid=1000,gid=1000,mode=0700" in i["tmpfs"]["/home/node/.cache"]
    assert all("noexec" in opts and "size=" in opts for opts in i["tmpfs"].values())
    assert i["command"] == ["node", "dist/index.js", "gateway"], "no --allow-unconfigured"
    assert i["memory"] == catalog.LIMITS["agent-gateway"].memory_mb <= 2048


def test_gateway_never_gets_the_docker_socket(plan: PlanFn) -> None:
    gw = plan(["agent"]).container(GATEWAY)
    sources = [m["source"] for m in gw.plain_inputs["mounts"]]
    assert not any("docker.sock" in s or s.startswith(("/var/run", "/run")) for s in sources)
    env = env_of(gw)
    assert not {"DOCKER_HOST", "OPENCLAW_SANDBOX", "OPENCLAW_DOCKER_SOCKET"} & set(env)


def test_state_and_auth_key_persist_apart_and_the_config_is_read_only(plan: PlanFn) -> None:
    p = plan(["agent"])
    mounts = {m["target"]: m for m in p.container(GATEWAY).plain_inputs["mounts"]}
    root = "/srv/versatilehub/clientea/agent"
    assert {t: (m["source"], m["readOnly"]) for t, m in mounts.items()} == {
        "/home/node/.openclaw": (f"{root}/state", False),
        "/home/node/.config/openclaw": (f"{root}/auth-key", False),
        "/etc/openclaw": (f"{root}/config", True),
        "/home/node/backups": (f"{root}/backups", False),
        "/run/secrets/agent.env": ("/srv/versatilehub/clientea/secrets/agent/agent.env", True),
    }
    script = harness.plain(p.named("agent-data-dirs").inputs["create"])
    for name in ("state", "auth-key", "config", "backups"):
        assert f"install -d -o 1000 -g 1000 -m 0700 /data/{name}" in script


def test_volume_storage_uses_one_named_volume_per_directory(plan: PlanFn) -> None:
    p = plan(["agent"], storage={"kind": "volume"})
    mounts = {m["target"]: m for m in p.container(GATEWAY).plain_inputs["mounts"]}
    assert mounts["/etc/openclaw"] == {
        "type": "volume",
        "source": "clientea-agent-config",
        "target": "/etc/openclaw",
        "readOnly": True,
    }
    assert mounts["/home/node/.openclaw"]["source"] == "clientea-agent-state"
    assert "-v clientea-agent-config:/config" in harness.plain(p.named("agent-config-file").inputs["create"])


def test_healthcheck_reads_the_json_body_of_healthz(plan: PlanFn) -> None:
    gw = plan(["agent"]).container(GATEWAY)
    hc = gw.plain_inputs["healthcheck"]
    assert hc["tests"][:3] == ["CMD", "node", "-e"]
    probe = hc["tests"][3]
    assert "http://127.0.0.1:18789/healthz" in probe
    assert "r.json()" in probe and "b.ok===true" in probe, (
        "a 200 from the Control UI's catch-all is not health"
    )
    assert gw.plain_inputs["wait"] is True, "`pulumi up` fails if the gateway never comes up"


# -- environment and the program-written config ----------------------------------------------------------


def gateway_env(p: harness.Plan) -> dict[str, str]:
    """What the gateway runs with: its plain envs and, sourced by the wrapper entrypoint, agent.env."""
    gw = p.container(GATEWAY)
    return {**env_of(gw), **env_file_of(p, gw, agent_module.ENV_FILE)}


def test_environment_names_the_config_and_carries_the_credentials(plan: PlanFn) -> None:
    """The credentials are in the env file (issue 14); OpenClaw's SecretRef `env` source still finds them
    in its process environment, which the wrapper fills before it execs the image's command."""
    p = plan(["agent"])
    gw = p.container(GATEWAY)
    assert harness.plain(gw.inputs["entrypoints"]) == [*ENV_FILE_WRAPPER, agent_module.ENV_FILE]
    assert harness.plain(gw.inputs["command"]) == ["node", "dist/index.js", "gateway"]
    assert not {"OPENCLAW_GATEWAY_TOKEN", "ANTHROPIC_API_KEY"} & set(env_of(gw)), "no secret in its env"
    env = gateway_env(p)
    token = harness.plain(p.outputs["agent"]["gatewayToken"])
    assert env["OPENCLAW_GATEWAY_TOKEN"] == token
    assert env["OPENCLAW_CONFIG_PATH"] == "/etc/openclaw/openclaw.json"
    assert env["OPENCLAW_CONFIG_READONLY"] == "1"
    assert env["OPENCLAW_STATE_DIR"] == "/home/node/.openclaw"
    assert env["ANTHROPIC_API_KEY"] == placeholder("providerKeys.anthropic")
    assert not {"OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY", "TELEGRAM_BOT_TOKEN"} & set(env)


def test_every_provider_and_channel_has_its_variable(plan: PlanFn) -> None:
    assert set(agent_module.PROVIDER_ENV) == set(config.AgentProviderKeys.model_fields)
    assert set(agent_module.CHANNEL_ENV) == set(config.AgentChannels.model_fields)
    keys = {name: secure(name) for name in agent_module.PROVIDER_ENV}
    section = agent_section(providerKeys=keys, channels={"telegram": secure("telegram")})
    env = gateway_env(plan(["agent"], agent=section))
    for name, variable in agent_module.PROVIDER_ENV.items():
        assert env[variable] == placeholder(f"providerKeys.{name}")
    assert env["TELEGRAM_BOT_TOKEN"] == placeholder("channels.telegram")


def test_config_locks_the_gateway_behind_traefik_and_token_auth(plan: PlanFn) -> None:
    doc = gateway_config(plan(["agent"]))
    gateway = doc["gateway"]
    assert gateway["mode"] == "local" and gateway["bind"] == "lan" and gateway["port"] == 18789
    assert gateway["trustedProxies"] == [harness._subnet("web")], "the mock's subnet of `web`"
    assert gateway["controlUi"] == {"allowedOrigins": ["https://agent.clientea.com"]}
    assert gateway["auth"] == {
        "mode": "token",
        "token": {"source": "env", "provider": "default", "id": "OPENCLAW_GATEWAY_TOKEN"},
    }
    assert gateway["allowRealIpFallback"] is False
    assert doc["agents"] == {"defaults": {"model": {"primary": MODEL}}}
    assert "channels" not in doc


def test_config_follows_the_hostname_and_an_adopted_web_network(plan: PlanFn) -> None:
    p = plan(
        ["agent"],
        mode="attach",
        webNetwork={"name": "proxy", "create": False},
        acmeEmail=None,
        hostnames={"agent": "ia.clientea.com"},
    )
    gateway = gateway_config(p)["gateway"]
    assert gateway["trustedProxies"] == [harness._subnet("proxy")]
    assert gateway["controlUi"]["allowedOrigins"] == ["https://ia.clientea.com"]


def test_telegram_is_enabled_with_pairing_for_unknown_senders(plan: PlanFn) -> None:
    p = plan(["agent"], agent=agent_section(channels={"telegram": secure("telegram")}))
    assert gateway_config(p)["channels"] == {"telegram": {"enabled": True, "dmPolicy": "pairing"}}
    assert p.outputs["agent"]["channels"] == ["telegram"]


def test_config_holds_no_secret_and_a_change_replaces_the_gateway(plan: PlanFn) -> None:
    p = plan(["agent"], agent=agent_section(channels={"telegram": secure("telegram")}))
    step = p.named("agent-config-file")
    text = harness.plain(step.inputs["environment"])["OPENCLAW_CONFIG_JSON"]
    env = gateway_env(p)
    for variable in ("OPENCLAW_GATEWAY_TOKEN", "ANTHROPIC_API_KEY", "TELEGRAM_BOT_TOKEN"):
        assert env[variable] not in text, f"{variable} in openclaw.json"
    assert harness.plain(step.inputs["triggers"]) == [text], "rewritten when, and only when, it changes"
    digest = labels_of(p.container(GATEWAY))["io.versatilehub.config-sha256"]
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    other = plan(["agent"], agent=agent_section(model="anthropic/claude-opus-4-5"))
    assert labels_of(other.container(GATEWAY))["io.versatilehub.config-sha256"] != digest
    gw = p.named("agent-gateway")
    assert step.urn in gw.dependencies, "the file is in place before the gateway starts"


def test_config_step_writes_through_a_locked_down_helper(plan: PlanFn) -> None:
    script = harness.plain(plan(["agent"]).named("agent-config-file").inputs["create"])
    for flag in ("--network none", "--read-only", "--cap-drop ALL", "--user 1000:1000"):
        assert flag in script
    assert "-v /srv/versatilehub/clientea/agent/config:/config" in script
    assert "OPENCLAW_CONFIG_JSON" in script and "{" not in script, "the JSON travels in the environment"


def test_config_script_writes_the_file_atomically_for_real(tmp_path: Path) -> None:
    """The host step's shell, run for real; a stand-in `docker` runs the helper's command on a directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "docker"
    stand_in.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        'src="" cmd=""\n'
        "while (($#)); do\n"
        "  case $1 in -v) src=${2%%:*}; shift 2;; -c) cmd=$2; shift 2;; *) shift;; esac\n"
        "done\n"
        'exec sh -c "${cmd//\\/config/$src}"\n'
    )
    stand_in.chmod(0o755)
    target = tmp_path / "config"
    target.mkdir()
    doc = {"gateway": {"mode": "local", "note": "quotes \" ' and $HOME and `ticks`"}}
    text = json.dumps(doc, indent=2)
    script = agent_module._write_config_script(str(target), "restic/restic:0.19.1")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OPENCLAW_CONFIG_JSON": text}
    for _ in range(2):  # a re-run is harmless
        subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=env, check=True, timeout=10)
    written = target / "openclaw.json"
    assert json.loads(written.read_text()) == doc
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.iterdir()) == ["openclaw.json"], "no temporary file left"


def test_standalone_trusts_no_proxy_and_answers_on_loopback(plan: PlanFn) -> None:
    p = plan(["agent"], mode="standalone", acmeEmail=None, standalonePort=8089)
    gw = p.container(GATEWAY)
    assert gw.plain_inputs["ports"] == [{"internal": 18789, "external": 8089, "ip": "127.0.0.1"}]
    assert networks_of(gw) == ["clientea-shared"]
    assert not any(k.startswith("traefik.") for k in labels_of(gw))
    gateway = gateway_config(p)["gateway"]
    assert "trustedProxies" not in gateway
    assert gateway["controlUi"]["allowedOrigins"] == ["http://127.0.0.1:8089", "http://localhost:8089"]
    assert p.outputs["agent"]["url"] == "http://127.0.0.1:8089"


# -- routing and networks ----------------------------------------------------------------------------------


def test_traefik_routes_https_and_websocket_to_18789_on_web_only(plan: PlanFn) -> None:
    gw = plan(["agent"]).container(GATEWAY)
    labels = labels_of(gw)
    router = "traefik.http.routers.clientea-agent"
    assert labels[f"{router}.rule"] == "Host(`agent.clientea.com`)"
    assert (
        labels[f"{router}.entrypoints"] == "websecure,websecure6"
        and labels[f"{router}.tls.certresolver"] == "le"
    )
    assert labels["traefik.http.services.clientea-agent.loadbalancer.server.port"] == "18789"
    assert labels["traefik.docker.network"] == "web"
    assert networks_of(gw) == ["web"], "one container: no internal network, and out to the model APIs"
    assert "ports" not in gw.inputs


# -- secrets and outputs -----------------------------------------------------------------------------------


def test_token_is_generated_alphanumeric_and_every_secret_stays_secret(plan: PlanFn) -> None:
    p = plan(["agent"])
    token = p.get("random:index/randomPassword:RandomPassword", "agent-gateway-token")
    assert token.inputs["length"] >= 32 and token.inputs["special"] is False
    out = p.outputs["agent"]
    assert harness.is_secret(out["gatewayToken"]) and harness.plain(out["gatewayToken"]).isalnum()
    assert not harness.contains_secret(p.container(GATEWAY).inputs["envs"]), "secrets in its env file"
    key = placeholder("providerKeys.anthropic")
    for r in p.resources:
        text = json.dumps(harness.masked(r.inputs))
        assert key not in text and harness.plain(out["gatewayToken"]) not in text, r.name
    assert key not in json.dumps(harness.masked(p.outputs))


def test_outputs_name_the_url_version_and_pairing_commands(plan: PlanFn) -> None:
    out = plan(["agent"]).outputs["agent"]
    assert out["url"] == "https://agent.clientea.com"
    assert out["version"] == "2026.10.1" and out["model"] == MODEL
    # `docker exec` gets the container's env, not the env file: the CLI runs under the same wrapper, so
    # it reaches the gateway with the token as before (issue 14).
    wrapper = shlex.join([*ENV_FILE_WRAPPER, agent_module.ENV_FILE])
    assert out["pairing"] == {
        "list": f"docker exec {GATEWAY} {wrapper} node dist/index.js devices list",
        "approve": f"docker exec {GATEWAY} {wrapper} node dist/index.js devices approve <requestId>",
    }


# -- backups -----------------------------------------------------------------------------------------------


def build(**overrides: Any) -> Suite:
    holder: dict[str, Suite] = {}

    def program() -> None:
        holder["suite"] = deploy(config.load())

    harness.run(make_stack(["agent"], **overrides), program)
    return holder["suite"]


def test_backups_use_openclaws_own_archive_never_the_live_sqlite() -> None:
    sources = [s for s in build().deployment.backup_sources if s.service == "agent"]
    [archive] = [s for s in sources if isinstance(s, AppBackupCommand)]
    assert archive.container == GATEWAY and archive.user == "1000:1000"
    assert archive.command[:6] == (*ENV_FILE_WRAPPER, agent_module.ENV_FILE, "sh", "-c"), "the env file first"
    assert "node dist/index.js backup create --output /home/node/backups &&" in archive.command[6]
    assert (
        "node dist/index.js backup verify /home/node/backups/*-openclaw-backup.tar.gz" in archive.command[6]
    )
    assert "--verify" not in archive.command[6], "a 2026.9 flag; later releases define --no-verify only"
    assert archive.output.source == "/srv/versatilehub/clientea/agent/backups"
    assert archive.output_subpath == "*-openclaw-backup.tar.gz"
    files = [s for s in sources if isinstance(s, FileSet)]
    assert [f.location.name for f in files] == ["auth-key"], "copied as files: the key, never the state"


# -- stack config errors -------------------------------------------------------------------------------


def test_enabled_agent_without_a_provider_key_or_model_is_refused(config_problems: Any) -> None:
    lines = config_problems(["agent"], agent={})
    assert lines == [
        "versatilehub:agent.providerKeys: the agent needs at least one model provider key "
        "(anthropic, openai, openrouter, gemini); fix: pulumi config set --secret --path "
        "'versatilehub:agent.providerKeys.anthropic' sk-ant-api03-...",
        "versatilehub:agent.model: the agent needs its default model, written provider/model; "
        "fix: pulumi config set --path 'versatilehub:agent.model' anthropic/claude-sonnet-4-5",
    ]


def test_agent_settings_are_not_required_when_agent_is_not_deployed(plan: PlanFn) -> None:
    p = plan(["flow"])  # no versatilehub:agent at all
    assert "agent" not in p.outputs
    assert not [c for c in p.containers() if labels_of(c)["io.versatilehub.service"] == "agent"]


def test_model_of_a_provider_without_a_key_is_refused(config_problems: Any) -> None:
    section = agent_section(providerKeys={"openai": secure("openai")})
    [line] = config_problems(["agent"], agent=section)
    assert line.startswith(f"versatilehub:agent.model: {MODEL} runs on anthropic, which has no key; fix: ")
    assert "--secret --path 'versatilehub:agent.providerKeys.anthropic'" in line
    assert "pulumi config set --path 'versatilehub:agent.model' openai/<model>" in line


def test_malformed_model_reference(config_problems: Any) -> None:
    [line] = config_problems(["agent"], agent=agent_section(model="claude sonnet"))
    assert line.startswith("versatilehub:agent.model: is not a provider/model reference")


def test_provider_key_in_plain_text_is_refused_without_echoing_it(config_problems: Any) -> None:
    key = "sk-ant-api03-" + "k" * 40
    [line] = config_problems(["agent"], agent={"model": MODEL, "providerKeys": {"anthropic": key}})
    assert line == (
        "versatilehub:agent.providerKeys.anthropic is stored in plain text; store it encrypted: "
        "pulumi config set --secret --path 'versatilehub:agent.providerKeys.anthropic' <value>"
    )


def test_channel_token_in_plain_text_is_refused(config_problems: Any) -> None:
    section = {"model": MODEL, "providerKeys": {"anthropic": "sk-ant-api03-" + "k" * 40}}
    section["channels"] = {"telegram": "123456789:" + "t" * 35}
    lines = config_problems(["agent"], agent=section)
    assert [line.split(" ", 1)[0] for line in lines] == [
        "versatilehub:agent.providerKeys.anthropic",
        "versatilehub:agent.channels.telegram",
    ]


def parse_agent(section: dict[str, Any]) -> list[str]:
    """Problems of an agent section stored with --secret (the engine hands its leaves over decrypted)."""
    stack = {**BASE_STACK, "services": ["agent"], "agent": section}
    raw = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in stack.items()}
    with pytest.raises(config.ConfigError) as info:
        config.parse(raw, frozenset({"agent"}))
    return info.value.problems


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("changeme", "is a placeholder, not a real credential"),
        ("sk-xxx", "is a placeholder, not a real credential"),
        ("YOUR_API_KEY", "is a placeholder, not a real credential"),
        ("sk-ant-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "is an example value, not a real key"),
        ("sk-ant-api03-...", "is not an API key or bot token"),
        ("sk-ant-api03 has a space in it", "is not an API key or bot token"),
    ],
)
def test_placeholder_provider_keys_are_refused_without_echoing_them(value: str, message: str) -> None:
    [line] = parse_agent({"model": MODEL, "providerKeys": {"anthropic": value}})
    assert line.startswith(f"versatilehub:agent.providerKeys.anthropic: {message}")
    assert "--secret --path 'versatilehub:agent.providerKeys.anthropic'" in line
    assert value not in line.split("; fix:")[0], "a credential is never echoed"


def test_placeholder_bot_token_is_refused() -> None:
    section = {"model": MODEL, "providerKeys": {"openai": "sk-proj-" + "p" * 40}}
    section["channels"] = {"telegram": "changeme"}
    section["model"] = "openai/gpt-5.4"
    [line] = parse_agent(section)
    assert line.startswith("versatilehub:agent.channels.telegram: is a placeholder")


def test_unknown_provider_is_a_typo_with_a_suggestion() -> None:
    [line] = parse_agent({"model": MODEL, "providerKeys": {"antrophic": "sk-ant-api03-" + "k" * 40}})
    assert line.startswith(
        "versatilehub:agent.providerKeys.antrophic is not a known key (did you mean 'anthropic'?)"
    )


# A stand-in for `node dist/index.js` with OpenClaw 2026.9.6's verification budget (dist/backup-verify-*.mjs):
# SQLite snapshots are extracted under os.tmpdir() (TMPDIR, else /tmp), which must have the snapshot's size
# plus SQLITE_SNAPSHOT_FREE_SPACE_RESERVE_BYTES (256 MiB) free. The free space is what a 256 MB /tmp tmpfs
# offers (256 MiB less the gateway's logs) unless TMPDIR names another place, where the disk has room.
FAKE_OPENCLAW = r"""#!/bin/sh
shift  # dist/index.js
case "$1 $2" in
  "backup create")
    [ "$3" = --output ] || exit 64
    case " $* " in *" --verify "*) echo "unknown option --verify" >&2; exit 1;; esac
    : > "$4/2026-12-02T03-00-00.000Z-openclaw-backup.tar.gz" ;;
  "backup verify")
    [ -f "$3" ] || { echo "no archive $3" >&2; exit 1; }
    scratch="${TMPDIR:-/tmp}"
    if [ "$scratch" = /tmp ]; then available=$((200 * 1048576)); else available=$((50 * 1073741824)); fi
    snapshot=1048576
    if [ $((snapshot + 268435456)) -gt "$available" ]; then
      echo "SQLite snapshots require 1 MiB of extraction space, but only $available is available" >&2
      exit 1
    fi
    [ -d "$scratch" ] && [ -w "$scratch" ] || exit 1
    echo "$scratch" > "$VERIFIED_IN" ;;
  *) exit 64 ;;
esac
"""


@pytest.mark.parametrize("verify_succeeds", [True, False])
def test_backup_verification_has_room_and_cleans_up(tmp_path: Path, verify_succeeds: bool) -> None:
    """The command runs for real (sh) against a stand-in with OpenClaw's space rule: verification gets a
    scratch place that is not the 256 MB /tmp, its failure fails the backup, and the scratch is removed."""
    [archive] = [s for s in build().deployment.backup_sources if isinstance(s, AppBackupCommand)]
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "2026-12-01T03-00-00.000Z-openclaw-backup.tar.gz").write_text("yesterday")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    script = FAKE_OPENCLAW if verify_succeeds else FAKE_OPENCLAW.replace('[ -f "$3" ]', "false")
    node.write_text(script)
    node.chmod(0o755)
    command = archive.command[6].replace("/home/node/backups", str(backups))
    env_file = tmp_path / "agent.env"
    env_file.write_text("OPENCLAW_GATEWAY_TOKEN='t0ken'\n")
    marker = tmp_path / "verified-in"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "VERIFIED_IN": str(marker)}
    argv = [*archive.command[:3], str(env_file), *archive.command[4:6], command]
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert (ran.returncode == 0) is verify_succeeds, ran.stderr
    assert not (backups / ".verify-scratch").exists(), "the scratch is removed either way"
    archives = sorted(p.name for p in backups.iterdir())
    assert archives == ["2026-12-02T03-00-00.000Z-openclaw-backup.tar.gz"], "one archive, today's"
    if verify_succeeds:
        assert marker.read_text().strip() == f"{backups}/.verify-scratch"
