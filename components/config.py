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
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components import catalog, versions

NAMESPACE = "versatilehub"
SERVICES = ("agent", "chat", "hub", "flow")
Service = Literal["agent", "chat", "hub", "flow"]

# Values that people paste from examples; never accepted as a credential.
PLACEHOLDER_SECRETS = re.compile(
    r"^(changeme|change-me|change_me|password|passw0rd|secret|admin|root|postgres|test|example|"
    r"xxx+|sk-x+|sk-\.\.\.|your[-_ ]?(api[-_ ]?)?key.*|replace[-_]?me.*|todo|none|null|dummy|placeholder)$",
    re.IGNORECASE,
)


class ConfigError(pulumi.RunError):
    """Bad stack configuration. RunError: Pulumi prints the message without a traceback."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------------------------------------------
# Reusable field types
# ---------------------------------------------------------------------------------------------------

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")


def _hostname(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _HOSTNAME_RE.match(value) or value.split(".")[-1].isdigit():
        raise ValueError("is not a DNS name like cliente.com")
    return value


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone such as America/Argentina/Buenos_Aires") from None
    return value


def _real_secret(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value().strip()
    if not plain:
        raise ValueError("is empty")
    if PLACEHOLDER_SECRETS.match(plain):
        raise ValueError("is a placeholder, not a real credential")
    return value


def _printable(value: str) -> str:
    # Names end up in page titles, labels and setup commands: no control characters, no line breaks.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("contains a control character or line break")
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
Email = Annotated[str, AfterValidator(_email)]
Timezone = Annotated[str, AfterValidator(_timezone)]
Credential = Annotated[SecretStr, AfterValidator(_real_secret)]
def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?", value):
        raise ValueError("must be 1-24 lowercase letters, digits or hyphens, starting with a letter (it names containers)")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class Model(BaseModel):
    """Stack config objects: camelCase keys as written in the stack file, typos rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, str_strip_whitespace=True
    )


# ---------------------------------------------------------------------------------------------------
# Shared infrastructure
# ---------------------------------------------------------------------------------------------------


_SSH_RE = re.compile(r"ssh://(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?")


class HostConfig(Model):
    """Where the client's Docker engine is, and how big the machine is (for the budget checks)."""

    docker: str = Field(
        "unix:///var/run/docker.sock",
        json_schema_extra={"example": "ssh://deploy@203.0.113.10"},
    )
    ssh_host_key: str | None = Field(
        None, json_schema_extra={"example": '"ssh-ed25519 AAAAC3Nza..." (from: ssh-keyscan -t ed25519 HOST)'}
    )
    memory_mb: int = Field(8192, gt=0, json_schema_extra={"example": "16384"})
    cpus: float = Field(4, gt=0, json_schema_extra={"example": "4"})

    @field_validator("docker")
    @classmethod
    def _docker_endpoint(cls, value: str) -> str:
        if value.startswith("unix://"):
            if not value.startswith("unix:///"):
                raise ValueError("a unix socket needs an absolute path, e.g. unix:///var/run/docker.sock")
            return value
        m = _SSH_RE.fullmatch(value)
        if not m or (m["port"] and not 0 < int(m["port"]) < 65536):
            raise ValueError("is neither unix:///path nor ssh://user@host[:port]")
        return value

    @field_validator("ssh_host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-sha2-")) or len(parts[1]) < 60:
            raise ValueError("is not a public host key line such as 'ssh-ed25519 AAAAC3Nza...'")
        return " ".join(parts[:2])

    @model_validator(mode="after")
    def _ssh_needs_key(self) -> HostConfig:
        if self.is_ssh and not self.ssh_host_key:
            raise ValueError("sshHostKey: an ssh:// host needs its host key pinned (never trusted on first use)")
        return self

    @property
    def is_ssh(self) -> bool:
        return self.docker.startswith("ssh://")

    def _ssh(self) -> re.Match[str]:
        m = _SSH_RE.fullmatch(self.docker)
        assert m, "only called for ssh:// hosts"
        return m

    @property
    def ssh_user(self) -> str:
        return self._ssh()["user"]

    @property
    def ssh_address(self) -> str:
        return self._ssh()["host"].strip("[]")

    @property
    def ssh_port(self) -> int:
        return int(self._ssh()["port"] or 22)


