"""The edge: the `web` network, Traefik (ACME, TLS-only routers, exposedByDefault, the dashboard), the
Docker socket behind a read-only proxy, and published ports.

Docker publishes ports with its own iptables rules, which go around a host firewall such as ufw
(moby/moby#4737, docker/for-linux#690): the firewall the seed asks for (80, 443, 22 only) holds only if
nothing but Traefik publishes, and only 80 and 443.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from .base import (
    CONTAINER,
    NETWORK,
    UNKNOWN,
    Anchor,
    Finding,
    Resource,
    Settings,
    Stack,
    known,
    list_of,
    resource_rule,
    stack_rule,
)
from .model import (
    DATA_STORE_IMAGES,
    Container,
    TraefikStatic,
    containers,
    data_store,
    middlewares,
    routers,
    split_list,
)
from .runtime import SOCKET_SUFFIXES

DATA_STORE_CONFIG = {
    "dataStoreImages": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": DATA_STORE_IMAGES,
        "description": "Image name prefix -> kind, for databases and caches (never public).",
    }
}


def _traefiks(cs: list[Container]) -> list[tuple[Container, TraefikStatic]]:
    found = []
    for c in cs:
        t = c.traefik()
        if t is not None:
            found.append((c, t))
    return found


def _web_networks(cs: list[Container], s: Settings) -> set[str]:
    """The network(s) Traefik reaches services on: its provider's `network`, the routers' labels, or `web`."""
    names: set[str] = set()
    for _, t in _traefiks(cs):
        for provider in t.docker_providers():
            network = t.peek(f"{provider}.network")
            if network:
                names.add(network)
    for c in cs:
        label = c.labels().get("traefik.docker.network")
        if c.routed and isinstance(label, str) and label:
            names.add(label)
    return names or {s["webNetwork"]}


def _socket_proxy(c: Container) -> bool:
    """A container that mounts the Docker socket and says it is a read-only proxy (POST=0)."""
    return bool(_socket_mounts(c)) and c.env().get("POST") == "0"


def _socket_mounts(c: Container) -> list[Any]:
    return [
        m
        for m in c.mounts()
        if m.kind == "bind" and str(known(m.source, "mounts.source")).endswith(SOCKET_SUFFIXES)
    ]


@stack_rule(
    "web-network-topology",
    "Only Traefik and routed front containers join `web`; databases, caches and the socket proxy join only "
    "internal networks.",
    anchor=Anchor(seed="the `web` network and Traefik", cis=("5.30",), checkers=("KICS ce14a68b",)),
    level="mandatory",
    remediation="Put back ends on the service's internal network (d.network); only the container d.expose() "
    "returns joins `web`.",
    config={
        "webNetwork": {
            "type": "string",
            "default": "web",
            "description": "The public network's name when no Traefik or router label says it.",
        },
        **DATA_STORE_CONFIG,
    },
)
def web_network_topology(stack: Stack, s: Settings) -> Iterator[Finding]:
    cs = containers(stack)
    web = _web_networks(cs, s)
    networks = {n.props.get("name"): n for n in stack.of_type(NETWORK)}
    for c in cs:
        joined = c.networks()
        on_web = sorted(n for n in joined if n in web)
        kind = data_store(c, stack, s["dataStoreImages"])
        back_end = (
            f"a {kind} (database/cache)"
            if kind
            else ("the Docker socket proxy" if _socket_proxy(c) else None)
        )
        if back_end is not None:
            # Databases, caches and the socket proxy: never on `web`, and only on internal networks.
            if on_web:
                yield Finding(f"is {back_end} on the public network {on_web[0]}", c.resource)
                continue
            for name in joined:
                network = networks.get(known(name, f"{c.name}.networksAdvanced.name"))
                if network is None:
                    yield Finding(
                        f"is {back_end} on {name}, a network this stack does not create (it cannot be shown "
                        "to be internal)",
                        c.resource,
                    )
                elif known(network.props.get("internal"), f"{network.display}.internal") is not True:
                    yield Finding(
                        f"is {back_end} on {name}, which is not internal (it has a route out)", c.resource
                    )
        elif c.routed:
            target = known(c.labels().get("traefik.docker.network"), f"{c.name}.labels")
            if not target:
                yield Finding(
                    "is routed but has no traefik.docker.network label (Traefik may pick a network it "
                    "cannot reach)",
                    c.resource,
                )
            elif target not in web:
                yield Finding(
                    f"is routed through {target}, not the network Traefik serves ({', '.join(sorted(web))})",
                    c.resource,
                )
            elif target not in joined:
                yield Finding(f"is routed through {target} but does not join it", c.resource)
        elif on_web and c.traefik() is None:
            yield Finding(
                f"joins {on_web[0]} without being routed by Traefik: only Traefik and front containers "
                "belong there",
                c.resource,
            )


def _persistent(c: Container, path: str) -> bool:
    """Is `path` inside the container on a writable bind mount or volume (not tmpfs, not the image)?"""
    path = posixpath.normpath(path)
    for m in c.mounts():
        target = posixpath.normpath(m.target)
        if (
            m.kind in ("bind", "volume")
            and not m.read_only
            and (path == target or path.startswith(target + "/"))
        ):
            return True
    return False


@resource_rule(
    "traefik-acme",
    "Traefik has a Let's Encrypt (ACME) resolver with a contact email, a challenge and persistent storage.",
    anchor=Anchor(seed="SSL certificates from Let's Encrypt", checkers=("Traefik docs: ACME",)),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Set versatilehub:acmeEmail; the edge mounts the letsencrypt directory for acme.json.",
)
def traefik_acme(r: Resource, _: Settings) -> Iterator[str]:
    c = Container(r)
    t = c.traefik()
    if t is None:
        return
    resolvers = [n for n in t.names("certificatesresolvers") if t.names(f"certificatesresolvers.{n}.acme")]
    if not resolvers:
        t.settle("certificatesresolvers")
        yield "defines no ACME certificate resolver"
    entrypoints = t.names("entrypoints")
    for name in resolvers:
        acme = f"certificatesresolvers.{name}.acme"
        if not t.get(f"{acme}.email"):
            yield f"resolver {name} has no acme.email (expiry notices and account recovery)"
        storage = t.get(f"{acme}.storage")
        if not storage:
            yield f"resolver {name} has no acme.storage: certificates are requested again on every restart"
        elif not _persistent(c, storage if storage.startswith("/") else "/" + storage):
            yield f"resolver {name} keeps {storage} outside a mounted volume: lost when the container goes"
        http_entry = t.peek(f"{acme}.httpchallenge.entrypoint")
        tls = (t.peek(f"{acme}.tlschallenge") or "").lower() == "true"
        dns = t.peek(f"{acme}.dnschallenge.provider")
        if http_entry and http_entry not in entrypoints:
            yield f"resolver {name} answers the HTTP challenge on {http_entry}, which is not an entrypoint"
        if not (http_entry or tls or dns):
            t.settle(acme)
            yield f"resolver {name} has no challenge (httpChallenge, tlsChallenge or dnsChallenge)"


@resource_rule(
    "traefik-exposed-by-default-off",
    "Traefik publishes only containers that opt in (providers.docker.exposedByDefault=false).",
    anchor=Anchor(seed="the `web` network and Traefik", checkers=("Traefik docs: exposedByDefault",)),
    level="mandatory",
    types=(CONTAINER,),
    remediation="--providers.docker.exposedByDefault=false; traefik.enable=true on front containers only.",
)
def traefik_exposed_by_default_off(r: Resource, _: Settings) -> Iterator[str]:
    t = Container(r).traefik()
    if t is None:
        return
    for provider in t.docker_providers():
        if (t.get(f"{provider}.exposedbydefault") or "true").lower() != "false":
            yield f"{provider}.exposedByDefault is not false: every container it can see would be published"


@stack_rule(
    "traefik-dashboard-protected",
    "Traefik's API/dashboard is never insecure, and any router to it requires authentication.",
    anchor=Anchor(seed="the `web` network and Traefik", checkers=("Traefik docs: api.insecure",)),
    level="mandatory",
    remediation="Never api.insecure; expose the dashboard only through a TLS router with a basicauth "
    "middleware (versatilehub:traefik.dashboard does this).",
)
def traefik_dashboard_protected(stack: Stack, _: Settings) -> Iterator[Finding]:
    cs = containers(stack)
    for c, t in _traefiks(cs):
        if t.is_true("api.insecure"):
            yield Finding("serves its API and dashboard unauthenticated (api.insecure=true)", c.resource)
    authenticating = {
        name
        for c in cs
        for name, attrs in middlewares(c.labels()).items()
        if any(a.startswith(("basicauth.", "digestauth.", "forwardauth.")) for a in attrs)
    }
    for c in cs:
        for (_proto, name), attrs in routers(c.labels()).items():
            if str(attrs.get("service", "")).lower() not in ("api@internal", "dashboard@internal"):
                continue
            used = {
                m.removesuffix("@docker")
                for m in split_list(attrs.get("middlewares"))
                if "@" not in m or m.endswith("@docker")
            }
            if not used & authenticating:
                yield Finding(
                    f"router {name} serves Traefik's API/dashboard without an authentication middleware",
                    c.resource,
                )


_NAMED_HOST = re.compile(r"\bHost(SNI)?\(")


def _acme_challenge(proto: str, attrs: dict[str, Any]) -> bool:
    """A router that only hands the ACME challenge path to Traefik's acme-http@internal."""
    return (
        proto == "http"
        and str(attrs.get("service", "")).lower() == "acme-http@internal"
        and attrs.get("rule") == "PathPrefix(`/.well-known/acme-challenge/`)"
    )


