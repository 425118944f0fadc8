"""The edge: networks, the read-only Docker socket proxy and Traefik v3 with Let's Encrypt.

Traefik never sees the Docker socket: it reads container labels through the socket proxy (GET only,
containers only), on an internal network that only the two of them share. Only Traefik publishes host
ports, and only 80 and 443. Traefik runs unprivileged: it listens on 8000/8443 (IPv4) and 8001/8444
(IPv6) inside the container and Docker maps 80/443 of each address family to them.

What the proxy still allows (issue 14): CONTAINERS=1 opens every GET under /containers, so Traefik can list
the client's containers and read their labels, mounts and plain environment. No secret is there: secrets
reach containers as read-only files (components/core/secrets.py) and labels hold only keyed fingerprints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.core import routing
from components.core.container import Attach, Healthcheck
from components.core.deployment import Deployment, FileSet
from components.core.secrets import SecretFile
from components.core.storage import DataDir

if TYPE_CHECKING:  # the type only: core never imports the sections it is handed
    from components.config import SuiteConfig

TRAEFIK_UID = "65532:65532"
SOCKET_PROXY_ALIAS = "socket-proxy"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# /ping on its own loopback-only entrypoint: by default it sits on the `traefik` entrypoint (:8080 on every
# interface), which every container on the shared `web` network could reach. Only the healthcheck needs it.
PING_ARGS = ("--ping=true", "--ping.entrypoint=ping", "--entrypoints.ping.address=127.0.0.1:8082")
# Longest time a request (headers and body) may take to arrive; see the websecure entrypoint below.
UPLOAD_READ_TIMEOUT = "600s"


# One container port per public port and address family (`6`: IPv6). The provider reads a port's bindings
# back in the engine's order, and Debian 12's docker.io 20.10.24 lists two bindings of one port in the
# reverse of the order given (tests/test_preflight.py measures it): a port published on 0.0.0.0 and [::]
# read back differently on every engine order and replaced Traefik on every `pulumi up` (#13). With one
# binding per container port, order cannot matter. Traefik has an entrypoint per container port.
ENTRYPOINT_PORTS = {"web": 8000, "web6": 8001, "websecure": 8443, "websecure6": 8444}
PUBLIC_PORTS = {"web": 80, "websecure": 443}


def public_ports(*, ipv6: bool) -> list[docker.ContainerPortArgs]:
    """80 and 443 on IPv4 and, unless the stack turns it off, IPv6, in container-port order (the order
    the provider reads them back: structures.go flattenContainerPorts sorts by port).

    The provider sends `ip` as the binding's HostIp and defaults it to 0.0.0.0 (terraform-provider-docker
    resource_docker_container.go, `ports.ip` Default "0.0.0.0"), which Docker binds on IPv4 alone; [::]
    needs a binding of its own.
    """
    ports = [
        (ENTRYPOINT_PORTS[f"{entrypoint}{family}"], external, "::" if family else "0.0.0.0")
        for entrypoint, external in PUBLIC_PORTS.items()
        for family in ("", "6")
        if ipv6 or not family
    ]
    return [
        docker.ContainerPortArgs(internal=internal, external=external, ip=ip)
        for internal, external, ip in sorted(ports)
    ]


def entrypoint_args(resolver: str) -> list[str]:
    """Both families' entrypoints, always (an unpublished one only listens inside the container), so the
    routers' `websecure,websecure6` is valid whether or not the stack publishes IPv6."""
    args = []
    for family in ("", "6"):
        web, websecure = f"web{family}", f"websecure{family}"
        args += [
            f"--entrypoints.{web}.address=:{ENTRYPOINT_PORTS[web]}",
            # Redirect to the public port 443, not the container's 8443.
            f"--entrypoints.{web}.http.redirections.entrypoint.to=:443",
            f"--entrypoints.{web}.http.redirections.entrypoint.scheme=https",
            f"--entrypoints.{web}.http.redirections.entrypoint.permanent=true",
            f"--entrypoints.{websecure}.address=:{ENTRYPOINT_PORTS[websecure]}",
            # Traefik v3 cuts a request whose body takes longer than readTimeout (default 60 s) to arrive:
            # a 50 MB upload to ERPNext, Chatwoot or n8n needs about 400 s at 1 Mbit/s.
            f"--entrypoints.{websecure}.transport.respondingTimeouts.readTimeout={UPLOAD_READ_TIMEOUT}",
            f"--entrypoints.{websecure}.http.tls.certresolver={resolver}",
        ]
    return args


