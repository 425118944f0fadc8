"""The client's stack configuration: the only code that reads ``pulumi.Config``.

Everything a stack file says is validated here, before any resource is registered. A problem becomes
one line naming the stack key and the command that fixes it; all problems are reported together.

Stack keys live in the ``versatilehub`` namespace. Scalars are set with
``pulumi config set versatilehub:domain cliente.com``; structured values with
``pulumi config set --path 'versatilehub:hub.siteName' erp.cliente.com``; secrets with ``--secret``.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
import math
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
import pycountry
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
from components.monitoring import MonitoringConfig
from tools.provider_model import cpus_read_back, cpus_round_trips

NAMESPACE = "versatilehub"
# The seed's thresholds: the limits of every container of a stack stay within these shares of its host.
MEMORY_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.7
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
        raise ValueError(
            "must be 1-24 lowercase letters, digits or hyphens, starting with a letter (it names containers)"
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class Model(BaseModel):
    """Stack config objects: camelCase keys as written in the stack file, typos rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )

    def problems_when_enabled(self) -> list[str]:
        """Checks of a service's section that apply only when the stack deploys it: "field: message"."""
        return []


# ---------------------------------------------------------------------------------------------------
# Shared infrastructure
# ---------------------------------------------------------------------------------------------------


_SSH_RE = re.compile(
    r"ssh://(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?"
)


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
            raise ValueError(
                "sshHostKey: an ssh:// host needs its host key pinned (never trusted on first use)"
            )
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

    name: str = Field(
        "web", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", json_schema_extra={"example": "web"}
    )
    create: bool = Field(True, json_schema_extra={"example": "false"})


class StorageConfig(Model):
    """Where data lives: bind mounts under one data root (the seed's layout), or Docker named volumes."""

    kind: Literal["bind", "volume"] = Field("bind", json_schema_extra={"example": "volume"})
    data_root: str = Field(
        "/srv/versatilehub",
        pattern=r"^/[A-Za-z0-9._/-]*$",
        json_schema_extra={"example": "/srv/versatilehub"},
    )

    @field_validator("data_root")
    @classmethod
    def _not_system(cls, value: str) -> str:
        value = value.rstrip("/") or "/"
        if (
            value in {"/", "/etc", "/usr", "/bin", "/boot", "/dev", "/proc", "/sys", "/lib", "/var/run"}
            or ".." in value
        ):
            raise ValueError(
                f"{value!r} is a system directory; use a dedicated one such as /srv/versatilehub"
            )
        return value


class Limits(Model):
    memory_mb: int | None = Field(None, gt=0, json_schema_extra={"example": "1024"})
    cpus: float | None = Field(None, gt=0, json_schema_extra={"example": "1.5"})


class HstsChoices(typing.TypedDict):
    hsts_include_subdomains: bool
    hsts_preload: bool


class TraefikConfig(Model):
    """The edge's options (mode `suite` only, except certResolver which must match an adopted edge)."""

    acme_staging: bool = Field(False, json_schema_extra={"example": "true"})
    challenge: Literal["http", "tls"] = Field("http", json_schema_extra={"example": "tls"})
    dashboard: bool = Field(False, json_schema_extra={"example": "true"})
    cert_resolver: str = Field("le", pattern=r"^[a-zA-Z0-9_-]{1,40}$", json_schema_extra={"example": "le"})
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field(
        "INFO", json_schema_extra={"example": "WARN"}
    )
    # Publish 80/443 on IPv6 ([::]) as well as IPv4: the guide has operators create AAAA records, and
    # Let's Encrypt may try IPv6 first. false for hosts booted without IPv6 (binding [::] fails there).
    ipv6: bool = Field(True, json_schema_extra={"example": "false"})
    # HSTS opt-ins: includeSubDomains forces HTTPS on every other subdomain of the client's domain (the
    # portal answers at the apex); preload (which needs includeSubDomains) consents to browsers' preload list.
    hsts_include_subdomains: bool = Field(False, json_schema_extra={"example": "true"})
    hsts_preload: bool = Field(False, json_schema_extra={"example": "true"})

    @model_validator(mode="after")
    def _preload_needs_subdomains(self) -> TraefikConfig:
        if self.hsts_preload and not self.hsts_include_subdomains:
            raise ValueError(
                "hstsPreload needs hstsIncludeSubdomains (the preload list requires it): set "
                "versatilehub:traefik.hstsIncludeSubdomains to true, or hstsPreload to false"
            )
        return self

    @property
    def hsts(self) -> HstsChoices:
        """The HSTS choices, as routing.router_labels takes them."""
        return {"hsts_include_subdomains": self.hsts_include_subdomains, "hsts_preload": self.hsts_preload}