def _port_of(address: str) -> int | None:
    m = re.search(r":(\d+)(/\w+)?$", address)
    return int(m[1]) if m else None


@stack_rule(
    "routers-tls-only",
    "Every router is TLS-only on `websecure` with a certificate resolver; public plain-HTTP entrypoints "
    "only redirect to HTTPS.",
    anchor=Anchor(
        seed="SSL certificates from Let's Encrypt",
        checkers=("Traefik docs: routers, entrypoint redirections",),
    ),
    level="mandatory",
    remediation="Write labels only with components/core/routing.py (router on websecure, "
    "tls.certresolver set); keep the web entrypoint's redirection to https.",
    config={
        "tlsEntrypoints": list_of(
            ["websecure", "websecure6"], "The entrypoints routers may use (IPv4, IPv6)."
        )
    },
)
def routers_tls_only(stack: Stack, s: Settings) -> Iterator[Finding]:
    cs = containers(stack)
    traefiks = _traefiks(cs)
    resolvers = {n for _, t in traefiks for n in t.names("certificatesresolvers")}
    allowed = set(s["tlsEntrypoints"])
    for c in cs:
        found = routers(c.labels())
        if c.routed and not any(proto in ("http", "tcp") for proto, _ in found):
            yield Finding(
                "is routed but defines no router: Traefik's default router listens on every entrypoint, "
                "plain HTTP included",
                c.resource,
            )
        for (proto, name), attrs in sorted(found.items()):
            if _acme_challenge(proto, attrs):
                continue  # Traefik's own HTTP-01 answer: that one path, on a plain-HTTP entrypoint
            if proto == "udp":
                yield Finding(f"UDP router {name} cannot use TLS", c.resource)
                continue
            entrypoints = split_list(attrs.get("entrypoints"))
            if not entrypoints:
                yield Finding(
                    f"router {name} names no entrypoint: it listens on all, plain HTTP included", c.resource
                )
            elif set(entrypoints) - allowed:
                yield Finding(
                    f"router {name} listens on {', '.join(sorted(set(entrypoints) - allowed))}, not only "
                    f"on {', '.join(sorted(allowed))}",
                    c.resource,
                )
            resolver = attrs.get("tls.certresolver")
            if str(attrs.get("tls", "")).lower() != "true" and not resolver:
                yield Finding(f"router {name} does not terminate TLS", c.resource)
            elif not resolver:
                # Only a catch-all (no Host to certify) may serve Traefik's default certificate.
                if _NAMED_HOST.search(str(known(attrs.get("rule", ""), f"{name}.rule"))):
                    yield Finding(f"router {name} names no certificate resolver for its hosts", c.resource)
            elif resolver is not UNKNOWN and traefiks and resolver not in resolvers:
                yield Finding(
                    f"router {name} uses resolver {resolver}, which Traefik does not define", c.resource
                )
    for c, t in traefiks:
        published = {int(p["internal"]) for p in c.ports() if isinstance(p.get("internal"), (int, float))}
        for ep in t.names("entrypoints"):
            port = _port_of(t.peek(f"entrypoints.{ep}.address") or "")
            if ep in allowed or port not in published:
                continue
            target = t.get(f"entrypoints.{ep}.http.redirections.entrypoint.to")
            scheme = (t.peek(f"entrypoints.{ep}.http.redirections.entrypoint.scheme") or "https").lower()
            if not target or scheme != "https":
                yield Finding(
                    f"entrypoint {ep} is published and serves plain HTTP instead of redirecting to HTTPS",
                    c.resource,
                )


