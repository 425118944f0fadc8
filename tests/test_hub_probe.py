"""The Hub's post-deploy checks (issue 15, item 10) run by the real verification script against a
stand-in Frappe on loopback that fails each way: login refused, socket.io CONNECT refused, no Company.

The stand-in answers as the pinned Frappe does: POST /api/method/login (frappe/auth.py LoginManager:
{"message": "Logged In"} and a `sid` cookie, 401 otherwise), GET /api/method/frappe.auth.get_logged_user,
GET /api/resource/Company?filters=..., and Engine.IO 4 polling on /socket.io/ with Frappe's middleware
answering the namespace CONNECT with 40 (accepted) or 44 (CONNECT_ERROR, realtime/middlewares/
authenticate.js `next(new Error("Unauthorized: ..."))`)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from components.edge import verify
from components.services.hub import component as hub
from tests.conftest import PlanFn
from tests.probe_stand_in import StandIn, run_checks, serving
from tools import harness

PASSWORD = "Gen3ratedAdminPassw0rd"
SITE = "erp.clientea.com"
COMPANY = 'Cliente "A" S.A.'


class Frappe(StandIn):
    def _logged_in(self) -> bool:
        return "sid=s3ssion" in (self.headers.get("Cookie") or "")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.seen.append(f"POST {self.path} {body}")
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/method/login":
            form = urllib.parse.parse_qs(body)
            if (
                form.get("usr") == ["Administrator"]
                and form.get("pwd") == [PASSWORD]
                and self.mode != "login"
            ):
                cookie = "sid=s3ssion; Path=/; HttpOnly"
                self._send(200, '{"message":"Logged In","home_page":"/app"}', {"Set-Cookie": cookie})
            else:
                self._send(401, '{"message":"Invalid Login. Try again."}')
        elif url.path == "/socket.io/":
            ok = body == f"40/{SITE}," and self.mode != "socket-post"
            self._send(200 if ok else 400, "ok" if ok else '{"code":3,"message":"Bad request"}')
        else:
            self._send(404, "{}")

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/api/method/frappe.auth.get_logged_user":
            if self._logged_in():
                self._send(200, '{"message": "Administrator"}')
            else:
                self._send(401, '{"message":"Not permitted"}')
        elif url.path == "/socket.io/":
            if self.mode == "socket-proxy":
                self._send(502, "<html>502 Bad Gateway</html>")
            elif "sid" not in query:
                self._send(200, '0{"sid":"e10","upgrades":["websocket"],"pingInterval":25000}')
            elif self.mode == "socket":
                self._send(200, f'44/{SITE},{{"message":"Unauthorized: TypeError: fetch failed"}}')
            else:
                self._send(200, f'40/{SITE},{{"sid":"n1"}}')
        elif url.path == "/api/resource/Company":
            (filters,) = query["filters"]
            wanted = json.loads(filters)[0][2]
            found = self._logged_in() and wanted == COMPANY and self.mode != "company"
            self._send(200, json.dumps({"data": [{"name": wanted}] if found else []}))
        else:
            self._send(404, "{}")


@pytest.fixture
def frappe() -> Iterator[tuple[str, type[Frappe]]]:
    with serving(Frappe) as served:
        yield served


def hub_checks(p: harness.Plan, base: str) -> list[verify.ServiceCheck]:
    """The Hub's checks as the plan registered them, pointed at the stand-in."""
    inputs = harness.plain(p.get("command:local:Command", "verify-endpoints").inputs)
    script = inputs["create"]
    names = [name for name in hub.PROBES if f"check {name} " in script]
    assert names == list(hub.PROBES)
    from components.core.probe import Check

    return [
        verify.ServiceCheck(
            Check(
                name, hub.PROBE_SESSION + hub.PROBES[name], env={}, secret_env={"VH_HUB_ADMIN_PASSWORD": ""}
            ),
            base,
            "",
        )
        for name in names
    ]


@pytest.fixture(scope="module")
def planned() -> harness.Plan:
    from tests.conftest import make_stack

    return harness.run(make_stack(["hub"], company=COMPANY, hostnames={"hub": SITE}))


