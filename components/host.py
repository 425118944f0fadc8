"""The client's Docker host: the one place that decides how Docker and shell commands reach it.

Local (``unix:///var/run/docker.sock``): ``pulumi up`` runs on the server itself; commands run locally.
Remote (``ssh://user@host``): Docker goes through the docker CLI's SSH helper with the pinned host key;
commands run through pulumi-command's SSH connection with the same pinned key.

Secrets never appear on a command line: locally they go in the command's environment; over SSH (where
sshd usually refuses client environment) they go on stdin, which the script reads before anything else.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config import SuiteConfig, secret

# Every script runs under bash with strict error handling: a failing step fails the resource.
PREAMBLE = "set -euo pipefail\n"
# Over SSH the secrets arrive on stdin as shell assignments (values quoted by shlex.quote).
READ_SECRETS_FROM_STDIN = 'set -a; eval "$(cat)"; set +a\n'


def known_hosts_file(config: SuiteConfig) -> Path:
    """A known_hosts file holding exactly the pinned key, for the docker CLI's ssh helper."""
    state = Path(
        os.environ.get("VERSATILEHUB_STATE_DIR", Path(__file__).resolve().parent.parent / ".versatilehub")
    )
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
    ) -> command.local.Command | command.remote.Command:
        """One step on the host (a setup, a migration, a backup). `script` must be idempotent."""
        env = dict(env or {})
        secret_env = dict(secret_env or {})
        opts = pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            # A step's output may echo a secret it was given; keep it out of state and the diff.
            additional_secret_outputs=["stdout", "stderr"],
        )
        # Secrets are passed but never printed: no streaming of output while the step runs.
        logging = command.local.Logging.NONE if secret_env else command.local.Logging.STDOUT_AND_STDERR
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
