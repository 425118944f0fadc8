"""Chat's post-deploy checks (issue 16, Probe and items 4 and 11) run by the real verification script
against a stand-in Chatwoot on loopback that fails each way.

The stand-in answers as Chatwoot v4.18.0 does: GET /api (app/controllers/api_controller.rb: 200 with
`"data_services"` and `"queue_services"` "ok" or "failing"), POST /auth/sign_in (devise_token_auth: 200
with the user's `account_id` in `data` and the session in the access-token/client/uid headers, 401 for a
wrong password), GET /api/v1/accounts/<id>/inboxes (the inbox JSON carries `website_url` and
`website_token` for a Channel::WebWidget) and GET /widget?website_token=... (WidgetsController's
allow_iframe_requests deletes X-Frame-Options; the "framed" mode is a router adding it back)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from components.core.probe import Check
from components.edge import verify
from components.services.chat import component as chat
from tests.probe_stand_in import StandIn, run_checks, serving
from tools import harness

PASSWORD = "Gen3rated!Chat#Passw0rd"
ADMIN = "soporte@clientea.com"
SITE = "https://www.clientea.com"
TOKEN = "w1dg3tT0ken"
SESSION = {"access-token": "4ccess", "client": "cl1ent", "uid": ADMIN}


class Chatwoot(StandIn):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.seen.append(f"POST {self.path}")
        if self.path == "/auth/sign_in":
            form = json.loads(body)
            if form == {"email": ADMIN, "password": PASSWORD} and self.mode != "login":
                user = {"data": {"id": 1, "email": ADMIN, "account_id": 7, "accounts": [{"id": 7}]}}
                self._send(200, json.dumps(user), SESSION)
            else:
                self._send(401, '{"success":false,"errors":["Invalid login credentials. Please try again."]}')
        else:
            self._send(404, "{}")

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/api":
            if self.mode == "proxy":
                self._send(502, "Bad Gateway")
                return
            data = "failing" if self.mode == "postgres" else "ok"
            queue = "failing" if self.mode == "redis" else "ok"
            answer = {"version": "4.18.0", "timestamp": "2026-12-06 22:00:00", "queue_services": queue}
            self._send(200, json.dumps(answer | {"data_services": data}, separators=(",", ":")))
        elif url.path == "/api/v1/accounts/7/inboxes":
            if any(self.headers.get(k) != v for k, v in SESSION.items()):
                self._send(401, '{"errors":["You need to sign in or sign up before continuing."]}')
                return
            inboxes = [
                {
                    "id": 1,
                    "name": "API",
                    "channel_type": "Channel::Api",
                    "working_hours": [{"day_of_week": 0}],
                },
            ]
            if self.mode != "no-inbox":
                widget = {"id": 2, "name": "www.clientea.com", "channel_type": "Channel::WebWidget"}
                inboxes.append(widget | {"website_url": SITE, "website_token": TOKEN})
            self._send(200, json.dumps({"payload": inboxes}, separators=(",", ":")))
        elif url.path == "/widget":
            if query.get("website_token") != [TOKEN] or self.mode == "widget":
                self._send(404, "<html>The page you were looking for doesn't exist.</html>")
            elif self.mode == "framed":
                self._send(200, "<html>widget</html>", {"X-Frame-Options": "SAMEORIGIN"})
            else:
                self._send(200, "<html>widget</html>", {"X-Content-Type-Options": "nosniff"})
        else:
            self._send(404, "{}")


@pytest.fixture
def chatwoot() -> Iterator[tuple[str, type[Chatwoot]]]:
    with serving(Chatwoot) as served:
        yield served


@pytest.fixture(scope="module")
def planned() -> harness.Plan:
    from tests.conftest import make_stack

    return harness.run(make_stack(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": SITE}))


def step_inputs(p: harness.Plan) -> dict[str, Any]:
    inputs: dict[str, Any] = harness.plain(p.get("command:local:Command", "verify-endpoints").inputs)
    return inputs


def chat_checks(p: harness.Plan, base: str) -> list[verify.ServiceCheck]:
    """Chat's checks as the plan registered them, pointed at the stand-in."""
    script = step_inputs(p)["create"]
    bodies = {"chat-api": chat.PROBE_API, "chat-widget": chat.PROBE_WIDGET}
    assert [name for name in bodies if f"check {name} " in script] == list(bodies)
    return [verify.ServiceCheck(Check(name, body), base, "") for name, body in bodies.items()]


