"""The client's Docker host: the one place that decides how Docker and shell commands reach it.

Local (``unix:///var/run/docker.sock``): ``pulumi up`` runs on the server itself; commands run locally.
Remote (``ssh://user@host``): Docker goes through the docker CLI's SSH helper with the pinned host key;
commands run through pulumi-command's SSH connection with the same pinned key.

Secrets never appear on a command line: locally they go in the command's environment; over SSH (where
sshd usually refuses client environment) they go on stdin, which the script reads before anything else.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi
import pulumi_command as command
import pulumi_docker as docker
from pydantic import Field, field_validator, model_validator

from components.core.model import Model, secret
from components.core.scripts import STEPLOG

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig

# The checkout this program runs from; HOST_SCRIPTS are the programs it installs on the server.
REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_SCRIPTS = REPO_ROOT / "scripts"

_SSH_RE = re.compile(
    r"ssh://(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?"
)


class HostConfig(Model):
    """Where the client's Docker engine is, and how big the machine is (for the budget checks)."""

    docker: str = Field(
        "unix:///var/run/docker.sock",
        json_schema_extra={"example": "ssh://deploy@203.0.113.10"},
    )
    ssh_host_key: str | None = Field(
        None, json_schema_extra={"example": '"ssh-ed25519 AAAAC3Nza..." (from: ssh-keyscan -t ed25519 HOST)'}
    )
    memory_mb: int = Field(8192, gt=0, json_schema_extra={"example": "16384"})
    cpus: float = Field(4, gt=0, json_schema_extra={"example": "4"})

    @field_validator("docker")
    @classmethod
    def _docker_endpoint(cls, value: str) -> str:
        if value.startswith("unix://"):
            if not value.startswith("unix:///"):
                raise ValueError("a unix socket needs an absolute path, e.g. unix:///var/run/docker.sock")
            return value
        m = _SSH_RE.fullmatch(value)
        if not m or (m["port"] and not 0 < int(m["port"]) < 65536):
            raise ValueError("is neither unix:///path nor ssh://user@host[:port]")
        return value

    @field_validator("ssh_host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-sha2-")) or len(parts[1]) < 60:
            raise ValueError("is not a public host key line such as 'ssh-ed25519 AAAAC3Nza...'")
        return " ".join(parts[:2])

    @model_validator(mode="after")
    def _ssh_needs_key(self) -> HostConfig:
        if self.is_ssh and not self.ssh_host_key:
            raise ValueError(
                "sshHostKey: an ssh:// host needs its host key pinned (never trusted on first use)"
            )
        return self

    @property
    def is_ssh(self) -> bool:
        return self.docker.startswith("ssh://")

    def _ssh(self) -> re.Match[str]:
        m = _SSH_RE.fullmatch(self.docker)
        assert m, "only called for ssh:// hosts"
        return m

    @property
    def ssh_user(self) -> str:
        return self._ssh()["user"]

    @property
    def ssh_address(self) -> str:
        return self._ssh()["host"].strip("[]")

    @property
    def ssh_port(self) -> int:
        return int(self._ssh()["port"] or 22)


# Every script runs under bash with strict error handling: a failing step fails the resource.
PREAMBLE = "set -euo pipefail\n"
# Over SSH the secrets arrive on stdin as shell assignments (values quoted by shlex.quote).
READ_SECRETS_FROM_STDIN = 'set -a; eval "$(cat)"; set +a\n'


def private_log_body(name: str, script: str, secret_names: Sequence[str]) -> str:
    """`script` with its output sent to the host's private step log (core/scripts/steplog.sh), for a step
    that receives secrets and streams nothing: a failure names the step, its status and the log, and
    neither the output nor a secret it may echo reaches Pulumi's error, state or terminal."""
    step = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    names = " ".join(shlex.quote(n) for n in sorted(secret_names))
    return f"{STEPLOG}steplog_begin {shlex.quote(step)} {names}\n{script}"


def known_hosts_file(config: SuiteConfig) -> Path:
    """A known_hosts file holding exactly the pinned key, for the docker CLI's ssh helper."""
    state = Path(os.environ.get("VERSATILEHUB_STATE_DIR", REPO_ROOT / ".versatilehub"))
    return state / f"known_hosts.{config.client}"


