"""The Hub's post-deploy checks (issue 15, item 10) run by the real verification script against a
stand-in Frappe on loopback that fails each way: login refused, socket.io CONNECT refused, no Company.

The stand-in answers as the pinned Frappe does: POST /api/method/login (frappe/auth.py LoginManager:
{"message": "Logged In"} and a `sid` cookie, 401 otherwise), GET /api/method/frappe.auth.get_logged_user,
GET /api/resource/Company?filters=..., and Engine.IO 4 polling on /socket.io/ with Frappe's middleware
answering the namespace CONNECT with 40 (accepted) or 44 (CONNECT_ERROR, realtime/middlewares/
authenticate.js `next(new Error("Unauthorized: ..."))`)."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from components.core.host import PREAMBLE
from components.edge import verify
from components.services.hub import component as hub
from tests.conftest import PlanFn
from tools import harness

PASSWORD = "Gen3ratedAdminPassw0rd"
SITE = "erp.clientea.com"
COMPANY = 'Cliente "A" S.A.'


class StandIn(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    seen: list[str]

    def _send(self, code: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def frappe() -> Iterator[tuple[str, type[StandIn]]]:
    handler = type("Handler", (StandIn,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


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


def run(checks: list[verify.ServiceCheck], env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    text = PREAMBLE + verify.script([], wait_seconds=1, trusted_tls=False, checks=checks)
    text = text.replace("sleep 5", "sleep 0.2")
    done = subprocess.run(
        ["/bin/bash", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    return done.returncode, verify.parse_report(done.stdout), done.stderr


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
    rc, report, err = run(hub_checks(planned, base), environment(planned))
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
    rc, report, err = run(hub_checks(planned, base), environment(planned))
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
    text = PREAMBLE + verify.script([], wait_seconds=1, trusted_tls=False, checks=hub_checks(planned, base))
    done = subprocess.run(
        ["/bin/bash", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    argv = log.read_text()
    assert "/api/method/login" in argv and PASSWORD not in argv


def test_standalone_checks_go_to_the_loopback_port(plan: PlanFn) -> None:
    p = plan(["hub"], mode="standalone", standalonePort=8081, acmeEmail=None)
    script = harness.plain(p.get("command:local:Command", "verify-endpoints").inputs)["create"]
    for name in hub.PROBES:
        assert f"check {name} http://127.0.0.1:8081 ''" in script