# ---------------------------------------------------------------------------------------------------
# Per-service sections: each service's own settings (its component reads only its section)
# ---------------------------------------------------------------------------------------------------


def _country(value: str) -> str:
    try:
        return str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        raise ValueError("is not a country: give its ISO 3166 code (MX, AR, US) or English name") from None


def _currency(value: str) -> str:
    code = value.upper()
    if not re.fullmatch(r"[A-Z]{3}", code) or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError("is not an ISO 4217 currency code such as MXN, ARS or USD")
    return code


def _language(value: str) -> str:
    # Frappe's language codes: an ISO 639 language, optionally a region (`es`, `es-MX`, `zh-TW`).
    m = re.fullmatch(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}))?", value)
    if m:
        base, region = m[1].lower(), (m[2] or "").upper()
        known = pycountry.languages.get(**{"alpha_2" if len(base) == 2 else "alpha_3": base})
        if known is not None and (not region or pycountry.countries.get(alpha_2=region) is not None):
            return f"{base}-{region}" if region else base
    raise ValueError("is not a language code such as en, es or es-MX")


def _company_abbr(value: str) -> str:
    if not re.fullmatch(r"[^\W_]{1,5}", value):
        raise ValueError("must be 1-5 letters or digits (ERPNext appends it to account and warehouse names)")
    return value.upper()


def _month_day(value: str) -> str:
    m = re.fullmatch(r"(\d{2})-(\d{2})", value)
    if m:
        try:
            datetime.date(2001, int(m[1]), int(m[2]))  # a non-leap year: no fiscal year starts on 29 February
            return value
        except ValueError:
            pass
    raise ValueError("is not a month and day written MM-DD, such as 01-01 or 04-01")


class HubConfig(Model):
    """ERPNext (issue: Hub): the client's site and the company the first setup creates in it.

    Everything but the site name seeds the site once, when it is created; from then on the company, its
    country and currency are managed in ERPNext (the setup wizard does not run twice).
    """

    # Default: the Hub's hostname. It names the site's directory and database for good, so a stack that may
    # change hostnames later sets it explicitly (a different hostname is served through the site name).
    site_name: Hostname | None = Field(None, json_schema_extra={"example": "erp.cliente.com"})
    # Required with hub: it selects ERPNext's country fixtures (tax templates, date and number formats).
    country: Annotated[str, AfterValidator(_country)] | None = Field(
        None, json_schema_extra={"example": "MX"}
    )
    # Default: the country's currency, as ERPNext's setup wizard proposes it.
    currency: Annotated[str, AfterValidator(_currency)] | None = Field(
        None, json_schema_extra={"example": "MXN"}
    )
    language: Annotated[str, AfterValidator(_language)] = Field("en", json_schema_extra={"example": "es-MX"})
    # Default: the initials of the company's name (what the setup wizard proposes).
    company_abbr: Annotated[str, AfterValidator(_company_abbr)] | None = Field(
        None, json_schema_extra={"example": "CBC"}
    )
    chart_of_accounts: Annotated[str, AfterValidator(_printable)] = Field(
        "Standard", min_length=1, max_length=140, json_schema_extra={"example": '"Standard with Numbers"'}
    )
    fiscal_year_start: Annotated[str, AfterValidator(_month_day)] = Field(
        "01-01", json_schema_extra={"example": "04-01"}
    )

    def problems_when_enabled(self) -> list[str]:
        if self.country is None:
            return ["country: ERPNext's company needs the client's country (an ISO 3166 code such as MX)"]
        return []

    def site(self, hostname: str) -> str:
        """The Frappe site's name, given the Hub's public hostname."""
        return self.site_name or hostname

    def abbreviation(self, company: str) -> str:
        """The company's abbreviation: the configured one, else the initials of its words (at most 5), as
        ERPNext's setup wizard proposes it ("Cliente A S.A." -> CAS)."""
        if self.company_abbr:
            return self.company_abbr
        initials = [next((ch for ch in word if ch.isalnum()), "") for word in company.split()]
        return "".join(initials)[:5].upper() or "CO"


