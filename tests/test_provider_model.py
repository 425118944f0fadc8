"""The harness answers as the real docker provider (kreuzwerker/terraform-provider-docker v4.5.0, bundled
by pulumi-docker 5.x), and a second, no-op `up` over the first one's state replaces nothing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pulumi_docker as docker
import pytest

from components.config import ConfigError
from tests.conftest import make_stack
from tools import harness, provider_model
from tools.provider_model import duration_string, nano_to_decimal_string, parse_duration

COMMANDS = ("command:local:Command", "command:remote:Command")


@pytest.mark.parametrize(
    ("nano", "text"),
    # internal/provider/helpers_test.go TestNanoInt64ToDecimalString (v4.5.0)...
    [
        *[(0, "0"), (10**9, "1.0"), (1_500_000_000, "1.5"), (2 * 10**9, "2.0"), (2_250_000_000, "2.25")],
        # ...and what the same function does (it counts every "0" of FloatString(9), not trailing ones).
        (50_000_000, "0.1"),
        (55_000_000, "0.055"),
        (10 * 10**9, "10."),
        (150_000_000, "0.15"),
    ],
)
def test_cpus_are_stored_as_nano_int64_to_decimal_string(nano: int, text: str) -> None:
    assert nano_to_decimal_string(nano) == text


@pytest.mark.parametrize(
    ("given", "stored"),
    # Go's time.Duration.String (stdlib time/time.go): minutes and hours always carry the smaller units.
    [
        ("60s", "1m0s"),
        ("120s", "2m0s"),
        ("30s", "30s"),
        ("1.5s", "1.5s"),
        ("500ms", "500ms"),
        ("0", "0s"),
        ("3600s", "1h0m0s"),
        ("90m", "1h30m0s"),
        ("1h15m30.5s", "1h15m30.5s"),
    ],
)
def test_durations_are_stored_as_go_prints_them(given: str, stored: str) -> None:
    assert duration_string(parse_duration(given)) == stored


def _one_container(**args: Any) -> Any:
    def program() -> None:
        docker.Container("probe", image="sha256:abc", name="probe", **args)

    return program


def test_an_empty_command_element_is_refused_as_the_provider_refuses_it() -> None:
    """resource_docker_container_funcs.go, resourceDockerContainerCreate: "values for command may not be
    empty" (an empty entrypoint element is not checked there)."""
    with pytest.raises(provider_model.ProviderError, match="values for command may not be empty"):
        harness.run(make_stack(["hub"]), _one_container(command=["redis-server", "--save", ""]))
    harness.run(make_stack(["hub"]), _one_container(command=["redis-server"], entrypoints=["", "x"]))


def test_a_container_reads_back_in_the_providers_form() -> None:
    plan = harness.run(
        make_stack(["hub"]),
        _one_container(
            cpus="2", healthcheck=docker.ContainerHealthcheckArgs(tests=["CMD", "true"], interval="60s")
        ),
    )
    state = harness.plain(plan.state[(provider_model.CONTAINER, "probe")])
    assert state["cpus"] == "2.0"
    assert (state["healthcheck"]["interval"], state["healthcheck"]["startPeriod"]) == ("1m0s", "0s")
    changes = harness.second_run(plan, plan)
    assert [(c.name, c.action, c.fields) for c in changes] == [("probe", "replace", ["cpus"])]


@pytest.mark.parametrize("stack_file", list(harness.iter_stack_files()), ids=lambda p: p.name)
def test_a_no_op_second_run_of_a_shipped_stack_changes_nothing(stack_file: Path) -> None:
    """Before the fix: 13 of clienteA's containers replaced (cpus 0.05 stored as "0.1", healthcheck
    "60s" stored as "1m0s"), and hub-redis-cache refused at create."""
    first = harness.plan_stack(stack_file)
    again = harness.plan_stack(stack_file)
    assert harness.second_run(first, again) == []


def test_bumping_one_image_replaces_its_containers_only() -> None:
    before = harness.run(make_stack(["hub", "chat"]))
    after = harness.run(make_stack(["hub", "chat"], versions={"chatRedis": "8.6.8-alpine"}))
    changes = harness.second_run(before, after)
    replaced = {(c.type, c.name) for c in changes if c.type != "docker:index/remoteImage:RemoteImage"}
    assert ("docker:index/remoteImage:RemoteImage", "image-chatRedis") in {(c.type, c.name) for c in changes}
    assert (provider_model.CONTAINER, "chat-redis") in replaced
    assert {n for t, n in replaced if t == provider_model.CONTAINER} == {"chat-redis"}


