"""The policy pack: every rule passes real plans and fails a real resource made to break it.

Plans are the real program's (the edge plus every registered service); a violating case mutates a copy
of one planned resource's inputs (the compliance-policies pattern), then runs the pack's real policy
objects through the offline runner, exactly as the engine would call them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel

from components import config as config_model
from components.suite import SERVICE_COMPONENTS
from policies.rules import BY_NAME, POLICIES, anchor, level_name
from policies.rules.base import Resource
from policies.rules.model import DATA_STORE_IMAGES, Container, ImageRef
from policies.rules.runtime import DEFAULT_HOST_MEMORY_MB
from tests.conftest import BASE_STACK, SERVICE_STACK, make_stack
from tools import harness
from tools import plan as plan_tool
from tools import policy as runner

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5wH6nJ8o2b9ZbqfZ3sK7kQd4GmXr0yLh1N2p3Q4r5S6"
ALL = sorted(SERVICE_COMPONENTS)


# ---------------------------------------------------------------------------------------------------
# Plans and how to bend them
# ---------------------------------------------------------------------------------------------------


def target(**overrides: Any) -> runner.Target:
    stack = make_stack(overrides.pop("services", ALL), **overrides)
    return runner.from_plan(harness.run(stack), stack)


@pytest.fixture(scope="module")
def full() -> runner.Target:
    """The edge plus every service this project ships, on a local Docker host."""
    return target()


@pytest.fixture(scope="module")
def dashboard() -> runner.Target:
    """The full suite with Traefik's dashboard on (behind basic auth at traefik.<domain>)."""
    return target(traefik={"dashboard": True})


@pytest.fixture(scope="module")
def remote() -> runner.Target:
    return target(
        host={"docker": "ssh://deploy@203.0.113.10", "sshHostKey": HOST_KEY, "memoryMb": 16384, "cpus": 8}
    )


Change = Callable[[dict[str, Any]], Any]  # edits a resource's (wire-form) inputs in place


def subject(t: runner.Target, name: str) -> runner.Subject:
    return next(s for s in t.resources if s.name == name)


def plain(s: runner.Subject) -> dict[str, Any]:
    return harness.plain(s.props)


def edit(t: runner.Target, name: str, change: Change) -> runner.Target:
    """A copy of `t` whose resource `name` had its (wire-form) inputs changed in place by `change`."""
    t = copy.deepcopy(t)
    change(subject(t, name).props)
    return t


def add(t: runner.Target, model: str, name: str, change: Change) -> runner.Target:
    """A copy of `t` with one more resource: a copy of `model` renamed `name`, then changed."""
    t = copy.deepcopy(t)
    clone = copy.deepcopy(subject(t, model))
    clone.name, clone.urn = name, clone.urn.rsplit("::", 1)[0] + f"::{name}"
    change(clone.props)
    t.resources.append(clone)
    return t


def set_env(props: dict[str, Any], key: str, value: str) -> None:
    """Set one variable in a container's envs (kept secret when the list is a secret)."""
    holder = props["envs"]["value"] if harness.is_secret(props.get("envs")) else props.setdefault("envs", [])
    holder[:] = [e for e in holder if not e.startswith(f"{key}=")] + [f"{key}={value}"]


def with_env(key: str, value: str) -> Change:
    return lambda p: set_env(p, key, value)


def updated(**fields: Any) -> Change:
    return lambda p: p.update(fields)


def appended(prop: str, item: Any) -> Change:
    return lambda p: p.setdefault(prop, []).append(item)


def without(prop: str) -> Change:
    return lambda p: p.pop(prop)


def env_value(s: runner.Subject, key: str) -> str:
    return dict(e.split("=", 1) for e in plain(s)["envs"])[key]


def containers(t: runner.Target) -> list[runner.Subject]:
    return [s for s in t.resources if s.type == CONTAINER]


def container_view(s: runner.Subject) -> Container:
    return Container(Resource(s.type, s.name, s.urn, plain(s), s.parent, s.dependencies))


def data_stores(t: runner.Target) -> list[runner.Subject]:
    """Databases and caches, told by the image they run (the offline plan's image is the reference)."""
    return [
        s
        for s in containers(t)
        if any(ImageRef.parse(plain(s)["image"]).basename.startswith(p) for p in DATA_STORE_IMAGES)
    ]


def password_key(s: runner.Subject) -> str | None:
    """The variable a data store's password goes by (POSTGRES_PASSWORD for POSTGRES_PASSWORD_FILE)."""
    return next(
        (
            k.removesuffix("_FILE")
            for k in dict(e.split("=", 1) for e in plain(s).get("envs", []))
            if k.removesuffix("_FILE").endswith("PASSWORD")
        ),
        None,
    )


def guarded_stores(t: runner.Target) -> list[runner.Subject]:
    """Data stores with a password in a secret file (e.g. POSTGRES_PASSWORD_FILE)."""
    return [
        s
        for s in data_stores(t)
        if password_key(s)
        and any(m["target"].startswith("/run/secrets/") for m in plain(s).get("mounts", []))
    ]


def secret_file_step(t: runner.Target, s: runner.Subject) -> runner.Subject:
    """The step writing the (first) secret file container `s` mounts (components/core/secrets.py)."""
    sources = {m["source"] for m in plain(s).get("mounts", []) if m["target"].startswith("/run/secrets/")}

    def writes(r: runner.Subject) -> str | None:
        env = plain(r).get("environment") or {}
        return f"{env['VH_FILE_DIR']}/{env['VH_FILE_NAME']}" if "VH_FILE_NAME" in env else None

    return next(r for r in t.resources if r.type == "command:local:Command" and writes(r) in sources)


def store_password(t: runner.Target, s: runner.Subject) -> str:
    """A data store's password: its secret file's content (or, still, an env value)."""
    key = str(password_key(s))
    env = dict(e.split("=", 1) for e in plain(s).get("envs", []))
    if key in env:
        return env[key]
    return str(plain(secret_file_step(t, s))["environment"]["VH_SECRET_VALUE"])


def front(t: runner.Target) -> runner.Subject:
    """A service's routed front container (not the edge's)."""
    return next(s for s in containers(t) if container_view(s).routed and not s.name.startswith("edge-"))


