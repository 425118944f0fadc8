"""Shared field types of the stack file: the Model base, the validators sections reuse, `secret()`.

Every section (a service's, the edge's, backups') is a `Model`: camelCase keys as written in the stack
file, typos rejected. Nothing here imports a section.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SecretStr,
)
from pydantic.alias_generators import to_camel

NAMESPACE = "versatilehub"
# The seed's thresholds: the limits of every container of a stack stay within these shares of its host.

SERVICES = ("agent", "chat", "hub", "flow")
Service = Literal["agent", "chat", "hub", "flow"]

# Values that people paste from examples; never accepted as a credential.
PLACEHOLDER_SECRETS = re.compile(
    r"^(changeme|change-me|change_me|password|passw0rd|secret|admin|root|postgres|test|example|"
    r"xxx+|sk-x+|sk-\.\.\.|your[-_ ]?(api[-_ ]?)?key.*|replace[-_]?me.*|todo|none|null|dummy|placeholder)$",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------------------------------
# Reusable field types
# ---------------------------------------------------------------------------------------------------

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")


def _hostname(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not HOSTNAME_RE.match(value) or value.split(".")[-1].isdigit():
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


def real_secret(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value().strip()
    if not plain:
        raise ValueError("is empty")
    if PLACEHOLDER_SECRETS.match(plain):
        raise ValueError("is a placeholder, not a real credential")
    return value


def printable(value: str) -> str:
    # Names end up in page titles, labels and setup commands: no control characters, no line breaks.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("contains a control character or line break")
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
Email = Annotated[str, AfterValidator(_email)]
Timezone = Annotated[str, AfterValidator(_timezone)]
Credential = Annotated[SecretStr, AfterValidator(real_secret)]


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


def secret(value: SecretStr) -> pulumi.Output[str]:
    """A stack-config secret as a Pulumi secret Output (secret end to end)."""
    return pulumi.Output.secret(value.get_secret_value())