# The interface languages Chatwoot v4.18.0 enables (config/initializers/languages.rb, entries with
# `enabled: true`). It ignores a DEFAULT_LOCALE outside this list without a word, so the stack refuses it.
# fmt: off
CHATWOOT_LOCALES = frozenset({
    "en", "ar", "nl", "fr", "de", "it", "ja", "ko", "pt", "ru", "es", "ml", "ca", "el", "pt_BR", "ro",
    "ta", "fa", "zh_TW", "vi", "da", "tr", "cs", "fi", "id", "sv", "hu", "no", "zh_CN", "pl", "sk", "uk",
    "th", "lv", "is", "he", "lt", "sr", "bg", "et", "uz", "sl",
})
# fmt: on


def _chatwoot_locale(value: str) -> str:
    # `pt-BR` and `pt_br` both mean Chatwoot's `pt_BR`.
    wanted = value.replace("-", "_").lower()
    for code in CHATWOOT_LOCALES:
        if code.lower() == wanted:
            return code
    hint = difflib.get_close_matches(value, sorted(CHATWOOT_LOCALES), n=1)
    raise ValueError(
        "is not a language Chatwoot offers"
        + (f" (did you mean {hint[0]!r}?)" if hint else f"; one of {', '.join(sorted(CHATWOOT_LOCALES))}")
    )


def _website(value: str) -> str:
    m = re.fullmatch(r"https://([^/:?#]+)(/[^\s?#]*)?", value)
    if m and _HOSTNAME_RE.match(m[1].lower()):
        return f"https://{m[1].lower()}{(m[2] or '').rstrip('/')}"
    raise ValueError("is not an https:// address such as https://www.cliente.com")


class ChatSmtpConfig(Model):
    """Chatwoot's outgoing mail (notifications, invitations, password resets), over STARTTLS.

    Without `address` Chatwoot sends no mail at all; the other keys only make sense with it.
    """

    address: Hostname | None = Field(None, json_schema_extra={"example": "smtp.cliente.com"})
    port: int = Field(587, ge=1, le=65535, json_schema_extra={"example": "587"})
    username: Annotated[str, Field(min_length=1), AfterValidator(_printable)] | None = Field(
        None, json_schema_extra={"example": "chat@cliente.com"}
    )
    password: Credential | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' <password>"}
    )
    authentication: Literal["plain", "login", "cram_md5"] = Field(
        "login", json_schema_extra={"example": "plain"}
    )
    # The From address; the company's name is shown as the sender.
    sender: Email | None = Field(None, json_schema_extra={"example": "chat@cliente.com"})

    @model_validator(mode="after")
    def _complete(self) -> ChatSmtpConfig:
        problems = []
        if self.address is None:
            given = [f.alias or n for n, f in type(self).model_fields.items() if n in self.model_fields_set]
            if given:
                problems.append(f"address: the SMTP server is required once smtp has {', '.join(given)}")
        else:
            if self.sender is None:
                problems.append("sender: the From address of Chatwoot's mail is required with an SMTP server")
            if (self.username is None) != (self.password is None):
                missing = "password" if self.password is None else "username"
                problems.append(f"{missing}: SMTP login needs both username and password")
        if problems:
            raise ValueError(" | ".join(problems))
        return self


