"""Every container the suite can run, with its default memory and CPU limits.

Keys are ``<service>-<role>``, the same key a stack uses to override a limit
(``pulumi config set --path 'versatilehub:resources.hub-backend.memoryMb' 1536``) and the suffix of the
container's name. Budgets (the seed's "memory below 80% of the host") are computed from this table before
any resource exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from pydantic import Field

from components.core.model import Model


class Limits(Model):
    memory_mb: int | None = Field(None, gt=0, json_schema_extra={"example": "1024"})
    cpus: float | None = Field(None, gt=0, json_schema_extra={"example": "1.5"})


class Limit(NamedTuple):
    memory_mb: int
    cpus: float


# CPU values are caps (CFS quotas), not reservations, and the budget sums them against 70% of the host's
# cores: a stack can never push its host past the seed's threshold even if every container runs flat out.
# They are sized so the full suite (5.39 cores) fits an 8-vCPU host and ERP alone (2.68) a 4-vCPU one;
# idle helpers (Redis, schedulers, the proxy) get a sliver, request-serving processes most. The sliver is
# 0.055, not 0.05: the docker provider would read 0.05 back as "0.1" (tools/provider_model.py). A client that
# needs more gives its host's real size or raises one cap under `versatilehub:resources`.
LIMITS: dict[str, Limit] = {
    # edge: Traefik and its read-only view of the Docker API
    "edge-traefik": Limit(256, 0.4),
    "edge-socket-proxy": Limit(64, 0.055),
    # the client portal: static pages from nginx (mode suite)
    "edge-portal": Limit(32, 0.055),
    # hub: ERPNext (default total <= 3 GiB)
    "hub-configurator": Limit(128, 0.055),
    "hub-backend": Limit(896, 0.8),
    "hub-frontend": Limit(192, 0.15),  # nginx; request bodies and large responses buffer on disk
    "hub-websocket": Limit(160, 0.1),
    "hub-queue-short": Limit(320, 0.2),
    # No upstream figure: frappe_docker's compose files limit no worker's memory (docs/hub.md). 320 MB as
    # the short queue's is this suite's guess until a real deployment measures the long queue's jobs.
    "hub-queue-long": Limit(320, 0.2),
    "hub-scheduler": Limit(160, 0.055),
    "hub-mariadb": Limit(640, 0.5),
    "hub-redis-cache": Limit(96, 0.055),
    "hub-redis-queue": Limit(96, 0.055),
    # chat: Chatwoot (default total <= 2.5 GiB)
    "chat-rails": Limit(1024, 0.6),
    "chat-sidekiq": Limit(768, 0.3),
    "chat-postgres": Limit(512, 0.25),
    "chat-redis": Limit(192, 0.055),
    # flow: n8n (default total <= 1.5 GiB)
    "flow-n8n": Limit(768, 0.5),
    "flow-runner": Limit(384, 0.25),
    "flow-postgres": Limit(320, 0.15),
    # agent: OpenClaw (default total <= 2 GiB)
    "agent-gateway": Limit(1536, 0.6),
}


def containers_for(services: Iterable[str], with_edge: bool) -> list[str]:
    """The container keys a stack with these services runs."""
    wanted = set(services) | ({"edge"} if with_edge else set())
    return [key for key in LIMITS if key.split("-", 1)[0] in wanted]