class WebNetworkConfig(Model):
    """The server's external `web` network: created by the first stack on a server, adopted by the rest."""

    name: str = Field("web", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", json_schema_extra={"example": "web"})
    create: bool = Field(True, json_schema_extra={"example": "false"})


class StorageConfig(Model):
    """Where data lives: bind mounts under one data root (the seed's layout), or Docker named volumes."""

    kind: Literal["bind", "volume"] = Field("bind", json_schema_extra={"example": "volume"})
    data_root: str = Field(
        "/srv/versatilehub", pattern=r"^/[A-Za-z0-9._/-]*$", json_schema_extra={"example": "/srv/versatilehub"}
    )

    @field_validator("data_root")
    @classmethod
    def _not_system(cls, value: str) -> str:
        value = value.rstrip("/") or "/"
        if value in {"/", "/etc", "/usr", "/bin", "/boot", "/dev", "/proc", "/sys", "/lib", "/var/run"} or ".." in value:
            raise ValueError(f"{value!r} is a system directory; use a dedicated one such as /srv/versatilehub")
        return value


class Limits(Model):
    memory_mb: int | None = Field(None, gt=0, json_schema_extra={"example": "1024"})
    cpus: float | None = Field(None, gt=0, json_schema_extra={"example": "1.5"})


class TraefikConfig(Model):
    """The edge's options (mode `suite` only, except certResolver which must match an adopted edge)."""

    acme_staging: bool = Field(False, json_schema_extra={"example": "true"})
    challenge: Literal["http", "tls"] = Field("http", json_schema_extra={"example": "tls"})
    dashboard: bool = Field(False, json_schema_extra={"example": "true"})
    cert_resolver: str = Field("le", pattern=r"^[a-zA-Z0-9_-]{1,40}$", json_schema_extra={"example": "le"})
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field("INFO", json_schema_extra={"example": "WARN"})


# ---------------------------------------------------------------------------------------------------
# Per-service sections: each service's own settings (its component reads only its section)
# ---------------------------------------------------------------------------------------------------


class HubConfig(Model):
    """ERPNext (issue: Hub)."""


class ChatConfig(Model):
    """Chatwoot (issue: Chat)."""


class FlowConfig(Model):
    """n8n (issue: Flow)."""


class AgentConfig(Model):
    """OpenClaw (issue: Agent)."""


class BackupConfig(Model):
    """restic backups (issue: Backups)."""


# ---------------------------------------------------------------------------------------------------
# The whole stack
# ---------------------------------------------------------------------------------------------------

Mode = Literal["suite", "attach", "standalone"]


class SuiteConfig(Model):
    """Everything one client's stack says. Field aliases are the stack keys (``versatilehub:<alias>``)."""

    client: Slug = Field(json_schema_extra={"example": "clientea"})
    domain: Hostname = Field(json_schema_extra={"example": "cliente.com"})
    company: Annotated[str, AfterValidator(_printable)] = Field(
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
    hub: HubConfig = Field(default_factory=HubConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    # Secrets (stored with --secret; kept as SecretStr so they never show in a repr or a log).
    ssh_private_key: SecretStr | None = Field(None, json_schema_extra={"example": "--secret < ~/.ssh/id_ed25519"})

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
            raise ValueError(f"lists {', '.join(dupes)} more than once")
        return value

    @field_validator("versions")
    @classmethod
    def _known_pins(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            versions.check_override(key, tag)
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _known_containers(cls, value: Any) -> Any:
        for key in value if isinstance(value, dict) else ():
            if key not in catalog.LIMITS:
                hint = difflib.get_close_matches(key, list(catalog.LIMITS), n=1)
                raise ValueError(
                    f"{key!r} is not a container of this suite"
                    + (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(sorted(catalog.LIMITS))}")
                )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> SuiteConfig:
        problems: list[str] = []
        if self.mode == "suite" and self.acme_email is None:
            problems.append("acmeEmail: the Let's Encrypt contact is required when this stack runs Traefik (mode suite)")
        if self.mode == "standalone" and len(self.services) != 1:
            problems.append("services: mode standalone deploys exactly one service, without Traefik")
        if self.mode == "attach" and self.web_network.create:
            problems.append("webNetwork.create: mode attach joins an edge that already runs, so set it to false")
        for service in sorted(set(self.hostnames) - set(self.services)):
            problems.append(f"hostnames.{service}: {service} is not in services (remove this hostname or add the service)")
        seen: dict[str, str] = {}
        for service in self.services:
            name = self.hostname(service)
            if name in seen:
                problems.append(f"hostnames.{service}: {name} is already {seen[name]}'s hostname (give each its own)")
            seen[name] = service
        if self.traefik.dashboard and f"traefik.{self.domain}" in seen:
            problems.append(f"hostnames.{seen[f'traefik.{self.domain}']}: traefik.{self.domain} is the dashboard's")
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    # -- derived values, computed in one place --------------------------------------------------
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
        return versions.reference(image_key, self.versions.get(image_key))

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


def _stack_key(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-after", "function-", "literal[")):
            continue
        else:
            path += ("." if path else "") + str(part)
    return f"{NAMESPACE}:{path}"


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo that a stack key path points at (None when the path leaves the models)."""
    current: Any = SuiteConfig
    info = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or n): f for n, f in current.model_fields.items()}
            info = fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) is dict:  # a free-form key (`resources.hub-backend`): step into the value
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return None
    return info


def _fix_hint(loc: tuple[Any, ...]) -> str:
    """The `pulumi config set` command that fixes a key, with an example value."""
    info = _field_at(loc)
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    example = str(extra.get("example", "<value>"))
    key = _stack_key(loc)
    if example.startswith("--"):
        return f"fix: pulumi config set {example.replace('KEY', key)}"
    if key.endswith("]"):
        return f"fix: pulumi config set --path '{key}' {example.split(',')[0]}"
    if "." in key:
        return f"fix: pulumi config set --path '{key}' {example}"
    return f"fix: pulumi config set {key} {example}"


def _problem_lines(error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            lines.append(f"{_stack_key(loc)} is required; {_fix_hint(loc)}")
        elif err["type"] == "extra_forbidden":
            lines.append(
                f"{_stack_key(loc)} is not a known key{_suggest(loc)}; "
                f"remove it: pulumi config rm --path '{_stack_key(loc)}'"
            )
        elif "| " in msg or re.split(r"[.\[]", msg.split(": ", 1)[0])[0] in _field_names(loc):
            # A model's cross-field check: each item starts with the key it is about.
            for item in msg.split(" | "):
                field, _, text = item.partition(": ")
                sub = (*loc, *field.split("."))
                lines.append(f"{_stack_key(sub)}: {text}; {_fix_hint(sub)}")
        else:
            shown = "" if "secret" in err["type"] else _short(err.get("input"))
            lines.append(f"{_stack_key(loc)}: {msg}{shown}; {_fix_hint(loc)}")
    return lines


def _field_names(loc: tuple[Any, ...]) -> set[str]:
    info = _field_at(loc)
    model = SuiteConfig if not loc else (info.annotation if info is not None else None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {f.alias or n for n, f in model.model_fields.items()}
    return set()


def _short(value: Any) -> str:
    """The offending value, when it is short and not structured (secrets never get here)."""
    if value is None or isinstance(value, (dict, list)) or len(str(value)) > 60:
        return ""
    return f" (got {value!r})"


def _suggest(loc: tuple[Any, ...]) -> str:
    match = difflib.get_close_matches(str(loc[-1]), sorted(_field_names(loc[:-1])), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


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
    try:
        config = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problem_lines(exc))
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


def secret(value: SecretStr) -> pulumi.Output[str]:
    """A stack-config secret as a Pulumi secret Output (secret end to end)."""
    return pulumi.Output.secret(value.get_secret_value())