class ChatConfig(Model):
    """Chatwoot (issue: Chat): its first super admin, its language, mail and, optionally, a website inbox."""

    # Required with chat: the login of the super admin and first account created at deploy time.
    admin_email: Email | None = Field(None, json_schema_extra={"example": "soporte@cliente.com"})
    admin_name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)] = Field(
        "Administrator", json_schema_extra={"example": '"María Pérez"'}
    )
    # DEFAULT_LOCALE: new accounts, the widget and mail use it; each agent may pick another.
    locale: Annotated[str, AfterValidator(_chatwoot_locale)] = Field(
        "en", json_schema_extra={"example": "es"}
    )
    # When set, the account gets a website (live-chat widget) inbox for this site, with the admin as agent.
    website_inbox: Annotated[str, AfterValidator(_website)] | None = Field(
        None, json_schema_extra={"example": "https://www.cliente.com"}
    )
    smtp: ChatSmtpConfig = Field(default_factory=ChatSmtpConfig)  # type: ignore[arg-type]

    def problems_when_enabled(self) -> list[str]:
        if self.admin_email is None:
            return ["adminEmail: Chat creates its first super admin at deploy time and needs its login email"]
        return []


# n8n's user.firstName / user.lastName columns are varchar(32).
OWNER_NAME_MAX = 32
OwnerName = Annotated[str, Field(min_length=1, max_length=OWNER_NAME_MAX), AfterValidator(_printable)]


class FlowConfig(Model):
    """n8n (issue: Flow). Its owner account is set from these on every start; the password is generated."""

    # Default admin@<domain>: a login name only (n8n sends no mail unless SMTP is set up).
    owner_email: Email | None = Field(None, json_schema_extra={"example": "automatizacion@cliente.com"})
    # Defaults: the company's name and "Admin".
    owner_first_name: OwnerName | None = Field(None, json_schema_extra={"example": "Ana"})
    owner_last_name: OwnerName | None = Field(None, json_schema_extra={"example": "Pérez"})

    def owner(self, *, company: str, domain: str) -> tuple[str, str, str]:
        """(email, first name, last name) of the n8n owner, defaults filled in; the email as n8n stores it."""
        email = (self.owner_email or f"admin@{domain}").lower()
        first = self.owner_first_name or _fit(company, OWNER_NAME_MAX)
        return email, first, self.owner_last_name or "Admin"


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,-")


_EXAMPLE_KEY = re.compile(r"^(sk-(ant-|or-|proj-)?|AIza)?[xX.*<>…]+$")


def _api_key_shape(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value().strip()
    if _EXAMPLE_KEY.match(plain):
        raise ValueError("is an example value, not a real key")
    if len(plain) < 20 or any(ch.isspace() for ch in plain):
        raise ValueError("is not an API key or bot token (too short, or contains spaces)")
    return value


# A provider API key or a channel token: a real credential, never an example pasted from documentation.
ApiKey = Annotated[SecretStr, AfterValidator(_real_secret), AfterValidator(_api_key_shape)]

# Model references (`provider/model`) of the providers AgentProviderKeys holds keys for -> that key.
AGENT_MODEL_PROVIDERS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openrouter": "openrouter",
    "google": "gemini",
}


def _model_ref(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9._:/@+-]*", value):
        raise ValueError("is not a provider/model reference such as anthropic/claude-sonnet-4-5")
    return value


class _AgentCredentials(Model):
    def configured(self) -> list[str]:
        """The names of the credentials that are set."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class AgentProviderKeys(_AgentCredentials):
    """LLM provider API keys, stored with --secret; OpenClaw reads each from its usual variable."""

    anthropic: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' sk-ant-api03-..."}
    )
    openai: ApiKey | None = Field(None, json_schema_extra={"example": "--secret --path 'KEY' sk-proj-..."})
    openrouter: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' sk-or-v1-..."}
    )
    gemini: ApiKey | None = Field(None, json_schema_extra={"example": "--secret --path 'KEY' AIzaSy..."})


class AgentChannels(_AgentCredentials):
    """Chat channels' bot tokens, stored with --secret; unknown senders get a pairing code, not a reply."""

    telegram: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' 123456789:AAE..."}
    )