def violations(t: runner.Target, rule: str, config: dict[str, Any] | None = None) -> list[runner.Violation]:
    report = runner.check(t, config, only=[rule])
    assert not report.not_run, report.not_run
    return report.violations


def names(found: list[runner.Violation]) -> set[str | None]:
    return {v.resource_name for v in found}


def strip_backups(t: runner.Target) -> runner.Target:
    """The plan without its backup (every host command about backups): a test decides what it looks like."""
    t = copy.deepcopy(t)
    t.resources = [
        s
        for s in t.resources
        if not (s.type.startswith("command:") and re.search("backup", json.dumps(plain(s)), re.IGNORECASE))
    ]
    return t


# ---------------------------------------------------------------------------------------------------
# The pack itself
# ---------------------------------------------------------------------------------------------------


def test_every_rule_has_name_description_anchor_level_and_exclusions() -> None:
    assert len(POLICIES) == len(BY_NAME) == 29, "policy names are unique"
    for p in POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", p.name), p.name
        assert p.description.endswith(".") and "\n" not in p.description and len(p.description) <= 140, p.name
        assert anchor(p).text(), p.name
        assert p.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY), p.name
        assert p.config_schema is not None and "excludeFor" in p.config_schema.properties, p.name
        assert "enforcementLevel" not in p.config_schema.properties, "reserved by the engine"
        assert p.remediation_steps and p.framework is not None and p.tags, p.name
    cis = {p.name: p.framework.reference for p in POLICIES if p.framework and p.framework.version == "1.6.0"}
    assert (
        cis["no-privileged"] == "5.5" and cis["no-docker-socket"] == "5.32" and cis["memory-limit"] == "5.11"
    )
    assert {
        level_name(p) for p in POLICIES if p.name in ("non-root-user", "read-only-rootfs", "image-digest")
    } == {"advisory"}


