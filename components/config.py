"""The client's stack configuration: the only code that reads ``pulumi.Config``.

Everything a stack file says is validated here, before any resource is registered. A problem becomes
one line naming the stack key and the command that fixes it; all problems are reported together.

Stack keys live in the ``versatilehub`` namespace. Scalars are set with
``pulumi config set versatilehub:domain cliente.com``; structured values with
``pulumi config set --path 'versatilehub:hub.siteName' erp.cliente.com``; secrets with ``--secret``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from components.backup.config import BackupConfig
from components.core import catalog, errors, versions
from components.core.catalog import Limits
from components.core.errors import ConfigError
from components.core.host import HostConfig
from components.core.model import (
    NAMESPACE,
    SERVICES,
    Email,
    Hostname,
    Model,
    Service,
    Slug,
    Timezone,
    printable,
    secret,
)
from components.core.storage import StorageConfig
from components.edge.config import PortalConfig, TraefikConfig, VerifyConfig, WebNetworkConfig
from components.monitoring.config import MonitoringConfig
from components.services.agent.config import AgentChannels, AgentConfig, AgentProviderKeys
from components.services.chat.config import CHATWOOT_LOCALES, ChatConfig
from components.services.flow.config import FlowConfig
from components.services.hub.config import HubConfig
from tools.provider_model import cpus_read_back, cpus_round_trips

# The names tools and tests read from here; the sections themselves live beside what they configure.
__all__ = [
    "CHATWOOT_LOCALES",
    "CPU_BUDGET_SHARE",
    "MEMORY_BUDGET_SHARE",
    "NAMESPACE",
    "SECRET_KEYS",
    "SERVICES",
    "AgentChannels",
    "AgentConfig",
    "AgentProviderKeys",
    "BackupConfig",
    "ChatConfig",
    "ConfigError",
    "FlowConfig",
    "HostConfig",
    "HubConfig",
    "Mode",
    "MonitoringConfig",
    "SuiteConfig",
    "load",
    "parse",
    "secret",
]

# The seed's thresholds: the limits of every container of a stack stay within these shares of its host.
MEMORY_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.7


# ---------------------------------------------------------------------------------------------------
# The whole stack
# ---------------------------------------------------------------------------------------------------

Mode = Literal["suite", "attach", "standalone"]


class SuiteConfig(Model):
    """Everything one client's stack says. Field aliases are the stack keys (``versatilehub:<alias>``)."""

    client: Slug = Field(json_schema_extra={"example": "clientea"})
    domain: Hostname = Field(json_schema_extra={"example": "cliente.com"})
    company: Annotated[str, AfterValidator(printable)] = Field(
        min_length=2, max_length=140, json_schema_extra={"example": '"Cliente A S.A."'}
    )
    timezone: Timezone = Field(json_schema_extra={"example": "America/Argentina/Buenos_Aires"})
    acme_email: Email | None = Field(None, json_schema_extra={"example": "ops@cliente.com"})
    services: list[Service] = Field(min_length=1, json_schema_extra={"example": "hub,chat,flow,agent"})
    mode: Mode = Field("suite", json_schema_extra={"example": "attach"})
    standalone_port: int | None = Field(None, ge=1024, le=65535, json_schema_extra={"example": "8080"})
    hostnames: dict[Service, Hostname] = Field(
        default_factory=dict, json_schema_extra={"example": "erp.cliente.com"}
    )
    versions: dict[str, str] = Field(default_factory=dict, json_schema_extra={"example": "v16.32.3"})
    host: HostConfig = Field(default_factory=HostConfig)  # type: ignore[arg-type]
    web_network: WebNetworkConfig = Field(default_factory=WebNetworkConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    resources: dict[str, Limits] = Field(default_factory=dict)
    traefik: TraefikConfig = Field(default_factory=TraefikConfig)  # type: ignore[arg-type]
    hub: HubConfig = Field(default_factory=HubConfig)  # type: ignore[arg-type]
    chat: ChatConfig = Field(default_factory=ChatConfig)  # type: ignore[arg-type]
    flow: FlowConfig = Field(default_factory=FlowConfig)  # type: ignore[arg-type]
    agent: AgentConfig = Field(default_factory=AgentConfig)  # type: ignore[arg-type]
    # Validated even when absent: backups are on by default and name their missing keys.
    backup: BackupConfig = Field(default_factory=dict, validate_default=True)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)  # type: ignore[arg-type]
    portal: PortalConfig = Field(default_factory=PortalConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)  # type: ignore[arg-type]
    # Secrets (stored with --secret; kept as SecretStr so they never show in a repr or a log).
    ssh_private_key: SecretStr | None = Field(
        None, json_schema_extra={"example": "--secret < ~/.ssh/id_ed25519"}
    )

    @field_validator("services", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # `pulumi config set versatilehub:services hub,chat` is the quickest way to write the list.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("services")
    @classmethod
    def _no_duplicate_services(cls, value: list[str]) -> list[str]:
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            once = ",".join(dict.fromkeys(value))  # the same list, each service once, in the stack's order
            raise ValueError(
                f"lists {', '.join(dupes)} more than once; fix: pulumi config set {NAMESPACE}:services {once}"
            )
        return value

    @field_validator("versions")
    @classmethod
    def _known_pins(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for key, tag in value.items():
            if key not in versions.IMAGES:
                hint = difflib.get_close_matches(key, list(versions.IMAGES), n=1)
                target = f"{NAMESPACE}:versions.{hint[0] if hint else '<image>'}"
                problems.append(
                    f"{key}: is not an image of this suite"
                    + (
                        f" (did you mean {hint[0]!r}?)"
                        if hint
                        else f"; known: {', '.join(sorted(versions.IMAGES))}"
                    )
                    + f"; fix: pulumi config rm --path '{NAMESPACE}:versions.{key}', then pulumi config set "
                    f"--path '{target}' {tag}"
                )
                continue
            try:
                versions.check_override(key, tag)
            except ValueError as error:
                text = str(error).removeprefix(f"{key}: ")
                pinned = versions.IMAGES.get(key)
                fix = (
                    f"pulumi config set --path '{NAMESPACE}:versions.{key}' {pinned.tag}"
                    if pinned is not None and not pinned.follows
                    else f"pulumi config rm --path '{NAMESPACE}:versions.{key}'"
                )
                # `<key>: ...` is read as the path below versions (see _problem_lines).
                problems.append(f"{key}: {text}; fix: {fix}")
        if problems:
            raise ValueError(" | ".join(problems))
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _known_containers(cls, value: Any) -> Any:
        for key in value if isinstance(value, dict) else ():
            if key not in catalog.LIMITS:
                hint = difflib.get_close_matches(key, list(catalog.LIMITS), n=1)
                moved = f"{NAMESPACE}:resources.{hint[0] if hint else '<container>'}"
                raise ValueError(
                    f"{key}: is not a container of this suite"  # `<key>: `: the entry's path
                    + (
                        f" (did you mean {hint[0]!r}?)"
                        if hint
                        else f"; known: {', '.join(sorted(catalog.LIMITS))}"
                    )
                    + f"; fix: pulumi config rm --path '{NAMESPACE}:resources.{key}', then set its settings "
                    f"under {moved} (e.g. pulumi config set --path '{moved}.memoryMb' 512)"
                )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> SuiteConfig:
        problems: list[str] = []
        if self.mode == "suite" and self.acme_email is None:
            problems.append(
                "acmeEmail: the Let's Encrypt contact is required when this stack runs Traefik (mode suite)"
            )
        if self.mode == "standalone" and len(self.services) != 1:
            problems.append(
                "services: mode standalone deploys exactly one service, without Traefik; fix: pulumi config "
                f"set {NAMESPACE}:services {self.services[0] if self.services else 'flow'} (one stack per "
                f"service), or pulumi config set {NAMESPACE}:mode suite"
            )
        if self.mode == "attach" and self.web_network.create:
            problems.append(
                "webNetwork.create: mode attach joins an edge that already runs, so set it to false"
            )
        for service in sorted(set(self.hostnames) - set(self.services)):
            problems.append(
                f"hostnames.{service}: {service} is not in services (remove this hostname or add the service)"
            )
        seen: dict[str, str] = {}
        for service in self.services:
            name = self.hostname(service)
            if name in seen:
                problems.append(
                    f"hostnames.{service}: {name} is already {seen[name]}'s hostname (give each its own)"
                )
            seen[name] = service
        if self.traefik.dashboard and f"traefik.{self.domain}" in seen:
            problems.append(
                f"hostnames.{seen[f'traefik.{self.domain}']}: traefik.{self.domain} is the dashboard's"
            )
        for service in self.services:
            problems.extend(f"{service}.{p}" for p in getattr(self, service).problems_when_enabled())
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @model_validator(mode="after")
    def _operating_checks(self) -> SuiteConfig:
        """The seed's thresholds (memory < 80% of the host, CPU < 70% of its cores), portal and verify."""
        problems: list[str] = []
        containers = catalog.containers_for(self.services, self.runs_traefik)
        memory, host_memory = self.memory_budget_mb(), self.host.memory_mb
        if memory > host_memory * MEMORY_BUDGET_SHARE:
            largest = sorted(containers, key=lambda k: -self.limits(k).memory_mb)[:3]
            needed = math.ceil(memory / MEMORY_BUDGET_SHARE)
            problems.append(
                f"host.memoryMb: memory limits add up to {memory} MB, {100 * memory / host_memory:.0f}% "
                f"of this host's {host_memory} MB (the budget is {MEMORY_BUDGET_SHARE:.0%}); fix: if the "
                "host has more RAM, say so: pulumi config set --path 'versatilehub:host.memoryMb' "
                f"<MB, at least {needed}>; else lower the largest limits ("
                + ", ".join(f"{k} {self.limits(k).memory_mb} MB" for k in largest)
                + f") with pulumi config set --path 'versatilehub:resources.{largest[0]}.memoryMb' <MB>"
            )
        cpus, host_cpus = self.cpu_budget(), self.host.cpus
        if round(cpus, 3) > round(host_cpus * CPU_BUDGET_SHARE, 3):
            largest = sorted(containers, key=lambda k: -self.limits(k).cpus)[:3]
            needed_cores = math.ceil(100 * cpus / CPU_BUDGET_SHARE) / 100
            problems.append(
                f"host.cpus: CPU limits add up to {cpus:.2f} cores, {100 * cpus / host_cpus:.0f}% of this "
                f"host's {host_cpus:g} (the budget is {CPU_BUDGET_SHARE:.0%}); fix: if the host has more "
                "cores, say so: pulumi config set --path 'versatilehub:host.cpus' "
                f"<cores, at least {needed_cores:g}>; else lower the largest caps ("
                + ", ".join(f"{k} {self.limits(k).cpus:g}" for k in largest)
                + f") with pulumi config set --path 'versatilehub:resources.{largest[0]}.cpus' <cores>"
            )
        for key in containers:
            # The docker provider stores cpus via nanoInt64ToDecimalString, which turns e.g. 0.05 into
            # "0.1": that container would be replaced on every `pulumi up`.
            cores = self.limits(key).cpus
            if not cpus_round_trips(str(cores)):
                problems.append(
                    f"resources.{key}.cpus: the docker provider reads {cores:g} back as "
                    f"{cpus_read_back(str(cores))} and would replace the container on every up; fix: "
                    f"pulumi config set --path 'versatilehub:resources.{key}.cpus' <cores, e.g. "
                    f"{round(cores + 0.005, 3):g}>"
                )
        if self.portal.hostnames and not self.runs_traefik:
            problems.append(
                "portal.hostnames: the portal runs only with this stack's own Traefik (mode suite)"
            )
        if self.runs_traefik:
            taken = {self.hostname(s): f"{s}'s hostname" for s in self.services}
            if self.traefik.dashboard:
                taken[f"traefik.{self.domain}"] = "the Traefik dashboard's"
            for i, name in enumerate(self.portal_hostnames):
                if name in taken:
                    problems.append(
                        f"portal.hostnames[{i}]: {name} is already {taken[name]} (give each its own)"
                    )
                taken[name] = "the portal's"
        for service in sorted(set(self.verify.service_budget_ms) - set(self.services)):
            problems.append(
                f"verify.serviceBudgetMs.{service}: {service} is not in services (remove this budget)"
            )
        problems.extend(f"monitoring.{p}" for p in self.monitoring.problems(self))
        if self.verify.trusted_tls and self.runs_traefik and self.traefik.acme_staging:
            problems.append(
                "verify.trustedTls: certificates from Let's Encrypt's staging CA are never trusted; "
                "turn off traefik.acmeStaging or verify.trustedTls"
            )
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    # -- derived values, computed in one place --------------------------------------------------
    @property
    def portal_hostnames(self) -> list[str]:
        """Where the portal answers by name (it also catches every unknown host)."""
        return list(self.portal.hostnames) or [self.domain]

    def hostname(self, service: str) -> str:
        return self.hostnames.get(service, f"{service}.{self.domain}")  # type: ignore[call-overload]

    def url(self, service: str) -> str:
        return f"https://{self.hostname(service)}"

    def enabled(self, service: str) -> bool:
        return service in self.services

    @property
    def runs_traefik(self) -> bool:
        return self.mode == "suite"

    @property
    def routed(self) -> bool:
        """Services are reached through a Traefik (ours or an adopted one)."""
        return self.mode != "standalone"

    def pin(self, image_key: str) -> str:
        return versions.resolve(image_key, self.versions)

    def limits(self, container_key: str) -> catalog.Limit:
        base = catalog.LIMITS[container_key]
        override = self.resources.get(container_key)
        if override is None:
            return base
        return catalog.Limit(override.memory_mb or base.memory_mb, override.cpus or base.cpus)

    def memory_budget_mb(self) -> int:
        return sum(self.limits(k).memory_mb for k in catalog.containers_for(self.services, self.runs_traefik))

    def cpu_budget(self) -> float:
        return sum(self.limits(k).cpus for k in catalog.containers_for(self.services, self.runs_traefik))


# ---------------------------------------------------------------------------------------------------
# Reading the stack
# ---------------------------------------------------------------------------------------------------

# Keys whose values are credentials: they must be stored with `pulumi config set --secret`.
SECRET_KEYS = frozenset({"sshPrivateKey"})


def _raw_stack_config() -> dict[str, str]:
    """Every `versatilehub:*` key the engine (or the offline plan) handed to this program."""
    from pulumi.runtime import config as runtime_config

    merged = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    return {k.split(":", 1)[1]: v for k, v in merged.items() if k.startswith(f"{NAMESPACE}:")}


def _parse_value(key: str, raw: str) -> Any:
    """Structured keys arrive as JSON text; scalars as plain text."""
    field = next((f for n, f in SuiteConfig.model_fields.items() if (f.alias or n) == key), None)
    if field is not None and field.annotation not in (str, str | None, SecretStr | None):
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            return raw
    return raw


def parse(raw: Mapping[str, str], secret_keys: frozenset[str] = frozenset()) -> SuiteConfig:
    """Validate raw stack config (key without namespace -> text); raise ConfigError listing every problem."""
    problems: list[str] = []
    known = {f.alias or n for n, f in SuiteConfig.model_fields.items()}
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            match = difflib.get_close_matches(key, sorted(known), n=1)
            problems.append(
                f"{NAMESPACE}:{key} is not a known key"
                + (f" (did you mean {NAMESPACE}:{match[0]}?)" if match else "")
                + f"; remove it: pulumi config rm {NAMESPACE}:{key}"
            )
            continue
        if key in SECRET_KEYS and key not in secret_keys:
            problems.append(
                f"{NAMESPACE}:{key} is stored in plain text; store it encrypted: "
                f"pulumi config set --secret {NAMESPACE}:{key} <value>"
            )
        data[key] = _parse_value(key, value)
        if key not in secret_keys:
            problems.extend(errors.plain_credentials(SuiteConfig, key, data[key]))
    try:
        config = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(errors.problem_lines(SuiteConfig, exc))
        config = None
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load() -> SuiteConfig:
    """Read and validate this stack's config (the program's entry point calls this once)."""
    from pulumi.runtime import config as runtime_config

    raw = _raw_stack_config()
    secret = frozenset(k for k in raw if runtime_config.is_config_secret(f"{NAMESPACE}:{k}"))
    return parse(raw, secret)