class AgentConfig(Model):
    """OpenClaw (issue: Agent): its default model, the provider keys it may use and its chat channels."""

    # Set explicitly: OpenClaw's built-in default may belong to a provider this client has no key for.
    model: Annotated[str, AfterValidator(_model_ref)] | None = Field(
        None, json_schema_extra={"example": "anthropic/claude-sonnet-4-5"}
    )
    provider_keys: AgentProviderKeys = Field(
        default_factory=AgentProviderKeys,  # type: ignore[arg-type]
        json_schema_extra={"example": "--secret --path 'KEY.anthropic' sk-ant-api03-..."},
    )
    channels: AgentChannels = Field(default_factory=AgentChannels)  # type: ignore[arg-type]

    def problems_when_enabled(self) -> list[str]:
        keys = self.provider_keys.configured()
        problems = []
        if not keys:
            problems.append(
                "providerKeys: the agent needs at least one model provider key "
                f"({', '.join(AgentProviderKeys.model_fields)})"
            )
        if self.model is None:
            problems.append("model: the agent needs its default model, written provider/model")
        else:
            provider = self.model.split("/", 1)[0]
            needed = AGENT_MODEL_PROVIDERS.get(provider)
            if keys and needed is not None and needed not in keys:
                key = f"{NAMESPACE}:agent.providerKeys.{needed}"
                usable = [p for p, k in AGENT_MODEL_PROVIDERS.items() if k in keys]
                problems.append(
                    f"model: {self.model} runs on {provider}, which has no key; fix: pulumi config set "
                    f"--secret --path '{key}' <key>, or pick a model of {' or '.join(usable)}: "
                    f"pulumi config set --path '{NAMESPACE}:agent.model' {usable[0]}/<model>"
                )
        return problems


_S3_REPOSITORY = re.compile(
    r"s3:https://(?P<host>[a-z0-9.-]+\.[a-z]{2,})(:\d{1,5})?/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9._-]+)*/?"
)
_B2_REPOSITORY = re.compile(r"b2:(?P<bucket>[A-Za-z0-9][A-Za-z0-9-]{4,48}[A-Za-z0-9])(:[A-Za-z0-9._/-]*)?")
_LOCAL_REPOSITORY = re.compile(r"/[A-Za-z0-9._/-]+")
_CLOCK = re.compile(r"(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")
_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_WEEKLY = re.compile(rf"(?P<days>{_DAY}(,{_DAY})*) (?P<clock>\S+)")
# systemd's full form: [weekdays] year-month-day hour:minute[:second] [time zone]
_FIELD = r"[0-9*,./~]+"
_ON_CALENDAR = re.compile(
    rf"({_DAY}([,.]+{_DAY})* )?{_FIELD}-{_FIELD}-{_FIELD} [0-9*,./]+:[0-9*,./:]+( [A-Za-z_/+-]+)?"
)
_CHECK_SUBSET = re.compile(r"1/([1-9]|[1-9][0-9])|([1-9][0-9]?|100)(\.[0-9]+)?%|[1-9][0-9]*[KMGT]")


def _repository(value: str) -> str:
    value = value.rstrip("/") if value.startswith("s3:") else value
    if _S3_REPOSITORY.fullmatch(value) or _B2_REPOSITORY.fullmatch(value):
        return value
    if _LOCAL_REPOSITORY.fullmatch(value) and ".." not in value.split("/") and value != "/":
        return value
    raise ValueError(
        "is not s3:https://s3.<region>.backblazeb2.com/<bucket>/<path> (Backblaze B2's S3 endpoint, "
        "recommended), b2:<bucket>:<path>, or an absolute local path (labs only)"
    )