def test_the_docs_list_every_rule_with_its_level() -> None:
    doc = (ROOT / "docs" / "policies.md").read_text()
    for p in POLICIES:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{p.name}` |")), None)
        assert row is not None, f"docs/policies.md has no row for {p.name}"
        assert f"| {level_name(p)} |" in row, row


def test_the_pack_runs_in_the_projects_environment() -> None:
    """PulumiPolicy.yaml names the project's venv, resolved against the pack directory as the CLI does."""
    spec = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python" and re.fullmatch(r"\d+\.\d+\.\d+", spec["version"])
    venv = (ROOT / "policies" / spec["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (ROOT / ".venv").resolve() and (venv / "bin" / "python").exists()
    assert list(venv.glob("lib/python*/site-packages/pulumi_policy/policy.py"))


def test_default_host_memory_is_the_programs_default() -> None:
    assert config_model.HostConfig.model_fields["memory_mb"].default == DEFAULT_HOST_MEMORY_MB


# ---------------------------------------------------------------------------------------------------
# Shipped stacks and real plans
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack_file", sorted(p.name for p in harness.iter_stack_files()))
def test_every_shipped_stack_has_no_mandatory_violation(stack_file: str) -> None:
    report = runner.check(runner.load(str(ROOT / stack_file)))
    assert report.mandatory == [], "\n".join(v.line() for v in report.mandatory)
    assert not report.not_run


def test_the_full_suite_has_no_mandatory_violation(full: runner.Target) -> None:
    report = runner.check(full)
    assert report.mandatory == [], "\n".join(v.line() for v in report.mandatory)
    assert {v.policy for v in report.advisory} <= {"image-digest", "non-root-user", "read-only-rootfs"}


def test_remote_host_standalone_and_dashboard_plans_have_no_mandatory_violation(
    remote: runner.Target, dashboard: runner.Target
) -> None:
    standalone = target(services=[ALL[0]], mode="standalone", acmeEmail=None, standalonePort=8088)
    published = [p for s in containers(standalone) for p in plain(s).get("ports", [])]
    assert published and all(p["ip"] == "127.0.0.1" for p in published), "the case the loopback rule allows"
    for plan in (remote, standalone, dashboard):
        report = runner.check(plan)
        assert report.mandatory == [] and not report.not_run, "\n".join(v.line() for v in report.mandatory)


# ---------------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------------


def test_no_default_credentials(full: runner.Target) -> None:
    assert violations(full, "no-default-credentials") == []
    db = guarded_stores(full)[0]
    secret_key = str(password_key(db))
    for bad in ("changeme", "admin", "sk-xxxx", "<your password>", ""):
        found = violations(edit(full, db.name, with_env(secret_key, bad)), "no-default-credentials")
        assert names(found) == {db.name} and secret_key in found[0].message, bad
        assert bad not in found[0].message or not bad, "values are never echoed"
    url = edit(full, db.name, lambda p: set_env(p, "REDIS_URL", "redis://default:default@redis:6379/0"))
    assert "REDIS_URL (password in URL)" in violations(url, "no-default-credentials")[0].message


def test_no_default_credentials_in_a_remote_commands_stdin(remote: runner.Target) -> None:
    command = next(
        s for s in remote.resources if s.type == "command:remote:Command" and plain(s).get("stdin")
    )
    assert violations(remote, "no-default-credentials") == []
    bad = edit(remote, command.name, lambda p: p.update(stdin="DB_ROOT_PASSWORD='password'\n"))
    assert names(violations(bad, "no-default-credentials")) == {command.name}


def test_secret_strength(full: runner.Target) -> None:
    password = next(
        s
        for s in full.resources
        if s.type == "random:index/randomPassword:RandomPassword" and plain(s)["length"] >= 32
    )
    found = violations(full, "secret-strength")
    assert password.name not in names(found)
    short = edit(full, password.name, lambda p: p.update(length=16))
    assert password.name in names(violations(short, "secret-strength"))
    db = guarded_stores(full)[0]
    key = str(password_key(db))
    assert db.name not in names(found)
    for weak in ("Kx8pQ2vN7mR4", "ab" * 16, "12345678" * 4):
        bad = edit(full, db.name, with_env(key, weak))
        assert db.name in names(violations(bad, "secret-strength")), weak
    issued = edit(full, db.name, lambda p: set_env(p, "ANTHROPIC_API_KEY", "sk-ant-api03-shortish"))
    assert db.name not in names(violations(issued, "secret-strength")), (
        "a provider's key has the provider's format"
    )
    bytes_ = next(s for s in full.resources if s.type == "random:index/randomBytes:RandomBytes")
    assert bytes_.name not in names(found)
    assert bytes_.name in names(
        violations(edit(full, bytes_.name, lambda p: p.update(length=16)), "secret-strength")
    )


def test_secrets_not_reused_across_services(full: runner.Target) -> None:
    assert violations(full, "secrets-not-reused") == [], "an app and its own database share theirs"
    first = guarded_stores(full)[0]
    second = next(s for s in guarded_stores(full) if s.parent != first.parent)
    value = store_password(full, first)
    reused = edit(full, second.name, lambda p: set_env(p, "SOME_PASSWORD", value))
    [found] = violations(reused, "secrets-not-reused")
    assert found.level == "mandatory" and value not in found.message
    assert found.resource_name in {second.name, secret_file_step(full, first).name}


def test_credential_rules_read_the_secret_files(full: runner.Target) -> None:
    """Secrets reach containers as files (issue 14): the credential rules read what each secret-file step
    writes, so they still judge every password and key, on a plan as on a preview."""
    first, second = guarded_stores(full)[0], guarded_stores(full)[-1]
    writer, other = secret_file_step(full, first), secret_file_step(full, second)
    assert first.parent != second.parent
    assert "VH_SECRET_VALUE" in json.dumps(plain(writer)) and harness.is_secret(
        writer.props["environment"]["VH_SECRET_VALUE"]
    )

    def holding(value: str) -> Change:
        return lambda p: p["environment"].update(VH_SECRET_VALUE=value)

    weak = violations(edit(full, writer.name, holding("changeme")), "no-default-credentials")
    assert names(weak) == {writer.name} and "changeme" not in weak[0].message
    short = violations(edit(full, writer.name, holding("Kx8pQ2vN7mR4")), "secret-strength")
    assert writer.name in names(short)
    reused = edit(full, other.name, holding(store_password(full, first)))
    assert names(violations(reused, "secrets-not-reused")) & {writer.name, other.name}


def test_the_post_deploy_checks_use_a_services_secret_without_sharing_it(full: runner.Target) -> None:
    """The Hub's checks sign in with its Administrator password (VH_HUB_ADMIN_PASSWORD in the verification
    step, which hub-site also holds): that is the service's own use. Any other shared value still counts."""
    verify = subject(full, "verify-endpoints")
    env = plain(verify)["environment"]
    assert env["VH_HUB_ADMIN_PASSWORD"], "the Hub's checks reach the verification step"
    assert violations(full, "secrets-not-reused") == []

    def share(props: dict[str, Any]) -> None:
        holder = props["environment"]
        holder = holder["value"] if harness.is_secret(holder) else holder
        holder["OTHER_PASSWORD"] = env["VH_HUB_ADMIN_PASSWORD"]

    [found] = violations(edit(full, "verify-endpoints", share), "secrets-not-reused")
    assert "verify-endpoints" in {found.resource_name, *found.message.split()}


# ---------------------------------------------------------------------------------------------------
# The edge
# ---------------------------------------------------------------------------------------------------


def test_web_network_topology(full: runner.Target) -> None:
    assert violations(full, "web-network-topology") == []
    db = data_stores(full)[0]
    on_web = edit(full, db.name, lambda p: p["networksAdvanced"].append({"name": "web"}))
    [found] = violations(on_web, "web-network-topology")
    assert found.resource_name == db.name and "public network web" in found.message
    network = next(
        s
        for s in full.resources
        if s.type == NETWORK and plain(s)["name"] in [n["name"] for n in plain(db)["networksAdvanced"]]
    )
    open_net = edit(full, network.name, lambda p: p.update(internal=False))
    assert db.name in names(violations(open_net, "web-network-topology"))
    app = front(full)
    unrouted = edit(
        full, app.name, lambda p: p.update(labels=[x for x in p["labels"] if "traefik" not in x["label"]])
    )
    assert app.name in names(violations(unrouted, "web-network-topology")), "on web without being routed"
    off_web = edit(
        full,
        app.name,
        lambda p: p.update(networksAdvanced=[n for n in p["networksAdvanced"] if n["name"] != "web"]),
    )
    assert "does not join it" in violations(off_web, "web-network-topology")[0].message


def test_traefik_acme(full: runner.Target) -> None:
    assert violations(full, "traefik-acme") == []

    def without(prefix: str) -> Change:
        return lambda p: p.update(command=[a for a in p["command"] if prefix not in a])

    assert (
        "acme.email"
        in violations(edit(full, "edge-traefik", without("acme.email")), "traefik-acme")[0].message
    )
    assert (
        "no challenge"
        in violations(edit(full, "edge-traefik", without("challenge")), "traefik-acme")[0].message
    )
    moved = edit(
        full,
        "edge-traefik",
        lambda p: p.update(
            command=[re.sub(r"storage=.*", "storage=/tmp/acme.json", a) for a in p["command"]]
        ),
    )
    assert "outside a mounted volume" in violations(moved, "traefik-acme")[0].message
    none = edit(full, "edge-traefik", without("certificatesresolvers"))
    assert "no ACME certificate resolver" in violations(none, "traefik-acme")[0].message


def test_routers_tls_only(full: runner.Target) -> None:
    assert violations(full, "routers-tls-only") == [], (
        "the portal's catch-all may use the default certificate"
    )
    app = front(full)

    def relabel(suffix: str, value: str | None) -> Change:
        def change(p: dict[str, Any]) -> None:
            labels = [x for x in p["labels"] if not x["label"].endswith(suffix)]
            if value is not None:
                router = next(x["label"] for x in p["labels"] if x["label"].endswith(".rule")).rsplit(".", 1)[
                    0
                ]
                labels.append({"label": router + suffix, "value": value})
            p["labels"] = labels

        return change

    plain_http = violations(
        edit(full, app.name, relabel(".entrypoints", "web,websecure")), "routers-tls-only"
    )
    assert "listens on web" in plain_http[0].message
    assert (
        "names no entrypoint"
        in violations(edit(full, app.name, relabel(".entrypoints", None)), "routers-tls-only")[0].message
    )
    unresolved = edit(full, app.name, relabel(".tls.certresolver", None))
    assert "no certificate resolver" in violations(unresolved, "routers-tls-only")[0].message
    no_tls = edit(full, app.name, lambda p: (relabel(".tls.certresolver", None)(p), relabel(".tls", None)(p)))
    assert any("does not terminate TLS" in v.message for v in violations(no_tls, "routers-tls-only"))
    wrong = edit(full, app.name, relabel(".tls.certresolver", "staging"))
    assert "which Traefik does not define" in violations(wrong, "routers-tls-only")[0].message
    no_redirect = edit(
        full, "edge-traefik", lambda p: p.update(command=[a for a in p["command"] if "redirections" not in a])
    )
    found = violations(no_redirect, "routers-tls-only")
    assert [f.resource_name for f in found] == ["edge-traefik"] * 2
    assert sorted(f.message.split()[1] for f in found) == ["web", "web6"]
    # Traefik's ACME challenge router on web6 passes only as exactly that (its rule, acme-http@internal).
    acme = "traefik.http.routers.clientea-acme-v6"
    assert any(x["label"].startswith(acme) for x in plain(subject(full, "edge-traefik"))["labels"])
    widened = edit(
        full,
        "edge-traefik",
        lambda p: [x.update(value="PathPrefix(`/`)") for x in p["labels"] if x["label"] == f"{acme}.rule"],
    )
    assert any("listens on web6" in v.message for v in violations(widened, "routers-tls-only"))


def test_traefik_exposed_by_default_off(full: runner.Target) -> None:
    assert violations(full, "traefik-exposed-by-default-off") == []
    for change in (
        lambda p: p.update(command=[a for a in p["command"] if "exposedByDefault" not in a]),
        lambda p: p.update(
            command=[a.replace("exposedByDefault=false", "exposedByDefault=true") for a in p["command"]]
        ),
    ):
        assert names(violations(edit(full, "edge-traefik", change), "traefik-exposed-by-default-off")) == {
            "edge-traefik"
        }


def test_traefik_dashboard_protected(full: runner.Target, dashboard: runner.Target) -> None:
    assert violations(full, "traefik-dashboard-protected") == []
    insecure = edit(full, "edge-traefik", lambda p: p["command"].append("--api.insecure=true"))
    assert "api.insecure" in violations(insecure, "traefik-dashboard-protected")[0].message
    open_dashboard = edit(
        dashboard,
        "edge-traefik",
        lambda p: p.update(labels=[x for x in p["labels"] if "basicauth" not in x["label"]]),
    )
    assert (
        "without an authentication middleware"
        in violations(open_dashboard, "traefik-dashboard-protected")[0].message
    )


def test_no_docker_socket(full: runner.Target) -> None:
    assert violations(full, "no-docker-socket") == [], "only the read-only proxy mounts it"
    socket = {
        "type": "bind",
        "source": "/var/run/docker.sock",
        "target": "/var/run/docker.sock",
        "readOnly": True,
    }
    app = front(full)
    mounted = edit(full, app.name, lambda p: p.setdefault("mounts", []).append(dict(socket)))
    [found] = violations(mounted, "no-docker-socket")
    assert found.resource_name == app.name and "no read-only socket proxy" in found.message
    for key, value in (("POST", "1"), ("EXEC", "1"), ("SECRETS", "1")):
        bad = edit(full, "edge-socket-proxy", with_env(key, value))
        assert names(violations(bad, "no-docker-socket")) == {"edge-socket-proxy"}, key
    writable = edit(full, "edge-socket-proxy", lambda p: p["mounts"][0].update(readOnly=False))
    assert "writable" in violations(writable, "no-docker-socket")[0].message
    direct = edit(
        full,
        "edge-traefik",
        lambda p: p.update(command=[a for a in p["command"] if "providers.docker.endpoint" not in a]),
    )
    assert "unix:///var/run/docker.sock" in violations(direct, "no-docker-socket")[0].message


def test_published_ports_allowlist(full: runner.Target) -> None:
    assert violations(full, "published-ports-allowlist") == []
    db = data_stores(full)[0]
    for ip in (None, "127.0.0.1"):
        port = {"internal": 5432, "external": 5432, **({"ip": ip} if ip else {})}
        found = violations(edit(full, db.name, updated(ports=[port])), "published-ports-allowlist")
        assert (
            names(found) == {db.name}
            and "databases are reached over Docker networks only" in found[0].message
        )
    app = front(full)
    public = edit(full, app.name, lambda p: p.update(ports=[{"internal": 8080, "external": 8080}]))
    assert "bypass the host firewall" in violations(public, "published-ports-allowlist")[0].message
    loopback = edit(
        full, app.name, lambda p: p.update(ports=[{"internal": 8080, "external": 8080, "ip": "127.0.0.1"}])
    )
    assert violations(loopback, "published-ports-allowlist") == []
    extra = edit(full, "edge-traefik", lambda p: p["ports"].append({"internal": 8080, "external": 8080}))
    assert names(violations(extra, "published-ports-allowlist")) == {"edge-traefik"}
    every = edit(full, app.name, lambda p: p.update(publishAllPorts=True))
    assert "publishAllPorts" in violations(every, "published-ports-allowlist")[0].message


# ---------------------------------------------------------------------------------------------------
# Every container (CIS Docker section 5) and its image
# ---------------------------------------------------------------------------------------------------


def test_healthcheck_required(full: runner.Target) -> None:
    assert violations(full, "healthcheck-required") == []
    db = data_stores(full)[0]
    gone = edit(full, db.name, lambda p: p.pop("healthcheck"))
    assert names(violations(gone, "healthcheck-required")) == {db.name}
    none = edit(full, db.name, lambda p: p.update(healthcheck={"tests": ["NONE"]}))
    assert names(violations(none, "healthcheck-required")) == {db.name}
    reason = {"label": "io.versatilehub.no-healthcheck-reason", "value": "a one-line reason"}
    excused = edit(full, db.name, lambda p: (p.pop("healthcheck"), p["labels"].append(reason)))
    assert violations(excused, "healthcheck-required") == []


@pytest.mark.parametrize(
    ("rule", "change", "expect"),
    [
        ("no-privileged", lambda p: p.update(privileged=True), "privileged"),
        ("capabilities-restricted", lambda p: p["capabilities"].update(adds=["SYS_ADMIN"]), "SYS_ADMIN"),
        ("capabilities-restricted", lambda p: p["capabilities"].update(drops=["NET_RAW"]), "drop ALL"),
        ("no-host-namespaces", lambda p: p.update(networkMode="host"), "network namespace"),
        ("no-host-namespaces", lambda p: p.update(pidMode="host"), "PID namespace"),
        ("no-host-namespaces", lambda p: p.update(ipcMode="host"), "IPC namespace"),
        ("no-host-namespaces", lambda p: p.update(usernsMode="host"), "user namespace"),
        ("memory-limit", lambda p: p.pop("memory"), "no memory limit"),
        ("restart-policy", lambda p: p.pop("restart"), "no (the default)"),
        ("restart-policy", lambda p: p.update(restart="on-failure", maxRetryCount=10), "retry count"),
        ("no-new-privileges", lambda p: p.update(securityOpts=[]), "no-new-privileges"),
        (
            "no-new-privileges",
            lambda p: p.update(securityOpts=["no-new-privileges:false"]),
            "no-new-privileges",
        ),
        ("no-unconfined-profiles", lambda p: p["securityOpts"].append("seccomp=unconfined"), "seccomp"),
        ("no-unconfined-profiles", lambda p: p["securityOpts"].append("apparmor:unconfined"), "apparmor"),
        ("log-rotation", lambda p: p.pop("logOpts"), "max-size"),
        ("log-rotation", lambda p: (p.pop("logDriver"), p.pop("logOpts")), "max-size"),
    ],
)
def test_container_runtime_rules(full: runner.Target, rule: str, change: Change, expect: str) -> None:
    assert violations(full, rule) == []
    db = data_stores(full)[0]
    [found] = violations(edit(full, db.name, change), rule)
    assert found.resource_name == db.name and found.level == "mandatory" and expect in found.message


def test_restart_and_healthcheck_leave_one_shot_jobs_alone(full: runner.Target) -> None:
    db = data_stores(full)[0]
    job = edit(full, db.name, lambda p: (p.update(mustRun=False, restart="no"), p.pop("healthcheck")))
    assert violations(job, "restart-policy") == [] and violations(job, "healthcheck-required") == []
    restarted = edit(full, db.name, lambda p: p.update(restart="on-failure", maxRetryCount=5))
    assert violations(restarted, "restart-policy") == []


def test_no_sensitive_host_mounts(full: runner.Target) -> None:
    assert violations(full, "no-sensitive-host-mounts") == []
    db = data_stores(full)[0]
    for source in ("/etc", "/", "/proc/sys", "/var/lib/docker/volumes", "/run/user"):
        mount = {"type": "bind", "source": source, "target": "/host", "readOnly": True}
        bad = edit(full, db.name, appended("mounts", mount))
        assert names(violations(bad, "no-sensitive-host-mounts")) == {db.name}, source
    legacy = edit(
        full, db.name, lambda p: p.update(volumes=[{"hostPath": "/etc/ssl", "containerPath": "/ssl"}])
    )
    assert names(violations(legacy, "no-sensitive-host-mounts")) == {db.name}
    zone = {"type": "bind", "source": "/etc/localtime", "target": "/etc/localtime", "readOnly": True}
    assert (
        violations(
            edit(full, db.name, lambda p: p.setdefault("mounts", []).append(zone)), "no-sensitive-host-mounts"
        )
        == []
    )
    zone_rw = dict(zone, readOnly=False)
    rw = edit(full, db.name, lambda p: p.setdefault("mounts", []).append(zone_rw))
    assert names(violations(rw, "no-sensitive-host-mounts")) == {db.name}


def test_memory_budget_reads_the_host_size_from_the_stack(full: runner.Target) -> None:
    assert violations(full, "memory-budget") == []
    total = sum(plain(s)["memory"] for s in containers(full))
    small = copy.deepcopy(full)
    small.config["versatilehub:host"] = json.dumps({"memoryMb": int(total), "cpus": 8})
    [found] = violations(small, "memory-budget")
    assert f"{total:.0f} MB" in found.message and "versatilehub:host.memoryMb" in found.message
    assert violations(small, "memory-budget", {"memory-budget": {"hostMemoryMb": total * 2}}) == []
    assert violations(small, "memory-budget", {"memory-budget": {"maxFraction": 1.0}}) == []
    unset = copy.deepcopy(full)
    del unset.config["versatilehub:host"]
    expected = total > 0.8 * DEFAULT_HOST_MEMORY_MB
    assert bool(violations(unset, "memory-budget")) is expected


def test_non_root_user_is_advisory_with_recorded_exceptions(full: runner.Target) -> None:
    assert violations(full, "non-root-user") == [], "root only with a recorded reason"
    db = data_stores(full)[0]
    for user in ("root", "0", "0:0", None):
        bad = edit(full, db.name, without("user") if user is None else updated(user=user))
        [found] = violations(bad, "non-root-user")
        assert found.level == "advisory" and found.resource_name == db.name, user
    reason = {"label": "io.versatilehub.root-reason", "value": "the entrypoint chowns, then steps down"}
    excused = edit(full, db.name, lambda p: (p.update(user="root"), p["labels"].append(reason)))
    assert violations(excused, "non-root-user") == []


def test_read_only_rootfs_is_advisory_with_recorded_exceptions(full: runner.Target) -> None:
    assert violations(full, "read-only-rootfs") == []
    db = data_stores(full)[0]
    [found] = violations(edit(full, db.name, lambda p: p.update(readOnly=False)), "read-only-rootfs")
    assert found.level == "advisory"
    reason = {"label": "io.versatilehub.writable-reason", "value": "writes its pid file to /var/run"}
    assert (
        violations(
            edit(full, db.name, lambda p: (p.update(readOnly=False), p["labels"].append(reason))),
            "read-only-rootfs",
        )
        == []
    )


def test_image_pinned_and_digest(full: runner.Target) -> None:
    assert violations(full, "image-pinned") == []
    image = next(s for s in full.resources if s.type == IMAGE)
    repo = ImageRef.parse(plain(image)["name"]).repository
    for ref, bad in (
        (f"{repo}:latest", True),
        (repo, True),
        (f"{repo}:stable", True),
        (f"{repo}@sha256:{'a' * 64}", False),
        (f"{repo}:1.2.3", False),
    ):
        found = violations(edit(full, image.name, updated(name=ref)), "image-pinned")
        assert bool(found) is bad, ref
    db = data_stores(full)[0]
    assert names(
        violations(edit(full, db.name, lambda p: p.update(image=f"{repo}:latest")), "image-pinned")
    ) == {db.name}
    assert (
        violations(edit(full, db.name, lambda p: p.update(image="sha256:" + "b" * 64)), "image-pinned") == []
    )
    tag_only = violations(full, "image-digest")
    assert image.name in names(tag_only) and {v.level for v in tag_only} == {"advisory"}
    digest = edit(full, image.name, lambda p: p.update(name=f"{repo}:1.2.3@sha256:{'a' * 64}"))
    assert image.name not in names(violations(digest, "image-digest"))


# ---------------------------------------------------------------------------------------------------
# Operations: backups, dumps, host keys
# ---------------------------------------------------------------------------------------------------


def backup_script(
    t: runner.Target,
    *,
    schedule: bool = True,
    forget: str = "--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --prune",
    mariadb_flags: str = "--single-transaction --quick",
    pipefail: bool = True,
    skip: str | None = None,
) -> str:
    """A host backup script of the shape the backup component installs, dumping the plan's databases."""
    dumps = []
    for s in data_stores(t):
        name = plain(s)["name"]
        image = ImageRef.parse(plain(s)["image"]).basename
        if name == skip:
            continue
        if image.startswith(("postgres", "pgvector")):
            dumps.append(
                f"docker exec {name} pg_dump -Fc -U app app"
                f" | restic backup --stdin --stdin-filename {name}.dump"
            )
        elif image.startswith("mariadb"):
            dumps.append(
                f"docker exec {name} mariadb-dump {mariadb_flags} --all-databases | restic backup --stdin "
                f"--stdin-filename {name}.sql"
            )
    timer = (
        "cat > /etc/systemd/system/backup.timer <<'EOF'\n[Timer]\nOnCalendar=*-*-* 03:00\nEOF\n"
        if schedule
        else ""
    )
    return (
        ("set -euo pipefail\n" if pipefail else "set -eu\n")
        + timer
        + "\n".join(dumps)
        + '\nrestic backup --tag daily "$DATA"\n'
        + f"restic forget {forget}\n"
    )


def with_backup(t: runner.Target, script: str) -> runner.Target:
    base = strip_backups(t)
    model = next(s for s in base.resources if s.type == "command:local:Command")
    return add(base, model.name, "backup-install", lambda p: p.update(create=script))


def test_backups_scheduled(full: runner.Target) -> None:
    assert violations(with_backup(full, backup_script(full)), "backups-scheduled") == []
    [none] = violations(strip_backups(full), "backups-scheduled")
    assert none.level == "mandatory" and "no restic backup job" in none.message
    [unscheduled] = violations(with_backup(full, backup_script(full, schedule=False)), "backups-scheduled")
    assert "never scheduled" in unscheduled.message
    cron = (
        backup_script(full, schedule=False)
        + "echo '15 3 * * * root /usr/local/bin/backup' > /etc/cron.d/backup\n"
    )
    assert violations(with_backup(full, cron), "backups-scheduled") == []


def test_a_stack_that_turns_backups_off_is_reported_not_applicable() -> None:
    lab = target(
        services=[ALL[0]], mode="standalone", acmeEmail=None, standalonePort=8088, backup={"enabled": False}
    )
    report = runner.check(lab, only=["backups-scheduled"])
    assert report.violations == []
    assert report.not_applicable == [
        (
            "backups-scheduled",
            "backups are turned off in the stack (versatilehub:backup.enabled=false: a lab)",
        )
    ]
    assert "not applicable: backups-scheduled" in runner.render(report)


# A backup tool in the style of an installed program: restic driven through argument lists, retention
# and the databases to dump described in JSON written next to it.
TOOL = """set -euo pipefail
cat > /usr/local/bin/backup-tool <<'END'
def run(restic, paths):
    restic.run(["backup", "--tag", "daily", "--", *paths])
    restic.run(["forget", *settings["forget"], "--prune"])
def dump(source):
    return ["docker", "exec", source["container"], {dump}]
END
cat > /etc/backup/settings.json <<'END'
{{"forget": ["--keep-daily={daily}", "--keep-weekly=5", "--keep-monthly=12"], "image": "restic/restic:0.19.1",
 "sources": [{sources}]}}
END
cat > /etc/systemd/system/backup.timer <<'END'
[Timer]
OnCalendar=*-*-* 03:00:00
END
"""


def tool_backup(t: runner.Target, *, daily: int = 7, flags: str = '"--single-transaction", "--quick"') -> str:
    sources = ", ".join(json.dumps({"container": plain(s)["name"]}) for s in data_stores(t))
    dump = f'"pg_dump", "--format=custom"], ["mariadb-dump", {flags}'
    return TOOL.format(dump=dump, daily=daily, sources=sources)


def test_backup_rules_read_an_installed_tool_and_its_settings(full: runner.Target) -> None:
    good = with_backup(full, tool_backup(full))
    for rule in ("backups-scheduled", "backup-retention", "consistent-db-dumps"):
        assert violations(good, rule) == [], rule
    short = violations(with_backup(full, tool_backup(full, daily=3)), "backup-retention")
    assert "daily < 7" in short[0].message
    unsafe = violations(with_backup(full, tool_backup(full, flags='"--quick"')), "consistent-db-dumps")
    assert [v.message for v in unsafe] == [
        "mariadb-dump without --single-transaction: the dump is not a consistent snapshot"
    ]


@pytest.mark.parametrize(
    ("forget", "ok"),
    [
        ("--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --prune", True),
        ("--keep-daily=14 --keep-weekly=8 --keep-monthly=24 --prune", True),
        ("--keep-within-daily 7d --keep-within-weekly 1m --keep-within-monthly 1y --prune", True),
        ('--keep-daily "$KEEP_DAILY" --keep-weekly 5 --keep-monthly 12 --prune\nKEEP_DAILY=7', True),
        ("--keep-daily 3 --keep-weekly 5 --keep-monthly 12 --prune", False),
        ("--keep-daily 7 --keep-weekly 5 --prune", False),
        ("--keep-within-daily 7d --keep-within-weekly 2d --keep-within-monthly 1y --prune", False),
        ("--keep-daily 7 --keep-weekly 5 --keep-monthly 12", False),
        ('--keep-daily "$KEEP_DAILY" --keep-weekly 5 --keep-monthly 12 --prune\nKEEP_DAILY=2', False),
    ],
)
def test_backup_retention(full: runner.Target, forget: str, ok: bool) -> None:
    found = violations(with_backup(full, backup_script(full, forget=forget)), "backup-retention")
    assert (found == []) is ok, [v.message for v in found]


def test_backup_retention_needs_a_forget(full: runner.Target) -> None:
    script = backup_script(full).replace("restic forget", "echo")
    assert "forget never runs" in violations(with_backup(full, script), "backup-retention")[0].message


def test_consistent_db_dumps(full: runner.Target) -> None:
    assert data_stores(full), "the suite has databases to dump"
    assert violations(with_backup(full, backup_script(full)), "consistent-db-dumps") == []
    no_pipefail = violations(with_backup(full, backup_script(full, pipefail=False)), "consistent-db-dumps")
    assert any("pipefail" in v.message for v in no_pipefail)
    sql = [s for s in data_stores(full) if ImageRef.parse(plain(s)["image"]).basename.startswith("mariadb")]
    if sql:
        unsafe = violations(
            with_backup(full, backup_script(full, mariadb_flags="--quick")), "consistent-db-dumps"
        )
        assert any("--single-transaction" in v.message for v in unsafe)
    pg = next(
        s
        for s in data_stores(full)
        if ImageRef.parse(plain(s)["image"]).basename.startswith(("postgres", "pgvector"))
    )
    skipped = violations(
        with_backup(full, backup_script(full, skip=plain(pg)["name"])), "consistent-db-dumps"
    )
    assert names(skipped) == {pg.name} and "never dumped" in skipped[0].message


def test_ssh_host_key_pinned(remote: runner.Target) -> None:
    assert violations(remote, "ssh-host-key-pinned") == []
    command = next(s for s in remote.resources if s.type == "command:remote:Command")
    unpinned = edit(remote, command.name, _drop_host_key)
    assert names(violations(unpinned, "ssh-host-key-pinned")) == {command.name}
    provider = next(s for s in remote.resources if s.type == "pulumi:providers:docker")
    lax = edit(
        remote, provider.name, lambda p: p.update(sshOpts=json.dumps(["-o", "StrictHostKeyChecking=no"]))
    )
    assert "accepts unknown host keys" in violations(lax, "ssh-host-key-pinned")[0].message
    silent = edit(remote, provider.name, lambda p: p.update(sshOpts="[]"))
    assert "StrictHostKeyChecking=yes" in violations(silent, "ssh-host-key-pinned")[0].message


def _drop_host_key(props: dict[str, Any]) -> None:
    connection = props["connection"]
    (connection["value"] if harness.is_secret(connection) else connection).pop("hostKey")


# ---------------------------------------------------------------------------------------------------
# Exclusions, levels, preview, the runner and the engine
# ---------------------------------------------------------------------------------------------------


def test_exclude_for_takes_logical_or_container_names_and_globs(full: runner.Target) -> None:
    db = data_stores(full)[0]
    bad = edit(
        full, db.name, lambda p: p.update(privileged=True, ports=[{"internal": 5432, "external": 5432}])
    )
    assert violations(bad, "no-privileged")
    for pattern in (db.name, plain(db)["name"], db.name.split("-")[0] + "-*"):
        assert violations(bad, "no-privileged", {"no-privileged": {"excludeFor": [pattern]}}) == [], pattern
        assert (
            violations(
                bad, "published-ports-allowlist", {"published-ports-allowlist": {"excludeFor": [pattern]}}
            )
            == []
        )
    assert violations(bad, "no-privileged", {"no-privileged": {"excludeFor": ["other-*"]}})


def test_policy_config_levels_as_the_cli_reads_them(full: runner.Target) -> None:
    bad = edit(full, data_stores(full)[0].name, lambda p: p.update(privileged=True))
    assert {v.level for v in runner.check(bad, {"all": "advisory"}, only=["no-privileged"]).violations} == {
        "advisory"
    }
    assert runner.check(bad, {"no-privileged": "disabled"}, only=["no-privileged"]).violations == []
    promoted = runner.check(full, {"image-digest": {"enforcementLevel": "mandatory"}}, only=["image-digest"])
    assert promoted.mandatory
    wrong_configs: list[dict[str, Any]] = [
        {"no-such-rule": "advisory"},
        {"no-privileged": {"excludefor": []}},
        {"all": "sometimes"},
    ]
    for wrong in wrong_configs:
        with pytest.raises(runner.PolicyConfigError):
            runner.check(full, wrong)


def _as_first_preview(t: runner.Target) -> runner.Target:
    """What a first `pulumi preview` knows: generated secrets and pulled image ids are not known yet."""
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

    def blank(value: Any) -> Any:
        if harness.is_secret(value):
            return unknown
        if isinstance(value, dict):
            return {k: blank(v) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v) for v in value]
        return value

    t = copy.deepcopy(t)
    for s in t.resources:
        s.props = blank(s.props)
        if s.type == CONTAINER:
            s.props["image"] = unknown
    return t


def test_a_first_preview_defers_what_it_cannot_know_and_invents_nothing(full: runner.Target) -> None:
    complete = runner.check(full)
    preview = runner.check(_as_first_preview(full))
    assert {v.line() for v in preview.violations} <= {v.line() for v in complete.violations}
    assert preview.not_run, "credential checks wait for the update, as the engine reports them"
    assert {v.policy for v in preview.not_run} <= {
        "no-default-credentials",
        "secret-strength",
        "secrets-not-reused",
        "ssh-host-key-pinned",
        "no-docker-socket",
    }


def test_cli_on_a_stack_a_plan_json_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "Pulumi.lab.yaml"
    sections = {k: v for service in ALL for k, v in SERVICE_STACK.get(service, {}).items()}
    config = {**BASE_STACK, **sections, "services": ALL}
    stack_file.write_text(yaml.safe_dump({"config": {f"versatilehub:{k}": v for k, v in config.items()}}))
    code = runner.main([str(stack_file), "--each"])  # one line per violation, to compare with a plan.json
    out = capsys.readouterr().out
    assert code == (1 if "[mandatory]" in out else 0)
    assert f"stack lab: {out.count('[mandatory]')} mandatory, {out.count('[advisory]')} advisory" in out

    assert plan_tool.main([str(stack_file), "--json"]) == 0
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(capsys.readouterr().out)
    report = runner.check(runner.load(str(plan_json)))
    secret_rules = {"no-default-credentials", "secret-strength", "secrets-not-reused"}
    masked_lines = {v.line() for v in report.violations}
    full_lines = {line for line in out.splitlines() if line.startswith("[")}
    assert masked_lines <= full_lines, "a plan.json gives the same verdicts, less what needs a secret"
    assert {line.split()[1] for line in full_lines - masked_lines} <= secret_rules
    assert report.not_run and {v.policy for v in report.not_run} <= secret_rules
    assert "secrets are masked" in runner.render(report)
    assert runner.main([str(plan_json), "--policy-pack-config", _write(tmp_path, {"all": "advisory"})]) == 0
    capsys.readouterr()

    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": {"versatilehub:client": "x", "versatilehub:services": []}}))
    assert runner.main([str(bad)]) == 2
    assert "versatilehub:" in capsys.readouterr().err
    assert runner.main([str(plan_json), "--policy-pack-config", _write(tmp_path, {"nope": "advisory"})]) == 2
    assert "nope: not a policy of this pack" in capsys.readouterr().err


def _write(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_deliberately_bad_stack_fails_with_exactly_the_rules_it_breaks(full: runner.Target) -> None:
    db = data_stores(full)[0]
    app = front(full)
    worker = next(
        s for s in containers(full) if s.name not in {db.name, app.name} and not s.name.startswith("edge-")
    )
    image = next(s for s in full.resources if s.type == IMAGE and "traefik" not in plain(s)["name"])
    socket = {
        "type": "bind",
        "source": "/var/run/docker.sock",
        "target": "/var/run/docker.sock",
        "readOnly": True,
    }
    bad = full
    bad = edit(bad, "edge-traefik", lambda p: p.update(privileged=True))  # privileged container
    bad = edit(bad, app.name, lambda p: p.setdefault("mounts", []).append(socket))  # socket in a service
    bad = edit(
        bad, db.name, lambda p: p.update(ports=[{"internal": 5432, "external": 5432}])
    )  # database published
    bad = edit(bad, image.name, lambda p: p.update(name=ImageRef.parse(p["name"]).repository + ":latest"))
    bad = edit(bad, worker.name, lambda p: p.pop("memory"))  # no memory limit
    bad = edit(
        bad, "edge-traefik", lambda p: p["command"].append("--api.insecure=true")
    )  # insecure dashboard
    bad = edit(bad, db.name, lambda p: p.pop("restart"))  # no restart policy

    before = {(v.policy, v.resource_name) for v in runner.check(full).mandatory}
    after = {(v.policy, v.resource_name) for v in runner.check(bad).mandatory}
    assert after - before == {
        ("no-privileged", "edge-traefik"),
        ("no-docker-socket", app.name),
        ("published-ports-allowlist", db.name),
        ("image-pinned", image.name),
        ("memory-limit", worker.name),
        ("traefik-dashboard-protected", "edge-traefik"),
        ("restart-policy", db.name),
    }
    assert before <= after


def test_the_served_pack_answers_the_engine(full: runner.Target) -> None:
    """`python -m pulumi.policy` in policies/, as the CLI starts it: the real __main__.py and PolicyPack,
    spoken to over the analyzer gRPC protocol, with the stack's config in PULUMI_CONFIG."""
    env = dict(os.environ, PULUMI_CONFIG=json.dumps({"versatilehub:host": json.dumps({"memoryMb": 1024})}))
    pack = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=ROOT / "policies",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(pack.stdout.readline())  # type: ignore[union-attr]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty())
            assert info.name == "versatilehub" and [p.name for p in info.policies] == [
                p.name for p in POLICIES
            ]
            levels = {p.name: p.enforcementLevel for p in info.policies}
            assert (
                levels["no-privileged"] == analyzer_pb2.MANDATORY
                and levels["image-digest"] == analyzer_pb2.ADVISORY
            )

            traefik = subject(full, "edge-traefik")
            props = copy.deepcopy(traefik.props)
            props["privileged"] = True
            reply = stub.Analyze(_request(analyzer_pb2.AnalyzeRequest, traefik, props))
            assert {d.policyName for d in reply.diagnostics} == {"no-privileged"}

            stack = analyzer_pb2.AnalyzeStackRequest(
                resources=[
                    _request(analyzer_pb2.AnalyzerResource, s, s.props, parent=s.parent or "")
                    for s in full.resources
                ]
            )
            diags = {d.policyName: d for d in stub.AnalyzeStack(stack).diagnostics}
            assert "memory-budget" in diags and "1024 MB" in diags["memory-budget"].message
            assert diags["memory-budget"].enforcementLevel == analyzer_pb2.MANDATORY
    finally:
        pack.send_signal(signal.SIGTERM)
        pack.wait(timeout=10)


def _request(kind: Any, s: runner.Subject, props: dict[str, Any], **extra: Any) -> Any:
    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    return kind(urn=s.urn, type=s.type, name=s.name, properties=struct, **extra)