class Host:
    """Docker provider and command runner for one client's server."""

    def __init__(self, config: SuiteConfig):
        self.config = config
        host = config.host
        if host.is_ssh:
            path = known_hosts_file(config)
            entry = host.ssh_address if host.ssh_port == 22 else f"[{host.ssh_address}]:{host.ssh_port}"
            line = f"{entry} {host.ssh_host_key}\n"
            if not path.exists() or path.read_text() != line:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(line)
            ssh_opts = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={path}"]
            self.provider = docker.Provider("docker-host", host=host.docker, ssh_opts=ssh_opts)
        else:
            self.provider = docker.Provider("docker-host", host=host.docker)

    def _connection(self) -> command.remote.ConnectionArgs:
        host = self.config.host
        key = self.config.ssh_private_key
        return command.remote.ConnectionArgs(
            host=host.ssh_address,
            port=host.ssh_port,
            user=host.ssh_user,
            host_key=host.ssh_host_key,
            # Without a key in the stack, the provider uses the operator's ssh-agent ($SSH_AUTH_SOCK at run
            # time). Its path stays out of the inputs: it changes per login and would re-run every step.
            private_key=secret(key) if key is not None else None,
        )

    def run(
        self,
        name: str,
        script: str,
        *,
        parent: pulumi.Resource,
        env: Mapping[str, pulumi.Input[str]] | None = None,
        secret_env: Mapping[str, pulumi.Input[str]] | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
        delete: str | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        progress: bool = False,
    ) -> command.local.Command | command.remote.Command:
        """One step on the host (a setup, a migration, a backup). `script` must be idempotent.

        `progress`: a step with secrets whose script keeps every command's output out of stderr and writes
        only secret-free progress lines there (core/scripts/progress.sh): its stderr streams while it runs.
        """
        env = dict(env or {})
        secret_env = dict(secret_env or {})
        opts = pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            # A step's output may echo a secret it was given; keep it out of state and the diff.
            additional_secret_outputs=["stdout", "stderr"],
        )
        # Secrets are passed but never printed: no streaming of output while the step runs.
        if not secret_env:
            logging = command.local.Logging.STDOUT_AND_STDERR
        elif progress:
            logging = command.local.Logging.STDERR
        else:
            logging = command.local.Logging.NONE
            script = private_log_body(name, script, list(secret_env))
        if not self.config.host.is_ssh:
            return command.local.Command(
                name,
                create=PREAMBLE + script,
                delete=PREAMBLE + delete if delete else None,
                interpreter=["/bin/bash", "-c"],
                environment={**env, **secret_env} or None,
                triggers=list(triggers) if triggers else None,
                logging=logging,
                add_previous_output_in_env=False,  # see the remote Command below
                opts=opts,
            )
        remote_logging = command.remote.Logging(logging.value)
        stdin = None
        body = PREAMBLE + script
        if secret_env or env:
            keys = sorted({**env, **secret_env})
            values = [({**env, **secret_env})[k] for k in keys]
            stdin = pulumi.Output.all(*values).apply(
                lambda vals: "".join(f"{k}={shlex.quote(str(v))}\n" for k, v in zip(keys, vals, strict=True))
            )
            if secret_env:
                stdin = pulumi.Output.secret(stdin)
            body = PREAMBLE + READ_SECRETS_FROM_STDIN + script
        return command.remote.Command(
            name,
            connection=self._connection(),
            create=f"bash -c {shlex.quote(body)}",
            delete=f"bash -c {shlex.quote(PREAMBLE + delete)}" if delete else None,
            stdin=stdin,
            triggers=list(triggers) if triggers else None,
            logging=remote_logging,
            # Defaults to true in pulumi-command 1.2.1: the previous stdout/stderr would go into the
            # environment of update and delete (E2BIG on a verbose step; SSH servers warn on unknown vars).
            add_previous_output_in_env=False,
            opts=opts,
        )


# -- host-step helpers (backup and monitoring write root-owned files through them) ----------------------

# The here-document marker of write_file; content containing it is refused.
EOF_MARK = "VH_BACKUP_EOF"

# Root's part of a host step: direct as root, else passwordless sudo (or a clear failure).
AS_ROOT = """\
if [ "$(id -u)" -eq 0 ]; then as_root() { "$@"; }; else
  sudo -n true 2>/dev/null || { echo "backup: $(id -un) needs passwordless sudo on this host" >&2; exit 1; }
  as_root() { sudo -n -- "$@"; }
fi
"""
# Deleting never blocks `pulumi destroy`: every step is allowed to find nothing to remove.
AS_ROOT_TOLERANT = """\
if [ "$(id -u)" -eq 0 ]; then as_root() { "$@"; }; else as_root() { sudo -n -- "$@"; }; fi
"""


def write_file(path: str, content: str, mode: str) -> str:
    """Shell that writes `content` to `path` as root, atomically, with `mode` (the text is not secret)."""
    if EOF_MARK in content:
        raise ValueError(f"{path}: content contains the here-document marker {EOF_MARK}")
    body = content if content.endswith("\n") else content + "\n"
    return (
        f'as_root sh -c \'umask 077 && cat > "$1.new" && chmod {mode} "$1.new" && mv "$1.new" "$1"\' '
        f"sh {shlex.quote(path)} <<'{EOF_MARK}'\n{body}{EOF_MARK}\n"
    )
