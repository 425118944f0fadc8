"""Secrets reach containers as files: the one place that writes them on the Docker host (issue 14).

Each secret is one file ``<dataRoot>/<client>/secrets/<service>/<name>``, mode 0400, owned by the uid the
consuming container runs as, in a root-only folder; a host step (scripts/secret_file.sh) writes it with the
value in its environment (stdin over SSH), never on a command line, and runs again when the value changes.
Containers bind-mount the file read-only at ``/run/secrets/<name>`` and read it through the image's own
``*_FILE`` variable, a config file, or ENV_FILE_WRAPPER (an env file for apps that read only their
environment). Nothing secret is in a container's env, command, entrypoint or labels, so ``docker inspect``
(and the socket proxy's ``CONTAINERS=1``) shows no password, and a preview shows every plain env change.

Each consumer carries the label ``io.versatilehub.secret.<name>``: a keyed hash (HMAC-SHA256 under a
generated per-stack key, first 16 hex) of the name and value. It is not secret (it reveals nothing of the
value, even of a weak one typed by an operator, without the key), so a rotation replaces exactly the
containers that read that secret and the preview names it. A file stays on the host after a destroy, as data.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_docker as docker

from components.core.host import Host
from components.core.scripts import script

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig

LABEL = "io.versatilehub.secret"
CONTAINER_DIR = "/run/secrets"
WRITE = script(__name__, "secret_file.sh")
# An entrypoint for apps that read secrets only from their environment: `[*ENV_FILE_WRAPPER, env_file,
# *original entrypoint]`, the image's command after it. POSIX sh: `set -a` exports what the file assigns
# (KEY='value' lines, shell-quoted), then exec keeps the app as PID 1 with the variables in its environment
# only (the engine's config, which `docker inspect` shows, never holds them).
ENV_FILE_WRAPPER = ("/bin/sh", "-c", 'set -a && . "$0" && set +a && exec "$@"')


@dataclass(frozen=True)
class SecretFile:
    """One written secret file: where it is on the host, where a container reads it, its fingerprint."""

    service: str
    name: str
    host_path: str
    path: str  # inside the container: /run/secrets/<name>
    fingerprint: pulumi.Output[str]  # not secret: a keyed hash
    ready: pulumi.Resource  # the step that writes it

    @property
    def label(self) -> str:
        return f"{LABEL}.{self.name}"

    def mount(self) -> docker.ContainerMountArgs:
        return docker.ContainerMountArgs(type="bind", source=self.host_path, target=self.path, read_only=True)


def env_file_text(values: Mapping[str, str]) -> str:
    """KEY='value' lines as `. file` reads them back exactly (shlex.quote: any byte but NUL survives)."""
    return "".join(f"{key}={shlex.quote(values[key])}\n" for key in sorted(values))


def fingerprint(key: str, name: str, value: str) -> str:
    return hmac.new(key.encode(), f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()[:16]


def secret_dir(config: SuiteConfig, service: str) -> str:
    return f"{config.storage.data_root}/{config.client}/secrets/{service}"


def write(
    config: SuiteConfig,
    host: Host,
    *,
    parent: pulumi.Resource,
    service: str,
    name: str,
    value: pulumi.Input[str],
    owner: str,
    key: pulumi.Input[str],
    helper_image: str,
) -> SecretFile:
    """The step that writes `name` for `service` (owned by `owner`, uid:gid), and how to mount it."""
    if not name.replace("-", "").replace(".", "").replace("_", "").isalnum() or name.startswith("."):
        raise ValueError(f"{service}: secret file name {name!r} is not a plain file name")
    uid, _, gid = owner.partition(":")
    if not (uid.isdigit() and gid.isdigit()):
        raise ValueError(f"{service}/{name}: owner {owner!r} is not numeric uid:gid")
    directory = secret_dir(config, service)
    secret_value = pulumi.Output.secret(value)
    digest = pulumi.Output.unsecret(
        pulumi.Output.all(key, secret_value).apply(lambda kv: fingerprint(str(kv[0]), name, str(kv[1])))
    )
    step = host.run(
        f"{service}-secret-{name}",
        WRITE,
        parent=parent,
        env={
            "VH_FILE_DIR": directory,
            "VH_FILE_NAME": name,
            "VH_FILE_OWNER": owner,
            "VH_HELPER_IMAGE": helper_image,
        },
        secret_env={"VH_SECRET_VALUE": secret_value},
        # Written again when the value (its keyed hash: no secret in a trigger), owner or place changes.
        triggers=[digest, owner, directory],
    )
    return SecretFile(service, name, f"{directory}/{name}", f"{CONTAINER_DIR}/{name}", digest, step)
