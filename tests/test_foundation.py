"""The foundation's promises on whole plans: hardened containers, secrets, modes, hosts, determinism."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import resource as sdk_resource

from components.config import ConfigError
from components.core import versions
from components.suite import SERVICE_COMPONENTS
from tests.conftest import PlanFn, env_of, labels_of, make_stack, networks_of
from tools import harness
from tools import plan as plan_tool

ALL = sorted(SERVICE_COMPONENTS)
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5wH6nJ8o2b9ZbqfZ3sK7kQd4GmXr0yLh1N2p3Q4r5S6"


@pytest.fixture(scope="module")
def full() -> harness.Plan:
    return harness.run(make_stack(ALL))


def test_every_container_gets_the_hardened_defaults(full: harness.Plan) -> None:
    containers = full.containers()
    assert len(containers) >= 3
    for c in containers:
        i = c.plain_inputs
        labels = labels_of(c)
        name = i["name"]
        assert re.fullmatch(r"clientea-(edge|hub|chat|flow|agent|backup)-[a-z0-9-]+", name), name
        assert name == f"clientea-{c.name}", "container name = <client>-<logical name>"
        assert labels["io.versatilehub.client"] == "clientea"
        assert f"clientea-{labels['io.versatilehub.service']}-{labels['io.versatilehub.role']}" == name
        assert "no-new-privileges:true" in i["securityOpts"], name
        assert i["capabilities"]["drops"] == ["ALL"], name
        assert i["logDriver"] == "json-file" and i["logOpts"] == {"max-size": "10m", "max-file": "3"}, name
        assert i["memory"] > 0 and i["memorySwap"] == i["memory"], name
        assert float(i["cpus"]) > 0, name
        assert c.options["deleteBeforeReplace"], name
        assert i.get("user") or labels.get("io.versatilehub.root-reason"), f"{name}: root without a reason"
        assert i.get("readOnly") or labels.get("io.versatilehub.writable-reason"), (
            f"{name}: writable without a reason"
        )
        assert i.get("healthcheck") or labels.get("io.versatilehub.no-healthcheck-reason"), name
        if i.get("mustRun", True):
            assert i["restart"] == "unless-stopped", name
        assert env_of(c)["TZ"] == "America/Argentina/Buenos_Aires", name
        assert not i.get("privileged") and i.get("networkMode") in (None, "bridge"), name


def test_containers_run_pinned_images_pulled_once_per_key(full: harness.Plan) -> None:
    images = full.of_type("docker:index/remoteImage:RemoteImage")
    keys = sorted(r.name.removeprefix("image-") for r in images)
    assert keys == sorted(full.outputs["versions"]), "one RemoteImage per image key, and each one is reported"
    for r in images:
        assert r.inputs["keepLocally"] is True
        ref = harness.plain(r.inputs["name"])
        assert ":" in ref.rsplit("/", 1)[-1] and versions.tag_of(ref) not in versions.MOVING_TAGS
    pinned = {versions.reference(k) for k in versions.IMAGES}
    for c in full.containers():
        # The mock's image id is the pinned reference; the real one is the id of that pulled image.
        assert c.inputs["image"] in pinned
        assert labels_of(c)["io.versatilehub.image"] == c.inputs["image"]


def _secret_values(value: Any, found: set[str]) -> None:
    if harness.is_secret(value):
        for leaf in _leaves(harness.plain(value)):
            found.add(leaf)
    elif isinstance(value, dict):
        for v in value.values():
            _secret_values(v, found)
    elif isinstance(value, list):
        for v in value:
            _secret_values(v, found)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [str(value)]


def _plain_positions(value: Any) -> list[str]:
    """Every string reachable without passing through a secret wrapper."""
    if harness.is_secret(value):
        return []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _plain_positions(v)]
    if isinstance(value, list):
        return [x for v in value for x in _plain_positions(v)]
    return [str(value)]


def test_no_secret_value_appears_anywhere_unmarked(full: harness.Plan) -> None:
    secrets: set[str] = set()
    for r in full.resources:
        _secret_values(r.inputs, secrets)
    _secret_values(full.outputs, secrets)
    # A secret env list also carries plain entries (TZ=...): skip NAME=value leaves, keep the secrets.
    secrets = {s for s in secrets if len(s) >= 12 and not re.match(r"[A-Z][A-Z0-9_]*=|/", s)}
    assert secrets, "the full suite generates secrets"
    # Generated values stay secret wherever they flow: never in a plain input, output, label, env or command.
    for r in full.resources:
        for text in _plain_positions(r.inputs):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{r.type} {r.name} carries a secret in plain text"
    for text in _plain_positions(full.outputs):
        assert not any(s in text for s in secrets)


def test_generated_passwords_are_strong_and_secret(full: harness.Plan) -> None:
    for r in full.of_type("random:index/randomPassword:RandomPassword"):
        assert r.inputs["length"] >= 24, r.name


def test_planning_twice_gives_identical_inputs() -> None:
    first = harness.run(make_stack(ALL)).to_json()
    second = harness.run(make_stack(ALL)).to_json()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_a_version_override_changes_the_pulled_reference(plan: PlanFn) -> None:
    p = plan(["flow"], versions={"traefik": "v3.6.99"})
    assert p.get("docker:index/remoteImage:RemoteImage", "image-traefik").inputs["name"] == "traefik:v3.6.99"
    assert p.container("edge-traefik").inputs["image"] == "traefik:v3.6.99"


# -- deployment modes --------------------------------------------------------------------------------


def test_mode_suite_runs_the_edge_and_routes_every_service(full: harness.Plan) -> None:
    names = {c.inputs["name"] for c in full.containers()}
    assert {"clientea-edge-traefik", "clientea-edge-socket-proxy"} <= names
    routed = [c for c in full.containers() if labels_of(c).get("traefik.enable") == "true"]
    assert {labels_of(c)["io.versatilehub.service"] for c in routed} >= set(ALL)
    for c in routed:
        assert "web" in networks_of(c)
        assert labels_of(c)["traefik.docker.network"] == "web"
    for c in full.containers():
        if "web" in networks_of(c):
            assert c in routed or c.inputs["name"] == "clientea-edge-traefik", c.inputs["name"]


def test_mode_edge_plus_selected_services(plan: PlanFn) -> None:
    p = plan(["flow"])
    services = {labels_of(c)["io.versatilehub.service"] for c in p.containers()}
    assert services == {"edge", "flow"} | ({"backup"} & services)
    assert p.outputs["services"] == ["flow"]


def test_mode_attach_joins_an_existing_edge(plan: PlanFn) -> None:
    p = plan(["flow"], mode="attach", webNetwork={"name": "proxy", "create": False}, acmeEmail=None)
    assert not [c for c in p.containers() if labels_of(c)["io.versatilehub.service"] == "edge"]
    assert [n.inputs["name"] for n in p.of_type("docker:index/network:Network")].count("proxy") == 0, (
        "adopted"
    )
    routed = [c for c in p.containers() if labels_of(c).get("traefik.enable") == "true"]
    assert routed and all("proxy" in networks_of(c) for c in routed)
    assert all(labels_of(c)["traefik.docker.network"] == "proxy" for c in routed)


def test_mode_standalone_publishes_one_service_on_loopback_only(plan: PlanFn) -> None:
    p = plan(["flow"], mode="standalone", acmeEmail=None, standalonePort=8088)
    assert not [r for r in p.of_type("docker:index/network:Network") if r.inputs["name"] == "web"]
    containers = p.containers()
    assert not [c for c in containers if labels_of(c)["io.versatilehub.service"] == "edge"]
    published = [pt for c in containers for pt in c.inputs.get("ports", [])]
    assert len(published) == 1 and published[0]["ip"] == "127.0.0.1" and published[0]["external"] == 8088
    assert not any(labels_of(c).get("traefik.enable") for c in containers)


# -- the Docker host -----------------------------------------------------------------------------------


def test_local_host_uses_the_local_socket_and_local_commands(full: harness.Plan) -> None:
    [provider] = full.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == "unix:///var/run/docker.sock"
    assert full.of_type("command:local:Command") and not full.of_type("command:remote:Command")
    for c in full.of_type("command:local:Command"):
        assert c.inputs["interpreter"] == ["/bin/bash", "-c"]
        assert harness.plain(c.inputs["create"]).startswith("set -euo pipefail")
    for c in full.containers():
        assert c.provider.startswith(provider.urn), "every container goes to the client's host"


def test_ssh_host_pins_the_key_for_docker_and_commands(
    plan: PlanFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERSATILEHUB_STATE_DIR", str(tmp_path))
    p = plan(
        ALL,
        host={
            "docker": "ssh://deploy@203.0.113.10:2222",
            "sshHostKey": HOST_KEY,
            "memoryMb": 16384,
            "cpus": 8,
        },
    )
    [provider] = p.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == "ssh://deploy@203.0.113.10:2222"
    known_hosts = tmp_path / "known_hosts.clientea"
    assert json.loads(provider.inputs["sshOpts"]) == [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
    ]
    assert known_hosts.read_text() == f"[203.0.113.10]:2222 {HOST_KEY}\n"
    remote = p.of_type("command:remote:Command")
    assert remote and not p.of_type("command:local:Command")
    for c in remote:
        conn = harness.plain(c.inputs["connection"])
        assert conn["hostKey"] == HOST_KEY and conn["host"] == "203.0.113.10" and conn["port"] == 2222
        assert conn["user"] == "deploy"
        assert harness.plain(c.inputs["create"]).startswith("bash -c ")
        if "stdin" in c.inputs:  # secrets travel on stdin, never in the command text
            assert harness.is_secret(c.inputs["stdin"]) or "=" in harness.plain(c.inputs["stdin"])


def test_volume_storage_keeps_data_when_the_stack_goes(plan: PlanFn) -> None:
    p = plan(["flow"], storage={"kind": "volume"})
    volumes = p.of_type("docker:index/volume:Volume")
    assert volumes and all(v.options["retainOnDelete"] for v in volumes)
    names = {v.inputs["name"] for v in volumes}
    assert "clientea-edge-letsencrypt" in names
    for c in p.containers():
        for m in c.inputs.get("mounts", []):
            if m["source"].startswith("/srv/versatilehub/clientea/secrets/"):  # secret files (issue 14)
                assert m["type"] == "bind" and m["readOnly"] and m["target"].startswith("/run/secrets/")
            elif m["target"] != "/var/run/docker.sock":
                assert m["type"] == "volume" and m["source"] in names


def test_bind_storage_follows_the_data_root(plan: PlanFn) -> None:
    p = plan(["flow"], storage={"kind": "bind", "dataRoot": "/data/vh"})
    sources = [m["source"] for c in p.containers() for m in c.inputs.get("mounts", []) if m["type"] == "bind"]
    assert all(s.startswith("/data/vh/clientea/") or s == "/var/run/docker.sock" for s in sources)
    dirs = p.named("edge-data-dirs")
    script = harness.plain(dirs.inputs["create"])
    assert "install -d -o 65532 -g 65532 -m 0700 /data/letsencrypt" in script
    assert "--network none" in script


# -- the offline plan tool -----------------------------------------------------------------------------


def test_plan_tool_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_tool.main(["clienteA", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stack"] == "clienteA" and set(doc) == {"stack", "resources", "outputs"}
    for r in doc["resources"]:
        assert {"type", "name", "parent", "inputs"} <= set(r)
    traefik = next(r for r in doc["resources"] if r["name"] == "edge-traefik")
    assert traefik["parent"] == "edge" and traefik["inputs"]["readOnly"] is True
    assert "networksAdvanced" in traefik["inputs"], "engine-style camelCase names"
    text = json.dumps(doc)
    assert "4dabf18193072939515e22adb298388d" not in text, "secrets are masked, not wrapped"
    assert '"[secret]"' in text


def test_plan_tool_table_lists_containers_and_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_tool.main(["clienteA"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^container +clientea-edge-traefik +traefik:v3", out, re.M)
    assert "planned with placeholders: versatilehub:backup.keyId" in out, "the stack file holds no secret"
    assert "0.0.0.0:80->8000" in out and "MB of 16384 MB host RAM" in out
    assert "not `pulumi preview`" in out


def test_plan_tool_bad_config_exits_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  versatilehub:client: bad client\n  versatilehub:domain: x\n")
    assert plan_tool.main([str(stack)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("versatilehub:") for line in err) and "Traceback" not in "\n".join(err)
    assert any(line.startswith("versatilehub:domain:") for line in err)


def test_plan_tool_as_a_command_exits_with_its_code(tmp_path: Path) -> None:
    """The command-line path (`python -m tools.plan`), which ends through harness.exit_after_plans."""
    ok = subprocess.run(
        [sys.executable, "-m", "tools.plan", "clienteB", "--json"],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stack"] == "clienteB"
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  versatilehub:client: bad client\n")
    bad = subprocess.run(
        [sys.executable, "-m", "tools.plan", str(stack)], cwd=harness.ROOT, capture_output=True
    )
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr and bad.stdout == b""


def test_a_plan_leaves_the_sdk_and_the_garbage_collector_as_it_found_them() -> None:
    """The harness skips source positions and pauses the collector during a run, and only then."""
    stack_trace = sdk_resource._get_stack_trace
    assert gc.isenabled()
    harness.run(make_stack(["flow"]))
    with pytest.raises(ConfigError):
        harness.run(make_stack(["flow"], domain="not a domain"))
    assert gc.isenabled() and sdk_resource._get_stack_trace is stack_trace
    seen = []
    harness.run(
        make_stack(["flow"]), program=lambda: seen.append((gc.isenabled(), sdk_resource._get_stack_trace))
    )
    assert seen == [(False, harness._no_stack_trace)]


def test_plan_tool_secure_values_become_placeholders(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.sec.yaml"
    stack.write_text(
        "config:\n  versatilehub:client: sec\n  versatilehub:domain: sec.com\n  versatilehub:company: Sec\n"
        "  versatilehub:timezone: UTC\n  versatilehub:acmeEmail: a@sec.com\n  versatilehub:services: [flow]\n"
        "  versatilehub:sshPrivateKey:\n    secure: v1:abc:def\n"
    )
    cfg = harness.read_stack_file(stack)
    assert cfg.secret_keys == ["versatilehub:sshPrivateKey"]
    assert cfg.values["versatilehub:sshPrivateKey"] == harness.placeholder("versatilehub:sshPrivateKey")