# Tecnativa docker-socket-proxy switches that let a client change or read secrets from the host.
FORBIDDEN_PROXY_SWITCHES = [
    "POST",
    "DELETE",
    "PUT",
    "PATCH",
    "AUTH",
    "SECRETS",
    "EXEC",
    "BUILD",
    "COMMIT",
    "CONFIGS",
    "DISTRIBUTION",
    "GRPC",
    "PLUGINS",
    "SESSION",
    "SWARM",
    "ALLOW_START",
    "ALLOW_STOP",
    "ALLOW_RESTARTS",
    "ALLOW_KILL",
    "ALLOW_PAUSE",
    "ALLOW_UNPAUSE",
    "ALLOW_EXEC",
    "ALLOW_ATTACH",
    "ALLOW_ARCHIVE",
    "ALLOW_EXPORT",
]


@resource_rule(
    "no-docker-socket",
    "Only a read-only socket proxy (POST=0) mounts the Docker socket; Traefik reaches Docker through it.",
    anchor=Anchor(cis=("5.32",), checkers=("KICS d6355c88", "KSV-0006")),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Never mount /var/run/docker.sock into a service; Traefik uses "
    "--providers.docker.endpoint=tcp://socket-proxy:2375 (a socket mounted :ro does not restrict the API).",
    config={
        "forbiddenSwitches": list_of(
            FORBIDDEN_PROXY_SWITCHES, "Socket proxy variables that must stay 0 or unset."
        )
    },
)
def no_docker_socket(r: Resource, s: Settings) -> Iterator[str]:
    c = Container(r)
    t = c.traefik()
    if t is not None:
        for provider in t.docker_providers():
            endpoint = t.get(f"{provider}.endpoint") or "unix:///var/run/docker.sock"
            if not endpoint.startswith(("tcp://", "https://")):
                yield f"Traefik talks to Docker at {endpoint}, not through the socket proxy (tcp://)"
    sockets = _socket_mounts(c)
    if not sockets:
        return
    env = c.env()
    if env.get("POST") != "0":
        yield f"mounts {sockets[0].source} but is no read-only socket proxy (POST=0): root on the host"
        return
    if any(not m.read_only for m in sockets):
        yield "socket proxy mounts the Docker socket writable"
    enabled = [
        k for k in s["forbiddenSwitches"] if env.get(k, "0").strip().lower() not in ("0", "", "false", "no")
    ]
    if enabled:
        yield f"socket proxy enables {', '.join(enabled)}"
    if c.ports():
        yield "socket proxy publishes a host port (it must be reachable only by Traefik)"