def _calendar(value: str) -> str:
    if _CLOCK.fullmatch(value) or (_WEEKLY.fullmatch(value) and _CLOCK.fullmatch(value.split()[-1])):
        return value
    if _ON_CALENDAR.fullmatch(value):
        return value  # a full systemd OnCalendar= expression; the host checks it before installing
    raise ValueError("is not HH:MM, 'Sun 04:30' or a systemd OnCalendar expression such as '*-*-* 03:00:00'")


def _check_subset(value: str) -> str:
    if not _CHECK_SUBSET.fullmatch(value):
        raise ValueError("is not 1/N (a different N-th each week), a percentage (5%) or a size (2G)")
    return value


def _key_shape(value: SecretStr) -> SecretStr:
    # Written to the host's restic.env as KEY=VALUE lines: printable, no spaces, no line breaks.
    if not re.fullmatch(r"[!-~]{8,}", value.get_secret_value()):
        raise ValueError("is not a key (8 or more printable characters, no spaces)")
    return value


BackupKey = Annotated[SecretStr, AfterValidator(_real_secret), AfterValidator(_key_shape)]


class BackupConfig(Model):
    """restic backups (issue: Backups): on for every stack, one encrypted repository per client.

    The repository password is generated (pulumi-random) unless `password` adopts an existing repository;
    it is the one key to keep outside the server. restic encrypts everything with it (AES-256).
    """

    enabled: bool = Field(True, json_schema_extra={"example": "false"})
    repository: Annotated[str, AfterValidator(_repository)] | None = Field(
        None,
        json_schema_extra={"example": "s3:https://s3.eu-central-003.backblazeb2.com/acme-backups/clientea"},
    )
    # Backblaze application key (applicationKeyId + applicationKey), restricted to the repository's bucket.
    key_id: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' 003a1b2c3d4e5f60000000001"}
    )
    application_key: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' K003abcdefghijklmnopqrstuvwxyz12"}
    )
    # Only to reuse an existing repository in a new stack (its old state lost); otherwise generated.
    password: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' <the repository password kept offline>"}
    )
    # Daily, in the stack's time zone (HH:MM), or any systemd OnCalendar expression.
    schedule: Annotated[str, AfterValidator(_calendar)] = Field(
        "03:00", json_schema_extra={"example": "01:30"}
    )
    check_schedule: Annotated[str, AfterValidator(_calendar)] = Field(
        "Sun 04:30", json_schema_extra={"example": "'Sat 05:00'"}
    )
    # The seed's 7 days / 30 days / 12 months: 7 dailies, 5 weeklies (about a month), 12 monthlies.
    keep_daily: int = Field(7, ge=1, le=3660, json_schema_extra={"example": "7"})
    keep_weekly: int = Field(5, ge=0, le=520, json_schema_extra={"example": "5"})
    keep_monthly: int = Field(12, ge=0, le=1200, json_schema_extra={"example": "12"})
    # `1/N`: a different N-th of the data each week (all of it every N weeks); or `X%`, or a size (`2G`).
    check_subset: Annotated[str, AfterValidator(_check_subset)] = Field(
        "1/8", json_schema_extra={"example": "1/4"}
    )
    # The newest complete snapshot older than this is an alarm (a day plus a slow run's margin).
    max_age_hours: int = Field(26, ge=1, le=24 * 31, json_schema_extra={"example": "26"})

    @model_validator(mode="after")
    def _repository_and_keys(self) -> BackupConfig:
        if not self.enabled:
            return self
        problems = []
        if self.repository is None:
            problems.append(
                "repository: backups are on for every stack and need a repository; fix: pulumi config set "
                "--path 'versatilehub:backup.repository' "
                "s3:https://s3.<region>.backblazeb2.com/<bucket>/<client> "
                "(or, for a lab only: pulumi config set --path 'versatilehub:backup.enabled' false)"
            )
        elif self.repository_kind == "local":
            for field, name in (("key_id", "keyId"), ("application_key", "applicationKey")):
                if getattr(self, field) is not None:
                    problems.append(f"{name}: a local repository takes no key; remove it")
        else:
            kind = self.repository_kind
            needs = f"{kind}: repositories need a Backblaze application key limited to the bucket"
            if self.key_id is None:
                problems.append(f"keyId: {needs} (its keyID)")
            if self.application_key is None:
                problems.append(f"applicationKey: {needs} (the applicationKey)")
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @property
    def repository_kind(self) -> Literal["s3", "b2", "local"]:
        repository = self.repository or ""
        return "s3" if repository.startswith("s3:") else "b2" if repository.startswith("b2:") else "local"

    def key_env(self) -> tuple[str, str] | None:
        """restic's variables for the key id and the key of this kind of repository."""
        return {
            "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "b2": ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"),
        }.get(self.repository_kind)

    def forget_args(self) -> list[str]:
        keep = {"daily": self.keep_daily, "weekly": self.keep_weekly, "monthly": self.keep_monthly}
        return [f"--keep-{period}={count}" for period, count in keep.items() if count]

    @staticmethod
    def on_calendar(value: str, timezone: str) -> str:
        """A systemd OnCalendar= expression; the short forms run in the stack's time zone."""
        if _CLOCK.fullmatch(value):
            return f"*-*-* {value}:00 {timezone}"
        weekly = _WEEKLY.fullmatch(value)
        if weekly and _CLOCK.fullmatch(weekly["clock"]):
            return f"{weekly['days']} *-*-* {weekly['clock']}:00 {timezone}"
        return value


