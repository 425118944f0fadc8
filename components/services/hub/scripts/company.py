import datetime
import json
import os
import sys

import frappe
from frappe.desk.page.setup_wizard.setup_wizard import setup_complete
from frappe.geo.country_info import get_country_info
from frappe.utils import now

want = json.loads(os.environ["HUB_COMPANY"])
frappe.init(want["site"])
frappe.connect()
try:
    if frappe.is_setup_complete():
        print("setup already complete: the company is managed in ERPNext")
        sys.exit(0)
    country = frappe.db.get_value("Country", {"code": want["country"].lower()})
    language = frappe.db.get_value("Language", want["language"], "language_name")
    if not country:
        sys.exit(f"hub.country {want['country']}: this ERPNext has no such country")
    if not language:
        sys.exit(f"hub.language {want['language']}: this ERPNext has no such language")
    currency = want["currency"] or get_country_info(country).get("currency")
    if not currency or not frappe.db.exists("Currency", currency):
        sys.exit(f"hub.currency {currency}: this ERPNext has no such currency")
    today = datetime.date.today()
    month, day = (int(part) for part in want["fiscal_year_start"].split("-"))
    start = datetime.date(today.year, month, day)
    if start > today:
        start = datetime.date(today.year - 1, month, day)
    end = datetime.date(start.year + 1, month, day) - datetime.timedelta(days=1)
    started = now()
    result = setup_complete({
        "language": language,
        "lang": language,
        "country": country,
        "timezone": want["timezone"],
        "currency": currency,
        "company_name": want["company"],
        "company_abbr": want["abbr"],
        "chart_of_accounts": want["chart_of_accounts"],
        "fy_start_date": start.isoformat(),
        "fy_end_date": end.isoformat(),
    })
    if (result or {}).get("status") != "ok":
        sys.exit(f"ERPNext's setup wizard did not finish: {result}")
    frappe.db.commit()
    # The wizard's stages swallow insert errors (make_records logs them and goes on): a status "ok" is no
    # proof that the company or its fiscal year exist.
    missing = [
        what
        for what, doctype, name in (
            (f"the company {want['company']}", "Company", want["company"]),
            (f"a fiscal year from {start}", "Fiscal Year", {"year_start_date": start.isoformat()}),
        )
        if not frappe.db.exists(doctype, name)
    ]
    if missing:
        errors = frappe.get_all(
            "Error Log",
            filters={"creation": (">=", started)},
            fields=["method", "error"],
            order_by="creation desc",
            limit=3,
        )
        for error in reversed(errors):
            print(f"Error Log: {error.get('method')}", file=sys.stderr)
            print("\n".join((error.get("error") or "").splitlines()[-15:]), file=sys.stderr)
        sys.exit(f"ERPNext's setup wizard finished without {' or '.join(missing)}; its errors are above")
    print(f"company {want['company']} ({want['abbr']}): {country}, {currency}, fiscal year from {start}")
finally:
    frappe.destroy()
