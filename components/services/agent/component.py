"""Agent: the OpenClaw gateway at agent.<domain> (Control UI, gateway WebSocket and HTTP API on one port).

One container, ``agent-gateway``, on the `web` network only: Traefik reaches it on :18789 for HTTP and
WebSocket alike, and it reaches the model providers' and chat channels' APIs on the way out. It runs as
``node`` (1000), with every capability dropped and a read-only root filesystem; it never sees the Docker
socket (so no OpenClaw sandbox: tools run inside this container, and nowhere else on the host).

Configuration is the program's, not the gateway's: ``openclaw.json`` is written by a host step into its own
directory, mounted read-only at /etc/openclaw, and named by ``OPENCLAW_CONFIG_PATH``, with
``OPENCLAW_CONFIG_READONLY=1`` so OpenClaw refuses config writes (Control UI edits, ``openclaw config set``)
instead of failing on them. The agent's tools therefore cannot loosen its own gateway settings (trusted
proxies, allowed origins, auth), and ``pulumi up`` is the only way they change. The file holds no secret:
the gateway token, provider keys and bot tokens are in a read-only env file the entrypoint sources. Not
Docker ``uploads`` (refused on a read-only root filesystem) and not a file inside ~/.openclaw (OpenClaw's
own, writable by the agent's tools).

Persistence, two mounts as upstream keeps them apart: ``state`` at ~/.openclaw (agent memory and skills in
the workspace, sessions and auth profiles in SQLite, credentials, pairing records) and ``auth-key`` at
~/.config/openclaw (the key that encrypts stored auth profiles). Backups never copy the live SQLite files:
``openclaw backup create`` writes a consistent archive into ``backups`` and ``openclaw backup verify``
checks it (its scratch on disk beside it), which is what gets snapshotted, plus the small key directory as
files.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

import pulumi
import pulumi_random as random

from components.core.container import Attach, Healthcheck
from components.core.deployment import AppBackupCommand, Deployment, FileSet
from components.core.model import secret
from components.core.probe import Check
from components.core.scripts import script
from components.core.secrets import ENV_FILE_WRAPPER
from components.core.storage import DataDir
from components.core.versions import tag_of

UID = "1000:1000"  # `node` in the OpenClaw image
PORT = 18789  # Control UI, gateway WebSocket, /v1 API and the health probes share it
STATE_DIR = "/home/node/.openclaw"
AUTH_KEY_DIR = "/home/node/.config/openclaw"
CONFIG_DIR = "/etc/openclaw"
CONFIG_PATH = f"{CONFIG_DIR}/openclaw.json"
# The CLI as the image's own command runs it (from the image's working directory): whether an `openclaw`
# wrapper is on PATH differs between image builds, `node dist/index.js` does not.
CLI = ("node", "dist/index.js")
# Outside the state tree on purpose: `openclaw backup create` refuses an output inside what it archives.
BACKUP_DIR = "/home/node/backups"
BACKUP_GLOB = "*-openclaw-backup.tar.gz"
# Where verification extracts the archive's SQLite snapshots: on the data disk, not the 256 MB /tmp tmpfs.
# OpenClaw (dist/backup-verify-*.mjs, 2026.9.6) extracts under os.tmpdir() (TMPDIR) and refuses to start
# unless snapshot size + a 256 MiB host reserve is free there, so a 256 MB /tmp can never pass, and a larger
# tmpfs would spend the gateway's memory on a copy of the database.
VERIFY_SCRATCH = f"{BACKUP_DIR}/.verify-scratch"
# One archive at a time on the host (the previous one is in the snapshots already), then `backup verify
# <archive>`: the form every release takes (`create --verify` is 2026.9's flag; later releases define
# `--no-verify` only). TMPDIR is the on-disk scratch for both, removed whatever the outcome.
_OPENCLAW = " ".join(CLI)
BACKUP_COMMAND = (
    f"rm -rf {BACKUP_DIR}/{BACKUP_GLOB} {VERIFY_SCRATCH} && mkdir -m 0700 {VERIFY_SCRATCH} && "
    f"{{ export TMPDIR={VERIFY_SCRATCH}; "
    f"{_OPENCLAW} backup create --output {BACKUP_DIR} && "
    f"{_OPENCLAW} backup verify {BACKUP_DIR}/{BACKUP_GLOB}; "
    f"status=$?; rm -rf {VERIFY_SCRATCH}; exit $status; }}"
)
TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
ENV_FILE = "/run/secrets/agent.env"  # the gateway's secrets (components/core/secrets.py)
# The variables OpenClaw reads each credential from (stack config field -> variable).
PROVIDER_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
CHANNEL_ENV = {"telegram": "TELEGRAM_BOT_TOKEN"}

# /healthz answers {"ok":true,"status":"live"}; the Control UI answers 200 with HTML for unknown paths, so
# the status code alone proves nothing: parse the body. Node is the image's runtime; no curl assumed.
HEALTHZ = (
    f"fetch('http://127.0.0.1:{PORT}/healthz',{{signal:AbortSignal.timeout(4000)}})"
    ".then(r=>r.json()).then(b=>process.exit(b.ok===true?0:1),()=>process.exit(1))"
)


def gateway_config(
    *, trusted_proxies: list[str], origins: list[str], model: str, channels: list[str]
) -> dict[str, Any]:
    """The whole openclaw.json of the gateway. No secret in it: the token is an environment reference."""
    gateway: dict[str, Any] = {
        "mode": "local",  # the gateway refuses to start without it
        "bind": "lan",  # every interface of the container: Traefik connects over the `web` network
        "port": PORT,
        "auth": {
            "mode": "token",
            # Resolved from the environment at start; unset fails closed instead of running open.
            "token": {"source": "env", "provider": "default", "id": TOKEN_ENV},
        },
        # Browsers must come from the agent's own https origin (Control UI and WebSocket).
        "controlUi": {"allowedOrigins": origins},
        "allowRealIpFallback": False,  # the client address comes from X-Forwarded-For, set by Traefik
    }
    if trusted_proxies:
        # Requests through Traefik carry X-Forwarded-For; from an untrusted peer they are refused with 403.
        gateway["trustedProxies"] = trusted_proxies
    config: dict[str, Any] = {
        "gateway": gateway,
        "agents": {"defaults": {"model": {"primary": model}}},
    }
    if channels:
        # Tokens from the environment (TELEGRAM_BOT_TOKEN); unknown senders get a pairing code to approve.
        config["channels"] = {name: {"enabled": True, "dmPolicy": "pairing"} for name in channels}
    return config


def _write_config_script(source: str, helper_image: str) -> str:
    """Write $OPENCLAW_CONFIG_JSON to <source>/openclaw.json atomically, through a throwaway container.

    Through Docker (as in storage.py), so bind directories and named volumes are written the same way and
    the host user needs no sudo. Idempotent: the same text yields the same file.
    """
    new, final = "/config/openclaw.json.new", "/config/openclaw.json"
    write = f"umask 077 && cat > {new} && mv -f {new} {final}"
    return (
        'printf "%s\\n" "$OPENCLAW_CONFIG_JSON" | docker run --rm -i --network none --read-only '
        f"--cap-drop ALL --security-opt no-new-privileges --user {UID} --entrypoint /bin/sh "
        f"-v {shlex.quote(source)}:/config {shlex.quote(helper_image)} -c {shlex.quote(write)}\n"
    )


class Agent(pulumi.ComponentResource):
    """The OpenClaw gateway of one client."""

    outputs: dict[str, Any]

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:agent:Agent", name, None, opts)
        cfg = d.config
        agent = cfg.agent
        service = "agent"
        # Checked when the stack is parsed (AgentConfig.problems_when_enabled); here for the type checker.
        assert agent.model is not None, "agent.model is required when agent is deployed"
        container_name = f"{cfg.client}-{service}-gateway"

        data = d.data_dirs(
            parent=self,
            service=service,
            dirs=[
                DataDir("state", owner=UID, mode="0700"),
                DataDir("auth-key", owner=UID, mode="0700"),
                DataDir("config", owner=UID, mode="0700"),
                DataDir("backups", owner=UID, mode="0700"),
            ],
        )
        d.backup_sources.append(
            AppBackupCommand(
                service,
                container_name,
                (*ENV_FILE_WRAPPER, ENV_FILE, "sh", "-c", BACKUP_COMMAND),
                data.locations["backups"],
                output_subpath=BACKUP_GLOB,
                user=UID,
            )
        )
        # Not in OpenClaw's archive: without it restored auth profiles cannot be decrypted.
        d.backup_sources.append(FileSet(service, data.locations["auth-key"]))

        # Alphanumeric: it is typed into the Control UI and sent as a bearer token.
        token = random.RandomPassword(
            f"{name}-gateway-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )

        exposure = d.expose(service, "gateway", PORT)
        origins = [exposure.url]
        if not cfg.routed:  # reached through an SSH tunnel to the loopback port, under either name
            origins.append(exposure.url.replace("127.0.0.1", "localhost"))
        model, channels = agent.model, agent.channels.configured()
        subnet: pulumi.Input[str] = d.web_subnet if d.web_subnet is not None else ""

        def render(web_subnet: str) -> str:
            if cfg.routed and not web_subnet:
                raise ValueError(
                    f"the {cfg.web_network.name} network has no IPv4 subnet to trust as the proxy"
                )
            # Every address on `web` may proxy: Traefik's own changes on restart, and nothing but routed
            # front containers belongs on that network.
            proxies = [web_subnet] if web_subnet else []
            config = gateway_config(trusted_proxies=proxies, origins=origins, model=model, channels=channels)
            return json.dumps(config, indent=2, sort_keys=True)

        config_json = pulumi.Output.from_input(subnet).apply(render)
        config_source = data.locations["config"].source
        write_config = d.run(
            f"{name}-config-file",
            _write_config_script(config_source, d.images.reference("restic")),
            parent=self,
            env={"OPENCLAW_CONFIG_JSON": config_json},
            triggers=[config_json],  # rewritten when its content changes, and only then
            depends_on=data.ready,
        )

        # A new OpenClaw migrates its state on start: the snapshot of the old one comes first.
        upgrade = d.pre_update_backup(parent=self, service=service, versions=[cfg.pin("openclaw")])

        secrets: dict[str, pulumi.Input[str]] = {TOKEN_ENV: token.result}
        envs: dict[str, pulumi.Input[str]] = {
            "OPENCLAW_CONFIG_PATH": CONFIG_PATH,
            "OPENCLAW_CONFIG_READONLY": "1",
            "OPENCLAW_STATE_DIR": STATE_DIR,
            "OPENCLAW_DISABLE_BONJOUR": "1",  # no multicast discovery from a server
        }
        for field, variable in PROVIDER_ENV.items():
            value = getattr(agent.provider_keys, field)
            if value is not None:
                secrets[variable] = secret(value)
        for field, variable in CHANNEL_ENV.items():
            value = getattr(agent.channels, field)
            if value is not None:
                secrets[variable] = secret(value)
        # OpenClaw resolves these from its environment (SecretRef source "env"): an env file the wrapper
        # entrypoint sources (issue 14). The image's ENTRYPOINT is node's docker-entrypoint.sh, which runs a
        # command starting with an executable as given: the wrapper does the same after sourcing.
        env_file = d.env_file(parent=self, service=service, name="agent.env", values=secrets, owner=UID)
        assert env_file.path == ENV_FILE

        networks = list(exposure.networks)
        if not cfg.routed:
            # Standalone: the client's own network, for the published loopback port and the way out.
            networks.append(Attach(d.shared_network))
        self.gateway = d.container(
            parent=self,
            service=service,
            role="gateway",
            image="openclaw",
            user=UID,
            # Mode, bind address and port come from the config; no --allow-unconfigured.
            entrypoint=[*ENV_FILE_WRAPPER, env_file.path],
            command=[*CLI, "gateway"],
            envs=envs,
            secret_files=[env_file],
            mounts=[
                data.mount("state", STATE_DIR),
                data.mount("auth-key", AUTH_KEY_DIR),
                data.mount("config", CONFIG_DIR, read_only=True),
                data.mount("backups", BACKUP_DIR),
            ],
            tmpfs={
                # What the gateway writes outside its mounts (2026.9.6 in the lab, tools/lab_apps.py): its
                # rolling log /tmp/openclaw/openclaw-<date>.log, SQLite state locks in
                # /tmp/openclaw-state-locks-1000 and /tmp/.openclaw-terminal-staging-1000.
                "/tmp": "rw,noexec,nosuid,nodev,size=256m",
                # ~/.cache/openclaw, made at start: the private staging root of SQLite snapshots
                # (dist/sqlite-snapshot-staging-*.mjs: $XDG_CACHE_HOME or ~/.cache), used by `backup create`.
                "/home/node/.cache": "rw,noexec,nosuid,nodev,size=256m,uid=1000,gid=1000,mode=0700",
            },
            networks=networks,
            ports=exposure.ports,
            labels={
                **exposure.labels,
                # A new config means a new container: gateway settings are read at start.
                "io.versatilehub.config-sha256": config_json.apply(
                    lambda t: hashlib.sha256(t.encode()).hexdigest()
                ),
            },
            healthcheck=Healthcheck(["node", "-e", HEALTHZ], start_period="120s"),
            wait_healthy=True,
            depends_on=[write_config, *data.ready, *upgrade],
        )

        # After the endpoint probe (edge/verify.py): ready, and a call without the token is refused.
        self.checks = [Check("agent-auth", script(__name__, "probe-auth.sh"))]

        # The CLI under the same wrapper: it reaches the gateway with the token from the env file.
        wrapped = shlex.join([*ENV_FILE_WRAPPER, env_file.path, *CLI])
        exec_cli = f"docker exec {container_name} {wrapped}"
        self.outputs = {
            "url": exposure.url,
            # What the Control UI asks for before a browser can pair; also the bearer for the /v1 API.
            "gatewayToken": pulumi.Output.secret(token.result),
            "version": tag_of(cfg.pin("openclaw")),
            # The post-deploy probe through Traefik: started and not draining, whatever a chat channel does
            # (that is /readyz). The Control UI answers 200 to any path, so the body is checked too.
            "healthPath": "/startupz",
            "healthBody": '"ok":true',
            "model": model,
            "channels": channels,
            # A browser's first connection waits for this approval (docs/agent.md).
            "pairing": {
                "list": f"{exec_cli} devices list",
                "approve": f"{exec_cli} devices approve <requestId>",
            },
        }
        self.register_outputs(self.outputs)