# ---------------------------------------------------------------------------------------------------
# Operating the stack: the post-deploy verification and the client portal
# ---------------------------------------------------------------------------------------------------

BudgetMs = Annotated[int, Field(ge=100, le=60_000)]


class VerifyConfig(Model):
    """The probe `pulumi up` runs once the services are up: every public hostname, from the host itself."""

    enabled: bool = Field(True, json_schema_extra={"example": "false"})
    # The seed's "endpoints answer in under 2 s", per request (the median of three once healthy).
    budget_ms: BudgetMs = Field(2000, json_schema_extra={"example": "3000"})
    service_budget_ms: dict[Service, BudgetMs] = Field(
        default_factory=dict, json_schema_extra={"example": "4000"}
    )
    # How long a freshly (re)created service may take to answer before the update fails.
    wait_seconds: int = Field(300, ge=10, le=3600, json_schema_extra={"example": "600"})
    # Off by default: before DNS points here (or with the staging CA) certificates cannot be trusted yet.
    trusted_tls: bool = Field(False, json_schema_extra={"example": "true"})

    def budget(self, service: str) -> int:
        return self.service_budget_ms.get(service, self.budget_ms)  # type: ignore[call-overload]


class PortalConfig(Model):
    """The client's landing page (mode `suite`): its name and links to its services; also the catch-all."""

    # Empty: the base domain. Add www.<domain> only if its DNS points here (else its certificate fails).
    hostnames: list[Hostname] = Field(default_factory=list, json_schema_extra={"example": "www.cliente.com"})


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
        elif (
            typing.get_origin(current) is dict
        ):  # a free-form key (`resources.hub-backend`): step into the value
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
        if loc and loc[-1] == "[key]":  # a dict key outside its allowed set (`hostnames.hubb`)
            lines.append(_bad_key_line(loc[:-1], err))
        elif err["type"] == "missing":
            lines.append(f"{_stack_key(loc)} is required; {_fix_hint(loc)}")
        elif err["type"] == "extra_forbidden":
            lines.append(
                f"{_stack_key(loc)} is not a known key{_suggest(loc)}; "
                f"remove it: pulumi config rm --path '{_stack_key(loc)}'"
            )
        elif (
            _is_mapping(loc) and isinstance(err.get("input"), dict) and msg.split(": ", 1)[0] in err["input"]
        ):
            # A check over a map's entries (`versions`, `resources`): each item names its entry's key.
            for item in msg.split(" | "):
                entry, _, text = item.partition(": ")
                fix = "" if "; fix: " in text else f"; {_fix_hint((*loc, entry))}"
                sep = " " if text.startswith("is not ") else ": "
                lines.append(f"{_stack_key((*loc, entry))}{sep}{text}{fix}")
        elif "| " in msg or re.split(r"[.\[]", msg.split(": ", 1)[0])[0] in _field_names(loc):
            # A model's cross-field check: each item starts with the key it is about.
            for item in msg.split(" | "):
                field, _, text = item.partition(": ")
                sub = (*loc, *field.split("."))
                # A check that knows the exact fix says so itself ("...; fix: ..."); else the example's.
                fix = "" if "; fix: " in text else f"; {_fix_hint(sub)}"
                lines.append(f"{_stack_key(sub)}: {text}{fix}")
        else:
            secret = "secret" in err["type"] or _holds_secret(_field_at(loc))
            shown = "" if secret else _short(err.get("input"))
            text, _, exact = msg.partition("; fix: ")  # a check that knows the exact fix says so itself
            fix = f"fix: {exact}" if exact else _fix_hint(loc)
            lines.append(f"{_stack_key(loc)}: {text}{'' if exact else shown}; {fix}")
    return lines


