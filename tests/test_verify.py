"""Verification as part of `pulumi up`: what the stack declares, and the probe script run for real.

The plan tests check the step the program registers (endpoints, ordering, triggers, no secrets). The
script tests run the generated bash with the real curl against HTTPS servers on loopback: a healthy one,
a failing one, a slow one, one that answers 200 to anything, one with an untrusted or a trusted
certificate, and no server at all.
"""

from __future__ import annotations

import http.server
import json
import shlex
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core.host import PREAMBLE
from components.core.probe import Check
from components.edge import verify
from tests import probe_stand_in
from tests.conftest import PlanFn, make_stack
from tools import harness

ALL = ["hub", "chat", "flow", "agent"]
COMMAND = "command:local:Command"


def area(r: harness.PlannedResource) -> str:
    """The area of the nearest component (`versatilehub:<area>:<Name>`) a resource belongs to."""
    chain = [t for t in r.urn.split("::")[2].split("$") if t.startswith("versatilehub:")]
    return chain[-1].split(":")[1] if chain else ""


def step(p: harness.Plan) -> harness.PlannedResource:
    return p.get(COMMAND, "verify-endpoints")


def probe_calls(p: harness.Plan) -> list[list[str]]:
    """The `probe name url resolve expect budget body` lines of the script, split as bash would."""
    script = harness.plain(step(p).inputs)["create"]
    return [shlex.split(line)[1:] for line in script.splitlines() if line.startswith("probe ")]


# -- what the stack declares -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full() -> harness.Plan:
    return harness.run(make_stack(ALL, traefik={"dashboard": True}, hostnames={"hub": "erp.clientea.com"}))


def test_every_public_hostname_is_probed_over_https_through_loopback(full: harness.Plan) -> None:
    p = full
    calls = {c[0] + " " + c[1]: c for c in probe_calls(p)}
    assert set(calls) == {
        "hub https://erp.clientea.com/api/method/ping",
        "chat https://chat.clientea.com/api",
        "flow https://flow.clientea.com/healthz/readiness",
        f"agent https://agent.clientea.com{harness.plain(p.outputs)['agent']['healthPath']}",
        "portal https://clientea.com/",
        "dashboard https://traefik.clientea.com/dashboard/",
    }
    for _name, url, resolve, _expect, budget, _body in calls.values():
        host = url.split("/")[2]
        assert resolve == f"{host}:443:127.0.0.1", "works before DNS points at the server"
        assert budget == "2000"
    assert calls["dashboard https://traefik.clientea.com/dashboard/"][3] == "401", "anonymous must be refused"
    assert calls["portal https://clientea.com/"][3] == "200"
    assert calls["hub https://erp.clientea.com/api/method/ping"][3] == "2??"
    # The agent's UI answers 200 to any path: its probe also checks the body.
    assert next(c for c in calls.values() if c[0] == "agent")[5]


def test_the_step_runs_after_every_container_and_setup_step_and_reruns_when_one_is_replaced(
    full: harness.Plan,
) -> None:
    p = full
    s = step(p)
    containers = p.containers()
    # Every setup step, migration and pre-update backup of the services and the edge (the backup
    # schedule is not theirs: the probe need not wait for a first snapshot).
    areas = {"edge", *ALL}
    others = [r for r in p.of_type(COMMAND) if r is not s and area(r) in areas]
    assert containers and {area(r) for r in others} == areas
    missing = [r.name for r in [*containers, *others] if r.urn not in s.dependencies]
    assert not missing, f"verification does not wait for {missing}"
    # Its triggers are the containers' ids (the mocks make them "<logical name>-<hash>"): a replaced
    # container has a new id, so the probe runs again after any update that touched one.
    triggers = harness.plain(s.inputs)["triggers"]
    assert len(triggers) == len(set(triggers)) == len(containers)
    assert sorted(t.rsplit("-", 1)[0] for t in triggers) == sorted(c.name for c in containers)


def test_the_step_carries_secrets_only_in_its_environment_and_streams_its_progress(
    full: harness.Plan,
) -> None:
    s = step(full)
    assert not harness.contains_secret({k: v for k, v in s.inputs.items() if k != "environment"})
    # The services' checks' values (the Hub's: its site, company and Administrator password; Flow's owner,
    # tests/test_probe_flow_agent.py), VH_ only.
    assert set(s.inputs.get("environment", {})) <= {
        "VH_HUB_SITE",
        "VH_HUB_COMPANY",
        "VH_HUB_ADMIN_PASSWORD",
        "VH_FLOW_OWNER_EMAIL",
        "VH_FLOW_OWNER_PASSWORD",
    }
    # With a secret in its environment only stderr streams (the `verify:` lines, masked); the report on
    # stdout is still the step's recorded output.
    assert s.inputs["logging"] == ("stderr" if "environment" in s.inputs else "stdoutAndStderr")


