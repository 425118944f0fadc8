"""The Suite: one client's whole stack, composed from the validated config.

Order matters only where data flows: networks first, then the edge (if this stack runs Traefik), then each
selected service, then backups (which read what the services registered).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_random as random

from components.backup.component import BackupRepository, BackupSchedule
from components.config import SuiteConfig
from components.core.container import Images
from components.core.deployment import Deployment
from components.core.host import Host
from components.core.outputs import secret_commands
from components.core.versions import tag_of
from components.edge.component import Edge, Networks
from components.edge.portal import Portal
from components.edge.verify import Verify, probes
from components.monitoring.component import monitoring
from components.services.agent.component import Agent
from components.services.chat.component import Chat
from components.services.flow.component import Flow
from components.services.hub.component import Hub


class Suite(pulumi.ComponentResource):
    outputs: dict[str, Any]

    def __init__(self, config: SuiteConfig, host: Host, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:suite:Suite", config.client, None, opts)
        networks = Networks("net", config, opts=pulumi.ResourceOptions(parent=self))
        # Keys the secret files' fingerprint labels (components/core/secrets.py); never rotated.
        fingerprint_key = random.RandomBytes(
            "secret-fingerprint-key", length=32, opts=pulumi.ResourceOptions(parent=self)
        )
        self.deployment = d = Deployment(
            config=config,
            host=host,
            images=Images(config, parent=self),
            web_network=networks.web_name,
            web_subnet=networks.web_subnet,
            shared_network=networks.shared_name,
            fingerprint_key=fingerprint_key.hex,
        )
        self.edge = Edge("edge", d, opts=pulumi.ResourceOptions(parent=self)) if config.runs_traefik else None
        # Backups (when on) install d.pre_update_hook here, before the services ask for it.
        self.backup = (
            BackupRepository("backup", d, opts=pulumi.ResourceOptions(parent=self))
            if config.backup.enabled
            else None
        )

        self.services: dict[str, Any] = {}
        for service in config.services:
            self.services[service] = SERVICE_COMPONENTS[service](
                service, d, opts=pulumi.ResourceOptions(parent=self)
            )
        # The schedule reads what the services registered; the initial backup waits for them to be up.
        deployed = [*self.services.values(), *([self.edge] if self.edge is not None else [])]
        self.backup_schedule = (
            BackupSchedule(
                "backup-schedule", d, self.backup, deployed, opts=pulumi.ResourceOptions(parent=self)
            )
            if self.backup is not None
            else None
        )
        # The client's portal (with this stack's own Traefik), then the probe of every endpoint, which waits
        # for everything above it.
        child = pulumi.ResourceOptions(parent=self)
        self.portal = Portal("portal", d, opts=child) if config.runs_traefik else None
        self.verify = (
            Verify("verify", d, services=self.services, edge=self.edge, portal=self.portal, opts=child)
            if config.verify.enabled
            else None
        )
        # The collector on the host (issue 19): it probes what the verification probes, once all is up.
        self.monitoring = (
            monitoring("monitoring", d, probes(d, self.services, self.edge, self.portal), [*deployed], self)
            if config.monitoring.enabled
            else None
        )

        self.outputs = self._outputs()
        self.register_outputs({})

    def _outputs(self) -> dict[str, Any]:
        cfg = self.deployment.config
        out: dict[str, Any] = {
            "client": cfg.client,
            "company": cfg.company,
            "mode": cfg.mode,
            "services": list(cfg.services),
            "versions": {key: tag_of(cfg.pin(key)) for key in sorted(self.deployment.images.used())},
            "memoryBudgetMb": cfg.memory_budget_mb(),
            "hostMemoryMb": cfg.host.memory_mb,
            "cpuBudget": round(cfg.cpu_budget(), 2),
            "hostCpus": cfg.host.cpus,
        }
        if self.portal is not None:
            out["portal"] = {"url": self.portal.url, "hostnames": cfg.portal_hostnames}
        if self.verify is not None:
            out["verification"] = {"endpoints": self.verify.endpoints, "lastRun": self.verify.results}
        if self.edge is not None and self.edge.dashboard_url:
            out["traefikDashboard"] = {
                "url": self.edge.dashboard_url,
                "user": "admin",
                "password": self.edge.dashboard_password,
            }
        for name, component in self.services.items():
            out[name] = component.outputs
        if self.backup_schedule is not None:
            out["backup"] = self.backup_schedule.outputs
        out["secretCommands"] = secret_commands(out)
        return out


def deploy(config: SuiteConfig) -> Suite:
    """Build one client's stack on its Docker host."""
    host = Host(config)
    return Suite(config, host, opts=pulumi.ResourceOptions(providers=[host.provider]))


# Service name -> its component class. Each takes (name, deployment, opts) and exposes `.outputs` (a dict).
SERVICE_COMPONENTS: dict[str, Any] = {
    "agent": Agent,
    "chat": Chat,
    "flow": Flow,
    "hub": Hub,
}
