"""The one way to create a container: hardened defaults, so a component states only what differs.

Defaults: a pinned image pulled once per stack (the container uses its ``image_id``, which avoids the
perpetual-replacement trap of passing a tag), the name ``<client>-<service>-<role>``, restart
``unless-stopped``, ``no-new-privileges``, every capability dropped, a read-only root filesystem with a
small ``/tmp``, a non-root user, rotated JSON logs, memory and CPU limits from the catalog (or the
stack's overrides), a healthcheck, identifying labels, and delete-before-replace (fixed names).

Exceptions are arguments with a reason attached (``root_reason=``, ``writable_reason=``,
``no_healthcheck_reason=``): they are recorded as labels so the policy pack and ``docker inspect`` show them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi
import pulumi_docker as docker

from components.core.secrets import SecretFile
from tools.provider_model import cpus_read_back, duration_read_back

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig

LOG_OPTS = {"max-size": "10m", "max-file": "3"}
LABEL_PREFIX = "io.versatilehub"

# Seconds a container gets to stop cleanly (SIGTERM, then SIGKILL) when replaced or destroyed and when
# Docker stops it. Without destroy_grace_seconds the provider stops it with a 0 s timeout, then removes it
# by force (resource_docker_container_funcs.go, resourceDockerContainerDelete).
STOP_GRACE_SECONDS = {
    "mariadb": 60,  # flushes InnoDB and the binary log
    "postgres": 60,  # a fast shutdown writes a checkpoint
    "redis": 60,
    "redis-queue": 60,  # appendonly: the last fsync
    "redis-cache": 60,
    "sidekiq": 35,  # Sidekiq's own shutdown timeout is 25 s, then it pushes unfinished jobs back
    "n8n": 40,  # N8N_GRACEFUL_SHUTDOWN_TIMEOUT defaults to 30 s (@n8n/config, generic.config.ts)
}
DEFAULT_STOP_GRACE_SECONDS = 15


@dataclass(frozen=True)
class Healthcheck:
    """A Docker healthcheck. `test` is the exec form without the leading CMD / CMD-SHELL."""

    test: Sequence[str]
    shell: bool = False
    interval: str = "30s"
    timeout: str = "5s"
    retries: int = 3
    start_period: str = "30s"

    def args(self) -> docker.ContainerHealthcheckArgs:
        tests = ["CMD-SHELL", " ".join(self.test)] if self.shell else ["CMD", *self.test]
        # Written as the provider reads them back (time.Duration.String: "60s" is stored as "1m0s"), so
        # a second `up` sees no healthcheck change, which would replace the container.
        return docker.ContainerHealthcheckArgs(
            tests=tests,
            interval=duration_read_back(self.interval),
            timeout=duration_read_back(self.timeout),
            retries=self.retries,
            start_period=duration_read_back(self.start_period),
        )


@dataclass(frozen=True)
class Attach:
    """One network a container joins, with the DNS names it answers to there."""

    network: pulumi.Input[str]
    aliases: Sequence[str] = field(default_factory=tuple)


class Images:
    """One `RemoteImage` per image key per stack; every container of that key shares it.

    Per key, not per reference: two keys may pin the same reference today (each service's Redis), and
    bumping one of them must change only that key's pull and its containers, with an exact preview.
    """

    def __init__(self, config: SuiteConfig, parent: pulumi.Resource):
        self._config = config
        self._parent = parent
        self._pulled: dict[str, docker.RemoteImage] = {}

    def get(self, key: str) -> docker.RemoteImage:
        if key not in self._pulled:
            self._pulled[key] = docker.RemoteImage(
                f"image-{key}",
                name=self._config.pin(key),
                # Never delete an image on replace/destroy: another container or stack may run it.
                keep_locally=True,
                opts=pulumi.ResourceOptions(parent=self._parent),
            )
        return self._pulled[key]

    def reference(self, key: str) -> str:
        return self._config.pin(key)

    def used(self) -> list[str]:
        """The image keys this stack pulls (for the deployed-versions output)."""
        return list(self._pulled)


def _env_list(envs: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[list[str]]:
    """KEY=VALUE strings, sorted for a stable diff. Never a secret here: secrets come as `secret_files`
    (components/core/secrets.py), so a preview shows each plain value that changes."""
    keys = sorted(envs)
    return pulumi.Output.all(*[envs[k] for k in keys]).apply(
        lambda values: [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
    )


def container(
    config: SuiteConfig,
    images: Images,
    *,
    parent: pulumi.Resource,
    service: str,
    role: str,
    image: str,
    networks: Sequence[Attach],
    healthcheck: Healthcheck | None,
    user: str | None,
    command: Sequence[pulumi.Input[str]] | None = None,
    entrypoint: Sequence[str] | None = None,
    envs: Mapping[str, pulumi.Input[str]] | None = None,
    mounts: Sequence[docker.ContainerMountArgs] = (),
    # Secret files it reads (read-only at /run/secrets/<name>), each with its fingerprint label.
    secret_files: Sequence[SecretFile] = (),
    labels: Mapping[str, pulumi.Input[str]] | None = None,
    ports: Sequence[docker.ContainerPortArgs] = (),
    # Files copied in before the first start. Docker refuses that on a read-only root filesystem, so a
    # container with uploads also needs writable_reason=.
    uploads: Sequence[docker.ContainerUploadArgs] = (),
    tmpfs: Mapping[str, str] | None = None,
    capabilities: Sequence[str] = (),
    restart: str = "unless-stopped",
    root_reason: str | None = None,
    writable_reason: str | None = None,
    no_healthcheck_reason: str | None = None,
    wait_healthy: bool = False,
    wait_timeout: int = 300,
    working_dir: str | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    must_run: bool = True,
) -> docker.Container:
    """Create `<client>-<service>-<role>` with the suite's hardened defaults."""
    key = f"{service}-{role}"
    if user is None and not root_reason:
        raise ValueError(f"{key}: runs as the image's default user (root?); give user= or root_reason=")
    if healthcheck is None and not no_healthcheck_reason:
        raise ValueError(f"{key}: every long-running container has a healthcheck; give one or a reason")
    if uploads and not writable_reason:
        raise ValueError(
            f"{key}: Docker copies uploads only into a writable root filesystem; give writable_reason="
        )
    limits = config.limits(key)
    pulled = images.get(image)
    all_labels: dict[str, pulumi.Input[str]] = {
        f"{LABEL_PREFIX}.client": config.client,
        f"{LABEL_PREFIX}.service": service,
        f"{LABEL_PREFIX}.role": role,
        f"{LABEL_PREFIX}.image": images.reference(image),
    }
    if root_reason:
        all_labels[f"{LABEL_PREFIX}.root-reason"] = root_reason
    if writable_reason:
        all_labels[f"{LABEL_PREFIX}.writable-reason"] = writable_reason
    if no_healthcheck_reason:
        all_labels[f"{LABEL_PREFIX}.no-healthcheck-reason"] = no_healthcheck_reason
    all_labels.update(labels or {})
    for f in secret_files:
        all_labels[f.label] = f.fingerprint  # a rotation replaces exactly this secret's consumers
    all_mounts = [*mounts, *(f.mount() for f in secret_files)]
    read_only = writable_reason is None
    return docker.Container(
        key,
        name=f"{config.client}-{key}",
        image=pulled.image_id,
        command=list(command) if command is not None else None,
        entrypoints=list(entrypoint) if entrypoint is not None else None,
        # Every container keeps the client's time zone (logs, schedulers, cron-like jobs).
        envs=_env_list({"TZ": config.timezone, **(envs or {})}),
        user=user,
        working_dir=working_dir,
        hostname=role,
        restart=restart,
        must_run=must_run,
        memory=limits.memory_mb,
        # Swap equal to memory: the limit is a real limit, not memory plus as much swap again.
        memory_swap=limits.memory_mb,
        # As the provider reads it back (nanoInt64ToDecimalString: "2" is stored as "2.0"); config
        # refuses a value whose read-back is another number (components/config.py).
        cpus=cpus_read_back(str(limits.cpus)),
        destroy_grace_seconds=STOP_GRACE_SECONDS.get(role, DEFAULT_STOP_GRACE_SECONDS),
        stop_timeout=STOP_GRACE_SECONDS.get(role, DEFAULT_STOP_GRACE_SECONDS),
        read_only=read_only,
        tmpfs=dict(tmpfs)
        if tmpfs is not None
        else ({"/tmp": "rw,noexec,nosuid,size=64m"} if read_only else None),
        security_opts=["no-new-privileges:true"],
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(capabilities) or None),
        log_driver="json-file",
        log_opts=LOG_OPTS,
        healthcheck=healthcheck.args() if healthcheck else None,
        wait=wait_healthy,
        wait_timeout=wait_timeout if wait_healthy else None,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=n.network, aliases=list(n.aliases) or None)
            for n in networks
        ],
        mounts=all_mounts or None,
        ports=list(ports) or None,
        uploads=list(uploads) or None,
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(all_labels.items())],
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*depends_on, *(f.ready for f in secret_files)],
            delete_before_replace=True,  # fixed names and ports: the old one must go first
            # The provider's Update applies only restart, memory, CPU shares/set and device limits
            # (resource_docker_container_funcs.go, resourceDockerContainerUpdate): a healthcheck or
            # tmpfs change would show as an update and not be applied.
            replace_on_changes=["healthcheck", "tmpfs"],
        ),
    )
