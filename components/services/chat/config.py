"""Chat's section of the stack file (`versatilehub:chat.*`): Chatwoot's first admin, locale and mail."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from components.core.model import HOSTNAME_RE, Credential, Email, Hostname, Model, printable

# The enabled entries of the pinned Chatwoot's (v4.18.0) config/initializers/languages.rb, the table behind
# Account#locale and I18n.available_locales: indices 0-43 less the disabled hi (5) and zh (11). One version's
# list, not a union: re-read it with each new chatwoot pin (docs/chat.md says how it was checked).
CHATWOOT_LOCALES = frozenset(
    {
        "en",
        "ar",
        "nl",
        "fr",
        "de",
        "it",
        "ja",
        "ko",
        "pt",
        "ru",
        "es",
        "ml",
        "ca",
        "el",
        "pt_BR",
        "ro",
        "ta",
        "fa",
        "zh_TW",
        "vi",
        "da",
        "tr",
        "cs",
        "fi",
        "id",
        "sv",
        "hu",
        "no",
        "zh_CN",
        "pl",
        "sk",
        "uk",
        "th",
        "lv",
        "is",
        "he",
        "lt",
        "sr",
        "bg",
        "et",
        "uz",
        "sl",
    }
)
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
    if m and HOSTNAME_RE.match(m[1].lower()):
        return f"https://{m[1].lower()}{(m[2] or '').rstrip('/')}"
    raise ValueError("is not an https:// address such as https://www.cliente.com")


# How the connection is encrypted: STARTTLS after a plain greeting (submission, 587; also 25), or TLS from the
# first byte (SMTPS, 465). Chatwoot's config/environments/production.rb (v4.18.0) passes SMTP_TLS/SMTP_SSL as
# the mail gem's `tls`/`ssl` only when set, and SMTP_ENABLE_STARTTLS_AUTO (default true) as
# `enable_starttls_auto`: implicit TLS is SMTP_TLS=true with STARTTLS off.
SMTP_IMPLICIT_TLS_PORT = 465


class ChatSmtpConfig(Model):
    """Chatwoot's outgoing mail (notifications, invitations, password resets), over STARTTLS or TLS (465).

    Without `address` Chatwoot sends no mail at all; the other keys only make sense with it.
    """

    address: Hostname | None = Field(None, json_schema_extra={"example": "smtp.cliente.com"})
    port: int = Field(587, ge=1, le=65535, json_schema_extra={"example": "587"})
    # Follows the port unless given: implicit on 465, starttls on any other port.
    tls: Literal["starttls", "implicit"] | None = Field(None, json_schema_extra={"example": "implicit"})
    username: Annotated[str, Field(min_length=1), AfterValidator(printable)] | None = Field(
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
            # A STARTTLS client on an SMTPS port waits for a greeting that never comes in plain text.
            # (Implicit TLS on another port is the operator's word: some relays offer it on 2465.)
            if self.tls == "starttls" and self.port == SMTP_IMPLICIT_TLS_PORT:
                problems.append(
                    f"tls: port {SMTP_IMPLICIT_TLS_PORT} speaks TLS from the first byte, not STARTTLS; "
                    "set tls to implicit (or use port 587 with starttls)"
                )
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @property
    def implicit_tls(self) -> bool:
        return (self.tls or ("implicit" if self.port == SMTP_IMPLICIT_TLS_PORT else "starttls")) == "implicit"


class ChatConfig(Model):
    """Chatwoot (issue: Chat): its first super admin, its language, mail and, optionally, a website inbox."""

    # Required with chat: the login of the super admin and first account created at deploy time.
    admin_email: Email | None = Field(None, json_schema_extra={"example": "soporte@cliente.com"})
    admin_name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(printable)] = Field(
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
