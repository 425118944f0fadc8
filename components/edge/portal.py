"""The client portal: a small page in the client's name listing its services, and the catch-all.

NGINX's unprivileged image (uid 101, port 8080) serves one page that this program writes from the stack's
config, every value HTML-escaped, delivered with the container's Docker uploads. Two routers point at it:
one for the portal's hostnames (the base domain by default, certificates from Let's Encrypt) and a
catch-all on the lowest priority, so a host no other router claims gets this page instead of Traefik's
bare 404. Only `/` answers 200: any other path is a 404 (the same page as its body), so a service whose
router has gone never looks healthy to the verification probe when its request falls through to here.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence

import pulumi
import pulumi_docker as docker

from components.core import routing
from components.core.container import Attach, Healthcheck
from components.core.deployment import Deployment
from components.core.model import SERVICES

NGINX_UID = "101:101"
PORT = 8080
HTML_ROOT = "/usr/share/nginx/html"
SITE_CONF = "/etc/nginx/conf.d/default.conf"

# What each service is, in the words a client's staff would use.
SERVICE_NAMES = {
    "hub": ("Hub", "ERP: sales, purchasing, stock and accounting (ERPNext)"),
    "chat": ("Chat", "Customer conversations from every channel (Chatwoot)"),
    "flow": ("Flow", "Automations between your tools (n8n)"),
    "agent": ("Agent", "Your AI assistant (OpenClaw)"),
}

STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330}"
    "main{max-width:40rem;margin:4rem auto;padding:0 1.5rem}"
    "h1{font-size:1.75rem;margin:0 0 .25rem}p{margin:0 0 2rem;color:#5a6272}"
    "ul{list-style:none;padding:0;margin:0}"
    "li{background:#fff;border-radius:.5rem;margin:0 0 .75rem;box-shadow:0 1px 2px #0002}"
    "a{display:block;padding:1rem 1.25rem;color:inherit;text-decoration:none}"
    "a:hover,a:focus{background:#eef2ff}b{display:block;font-size:1.1rem}span{color:#5a6272}"
)


def render_page(company: str, links: Sequence[tuple[str, str]]) -> str:
    """The portal's page: the company's name and one link per active service (every value escaped)."""
    esc = html.escape
    items = "\n".join(
        f'<li><a href="{esc(url)}"><b>{esc(SERVICE_NAMES[s][0])}</b>'
        f"<span>{esc(SERVICE_NAMES[s][1])}</span></a></li>"
        for s, url in links
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{esc(company)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{esc(company)}</h1>\n<p>Your services</p>\n<ul>\n{items}\n</ul>\n</main>\n</body>\n</html>\n"
    )


def site_conf(*, port: int = PORT, root: str = HTML_ROOT) -> str:
    """nginx's server block: `/` is the page, everything else a 404 carrying the same page."""
    style_hash = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    # The page loads nothing and runs nothing: its one inline style is allowed by hash, the rest refused.
    csp = (
        f"default-src 'none'; style-src 'sha256-{style_hash}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return f"""server {{
    listen {port};
    server_name _;
    root {root};
    server_tokens off;
    charset utf-8;
    add_header Content-Security-Policy "{csp}" always;
    add_header X-Content-Type-Options nosniff always;
    add_header Cache-Control "no-cache" always;
    error_page 404 /index.html;

    location = / {{
        try_files /index.html =404;
    }}
    location = /index.html {{
        internal;
    }}
    location / {{
        return 404;
    }}
}}
"""


class Portal(pulumi.ComponentResource):
    """nginx with the client's page, routed at the portal's hostnames and as the catch-all (mode suite)."""

    url: str
    container: docker.Container

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:edge:Portal", name, None, opts)
        cfg = d.config
        assert d.web_network is not None, "the portal runs only with this stack's own Traefik"
        links = [(s, cfg.url(s)) for s in SERVICES if cfg.enabled(s)]
        page = render_page(cfg.company, links)
        labels = routing.router_labels(
            f"{cfg.client}-portal",
            hostname=cfg.portal_hostnames,
            port=PORT,
            network=cfg.web_network.name,
            cert_resolver=cfg.traefik.cert_resolver,
            **cfg.traefik.hsts,
        )
        # Unknown hosts (Traefik's default certificate: there is no name to ask one for); priority 1 yields
        # to every other router, including a service's own on its hostname.
        labels.update(
            routing.router_labels(
                f"{cfg.client}-catch-all",
                rule=routing.CATCH_ALL,
                priority=1,
                port=PORT,
                network=cfg.web_network.name,
                cert_resolver=cfg.traefik.cert_resolver,
                **cfg.traefik.hsts,
            )
        )
        self.container = d.container(
            parent=self,
            service="edge",
            role="portal",
            image="nginx",
            user=NGINX_UID,
            writable_reason=(
                "the page and its nginx config arrive as Docker uploads, which the daemon copies only into "
                "a writable root filesystem; nginx runs as uid 101 with every capability dropped"
            ),
            uploads=[
                docker.ContainerUploadArgs(file=SITE_CONF, content=site_conf()),
                docker.ContainerUploadArgs(file=f"{HTML_ROOT}/index.html", content=page),
            ],
            labels=labels,
            networks=[Attach(d.web_network)],
            # busybox wget: the slim image has no curl.
            healthcheck=Healthcheck(["wget", "-qO", "/dev/null", f"http://127.0.0.1:{PORT}/"], timeout="3s"),
        )
        self.url = f"https://{cfg.portal_hostnames[0]}"
        self.register_outputs({"url": self.url})
