"""What every service component receives: the validated config and the shared pieces of one client's stack.

A component asks this object for containers, data directories, host steps and its public exposure; it
never builds those by hand, so hardening, naming, routing and data layout stay the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pulumi
import pulumi_docker as docker

from components.core import container as containers
from components.core import routing
from components.core import secrets as secret_files
from components.core.container import Attach, Images
from components.core.host import Host
from components.core.storage import DataDir, DataLocation, ServiceData

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig


@dataclass(frozen=True)
class Exposure:
    """How a front container is reached: Traefik labels and the `web` network, or a loopback port."""

    labels: dict[str, str]
    networks: list[Attach]
    ports: list[docker.ContainerPortArgs]
    url: str


@dataclass(frozen=True)
class DatabaseDump:
    """An app-consistent dump made inside a running database container (pg_dump / mariadb-dump)."""

    service: str
    engine: Literal["postgres", "mariadb"]
    container: str  # container name, e.g. clientea-chat-postgres
    database: str
    user: str
    # The file *inside* that container holding the password (its secret file; never on a command line).
    password_file: str | None = None


@dataclass(frozen=True)
class FileSet:
    """Files copied as they are (uploads, keys, acme.json). Never a live database directory."""

    service: str
    location: DataLocation
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppBackupCommand:
    """The application's own backup command (e.g. `bench --site all backup`, `openclaw backup create`),
    run inside `container`; it writes a consistent copy under `output`, which is then snapshotted."""

    service: str
    container: str
    command: tuple[str, ...]
    output: DataLocation
    output_subpath: str = ""  # where under `output` the command writes (glob allowed)
    user: str | None = None
    # The app's own restore, run in `container` once the output is back in place (it picks the newest copy
    # there). Empty: the restore puts the files back and says to run the app's restore by hand.
    restore: tuple[str, ...] = ()


BackupSource = DatabaseDump | FileSet | AppBackupCommand


@dataclass
class Deployment:
    config: SuiteConfig
    host: Host
    images: Images
    # Networks every service may use. `web_network` is None in standalone mode (no Traefik at all).
    web_network: pulumi.Output[str] | None
    web_subnet: pulumi.Output[str] | None
    shared_network: pulumi.Output[str]
    # The per-stack key of the secret files' fingerprint labels (components/core/secrets.py).
    fingerprint_key: pulumi.Input[str]
    data: list[ServiceData] = field(default_factory=list)
    # What a backup run must capture, registered by each service; consumed by the backup component.
    backup_sources: list[BackupSource] = field(default_factory=list)
    # Installed by the backup component when this stack has backups: (parent, service, versions) -> the step
    # that snapshots `service` whenever one of `versions` changes. None: no backups in this stack.
    pre_update_hook: Callable[[pulumi.Resource, str, list[pulumi.Input[str]]], pulumi.Resource] | None = None
    # Every container made through container(), in order (the verification re-runs when one is replaced).
    created_containers: list[docker.Container] = field(default_factory=list)

    # -- containers ---------------------------------------------------------------------------
    def container(
        self, *, parent: pulumi.Resource, service: str, role: str, **kwargs: Any
    ) -> docker.Container:
        created = containers.container(
            self.config, self.images, parent=parent, service=service, role=role, **kwargs
        )
        self.created_containers.append(created)
        return created

    def data_dirs(self, *, parent: pulumi.Resource, service: str, dirs: Sequence[DataDir]) -> ServiceData:
        data = ServiceData(
            self.config, self.host, parent, service, list(dirs), helper_image=self.images.reference("restic")
        )
        self.data.append(data)
        return data

    def network(self, *, parent: pulumi.Resource, service: str) -> docker.Network:
        """A service's own internal network: no route out, reachable only by its own containers."""
        return docker.Network(
            f"{service}-internal",
            name=f"{self.config.client}-{service}",
            internal=True,
            labels=[docker.NetworkLabelArgs(label="io.versatilehub.client", value=self.config.client)],
            opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
        )

    # -- secrets ------------------------------------------------------------------------------
    def secret_file(
        self, parent: pulumi.Resource, service: str, name: str, value: pulumi.Input[str], owner: str
    ) -> secret_files.SecretFile:
        """`value` as /run/secrets/<name> for a container of `service` running as `owner` (uid:gid)."""
        return secret_files.write(
            self.config,
            self.host,
            parent=parent,
            service=service,
            name=name,
            value=value,
            owner=owner,
            key=self.fingerprint_key,
            helper_image=self.images.reference("restic"),
        )

    def env_file(
        self,
        *,
        parent: pulumi.Resource,
        service: str,
        name: str,
        values: Mapping[str, pulumi.Input[str]],
        owner: str,
    ) -> secret_files.SecretFile:
        """An env file of `values` for an app that reads secrets only from its environment: mount it and
        run the app under secrets.ENV_FILE_WRAPPER."""
        keys = sorted(values)
        text = pulumi.Output.all(*[values[k] for k in keys]).apply(
            lambda vals: secret_files.env_file_text(dict(zip(keys, map(str, vals), strict=True)))
        )
        return self.secret_file(parent, service, name, text, owner)

    # -- exposure -----------------------------------------------------------------------------
    def expose(
        self,
        service: str,
        role: str,
        port: int,
        aliases: Sequence[str] = (),
        frame_options: str | None = routing.DEFAULT_FRAME_OPTIONS,
    ) -> Exposure:
        """The front container of `service`: routed by Traefik at its hostname, or on 127.0.0.1 alone.

        `frame_options=None` leaves X-Frame-Options to the app (Chatwoot's embeddable widget)."""
        cfg = self.config
        if self.web_network is None:  # standalone: no Traefik, loopback only
            host_port = cfg.standalone_port or port
            return Exposure(
                labels={},
                networks=[],
                ports=[docker.ContainerPortArgs(internal=port, external=host_port, ip="127.0.0.1")],
                url=f"http://127.0.0.1:{host_port}",
            )
        labels = routing.router_labels(
            f"{cfg.client}-{service}",
            hostname=cfg.hostname(service),
            port=port,
            network=cfg.web_network.name,
            cert_resolver=cfg.traefik.cert_resolver,
            frame_options=frame_options,
            **cfg.traefik.hsts,
        )
        return Exposure(
            labels=labels,
            networks=[Attach(self.web_network, aliases=tuple(aliases))],
            ports=[],
            url=cfg.url(service),
        )

    # -- upgrades ------------------------------------------------------------------------------
    def pre_update_backup(
        self, *, parent: pulumi.Resource, service: str, versions: list[pulumi.Input[str]]
    ) -> list[pulumi.Resource]:
        """The snapshot taken before `service`'s image version changes (empty when backups are off).

        Containers running those images and the service's migration depend on it, so on a version bump
        `pulumi up` backs up first, then replaces the containers, then migrates.
        """
        if self.pre_update_hook is None:
            return []
        return [self.pre_update_hook(parent, service, versions)]

    # -- host steps ---------------------------------------------------------------------------
    def run(self, name: str, script: str, *, parent: pulumi.Resource, **kwargs: Any) -> pulumi.Resource:
        return self.host.run(name, script, parent=parent, **kwargs)
