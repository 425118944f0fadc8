"""The monitoring section of the stack file (`versatilehub:monitoring.*`): thresholds and where alerts go.

It depends on core.model only, so components/config.py composes it without importing the component.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, SecretStr

from components.core.model import Model

if TYPE_CHECKING:
    from components.config import SuiteConfig


Percent = Annotated[float, Field(gt=0, le=100)]
_EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("is not an email address such as ops@cliente.com")
    return value.lower()


def _hostname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        raise ValueError("is not a hostname such as smtp.cliente.com")
    return value


class AlertSmtpConfig(Model):
    """Where alert mail goes out (STARTTLS); without it, Chat's SMTP settings are used."""

    address: Annotated[str, AfterValidator(_hostname)] = Field(
        json_schema_extra={"example": "smtp.cliente.com"}
    )
    port: int = Field(587, ge=1, le=65535, json_schema_extra={"example": "587"})
    username: str | None = Field(None, json_schema_extra={"example": "alerts@cliente.com"})
    password: SecretStr | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' <password>"}
    )
    sender: Annotated[str, AfterValidator(_email)] = Field(
        json_schema_extra={"example": "alerts@cliente.com"}
    )


class MonitoringConfig(Model):
    """The collector on the server (issue 19): thresholds (the seed's by default) and where alerts go."""

    enabled: bool = Field(True, json_schema_extra={"example": "false"})
    interval_minutes: int = Field(5, ge=1, le=60, json_schema_extra={"example": "10"})
    # The seed's "CPU under 70%, memory under 80%", per container against its own limits.
    cpu_percent: Percent = Field(70, json_schema_extra={"example": "85"})
    memory_percent: Percent = Field(80, json_schema_extra={"example": "90"})
    host_memory_percent: Percent = Field(80, json_schema_extra={"example": "90"})
    disk_percent: Percent = Field(85, json_schema_extra={"example": "90"})
    # Unset: each endpoint's verify budget (verify.budgetMs, 2 s by default).
    endpoint_ms: int | None = Field(None, ge=100, le=60_000, json_schema_extra={"example": "3000"})
    cert_days: int = Field(14, ge=1, le=90, json_schema_extra={"example": "21"})
    # Unset: backup.maxAgeHours (26 h by default).
    backup_hours: int | None = Field(None, ge=1, le=24 * 31, json_schema_extra={"example": "30"})
    # Where alerts go: a webhook (Slack/Mattermost-style JSON with "text") and/or an email address.
    # A secret (its path is the credential), so its shape is not judged offline: the collector reports a
    # webhook that refuses its messages at every run, on the server's journal.
    webhook_url: SecretStr | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' https://hooks.example.com/T0/B0/x"}
    )
    email: Annotated[str, AfterValidator(_email)] | None = Field(
        None, json_schema_extra={"example": "ops@cliente.com"}
    )
    smtp: AlertSmtpConfig | None = None
    # Who runs the collector: needs read access to the Docker socket (root, or a member of group docker).
    # Unset: the ssh:// user of the host, root for a local one.
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = Field(
        None, json_schema_extra={"example": "deploy"}
    )

    def problems(self, config: SuiteConfig) -> list[str]:
        """Checks that need the rest of the stack: "field: message" (components/config.py prefixes them)."""
        if self.email and self.smtp is None and config.chat.smtp.address is None:
            return [
                "smtp: alert mail to monitoring.email needs an SMTP server; fix: pulumi config set --path "
                "'versatilehub:monitoring.smtp.address' smtp.cliente.com and pulumi config set --path "
                "'versatilehub:monitoring.smtp.sender' alerts@cliente.com (or give Chat's chat.smtp)"
            ]
        return []


# -- on the host -------------------------------------------------------------------------------------
