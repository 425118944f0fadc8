"""The one way to write Traefik labels.

Every routed container gets the same shape: a router on the `websecure` entrypoints with TLS from the
stack's cert resolver, a Host rule, the service port, the security-headers middleware and the network
Traefik must use to reach it. The headers middleware is defined on each routed container under a
router-scoped name, so routing works the same whether this stack runs Traefik or joins an existing edge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The HTTPS entrypoints, one per address family: Traefik (components/edge) takes IPv4 on `websecure` and
# IPv6 on `websecure6`, on container ports of their own, so each published port has one binding (#13).
ENTRYPOINTS = ("websecure", "websecure6")
ENTRYPOINT = ",".join(ENTRYPOINTS)
# What Traefik adds for the ACME HTTP-01 challenge on its challenge entrypoint (traefik v3.6.24
# pkg/provider/traefik/internal.go acme(): rule, service acme-http@internal, priority math.MaxInt).
ACME_CHALLENGE_RULE = "PathPrefix(`/.well-known/acme-challenge/`)"
ACME_CHALLENGE_SERVICE = "acme-http@internal"
MAX_PRIORITY = str(2**63 - 1)

# HSTS for a year and the usual browser protections, on every public router. HSTS is plain max-age by
# default: includeSubDomains would force HTTPS on every other subdomain the client has (the portal sits at
# the apex), and preload asks browsers to hard-code that; both are stack opt-ins (traefik.hstsInclude...).
# No X-XSS-Protection (`browserXssFilter`): browsers dropped the filter and OWASP advises against it.
SECURITY_HEADERS = {
    "stsSeconds": "31536000",
    "forceSTSHeader": "true",
    "contentTypeNosniff": "true",
    "referrerPolicy": "strict-origin-when-cross-origin",
}
# ERPNext and n8n embed their own pages; SAMEORIGIN instead of DENY. An app that manages framing itself
# (Chatwoot drops X-Frame-Options for /widget, which client websites embed) passes frame_options=None.
DEFAULT_FRAME_OPTIONS = "SAMEORIGIN"


def security_headers(
    *, frame_options: str | None, hsts_include_subdomains: bool, hsts_preload: bool
) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    if hsts_include_subdomains:
        headers["stsIncludeSubdomains"] = "true"
    if hsts_preload:
        headers["stsPreload"] = "true"
    if frame_options is not None:
        headers["frameDeny"] = "false"
        headers["customFrameOptionsValue"] = frame_options
    return headers


def _router_id(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"router name {name!r} must be lowercase letters, digits and hyphens")
    return name


def headers_middleware(router: str) -> str:
    return f"{_router_id(router)}-headers"


# Every host no other router claims (Traefik v3 regexp syntax); pair it with the lowest priority.
CATCH_ALL = "HostRegexp(`.+`)"


def router_labels(
    router: str,
    *,
    hostname: str | Sequence[str] = (),
    port: int,
    network: str,
    cert_resolver: str,
    extra_middlewares: tuple[str, ...] = (),
    rule: str | None = None,
    priority: int | None = None,
    frame_options: str | None = DEFAULT_FRAME_OPTIONS,
    hsts_include_subdomains: bool = False,
    hsts_preload: bool = False,
) -> dict[str, str]:
    """Labels that publish one container at https://<hostname> (one name or several) through Traefik.

    `rule` replaces the Host rule (e.g. CATCH_ALL); `priority` orders overlapping routers (Traefik's
    default is the rule's length, higher wins). A rule that names no host gives the resolver nothing to ask
    a certificate for: such a router is served Traefik's default certificate.
    """
    r = _router_id(router)
    headers = headers_middleware(r)
    hostnames = [hostname] if isinstance(hostname, str) else list(hostname)
    if bool(hostnames) == (rule is not None):
        raise ValueError(f"router {r}: give the hostname(s) or a rule, not both")
    labels = {
        "traefik.enable": "true",
        "traefik.docker.network": network,
        f"traefik.http.routers.{r}.rule": rule or " || ".join(f"Host(`{h}`)" for h in hostnames),
        f"traefik.http.routers.{r}.entrypoints": ENTRYPOINT,
        f"traefik.http.routers.{r}.tls": "true",
        f"traefik.http.routers.{r}.tls.certresolver": cert_resolver,
        f"traefik.http.routers.{r}.service": r,
        f"traefik.http.routers.{r}.middlewares": ",".join((f"{headers}@docker", *extra_middlewares)),
        f"traefik.http.services.{r}.loadbalancer.server.port": str(port),
    }
    if priority is not None:
        labels[f"traefik.http.routers.{r}.priority"] = str(priority)
    chosen = security_headers(
        frame_options=frame_options,
        hsts_include_subdomains=hsts_include_subdomains,
        hsts_preload=hsts_preload,
    )
    labels.update({f"traefik.http.middlewares.{headers}.headers.{k}": v for k, v in chosen.items()})
    return labels


def internal_service_labels(
    router: str,
    *,
    hostname: str,
    service: str,
    network: str,
    cert_resolver: str,
    middlewares: tuple[str, ...],
    hsts_include_subdomains: bool = False,
    hsts_preload: bool = False,
) -> dict[str, str]:
    """A router to a Traefik-internal service (the dashboard's api@internal), same TLS and headers."""
    labels = router_labels(
        router,
        hostname=hostname,
        port=0,
        network=network,
        cert_resolver=cert_resolver,
        extra_middlewares=middlewares,
        hsts_include_subdomains=hsts_include_subdomains,
        hsts_preload=hsts_preload,
    )
    r = _router_id(router)
    del labels[f"traefik.http.services.{r}.loadbalancer.server.port"]
    labels[f"traefik.http.routers.{r}.service"] = service
    return labels


def acme_challenge_labels(router: str, *, entrypoint: str, network: str) -> dict[str, str]:
    """Traefik's own ACME HTTP-01 answer on one more plain-HTTP entrypoint: Traefik serves the challenge
    only on the resolver's `httpchallenge.entrypoint` (internal.go acme()), and Let's Encrypt may ask over
    IPv6 first, which arrives on `web6`. Above that entrypoint's redirection router (priority
    math.MaxInt - 1, pkg/config/static/entrypoints.go RedirectEntryPoint.SetDefaults), as Traefik's own
    challenge router is. Read at traefik v3.6.24 (the pinned v3.6.25's nearest tag in the mirror)."""
    r = _router_id(router)
    return {
        "traefik.enable": "true",
        "traefik.docker.network": network,
        f"traefik.http.routers.{r}.rule": ACME_CHALLENGE_RULE,
        f"traefik.http.routers.{r}.entrypoints": entrypoint,
        f"traefik.http.routers.{r}.service": ACME_CHALLENGE_SERVICE,
        f"traefik.http.routers.{r}.priority": MAX_PRIORITY,
    }
