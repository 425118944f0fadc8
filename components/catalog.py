"""Every container the suite can run, with its default memory and CPU limits.

Keys are ``<service>-<role>``, the same key a stack uses to override a limit
(``pulumi config set --path 'versatilehub:resources.hub-backend.memoryMb' 1536``) and the suffix of the
container's name. Budgets (the seed's "memory below 80% of the host") are computed from this table before
any resource exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Limit(NamedTuple):
    memory_mb: int
    cpus: float


LIMITS: dict[str, Limit] = {
    # edge: Traefik and its read-only view of the Docker API
    "edge-traefik": Limit(256, 0.5),
    "edge-socket-proxy": Limit(64, 0.1),
    # hub: ERPNext (default total <= 3 GiB)
    "hub-configurator": Limit(128, 0.1),
    "hub-backend": Limit(896, 1.0),
    "hub-frontend": Limit(128, 0.25),
    "hub-websocket": Limit(160, 0.2),
    "hub-queue-short": Limit(320, 0.4),
    "hub-queue-long": Limit(320, 0.4),
    "hub-scheduler": Limit(160, 0.1),
    "hub-mariadb": Limit(640, 0.75),
    "hub-redis-cache": Limit(96, 0.1),
    "hub-redis-queue": Limit(96, 0.1),
    # chat: Chatwoot (default total <= 2.5 GiB)
    "chat-rails": Limit(1024, 1.0),
    "chat-sidekiq": Limit(768, 0.5),
    "chat-postgres": Limit(512, 0.5),
    "chat-redis": Limit(192, 0.1),
    # flow: n8n (default total <= 1.5 GiB)
    "flow-n8n": Limit(768, 0.75),
    "flow-runner": Limit(384, 0.5),
    "flow-postgres": Limit(320, 0.25),
    # agent: OpenClaw (default total <= 2 GiB)
    "agent-gateway": Limit(1536, 1.0),
}


def containers_for(services: Iterable[str], with_edge: bool) -> list[str]:
    """The container keys a stack with these services runs."""
    wanted = set(services) | ({"edge"} if with_edge else set())
    return [key for key in LIMITS if key.split("-", 1)[0] in wanted]
