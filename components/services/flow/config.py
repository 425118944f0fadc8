"""Flow's section of the stack file (`versatilehub:flow.*`): n8n's owner account."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from components.core.model import Email, Model, printable

# n8n's user.firstName / user.lastName columns are varchar(32).
OWNER_NAME_MAX = 32
OwnerName = Annotated[str, Field(min_length=1, max_length=OWNER_NAME_MAX), AfterValidator(printable)]


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
