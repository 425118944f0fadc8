"""Where a service's data lives: bind mounts under the data root, or Docker named volumes.

Bind mode (the seed's layout): ``<dataRoot>/<client>/<service>/<name>`` on the host. Volume mode: one
named volume ``<client>-<service>-<name>``, kept if the stack is destroyed. Either way a one-time step
(through Docker, so no sudo is needed on the host) gives each location the owner its container runs as.

Every data location is recorded with what it holds, so backups know what to dump and what to copy.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pulumi
import pulumi_docker as docker
from pydantic import Field, field_validator

from components.core.host import Host
from components.core.model import Model

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig


class StorageConfig(Model):
    """Where data lives: bind mounts under one data root (the seed's layout), or Docker named volumes."""

    kind: Literal["bind", "volume"] = Field("bind", json_schema_extra={"example": "volume"})
    data_root: str = Field(
        "/srv/versatilehub",
        pattern=r"^/[A-Za-z0-9._/-]*$",
        json_schema_extra={"example": "/srv/versatilehub"},
    )

    @field_validator("data_root")
    @classmethod
    def _not_system(cls, value: str) -> str:
        value = value.rstrip("/") or "/"
        if (
            value in {"/", "/etc", "/usr", "/bin", "/boot", "/dev", "/proc", "/sys", "/lib", "/var/run"}
            or ".." in value
        ):
            raise ValueError(
                f"{value!r} is a system directory; use a dedicated one such as /srv/versatilehub"
            )
        return value


@dataclass(frozen=True)
class DataDir:
    """A named piece of a service's data, with the owner its container needs (uid:gid)."""

    name: str
    owner: str = "1000:1000"
    mode: str = "0750"


@dataclass(frozen=True)
class DataLocation:
    service: str
    name: str
    source: str  # host path (bind) or volume name (volume)
    kind: str  # "bind" | "volume"


class ServiceData:
    """The data directories of one service, ready to mount."""

    def __init__(
        self,
        config: SuiteConfig,
        host: Host,
        parent: pulumi.Resource,
        service: str,
        dirs: list[DataDir],
        helper_image: str,
    ):
        self.service = service
        self.kind = config.storage.kind
        self.locations: dict[str, DataLocation] = {}
        self._volumes: dict[str, docker.Volume] = {}
        # Resources a container using this data must wait for (the directory step in bind mode).
        self.ready: list[pulumi.Resource] = []
        root = f"{config.storage.data_root}/{config.client}/{service}"
        for d in dirs:
            if self.kind == "bind":
                self.locations[d.name] = DataLocation(service, d.name, f"{root}/{d.name}", "bind")
            else:
                volume_name = f"{config.client}-{service}-{d.name}"
                self._volumes[d.name] = docker.Volume(
                    f"{service}-{d.name}",
                    name=volume_name,
                    labels=[
                        docker.VolumeLabelArgs(label="io.versatilehub.client", value=config.client),
                        docker.VolumeLabelArgs(label="io.versatilehub.service", value=service),
                    ],
                    # Data outlives the stack: `pulumi destroy` never deletes a client's database.
                    opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True),
                )
                self.locations[d.name] = DataLocation(service, d.name, volume_name, "volume")
        # One short-lived helper container (root only to chown, no network) gives each directory or volume
        # the owner its container runs as; `install -d` never touches existing data.
        chown = " && ".join(
            f"install -d -o {d.owner.split(':')[0]} -g {d.owner.split(':')[1]} -m {d.mode} /data/{d.name}"
            for d in dirs
        )
        if self.kind == "bind":
            # `-v` makes the Docker daemon create a missing source as root: the deploy user needs no
            # write access to the data root, only to the Docker socket.
            mount_flags = f"-v {shlex.quote(root)}:/data"
        else:
            mount_flags = " ".join(
                f"-v {shlex.quote(self.locations[d.name].source)}:/data/{d.name}" for d in dirs
            )
        script = (
            f"docker run --rm --network none --entrypoint /bin/sh {mount_flags} "
            f"{shlex.quote(helper_image)} -c {shlex.quote(chown)}\n"
        )
        self.ready.append(
            host.run(
                f"{service}-data-dirs",
                script,
                parent=parent,
                triggers=[self.kind, root, chown],  # re-run when the layout or owners change
                depends_on=list(self._volumes.values()),
            )
        )

    def mount(self, name: str, target: str, *, read_only: bool = False) -> docker.ContainerMountArgs:
        location = self.locations[name]
        if location.kind == "bind":
            return docker.ContainerMountArgs(
                type="bind", source=location.source, target=target, read_only=read_only
            )
        return docker.ContainerMountArgs(
            type="volume", source=self._volumes[name].name, target=target, read_only=read_only
        )