def test_a_cpu_cap_the_provider_cannot_store_is_refused_with_the_fix() -> None:
    stack = make_stack(["hub"], resources={"hub-backend": {"cpus": 0.05}})
    with pytest.raises(ConfigError) as info:
        harness.run(stack)
    line = next(p for p in info.value.problems if p.startswith("versatilehub:resources.hub-backend.cpus"))
    assert "reads 0.05 back as 0.1" in line and "pulumi config set --path" in line


def test_every_step_leaves_the_previous_output_out_of_its_environment(plan: Any) -> None:
    """pulumi-command 1.2.1: add_previous_output_in_env defaults to true (the SDK's Command docstring)."""
    steps = [r for r in plan(["hub", "chat", "flow"]).resources if r.type in COMMANDS]
    assert steps and all(r.plain_inputs.get("addPreviousOutputInEnv") is False for r in steps)


def test_stateful_roles_get_time_to_stop_cleanly(plan: Any) -> None:
    """Without destroy_grace_seconds the provider stops a replaced container with a 0 s timeout and removes
    it by force (resource_docker_container_funcs.go, resourceDockerContainerDelete)."""
    by_name = {r.name: r.plain_inputs for r in plan(["hub", "chat", "flow"]).containers()}
    for name, at_least in {
        "hub-mariadb": 60,
        "chat-postgres": 60,
        "hub-redis-queue": 60,
        "chat-sidekiq": 26,  # Sidekiq's own 25 s shutdown timeout
        "flow-n8n": 31,  # N8N_GRACEFUL_SHUTDOWN_TIMEOUT, 30 s by default
    }.items():
        assert by_name[name]["destroyGraceSeconds"] >= at_least, name
        assert by_name[name]["stopTimeout"] == by_name[name]["destroyGraceSeconds"], name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_cache_redis_command_disables_snapshots_on_a_real_redis(plan: Any, tmp_path: Path) -> None:
    """hub-redis-cache's argv, run by Debian's redis-server: `--save` followed by another option is
    `save ""` (no RDB at all, not even at shutdown), without the empty element the provider refuses."""
    cache = plan(["hub"]).container("hub-redis-cache").plain_inputs
    argv = [*cache["entrypoints"], *cache["command"]]
    assert argv[0] == "redis-server" and "" not in argv
    port = _free_port()
    server_bin, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server_bin and cli, "redis-server is installed by tools/run-tests.sh"
    server = subprocess.Popen([server_bin, *argv[1:], "--port", str(port), "--dir", str(tmp_path)])
    try:
        for _ in range(100):
            if (
                subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, text=True).stdout
                == "PONG\n"
            ):
                break
            time.sleep(0.05)
        got = subprocess.run([cli, "-p", str(port), "config", "get", "save"], capture_output=True, text=True)
        assert got.stdout.split("\n")[:2] == ["save", ""]
        subprocess.run([cli, "-p", str(port), "set", "k", "v"], check=True, capture_output=True)
        subprocess.run([cli, "-p", str(port), "shutdown"], capture_output=True)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    assert not list(tmp_path.iterdir()), "no dump.rdb written"


def test_a_field_the_provider_cannot_update_in_place_replaces_the_container(plan: Any) -> None:
    """resourceDockerContainerUpdate applies only restart, memory, CPU shares/set and device limits: tmpfs
    is not ForceNew, so without replaceOnChanges a change would be an update that changes nothing."""
    before = plan(["hub"])
    after = harness.Plan(before.stack, [], before.outputs)
    for r in before.resources:
        inputs = dict(r.inputs)
        if r.name == "hub-redis-cache":
            inputs["tmpfs"] = {"/data": "rw,size=2m"}
        after.resources.append(harness.PlannedResource(**{**r.__dict__, "inputs": inputs}))
    changes = harness.second_run(before, after)
    containers = [(c.name, c.action, c.fields) for c in changes if c.type == provider_model.CONTAINER]
    assert containers == [("hub-redis-cache", "replace", ["tmpfs"])]
    # The new container has a new id: the steps triggered by container ids run again.
    assert {c.action for c in changes if c.type != provider_model.CONTAINER} <= {"re-run"}