def _loopback(ip: Any) -> bool:
    return isinstance(ip, str) and (ip in ("::1", "localhost") or ip.startswith("127."))


@stack_rule(
    "published-ports-allowlist",
    "Only Traefik publishes host ports, only 80 and 443; a service alone (no Traefik) only on 127.0.0.1; "
    "databases never.",
    anchor=Anchor(
        seed="firewall: only 80, 443 and 22 open",
        cis=("5.8", "5.9", "5.14"),
        checkers=("KICS bc2908f3", "KICS 451d79dc"),
    ),
    level="mandatory",
    remediation="Route the service through Traefik (d.expose); in standalone mode publish on 127.0.0.1 and "
    "reach it through an SSH tunnel.",
    config={
        "traefikPorts": list_of([80, 443], "Host ports Traefik may publish.", item="integer"),
        **DATA_STORE_CONFIG,
    },
)
def published_ports_allowlist(stack: Stack, s: Settings) -> Iterator[Finding]:
    for c in containers(stack):
        if known(c.props.get("publishAllPorts"), f"{c.name}.publishAllPorts") is True:
            yield Finding("publishes every exposed port (publishAllPorts)", c.resource)
        ports = c.ports()
        if not ports:
            continue
        shown = ", ".join(f"{p.get('ip') or '0.0.0.0'}:{p.get('external', '(random)')}" for p in ports)
        kind = data_store(c, stack, s["dataStoreImages"])
        if kind:
            yield Finding(
                f"is a {kind} and publishes {shown}: databases are reached over Docker networks only",
                c.resource,
            )
        elif c.traefik() is not None:
            extra = [p for p in ports if p.get("external") not in s["traefikPorts"]]
            if extra:
                yield Finding(
                    f"Traefik publishes {shown}; only {s['traefikPorts']} may be published", c.resource
                )
        elif any(not _loopback(p.get("ip")) for p in ports):
            yield Finding(
                f"publishes {shown}: only Traefik publishes (anything else binds 127.0.0.1); Docker's "
                "published ports bypass the host firewall",
                c.resource,
            )
