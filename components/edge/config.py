"""The edge's settings: the server's `web` network, Traefik, the client portal and the post-deploy probe."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from components.core.model import Hostname, Model, Service


class WebNetworkConfig(Model):
    """The server's external `web` network: created by the first stack on a server, adopted by the rest."""

    name: str = Field(
        "web", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", json_schema_extra={"example": "web"}
    )
    create: bool = Field(True, json_schema_extra={"example": "false"})


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
