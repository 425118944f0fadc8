"""The pinned version matrix: every image the suite runs, in one place.

A stack may override a tag (``pulumi config set --path 'versatilehub:versions.erpnext' v16.33.0``); the
repository stays fixed here. Moving tags such as ``latest`` are refused: a deploy must be reproducible and
``pulumi preview`` must show a version change as a change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    repository: str
    tag: str
    digest: str | None = None  # sha256:..., where known

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
    # hub (ERPNext)
    "erpnext": Pin("frappe/erpnext", "v16.32.3"),
    "mariadb": Pin("mariadb", "11.8.6"),
    "hubRedis": Pin("redis", "8.6.1-alpine"),
    # chat (Chatwoot)
    "chatwoot": Pin("chatwoot/chatwoot", "v4.14.0"),
    "pgvector": Pin("pgvector/pgvector", "0.8.1-pg16"),
    "chatRedis": Pin("redis", "8.6.1-alpine"),
    # flow (n8n)
    "n8n": Pin("n8nio/n8n", "2.46.5"),
    "n8nRunners": Pin("n8nio/runners", "2.46.5"),
    "flowPostgres": Pin("postgres", "16.11-alpine"),
    # agent (OpenClaw)
    "openclaw": Pin("ghcr.io/openclaw/openclaw", "2026.9.5"),
    # backups
    "restic": Pin("restic/restic", "0.19.1"),
}

MOVING_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "develop", "nightly", "beta", "next", "rc"})
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")


def check_override(key: str, tag: str) -> None:
    """Validate one `versions` entry from a stack; ValueError says what is wrong."""
    if key not in IMAGES:
        raise ValueError(f"{key!r} is not an image of this suite; known: {', '.join(sorted(IMAGES))}")
    if not _TAG_RE.match(tag):
        raise ValueError(f"{key}: {tag!r} is not an image tag such as {IMAGES[key].tag}")
    if tag.split("@")[0].lower() in MOVING_TAGS:
        raise ValueError(f"{key}: {tag!r} moves under your feet; pin an exact version such as {IMAGES[key].tag}")


def reference(key: str, override: str | None = None) -> str:
    """The full image reference to pull for `key`, honouring a stack's override."""
    return IMAGES[key].reference(override)


def tag_of(reference: str) -> str:
    """`repo:tag@digest` -> `tag` (for labels and outputs)."""
    return reference.rsplit("/", 1)[-1].split("@")[0].split(":", 1)[-1]