def _is_mapping(loc: tuple[Any, ...]) -> bool:
    info = _field_at(loc)
    return info is not None and typing.get_origin(info.annotation) is dict


def _bad_key_line(loc: tuple[Any, ...], err: Any) -> str:
    """`hostnames.hubb`: the key is not one of the allowed ones; the fix moves its value to the closest."""
    bad = str(loc[-1])
    choices = re.findall(r"'([^']+)'", str(err.get("ctx", {}).get("expected", "")))
    hint = difflib.get_close_matches(bad, choices, n=1)
    parent = _stack_key(loc[:-1])
    target = f"{parent}.{hint[0] if hint else '<' + '|'.join(choices) + '>'}"
    return (
        f"{_stack_key(loc)} is not a known key"
        + (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(choices)}")
        + f"; fix: pulumi config rm --path '{_stack_key(loc)}', "
        f"then pulumi config set --path '{target}' <value>"
    )


def _field_names(loc: tuple[Any, ...]) -> set[str]:
    info = _field_at(loc)
    model = SuiteConfig if not loc else (info.annotation if info is not None else None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {f.alias or n for n, f in model.model_fields.items()}
    return set()


def _holds_secret(info: Any) -> bool:
    """Whether a field (FieldInfo, or a type) holds a credential: its value is never echoed."""
    annotation = info.annotation if hasattr(info, "annotation") else info
    return annotation is SecretStr or any(_holds_secret(arg) for arg in typing.get_args(annotation))


@functools.cache  # the models never change: walk them once per process
def _credential_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    """Stack key paths of every credential inside a structured key (`agent.providerKeys.anthropic`)."""
    paths = []
    for name, info in model.model_fields.items():
        path = (*prefix, info.alias or name)
        if _holds_secret(info):
            paths.append(path)
            continue
        if typing.get_origin(info.annotation) in (dict, list):
            continue  # free-form keys and lists: their stack paths are not field names
        for candidate in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths.extend(_credential_paths(candidate, path))
    return tuple(paths)


def _plain_credentials(key: str, value: Any) -> list[str]:
    """A structured key that holds credentials but was not stored with --secret: one line per credential.

    Pulumi marks a whole structured key secret when any of its leaves is `secure:`, so a plain-text leaf
    beside an encrypted one cannot be seen from here; a key whose credentials are all plain always is.
    """
    problems = []
    for path in _credential_paths(SuiteConfig):
        if len(path) < 2 or path[0] != key:
            continue  # top-level secrets are SECRET_KEYS' business
        leaf: Any = value
        for part in path[1:]:
            leaf = leaf.get(part) if isinstance(leaf, dict) else None
        if leaf not in (None, ""):
            stack_key = f"{NAMESPACE}:{'.'.join(path)}"
            problems.append(
                f"{stack_key} is stored in plain text; store it encrypted: "
                f"pulumi config set --secret --path '{stack_key}' <value>"
            )
    return problems


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
        if key not in secret_keys:
            problems.extend(_plain_credentials(key, data[key]))
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
