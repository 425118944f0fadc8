"""The pinned version matrix: every image the suite runs, in one place.

A stack may override a tag (``pulumi config set --path 'versatilehub:versions.erpnext' v16.33.0``); the
repository stays fixed here. Moving tags such as ``latest`` are refused: a deploy must be reproducible and
``pulumi preview`` must show a version change as a change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    repository: str
    tag: str
    digest: str | None = None  # sha256:..., where known
    # An image that must run exactly another image's version (n8n's task runner): it takes that image's tag
    # and cannot be overridden on its own.
    follows: str | None = None
    # [oldest, first unsupported) release numbers this suite's configuration of the image is written for.
    supported: tuple[str, str] | None = None

    def reference(self, tag: str | None = None) -> str:
        tag = tag or self.tag
        if "@" in tag:  # an override that carries its own digest
            return f"{self.repository}:{tag}"
        if tag == self.tag and self.digest:
            return f"{self.repository}:{tag}@{self.digest}"
        return f"{self.repository}:{tag}"


# Image key -> pin. Keys are what stacks use under `versatilehub:versions`.
IMAGES: dict[str, Pin] = {
    # edge
    "traefik": Pin("traefik", "v3.6.25"),
    "socketProxy": Pin("ghcr.io/tecnativa/docker-socket-proxy", "0.4.1"),
    # the client portal: NGINX's own unprivileged build (uid 101, listens on 8080), stable branch, slim
    "nginx": Pin("nginxinc/nginx-unprivileged", "1.30.6-alpine-slim"),
    # hub (ERPNext). The site setup drives Frappe 16's own entry points (bench_helper, the per-app setup
    # wizard): another major needs a reviewed change. MariaDB stays on the 11.8 LTS line frappe_docker runs
    # (its data directory only moves forward); Redis on the 8.6 line of frappe_docker's compose.redis.yaml.
    "erpnext": Pin("frappe/erpnext", "v16.32.3", supported=("16.0.0", "17.0.0")),
    "mariadb": Pin("mariadb", "11.8.9", supported=("11.8.0", "11.9.0")),
    "hubRedis": Pin("redis", "8.6.7-alpine"),
    # chat (Chatwoot). v4 needs Postgres with pgvector; its languages (config.CHATWOOT_LOCALES) are v4.18.0's.
    # Upstream upgrades one release line at a time, running db:chatwoot_prepare after each: so does a stack.
    "chatwoot": Pin("chatwoot/chatwoot", "v4.18.0", supported=("4.0.0", "5.0.0")),
    # <pgvector>-pg<Postgres major>: the major is the data directory's; another one cannot open it.
    "pgvector": Pin("pgvector/pgvector", "0.8.7-pg16"),
    "chatRedis": Pin("redis", "8.6.7-alpine"),
    # flow (n8n)
    # 2.35 replaced WEBHOOK_URL with N8N_WEBHOOK_URL (2.17 brought the env-managed owner); 3.0 renames the
    # storage directory, so it needs a reviewed upgrade, not a tag change.
    "n8n": Pin("n8nio/n8n", "2.48.5", supported=("2.35.0", "3.0.0")),
    "n8nRunners": Pin("n8nio/runners", "2.48.5", follows="n8n"),
    # Another Postgres major cannot open this data directory (dump and restore instead).
    "flowPostgres": Pin("postgres", "16.15-alpine", supported=("16", "17")),
    # agent (OpenClaw). 2026.10.1 is the first release whose container start accepts a read-only,
    # externally managed openclaw.json (OPENCLAW_CONFIG_READONLY, openclaw#162259); calendar versions, so
    # the config this suite writes is re-checked against each year's schema before the bound moves.
    "openclaw": Pin("ghcr.io/openclaw/openclaw", "2026.10.1", supported=("2026.10.1", "2027.0.0")),
    # backups
    "restic": Pin("restic/restic", "0.19.1"),
}

MOVING_TAGS = frozenset(
    {"latest", "stable", "main", "master", "edge", "develop", "nightly", "beta", "next", "rc"}
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")


def check_override(key: str, tag: str) -> None:
    """Validate one `versions` entry from a stack; ValueError says what is wrong."""
    if key not in IMAGES:
        raise ValueError(f"{key!r} is not an image of this suite; known: {', '.join(sorted(IMAGES))}")
    pin = IMAGES[key]
    if pin.follows:
        raise ValueError(
            f"{key}: always runs {pin.follows}'s exact version; "
            f"remove versions.{key} and set versions.{pin.follows}"
        )
    if not _TAG_RE.match(tag):
        raise ValueError(f"{key}: {tag!r} is not an image tag such as {pin.tag}")
    if tag.split("@")[0].lower() in MOVING_TAGS:
        raise ValueError(f"{key}: {tag!r} moves under your feet; pin an exact version such as {pin.tag}")
    if pin.supported and not _within(tag, *pin.supported):
        oldest, beyond = pin.supported
        raise ValueError(
            f"{key}: {tag!r} is outside the releases this suite is written for "
            f"(from {oldest}, before {beyond}), e.g. {pin.tag}"
        )


def _within(tag: str, oldest: str, beyond: str) -> bool:
    release, low, high = _release(tag), _release(oldest), _release(beyond)
    assert low is not None and high is not None, "supported bounds are release numbers"
    return release is not None and low <= release < high


def _release(tag: str) -> tuple[int, int, int] | None:
    """`2.48.5`, `v3.6`, `16.15-alpine@sha256:...` -> (major, minor, patch); None for a non-release tag."""
    m = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?![\d.])", tag)
    return (int(m[1]), int(m[2] or 0), int(m[3] or 0)) if m else None


def reference(key: str, override: str | None = None) -> str:
    """The full image reference to pull for `key`, honouring a stack's override."""
    return IMAGES[key].reference(override)


def resolve(key: str, overrides: Mapping[str, str]) -> str:
    """The reference to pull for `key` given all of a stack's overrides: a follower takes its leader's tag
    (without the leader's digest, which names another image)."""
    pin = IMAGES[key]
    if pin.follows:
        leader = overrides.get(pin.follows)
        return pin.reference(leader.split("@")[0] if leader else None)
    return pin.reference(overrides.get(key))


def tag_of(reference: str) -> str:
    """`repo:tag@digest` -> `tag` (for labels and outputs)."""
    return reference.rsplit("/", 1)[-1].split("@")[0].split(":", 1)[-1]