class Networks(pulumi.ComponentResource):
    """The server's `web` network (created or adopted), the client's `shared` network and the edge's own."""

    web_name: pulumi.Output[str] | None
    web_subnet: pulumi.Output[str] | None
    shared_name: pulumi.Output[str]

    def __init__(self, name: str, config: SuiteConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:edge:Networks", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        web = config.web_network
        self.web_name = None
        self.web_subnet = None
        if not config.routed:
            pass  # standalone: nothing is routed, no `web`
        elif web.create:
            network = docker.Network(
                f"{name}-web",
                name=web.name,
                # Shared by every client stack on this server: destroying this stack must not take it away.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, delete_before_replace=True),
            )
            self.web_name = network.name
            self.web_subnet = network.ipam_configs.apply(
                lambda ipam: (ipam or [])[0].subnet or "" if ipam else ""
            )
        else:
            existing = docker.get_network_output(name=web.name, opts=pulumi.InvokeOutputOptions(parent=self))
            self.web_name = existing.name
            self.web_subnet = existing.ipam_configs.apply(lambda ipam: ipam[0].subnet if ipam else "")
        shared = docker.Network(
            f"{name}-shared",
            name=f"{config.client}-shared",
            labels=[docker.NetworkLabelArgs(label="io.versatilehub.client", value=config.client)],
            opts=child.merge(pulumi.ResourceOptions(delete_before_replace=True)),
        )
        self.shared_name = shared.name
        self.register_outputs({"web": self.web_name, "shared": self.shared_name})


class Edge(pulumi.ComponentResource):
    """Traefik v3 and its socket proxy (mode `suite` only)."""

    dashboard_url: str | None
    dashboard_password: pulumi.Output[str] | None

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:edge:Edge", name, None, opts)
        cfg = d.config
        assert d.web_network is not None, "the edge runs only where services are routed"
        traefik_cfg = cfg.traefik
        edge_net = docker.Network(
            f"{name}-internal",
            name=f"{cfg.client}-edge",
            internal=True,  # Traefik <-> socket proxy only; no route out
            labels=[docker.NetworkLabelArgs(label="io.versatilehub.client", value=cfg.client)],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        self.socket_proxy = d.container(
            parent=self,
            service="edge",
            role="socket-proxy",
            image="socketProxy",
            root_reason="opens /var/run/docker.sock, which only root and the docker group may read",
            user=None,
            envs={
                # Read-only API: only GET, only what Traefik's Docker provider reads.
                "CONTAINERS": "1",
                "EVENTS": "1",
                "PING": "1",
                "VERSION": "1",
                "POST": "0",
                "LOG_LEVEL": "warning",
                # The edge network is IPv4 only; binding [::] fails on hosts booted with ipv6.disable=1.
                "DISABLE_IPV6": "1",
            },
            mounts=[
                docker.ContainerMountArgs(
                    type="bind", source="/var/run/docker.sock", target="/var/run/docker.sock", read_only=True
                )
            ],
            tmpfs={"/run": "rw,nosuid,size=8m", "/tmp": "rw,noexec,nosuid,size=8m"},
            networks=[Attach(edge_net.name, aliases=(SOCKET_PROXY_ALIAS,))],
            healthcheck=Healthcheck(["wget -qO- http://127.0.0.1:2375/_ping | grep -q OK"], shell=True),
        )

        letsencrypt = d.data_dirs(
            parent=self, service="edge", dirs=[DataDir("letsencrypt", owner=TRAEFIK_UID, mode="0700")]
        )
        d.backup_sources.append(FileSet("edge", letsencrypt.locations["letsencrypt"]))  # acme.json
        resolver = traefik_cfg.cert_resolver
        args = [
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            f"--log.level={traefik_cfg.log_level}",
            "--log.format=json",
            "--accesslog=true",
            "--accesslog.format=json",
            *PING_ARGS,
            *entrypoint_args(resolver),
            "--providers.docker=true",
            f"--providers.docker.endpoint=tcp://{SOCKET_PROXY_ALIAS}:2375",
            "--providers.docker.exposedByDefault=false",
            f"--providers.docker.network={cfg.web_network.name}",
            f"--certificatesresolvers.{resolver}.acme.email={cfg.acme_email}",
            f"--certificatesresolvers.{resolver}.acme.storage=/letsencrypt/acme.json",
        ]
        if traefik_cfg.challenge == "http":
            args.append(f"--certificatesresolvers.{resolver}.acme.httpchallenge.entrypoint=web")
        else:
            args.append(f"--certificatesresolvers.{resolver}.acme.tlschallenge=true")
        if traefik_cfg.acme_staging:
            args.append(f"--certificatesresolvers.{resolver}.acme.caserver={LETS_ENCRYPT_STAGING}")

        labels: dict[str, pulumi.Input[str]] = {}
        if traefik_cfg.challenge == "http" and traefik_cfg.ipv6:
            labels.update(
                routing.acme_challenge_labels(
                    f"{cfg.client}-acme-v6", entrypoint="web6", network=cfg.web_network.name
                )
            )
        self.dashboard_url = None
        self.dashboard_password = None
        secret_files: list[SecretFile] = []
        if traefik_cfg.dashboard:
            args.append("--api.dashboard=true")  # never api.insecure: only the router below reaches it
            password = random.RandomPassword(
                f"{name}-dashboard-password",
                length=32,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            auth = f"{cfg.client}-dashboard-auth"
            dashboard_host = f"traefik.{cfg.domain}"
            labels.update(
                routing.internal_service_labels(
                    f"{cfg.client}-dashboard",
                    hostname=dashboard_host,
                    service="api@internal",
                    network=cfg.web_network.name,
                    cert_resolver=resolver,
                    middlewares=(f"{auth}@docker",),
                    **traefik_cfg.hsts,
                )
            )
            # The bcrypt hash in a file Traefik reads (basicAuth `usersFile`, one `user:hash` line per user,
            # Traefik v3 docs middlewares/http/basicauth), not in a label: labels are readable by anyone
            # with the socket proxy's CONTAINERS=1, and a hash is material for an offline attack.
            users = d.secret_file(
                self,
                "edge",
                "dashboard-users",
                pulumi.Output.secret(password.bcrypt_hash.apply(lambda h: f"admin:{h}\n")),
                owner=TRAEFIK_UID,
            )
            secret_files.append(users)
            labels[f"traefik.http.middlewares.{auth}.basicauth.usersfile"] = users.path
            self.dashboard_url = f"https://{dashboard_host}/dashboard/"
            self.dashboard_password = password.result

        self.traefik = d.container(
            parent=self,
            service="edge",
            role="traefik",
            image="traefik",
            user=TRAEFIK_UID,
            command=args,
            mounts=[letsencrypt.mount("letsencrypt", "/letsencrypt")],
            networks=[Attach(d.web_network), Attach(edge_net.name)],
            ports=public_ports(ipv6=traefik_cfg.ipv6),
            labels=labels,
            secret_files=secret_files,
            # `traefik healthcheck` reads only its own flags: it must be told where ping listens.
            healthcheck=Healthcheck(
                ["traefik", "healthcheck", *PING_ARGS], interval="10s", start_period="10s"
            ),
            wait_healthy=True,
            wait_timeout=120,
            depends_on=[self.socket_proxy, *letsencrypt.ready],
        )
        self.register_outputs({"dashboard": self.dashboard_url})
