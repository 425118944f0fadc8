"""The Hub's section of the stack file (`versatilehub:hub.*`): the client's ERPNext site and company."""

from __future__ import annotations

import datetime
import re
from typing import Annotated

import pycountry
from pydantic import (
    AfterValidator,
    Field,
)

from components.core.model import Hostname, Model, printable


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
    chart_of_accounts: Annotated[str, AfterValidator(printable)] = Field(
        "Standard", min_length=1, max_length=140, json_schema_extra={"example": '"Standard with Numbers"'}
    )
    fiscal_year_start: Annotated[str, AfterValidator(_month_day)] = Field(
        "01-01", json_schema_extra={"example": "04-01"}
    )

    # The largest request body (an upload, an import) nginx accepts, in MB: frappe_docker's
    # CLIENT_MAX_BODY_SIZE (default 50m). Bodies over 16 KB are buffered on disk (`hub/nginx-tmp`).
    max_upload_mb: int = Field(50, ge=1, le=1024, json_schema_extra={"example": "100"})

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