def environment(p: harness.Plan) -> dict[str, str]:
    """The verification step's environment as planned (placeholder secrets), with the stand-in's password."""
    env = dict(harness.plain(p.get("command:local:Command", "verify-endpoints").inputs)["environment"])
    assert env["VH_HUB_SITE"] == SITE and env["VH_HUB_COMPANY"] == COMPANY
    assert harness.is_secret(
        p.get("command:local:Command", "verify-endpoints").inputs["environment"]["VH_HUB_ADMIN_PASSWORD"]
    )
    env["VH_HUB_ADMIN_PASSWORD"] = PASSWORD
    return env


def test_every_check_passes_against_a_working_hub(planned: harness.Plan, frappe: Any) -> None:
    base, handler = frappe
    rc, report, err = run_checks(hub_checks(planned, base), environment(planned))
    assert rc == 0, err
    assert [c["result"] for c in report["checks"]] == ["ok", "ok", "ok"]
    assert any(
        line.startswith(f"POST /socket.io/?EIO=4&transport=polling&sid=e10 40/{SITE},")
        for line in handler.seen
    )


@pytest.mark.parametrize(
    ("mode", "failed", "line"),
    [
        ("login", "hub-login", "login as Administrator with the generated password refused: HTTP 401"),
        ("socket", "hub-realtime", "socket.io handshake refused by Frappe's realtime: 44/erp.clientea.com,"),
        ("socket-proxy", "hub-realtime", "socket.io handshake refused: http://127.0.0.1:"),
        ("socket-post", "hub-realtime", "the namespace CONNECT for erp.clientea.com was not accepted"),
        ("company", "hub-company", "no Company named Cliente A S.A. in the site"),  # verify drops quotes
    ],
)
def test_each_failure_names_what_failed_and_no_secret(
    planned: harness.Plan, frappe: Any, mode: str, failed: str, line: str
) -> None:
    base, handler = frappe
    handler.mode = mode
    rc, report, err = run_checks(hub_checks(planned, base), environment(planned))
    assert rc == 1
    results = {c["name"]: c for c in report["checks"]}
    bad = {name for name, c in results.items() if c["result"] != "ok"}
    assert bad == ({"hub-login", "hub-realtime", "hub-company"} if mode == "login" else {failed})
    assert line in results[failed]["problem"], results[failed]
    assert f"verify: {failed}: " in err
    assert PASSWORD not in err + json.dumps(report)


def test_the_password_is_in_no_script_argv_or_label(
    planned: harness.Plan, frappe: Any, tmp_path: Any
) -> None:
    """The step's text holds no secret, and curl gets the password on stdin, not in its argv."""
    step = planned.get("command:local:Command", "verify-endpoints")
    assert "placeholder" not in harness.plain(step.inputs)["create"]
    secret = harness.plain(step.inputs)["environment"]["VH_HUB_ADMIN_PASSWORD"]
    assert secret and secret not in harness.plain(step.inputs)["create"]
    for body in (hub.PROBE_SESSION, *hub.PROBES.values()):
        assert PASSWORD not in body
    # A curl that records its argv: the password never appears there.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv"
    (bin_dir / "curl").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\nexec /usr/bin/curl "$@"\n')
    (bin_dir / "curl").chmod(0o755)
    base, _ = frappe
    env = environment(planned)
    rc, _, err = run_checks(hub_checks(planned, base), env, path=f"{bin_dir}:/usr/bin:/bin")
    assert rc == 0, err
    argv = log.read_text()
    assert "/api/method/login" in argv and PASSWORD not in argv


def test_standalone_checks_go_to_the_loopback_port(plan: PlanFn) -> None:
    p = plan(["hub"], mode="standalone", standalonePort=8081, acmeEmail=None)
    script = harness.plain(p.get("command:local:Command", "verify-endpoints").inputs)["create"]
    for name in hub.PROBES:
        assert f"check {name} http://127.0.0.1:8081 ''" in script
