"""Every rule of the pack, in the order the pack reports them (see docs/policies.md for the table).

Importable on its own (tests, `python -m tools.policy`); ``policies/__main__.py`` only serves ``POLICIES``.
"""

from __future__ import annotations

from pulumi_policy import Policy

from . import credentials, edge, operations, runtime
from .base import ANCHORS, Anchor, level_name

PACK_NAME = "versatilehub"
PACK_DESCRIPTION = "VersatileHub: the seed's security checklist and the CIS Docker v1.6.0 container rules."

POLICIES: list[Policy] = [
    # credentials
    credentials.no_default_credentials,
    credentials.secret_strength,
    credentials.secrets_not_reused,
    # the edge
    edge.web_network_topology,
    edge.traefik_acme,
    edge.routers_tls_only,
    edge.traefik_exposed_by_default_off,
    edge.traefik_dashboard_protected,
    edge.no_docker_socket,
    edge.published_ports_allowlist,
    # every container (CIS Docker section 5) and its image
    runtime.healthcheck_required,
    runtime.no_privileged,
    runtime.capabilities_restricted,
    runtime.no_host_namespaces,
    runtime.no_sensitive_host_mounts,
    runtime.memory_limit,
    runtime.memory_budget,
    runtime.restart_policy,
    runtime.no_new_privileges,
    runtime.no_unconfined_profiles,
    runtime.non_root_user,
    runtime.read_only_rootfs,
    runtime.log_rotation,
    runtime.image_pinned,
    runtime.image_digest,
    # operations
    operations.backups_scheduled,
    operations.backup_retention,
    operations.consistent_db_dumps,
    operations.ssh_host_key_pinned,
]

BY_NAME: dict[str, Policy] = {p.name: p for p in POLICIES}


def anchor(policy: Policy) -> Anchor:
    return ANCHORS[policy.name]


__all__ = ["BY_NAME", "PACK_DESCRIPTION", "PACK_NAME", "POLICIES", "anchor", "level_name"]
