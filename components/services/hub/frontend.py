"""The Hub's front container: frappe_docker's nginx in the erpnext image, the one Traefik routes to.

It serves the site's static files and assets from ``sites/``, proxies the rest to ``hub-backend`` and
``/socket.io`` to ``hub-websocket``, and is where the websocket's authentication call comes back to
(scripts/frontend.sh says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.core.container import Attach, Healthcheck
from components.core.deployment import Deployment, Exposure
from components.core.scripts import script

FRONTEND_PORT = 8080
# frappe_docker's nginx-entrypoint.sh with the socket.io location's Origin and Host naming this container.
# Checked against frappe's realtime/ (middlewares/authenticate.js: the Host/Origin check, site from
# X-Frappe-Site-Name; utils.js get_url: Origin + path unless developer_mode or server_ip is set) in every
# copy the search index holds; the image's Frappe is v16.31.0 (release commit 6a329d06), whose own copy the
# index lacks. docs/hub.md "Checked against the images' sources" lists the commits read.
FRONTEND = script(__name__, "frontend.sh")
# nginx's temporary files: request bodies over client_body_buffer_size (16K in frappe_docker's template)
# and proxied responses larger than its buffers go to /var/lib/nginx/{body,proxy} (Debian's nginx is built
# with --http-client-body-temp-path=/var/lib/nginx/body, --http-proxy-temp-path=/var/lib/nginx/proxy). On
# disk, not a tmpfs: a tmpfs counts against the container's memory limit, and a few concurrent uploads at
# the body limit would get nginx killed.
NGINX_TEMP = "/var/lib/nginx"


@dataclass(frozen=True)
class Upstreams:
    backend: docker.Container
    websocket: docker.Container
    backend_address: str  # <container name>:<port>
    websocket_address: str


def frontend(
    d: Deployment,
    *,
    parent: pulumi.Resource,
    service: str,
    name: str,
    site: str,
    user: str,
    upstreams: Upstreams,
    mounts: list[docker.ContainerMountArgs],
    internal: list[Attach],
    max_body_mb: int,
    depends_on: list[pulumi.Resource],
) -> tuple[docker.Container, Exposure]:
    """`<client>-hub-frontend` (named `name`), routed by Traefik or published on loopback alone."""
    cfg = d.config
    exposure = d.expose(service, "frontend", FRONTEND_PORT)
    env: dict[str, pulumi.Input[str]] = {
        "BACKEND": upstreams.backend_address,
        "SOCKETIO": upstreams.websocket_address,
        # Always the site by name, whatever Host a request carries (the public hostname, 127.0.0.1 in
        # standalone mode, or this container's own name for the websocket's authentication call).
        "FRAPPE_SITE_NAME_HEADER": site,
        "REALTIME_SELF": f"{name}:{FRONTEND_PORT}",
        # The body limit nginx enforces (frappe_docker's default 50m), from the stack.
        "CLIENT_MAX_BODY_SIZE": f"{max_body_mb}m",
    }
    if d.web_subnet is not None:
        # Requests arrive from Traefik on `web`: trust X-Forwarded-For from there, so Frappe sees the
        # client's address (logs, login attempt limits). Without a known subnet, nginx's own default (an
        # empty value would stop it from starting).
        env["UPSTREAM_REAL_IP_ADDRESS"] = d.web_subnet.apply(lambda net: net or "127.0.0.1")
    networks = [*exposure.networks, *internal]
    if not cfg.routed:
        # A container on internal networks only cannot publish its loopback port.
        networks.insert(0, Attach(d.shared_network))
    # nginx resolves BACKEND and SOCKETIO once, at start (frappe_docker's nginx-template.conf: `upstream
    # { server ${BACKEND}; }`, no resolver): their ids in a label make a replaced backend or websocket
    # replace the frontend too (labels are ForceNew in the Docker provider).
    labels: dict[str, pulumi.Input[str]] = {
        **exposure.labels,
        "io.versatilehub.hub.upstreams": pulumi.Output.concat(
            upstreams.backend.id, ",", upstreams.websocket.id
        ),
    }
    container = d.container(
        parent=parent,
        service=service,
        role="frontend",
        image="erpnext",
        user=user,
        command=["bash", "-c", FRONTEND, "hub-frontend"],
        envs=env,
        mounts=mounts,
        # The rendered site config, nginx's pid file and /tmp; request bodies and responses go to disk.
        tmpfs={
            "/tmp": "rw,noexec,nosuid,nodev,size=16m",
            "/etc/nginx/conf.d": "rw,noexec,nosuid,nodev,size=1m",
            "/run": "rw,noexec,nosuid,nodev,size=1m",
        },
        networks=networks,
        labels=labels,
        ports=exposure.ports,
        # nginx itself (any HTTP answer): Traefik drops unhealthy containers, and a slow backend should
        # show as a 502 from here, not make the hostname vanish.
        healthcheck=Healthcheck(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{FRONTEND_PORT}/"]),
        depends_on=depends_on,
    )
    return container, exposure