def environment(p: harness.Plan) -> dict[str, str]:
    """The verification step's environment as planned (a placeholder secret), with the stand-in's password."""
    env = dict(step_inputs(p)["environment"])
    assert (env["VH_CHAT_ADMIN_EMAIL"], env["VH_CHAT_WEBSITE"]) == (ADMIN, SITE)
    step = p.get("command:local:Command", "verify-endpoints")
    assert harness.is_secret(step.inputs["environment"]["VH_CHAT_ADMIN_PASSWORD"])
    env["VH_CHAT_ADMIN_PASSWORD"] = PASSWORD
    return env


def test_both_checks_pass_against_a_working_chatwoot(planned: harness.Plan, chatwoot: Any) -> None:
    base, handler = chatwoot
    rc, report, err = run_checks(chat_checks(planned, base), environment(planned))
    assert rc == 0, err
    assert [(c["name"], c["result"]) for c in report["checks"]] == [("chat-api", "ok"), ("chat-widget", "ok")]
    assert f"GET /widget?website_token={TOKEN}" in handler.seen


@pytest.mark.parametrize(
    ("mode", "failed", "line"),
    [
        (
            "postgres",
            "chat-api",
            "reports data_services not ok: Chatwoot cannot reach Postgres (chat-postgres)",
        ),
        ("redis", "chat-api", "reports queue_services not ok: Chatwoot cannot reach Redis (chat-redis)"),
        ("proxy", "chat-api", "/api did not answer 2xx"),
        ("login", "chat-widget", f"sign-in as {ADMIN} with the generated password refused: HTTP 401"),
        ("no-inbox", "chat-widget", f"account 7 has no website inbox for {SITE}"),
        ("widget", "chat-widget", "/widget answered HTTP 404 for https://www.clientea.com's inbox"),
        ("framed", "chat-widget", "/widget carries 'X-Frame-Options: SAMEORIGIN': browsers refuse to show"),
    ],
)
def test_each_failure_names_what_failed_and_no_secret(
    planned: harness.Plan, chatwoot: Any, mode: str, failed: str, line: str
) -> None:
    base, handler = chatwoot
    handler.mode = mode
    rc, report, err = run_checks(chat_checks(planned, base), environment(planned))
    assert rc == 1
    results = {c["name"]: c for c in report["checks"]}
    assert {name for name, c in results.items() if c["result"] != "ok"} == {failed}
    assert line in results[failed]["problem"], results[failed]
    assert f"verify: {failed}: " in err
    assert PASSWORD not in err + json.dumps(report)
    assert SESSION["access-token"] not in err + json.dumps(report)


def test_no_secret_on_a_command_line(planned: harness.Plan, chatwoot: Any, tmp_path: Any) -> None:
    """curl gets the password on stdin and the session headers from a file, never in its argv."""
    assert PASSWORD not in chat.PROBE_WIDGET
    secret = step_inputs(planned)["environment"]["VH_CHAT_ADMIN_PASSWORD"]
    assert secret and secret not in step_inputs(planned)["create"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv"
    (bin_dir / "curl").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\nexec /usr/bin/curl "$@"\n')
    (bin_dir / "curl").chmod(0o755)
    base, _ = chatwoot
    rc, _, err = run_checks(chat_checks(planned, base), environment(planned), path=f"{bin_dir}:/usr/bin:/bin")
    assert rc == 0, err
    argv = log.read_text()
    assert "/auth/sign_in" in argv and PASSWORD not in argv and SESSION["access-token"] not in argv


def test_the_widget_check_comes_with_a_website_inbox_only() -> None:
    from tests.conftest import make_stack

    p = harness.run(make_stack(["chat"], chat={"adminEmail": ADMIN}))
    script = step_inputs(p)["create"]
    assert "check chat-api " in script and "chat-widget" not in script
    assert "VH_CHAT_ADMIN_PASSWORD" not in step_inputs(p).get("environment", {})