def test_results_are_a_stack_output_and_endpoints_are_listed(plan: PlanFn) -> None:
    out = harness.plain(plan(["flow"]).outputs)["verification"]
    assert out["endpoints"] == {
        "flow": ["https://flow.clientea.com/healthz/readiness"],
        "portal": ["https://clientea.com/"],
    }
    assert out["lastRun"] == {}, "a plan has not run the probe"
    assert not harness.contains_secret(plan(["flow"]).outputs["verification"])


def test_standalone_probes_the_loopback_port_over_http(plan: PlanFn) -> None:
    p = plan(["flow"], mode="standalone", standalonePort=15678, acmeEmail=None)
    (call,) = probe_calls(p)
    assert call[:4] == ["flow", "http://127.0.0.1:15678/healthz/readiness", "", "2??"]


def test_attach_probes_its_services_but_no_portal_or_dashboard(plan: PlanFn) -> None:
    p = plan(["flow"], mode="attach", webNetwork={"create": False})
    assert [c[0] for c in probe_calls(p)] == ["flow"]


def test_budgets_and_waiting_come_from_the_stack(plan: PlanFn) -> None:
    p = plan(["hub", "flow"], verify={"budgetMs": 1500, "serviceBudgetMs": {"hub": 4000}, "waitSeconds": 900})
    budgets = {c[0]: c[4] for c in probe_calls(p)}
    assert budgets == {"hub": "4000", "flow": "1500", "portal": "1500"}
    script = harness.plain(step(p).inputs)["create"]
    assert "wait_seconds=900\n" in script and "trusted_tls=0\n" in script
    assert (
        "trusted_tls=1\n" in harness.plain(step(plan(["flow"], verify={"trustedTls": True})).inputs)["create"]
    )


def test_verification_can_be_turned_off(plan: PlanFn) -> None:
    p = plan(["flow"], verify={"enabled": False})
    assert "verify-endpoints" not in [r.name for r in p.resources]
    assert "verification" not in p.outputs


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"verify": {"serviceBudgetMs": {"chat": 3000}}},
            "versatilehub:verify.serviceBudgetMs.chat: chat is not",
        ),
        (
            {"verify": {"budgetMs": 50}},
            "versatilehub:verify.budgetMs: Input should be greater than or equal to 100",
        ),
        (
            {"verify": {"trustedTls": True}, "traefik": {"acmeStaging": True}},
            "versatilehub:verify.trustedTls: certificates from Let's Encrypt's staging CA are never trusted",
        ),
        (
            {"verify": {"budget": 3000}},
            "versatilehub:verify.budget is not a known key (did you mean 'budgetMs'?)",
        ),
    ],
)
def test_bad_verify_settings_are_one_line_each(
    config_problems: Callable[..., list[str]], overrides: dict[str, Any], expected: str
) -> None:
    (line,) = config_problems(["flow"], **overrides)
    assert line.startswith(expected), line


# -- the script, run for real ------------------------------------------------------------------------

