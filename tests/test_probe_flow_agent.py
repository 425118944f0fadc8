"""Flow's and Agent's deeper post-deploy checks (issue 16, Probe), run by the real verification script
against local stand-ins of n8n and OpenClaw that answer as the pinned releases do, and fail each way.

Stand-in answers, from the real apps in the lab (tools/lab_apps.py) and their source: n8n 2.41.1
(`/healthz/readiness` -> {"status":"ok"}; `POST /rest/login` with `emailOrLdapLoginId` -> 200 and the user,
401 on a wrong password: dist/controllers/auth.controller.js); openclaw 2026.9.6 (`/readyz`; `POST
/tools/invoke` without a token -> 401: dist/tools-invoke-http-*.mjs). Each test runs in well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from components.core.probe import Check
from components.core.scripts import script
from components.edge import verify
from tests.conftest import PlanFn
from tests.probe_stand_in import StandIn, run_checks, serving
from tools import harness

COMMAND = "command:local:Command"
OWNER, PASSWORD = "owner@example.test", "Right4Password"


class N8nAndOpenClaw(StandIn):
    mode = "ok"  # ok | down | wrong-password | open

    def _answer(self, status: int, body: Any) -> None:
        compact = json.dumps(body, separators=(",", ":"))  # as Express sends it
        self._send(status, compact, {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        if self.path in ("/healthz/readiness", "/readyz"):
            if self.mode == "down":
                self._answer(503, {"status": "error"} if "healthz" in self.path else {"ready": False})
            else:
                self._answer(200, {"status": "ok"} if "healthz" in self.path else {"ready": True})
        else:
            self._answer(404, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/rest/login":
            sent = json.loads(body)
            right = self.mode != "wrong-password" and sent == {
                "emailOrLdapLoginId": OWNER,
                "password": PASSWORD,
            }
            if right:
                self._answer(200, {"data": {"id": "1", "email": OWNER, "role": "global:owner"}})
            else:
                self._answer(401, {"code": 401, "message": "Wrong username or password."})
        elif self.path == "/tools/invoke":
            authorized = self.mode == "open" or self.headers.get("Authorization") == "Bearer t"
            self._answer(200, {"ok": True}) if authorized else self._answer(401, {"error": "Unauthorized"})
        else:
            self._answer(404, {})


@pytest.fixture()
def stand_in() -> Iterator[tuple[int, type[N8nAndOpenClaw]]]:
    with serving(N8nAndOpenClaw) as (base, handler):
        yield int(base.rsplit(":", 1)[1]), handler


def run(check: Check, port: int, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    return run_checks([verify.ServiceCheck(check, f"http://127.0.0.1:{port}", "")], env, wait=0)


def flow_login() -> Check:
    from components.services.flow import component

    return Check(
        "flow-login",
        script(component.__name__, "probe-login.sh"),
        env={"VH_FLOW_OWNER_EMAIL": ""},
        secret_env={"VH_FLOW_OWNER_PASSWORD": ""},
    )


def agent_auth() -> Check:
    from components.services.agent import component

    return Check("agent-auth", script(component.__name__, "probe-auth.sh"))


FLOW_ENV = {"VH_FLOW_OWNER_EMAIL": OWNER, "VH_FLOW_OWNER_PASSWORD": PASSWORD}


def test_flow_login_passes_when_n8n_is_ready_and_the_owner_signs_in(stand_in: Any) -> None:
    port, _ = stand_in
    rc, report, err = run(flow_login(), port, FLOW_ENV)
    assert rc == 0, err
    assert report["checks"] == [{"name": "flow-login", "result": "ok", "problem": ""}]


@pytest.mark.parametrize(
    ("mode", "line"),
    [
        ("down", "verify: flow-login: n8n is not ready: GET /healthz/readiness answered 503"),
        (
            "wrong-password",
            "verify: flow-login: the owner owner@example.test cannot log in: POST /rest/login answered 401",
        ),
    ],
)
def test_flow_login_names_what_failed_and_never_the_password(stand_in: Any, mode: str, line: str) -> None:
    port, handler = stand_in
    handler.mode = mode
    rc, report, err = run(flow_login(), port, FLOW_ENV)
    assert rc == 1 and report["checks"][0]["result"] == "failed"
    assert line in err
    assert PASSWORD not in err + json.dumps(report)


def test_flow_login_reports_nothing_listening() -> None:
    with socket_port() as port:
        rc, _, err = run(flow_login(), port, FLOW_ENV)
    assert rc == 1 and "n8n is not ready: GET /healthz/readiness answered nothing" in err


def test_agent_auth_passes_when_ready_and_an_unauthenticated_call_is_refused(stand_in: Any) -> None:
    port, _ = stand_in
    rc, report, err = run(agent_auth(), port, {})
    assert rc == 0, err
    assert report["checks"] == [{"name": "agent-auth", "result": "ok", "problem": ""}]


@pytest.mark.parametrize(
    ("mode", "line"),
    [
        ("down", "verify: agent-auth: OpenClaw is not ready: GET /readyz answered 503"),
        ("open", "verify: agent-auth: OpenClaw answered 200 to an unauthenticated POST /tools/invoke"),
    ],
)
def test_agent_auth_names_what_failed(stand_in: Any, mode: str, line: str) -> None:
    port, handler = stand_in
    handler.mode = mode
    rc, _, err = run(agent_auth(), port, {})
    assert rc == 1 and line in err


def test_the_stack_runs_both_checks_with_the_owner_password_only_in_the_environment(plan: PlanFn) -> None:
    p = plan(["flow", "agent"])
    s = p.get(COMMAND, "verify-endpoints")
    inputs = harness.plain(s.inputs)
    assert "check flow-login https://flow." in inputs["create"]
    assert "check agent-auth https://agent." in inputs["create"]
    password = inputs["environment"]["VH_FLOW_OWNER_PASSWORD"]
    assert password and password not in inputs["create"]
    assert harness.is_secret(s.inputs["environment"]["VH_FLOW_OWNER_PASSWORD"])
    assert "@" in inputs["environment"]["VH_FLOW_OWNER_EMAIL"]


class socket_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        sock.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass
