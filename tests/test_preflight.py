"""tools/preflight.py: the Docker host preconditions the provider's read-back depends on, from `docker info`
and daemon.json given as files, and from a real dockerd (Debian's, tools/engine.py) started with a
daemon.json of the test's own."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools import engine, harness, preflight, provider_model

INFO_OK = {"ServerVersion": "28.5.1", "SwapLimit": True, "LoggingDriver": "json-file"}


@pytest.fixture(scope="module")
def needs() -> preflight.Needs:
    return preflight.needs_of(harness.plan_stack("clienteA"))


def test_what_the_stack_sets_is_read_from_its_plan(needs: preflight.Needs) -> None:
    assert len(needs.swap_limited) == len(needs.log_containers["json-file"]) >= 20
    assert set(needs.log_opts["json-file"]) == {"max-size", "max-file"}
    assert needs.dual_bindings == []  # Traefik: one container port per family since #13


def test_a_host_that_keeps_what_the_stack_writes_passes(needs: preflight.Needs) -> None:
    assert preflight.check(needs, INFO_OK, None) == []
    assert preflight.check(needs, INFO_OK, '{"log-opts": {"max-size": "50m"}, "live-restore": true}') == []


def test_no_swap_accounting_is_one_line_with_the_fix(needs: preflight.Needs) -> None:
    (line,) = preflight.check(needs, {**INFO_OK, "SwapLimit": False}, None)
    assert "SwapLimit false" in line and "swapaccount=1" in line and "\n" not in line


def test_extra_daemon_log_opts_are_named_with_the_fix(needs: preflight.Needs) -> None:
    daemon = json.dumps({"log-driver": "json-file", "log-opts": {"max-size": "50m", "compress": "true"}})
    (line,) = preflight.check(needs, INFO_OK, daemon)
    assert "log-opts compress merge into the" in line and "remove compress" in line
    # Options for another driver do not reach the stack's json-file containers.
    assert (
        preflight.check(needs, INFO_OK, json.dumps({"log-driver": "journald", "log-opts": {"tag": "x"}}))
        == []
    )
    assert "not valid JSON" in preflight.check(needs, INFO_OK, "{")[0]


def test_an_engine_that_reverses_bindings_is_refused_only_with_dual_bindings(needs: preflight.Needs) -> None:
    old = {**INFO_OK, "ServerVersion": "20.10.24+dfsg1"}
    assert preflight.check(needs, old, None) == []  # the shipped stacks publish one binding per port
    dual = dataclasses.replace(needs, dual_bindings=["clientea-edge-traefik"])
    (line,) = preflight.check(dual, old, None)
    assert "clientea-edge-traefik" in line and "its own container port" in line


def test_the_command_line_exit_codes(tmp_path: Path) -> None:
    info = tmp_path / "info.json"
    info.write_text(json.dumps(INFO_OK))
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-opts": {"compress": "true"}}')
    run = [sys.executable, "-m", "tools.preflight", "clienteA", "--info", str(info)]
    ok = subprocess.run(run, capture_output=True, text=True, cwd=harness.ROOT, check=False)
    assert ok.returncode == 0 and "keeps what the stack writes" in ok.stdout, ok.stderr
    bad = subprocess.run(
        [*run, "--daemon-json", str(daemon)], capture_output=True, text=True, cwd=harness.ROOT
    )
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    unknown = subprocess.run([*run[:3], "nosuch"], capture_output=True, text=True, cwd=harness.ROOT)
    assert unknown.returncode == 2 and "no stack file" in unknown.stderr


def _ports_read_back(real: dict[str, Any]) -> list[dict[str, Any]]:
    """flattenContainerPorts (resource_docker_container_structures.go) over a real NetworkSettings.Ports."""
    out = []
    for key in sorted(real, key=lambda k: int(k.split("/")[0])):
        port, proto = key.split("/")
        for b in real[key] or []:
            out.append(
                {"internal": int(port), "external": int(b["HostPort"]), "ip": b["HostIp"], "protocol": proto}
            )
    return out


def test_a_real_engine_merges_daemon_log_opts_and_orders_bindings_as_modelled(
    plan: Any, tmp_path: Path
) -> None:
    """Debian's dockerd with a daemon.json of extra log-opts: the container's LogConfig is what the model
    reads back, `docker info` drives the preflight, and Traefik's planned bindings read back as the
    engine's version says (20.10: reversed within a port, so the provider would replace Traefik)."""
    reason = engine.available()
    if reason:
        pytest.fail(f"real-engine tests need a private dockerd: {reason}")
    config = tmp_path / "daemon.json"
    config.write_text(
        json.dumps({"log-driver": "json-file", "log-opts": {"max-size": "20m", "compress": "true"}})
    )
    traefik = plan(["hub"]).container("clientea-edge-traefik").plain_inputs
    with engine.Engine(daemon_args=[f"--config-file={config}"]) as running:
        image = engine.base_image(running, "versatilehub-lab/busybox:bookworm", packages=("busybox",))
        info = json.loads(running.docker("info", "--format", "{{json .}}"))
        running.docker("network", "create", "pf")
        publish = []
        for p in traefik["ports"]:
            host_ip = f"[{p['ip']}]" if ":" in p["ip"] else p["ip"]
            publish += ["--publish", f"{host_ip}:{int(p['external']) + 20000}:{int(p['internal'])}"]
        opts = [f"--log-opt={k}={v}" for k, v in traefik["logOpts"].items()]
        running.docker(
            "run", "-d", "--name", "pf", "--network", "pf", "--log-driver", traefik["logDriver"], *opts,
            *publish, image, "sleep", "300",
        )  # fmt: skip
        got = json.loads(running.docker("inspect", "-f", "{{json .}}", "pf"))
    model = provider_model.HostFacts(log_opts={"max-size": "20m", "compress": "true"})
    assert (
        got["HostConfig"]["LogConfig"]["Config"]
        == provider_model.container_read_back(traefik, model)["logOpts"]
    )
    needs = preflight.needs_of(harness.plan_stack("clienteA"))
    problems = preflight.check(needs, info, config.read_text())
    assert any("log-opts compress" in line for line in problems)
    real = [
        {**p, "external": p["external"] - 20000} for p in _ports_read_back(got["NetworkSettings"]["Ports"])
    ]
    major = int(str(info["ServerVersion"]).split(".")[0])
    order = "reversed" if major < 27 else "given"
    assert real == provider_model.sorted_ports(traefik["ports"], order)
    # One binding per container port: the read-back is the plan's on either engine order (#13).
    assert provider_model.changed_fields(traefik, {**traefik, "ports": real}) == []
    assert not any("bindings in reverse" in line for line in problems)