HOSTS = ["hub.example.test", "agent.example.test", "portal.example.test"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate it signed for the test hostnames (openssl, as on any Debian host)."""
    d = tmp_path_factory.mktemp("tls")
    san = ",".join(f"DNS:{h}" for h in HOSTS)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=verify test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        f"/CN={HOSTS[0]}",
    )
    (d / "ext.cnf").write_text(f"subjectAltName={san}\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path: what each kind of endpoint would say."""

    def do_GET(self) -> None:
        status, body = {
            "/api/method/ping": (200, b'{"message":"pong"}'),
            "/healthz": (200, b'{"ok":true,"status":"live"}'),
            "/ui-anything": (200, b"<!doctype html><title>Control UI</title>"),
            "/broken": (502, b"Bad Gateway"),
            "/dashboard/": (401, b"401 Unauthorized"),
            "/": (200, b"<h1>portal</h1>"),
        }.get(self.path.split("?")[0], (404, b"404 page not found"))
        if self.path.startswith("/slow"):
            time.sleep(0.25)
            status, body = 200, b"slow"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(certs: Path) -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture(scope="module")
def plain_server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def https(
    port: int, host: str, path: str, expect: str = "2??", budget: int = 2000, body: str = ""
) -> verify.Probe:
    return verify.Probe(
        host.split(".")[0], f"https://{host}:{port}{path}", f"{host}:{port}:127.0.0.1", expect, budget, body
    )


def run_script(
    probes: list[verify.Probe], *, wait: int = 10, trusted: bool = False, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    text = PREAMBLE + verify.script(probes, wait_seconds=wait, trusted_tls=trusted)
    # Retries sleep 5 s in production; the failing cases here give up after a single short wait.
    text = text.replace("sleep 5", "sleep 0.2")
    done = subprocess.run(
        ["/bin/bash", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else {"PATH": "/usr/bin:/bin"},
    )
    report = verify.parse_report(done.stdout)
    return done.returncode, report, done.stderr


def test_healthy_endpoints_pass_and_report_status_latency_and_certificate_trust(server: int) -> None:
    rc, report, err = run_script(
        [
            https(server, "hub.example.test", "/api/method/ping"),
            https(server, "agent.example.test", "/healthz", body='"ok":true'),
            https(server, "portal.example.test", "/", expect="200"),
        ]
    )
    assert rc == 0, err
    assert report["ok"] is True and report["checkedAt"].endswith("Z")
    by_name = {e["name"]: e for e in report["endpoints"]}
    assert set(by_name) == {"hub", "agent", "portal"}
    for e in by_name.values():
        assert e["status"] == 200 and e["result"] == "ok" and 0 <= e["latencyMs"] < 2000
        assert e["budgetMs"] == 2000
        # The test CA is not in the host's trust store: recorded, and probed anyway (it is loopback).
        assert e["tls"] == "untrusted"


def test_a_trusted_certificate_is_recorded_as_trusted_and_can_be_required(server: int, certs: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CURL_CA_BUNDLE": str(certs / "ca.pem")}
    rc, report, err = run_script(
        [https(server, "hub.example.test", "/api/method/ping")], trusted=True, env=env
    )
    assert rc == 0, err
    assert report["endpoints"][0]["tls"] == "trusted"
    # Required but not trusted (no CA given): the update fails and says why.
    rc, report, err = run_script(
        [https(server, "hub.example.test", "/api/method/ping")], wait=1, trusted=True
    )
    assert rc == 1 and report["ok"] is False
    assert report["endpoints"][0]["result"] == "untrusted"
    assert "verify: hub https://hub.example.test" in err and "does not trust" in err


def test_an_unhealthy_service_fails_the_update_with_one_clear_line(server: int) -> None:
    rc, report, err = run_script(
        [
            https(server, "hub.example.test", "/api/method/ping"),
            https(server, "agent.example.test", "/broken"),
        ],
        wait=1,
    )
    assert rc == 1
    assert [e["result"] for e in report["endpoints"]] == ["ok", "down"]
    assert report["endpoints"][1]["status"] == 502
    lines = [line for line in err.splitlines() if line.startswith("verify: agent ")]
    assert len(lines) == 1
    assert "the last was 502" in lines[0] and "expected 2xx" in lines[0]
    assert "verify: 1 of 2 endpoints and checks failed" in err


def test_a_200_from_the_wrong_app_is_not_health(server: int) -> None:
    rc, report, err = run_script(
        [https(server, "agent.example.test", "/ui-anything", body='"ok":true')], wait=1
    )
    assert rc == 1 and report["endpoints"][0]["result"] == "down"
    assert 'its body lacks "ok":true' in err


def test_a_slow_service_fails_its_budget(server: int) -> None:
    rc, report, err = run_script([https(server, "hub.example.test", "/slow", budget=100)])
    assert rc == 1
    (e,) = report["endpoints"]
    assert e["result"] == "slow" and e["latencyMs"] >= 250 and e["budgetMs"] == 100
    assert "median of 3), over its 100 ms budget" in err


def test_the_dashboard_must_refuse_anonymous_requests(server: int) -> None:
    rc, _, err = run_script([https(server, "portal.example.test", "/dashboard/", expect="401")])
    assert rc == 0, err
    rc, _, err = run_script([https(server, "portal.example.test", "/", expect="401")], wait=1)
    assert rc == 1 and "the last was 200" in err and "expected 401" in err


def test_nothing_listening_is_reported_as_no_http_response() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, report, err = run_script([https(port, "hub.example.test", "/api/method/ping")], wait=1)
    assert rc == 1 and report["endpoints"][0]["status"] == 0
    assert "the last was no HTTP response (curl: (7)" in err


def test_standalone_plain_http_probe(plain_server: int) -> None:
    probe = verify.Probe("flow", f"http://127.0.0.1:{plain_server}/healthz", "", "2??", 2000, '"ok":true')
    rc, report, err = run_script([probe])
    assert rc == 0, err
    assert report["endpoints"][0]["tls"] == "none"


def test_a_host_without_curl_gets_told_how_to_fix_it(tmp_path: Path) -> None:
    rc, report, err = run_script([https(1, "hub.example.test", "/")], env={"PATH": str(tmp_path)})
    assert rc == 1 and report == {}
    assert "curl is not installed on the host: apt-get install -y curl" in err


def test_the_script_refuses_values_that_would_break_bash_or_json() -> None:
    with pytest.raises(AssertionError):
        verify.script(
            [verify.Probe("hub", "https://x.test/$(reboot)", "", "2??", 2000)],
            wait_seconds=10,
            trusted_tls=False,
        )


def test_report_parsing_takes_the_last_json_line() -> None:
    assert verify.parse_report("") == {}
    assert verify.parse_report('noise\n{"ok":true,"endpoints":[]}\n') == {"ok": True, "endpoints": []}


# -- the services' deeper checks (components/core/probe.py) ----------------------------------------


def service_check(name: str, body: str, port: int, **secret_env: str) -> verify.ServiceCheck:
    base = f"https://hub.example.test:{port}"
    check = Check(name, body, secret_env=dict.fromkeys(secret_env, "unused"))
    return verify.ServiceCheck(check, base, f"hub.example.test:{port}:127.0.0.1")


def run_checks(
    checks: list[verify.ServiceCheck], secrets: dict[str, str] | None = None, wait: int = 1
) -> tuple[int, dict[str, Any], str]:
    return probe_stand_in.run_checks(checks, secrets or {}, wait=wait)


def test_a_check_reaches_its_service_through_the_pinned_route_and_passes(server: int) -> None:
    body = 'vh_curl "$1/api/method/ping" | grep -q pong\n[[ $VH_BASE_URL == "$1" ]]\n'
    rc, report, err = run_checks([service_check("hub-ping", body, server)])
    assert rc == 0, err
    assert report["checks"] == [{"name": "hub-ping", "result": "ok", "problem": ""}]


def test_a_failing_check_fails_the_update_naming_what_failed_and_masks_secrets(server: int) -> None:
    body = (
        'echo "stdout is discarded: $VH_HUB_PASSWORD"\n'
        'vh_curl "$1/broken" -o /dev/null -w "%{http_code}" | grep -q 200 ||'
        ' { echo "login as Administrator refused (password $VH_HUB_PASSWORD)" >&2; exit 1; }\n'
    )
    check = service_check("hub-login", body, server, VH_HUB_PASSWORD="")
    rc, report, err = run_checks([check], secrets={"VH_HUB_PASSWORD": "s3cr3t-Value"})
    assert rc == 1 and report["ok"] is False
    (entry,) = report["checks"]
    assert entry["result"] == "failed"
    assert entry["problem"] == "login as Administrator refused (password ***)"
    assert "verify: hub-login: login as Administrator refused (password ***)" in err
    assert "s3cr3t-Value" not in err + json.dumps(report)
    assert "verify: 1 of 1 endpoints and checks failed" in err


def test_a_check_is_retried_until_the_deadline(server: int, tmp_path: Path) -> None:
    marker = tmp_path / "tries"
    body = f'echo x >> {marker}\n(( $(wc -l < {marker}) >= 3 )) || {{ echo "not yet" >&2; exit 1; }}\n'
    rc, _, err = run_checks([service_check("hub-slow", body, server)], wait=5)
    assert rc == 0, err
    assert marker.read_text().count("x") == 3


def test_a_silent_failure_still_says_which_check(server: int) -> None:
    rc, _, err = run_checks([service_check("hub-quiet", "false\n", server)])
    assert rc == 1 and "verify: hub-quiet: failed and said nothing on stderr" in err


def test_check_names_and_environment_names_are_refused_when_unsafe() -> None:
    with pytest.raises(ValueError, match="lowercase words"):
        Check("Hub Login; reboot", "true")
    with pytest.raises(ValueError, match="must be VH_<NAME>"):
        Check("hub-login", "true", secret_env={"PATH": "x"})


def test_a_service_check_reaches_the_plan_with_its_secret_in_the_environment_only(
    plan: PlanFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.services.hub.component import Hub

    original = Hub.__init__

    def with_check(self: Hub, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.checks = [Check("hub-login", 'vh_curl "$1/" >/dev/null\n', secret_env={"VH_HUB_PW": "pw-42"})]

    monkeypatch.setattr(Hub, "__init__", with_check)
    p = plan(["hub"])
    s = p.get(COMMAND, "verify-endpoints")
    inputs = harness.plain(s.inputs)
    assert "check hub-login https://" in inputs["create"]
    assert "pw-42" not in inputs["create"]
    assert inputs["environment"]["VH_HUB_PW"] == "pw-42"
    assert harness.is_secret(s.inputs["environment"]["VH_HUB_PW"])
