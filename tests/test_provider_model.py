"""The harness answers as the real docker provider (kreuzwerker/terraform-provider-docker v4.5.0, bundled
by pulumi-docker 5.x), and a second, no-op `up` over the first one's state replaces nothing."""

from __future__ import annotations

import json
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


# Every shipped stack in every mode, and one-image bumps: tests/test_second_run.py.


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


# ---------------------------------------------------------------------------------------------------
# The other resource types, sets versus lists, and what the host adds to the read-back
# ---------------------------------------------------------------------------------------------------


def _edited(before: harness.Plan, name: str, type_: str, edit: Any) -> harness.Plan:
    """`before` with one resource's inputs changed by `edit(inputs)`: the next run's inputs."""
    after = harness.Plan(before.stack, [], before.outputs)
    for r in before.resources:
        inputs = dict(r.inputs)
        if r.name == name and r.type == type_:
            edit(inputs)
        after.resources.append(harness.PlannedResource(**{**r.__dict__, "inputs": inputs}))
    return after


def _summary(changes: list[harness.Change]) -> set[tuple[str, str, str]]:
    return {(c.type.rsplit(":", 1)[-1], c.name, c.action) for c in changes}


def test_a_password_the_provider_cannot_generate_is_refused_at_create() -> None:
    """resource_password.go passwordSchemaV3: length AtLeast(1) and AtLeastSumOf(min_*); the wording is
    terraform-plugin-framework-validators' ("Attribute length value must be at least sum of ...")."""
    import pulumi_random as random

    def program() -> None:
        random.RandomPassword("short", length=4, min_upper=2, min_lower=2, min_numeric=1)

    with pytest.raises(provider_model.ProviderError, match="must be at least sum of min_upper"):
        harness.run(make_stack(["hub"]), program)

    def none_allowed() -> None:
        random.RandomPassword("empty", length=8, upper=False, lower=False, numeric=False, special=False)

    with pytest.raises(provider_model.ProviderError, match="at least one attribute"):
        harness.run(make_stack(["hub"]), none_allowed)


def test_every_generated_secret_is_satisfiable(plan: Any) -> None:
    """The suite's own passwords pass the provider's checks (the harness raises otherwise)."""
    p = plan(["hub", "chat", "flow", "agent"])
    assert len(p.of_type(provider_model.PASSWORD)) >= 10


def test_reordering_a_set_is_no_change_and_reordering_a_list_replaces(plan: Any) -> None:
    """labels, mounts, networksAdvanced, envs, capabilities.drops are TypeSet in resource_docker_container.go:
    the SDK hashes their elements, so order never shows in a diff. command is a TypeList: order is the
    argv, a new order is a new container."""
    before = plan(["hub"])

    def reorder_sets(inputs: dict[str, Any]) -> None:
        for key in ("labels", "mounts", "networksAdvanced", "envs"):
            if isinstance(inputs.get(key), list):
                inputs[key] = list(reversed(inputs[key]))

    backend = before.container("hub-backend")
    assert len(backend.plain_inputs["networksAdvanced"]) > 1 and len(backend.plain_inputs["labels"]) > 1
    same = harness.second_run(before, _edited(before, backend.name, provider_model.CONTAINER, reorder_sets))
    assert same == []

    def reorder_command(inputs: dict[str, Any]) -> None:
        inputs["command"] = list(reversed(inputs["command"]))

    worker = next(c for c in before.containers() if len(c.plain_inputs.get("command") or []) > 1)
    changes = harness.second_run(
        before, _edited(before, worker.name, provider_model.CONTAINER, reorder_command)
    )
    assert [(c.name, c.action, c.fields) for c in changes if c.type == provider_model.CONTAINER] == [
        (worker.name, "replace", ["command"])
    ]


def test_published_ports_compare_as_the_provider_suppresses_them(plan: Any) -> None:
    """ports is a TypeList read back sorted by port (flattenContainerPorts); its DiffSuppressFunc compares
    each stored binding with the FIRST new one of the same internal port. Ports of one binding each may
    come in any order; two bindings of one port (IPv4 and IPv6) never pass that comparison, so they
    round-trip only where the engine lists them as given, which Debian 12's docker.io 20.10.24 does not
    (test_port_binding_order_on_a_real_engine). Traefik therefore gives each family its own container
    port (#13): one binding each, unchanged on either engine order."""
    one_each = [
        docker.ContainerPortArgs(internal=8443, external=443),
        docker.ContainerPortArgs(internal=8000),
    ]
    probe = harness.run(make_stack(["hub"]), _one_container(ports=one_each))
    stored = harness.plain(probe.state[(provider_model.CONTAINER, "probe")])["ports"]
    assert [p["internal"] for p in stored] == [8000, 8443]
    assert harness.second_run(probe, probe) == []  # given 8443 first: a difference, suppressed

    # The layout Traefik had: one port on both families. The reversed engine replaces it on every run.
    dual = [docker.ContainerPortArgs(internal=8000, external=80, ip=ip) for ip in ("0.0.0.0", "::")]
    reversed_engine = provider_model.HostFacts(port_order="reversed")
    old = harness.run(make_stack(["hub"]), _one_container(ports=dual), host=reversed_engine)
    assert [(c.name, c.action, c.fields) for c in harness.second_run(old, old)] == [
        ("probe", "replace", ["ports"])
    ]

    before = plan(["hub"])
    traefik = before.container("edge-traefik")
    given = [(p["internal"], p["ip"]) for p in traefik.plain_inputs["ports"]]
    assert given == [(8000, "0.0.0.0"), (8001, "::"), (8443, "0.0.0.0"), (8444, "::")]
    assert harness.second_run(before, plan(["hub"])) == []
    for order in ("given", "reversed"):
        first = harness.run(make_stack(["hub"]), host=provider_model.HostFacts(port_order=order))
        assert harness.second_run(first, plan(["hub"])) == [], order

    # A real change still shows: an IPv6 port moved.
    def edit(inputs: dict[str, Any]) -> None:
        inputs["ports"] = [{**p, "external": 8080} if p["internal"] == 8001 else p for p in inputs["ports"]]

    changes = harness.second_run(before, _edited(before, traefik.name, provider_model.CONTAINER, edit))
    assert ("Container", traefik.name, "replace") in _summary(changes)


def test_networks_volumes_and_images_replace_on_their_force_new_fields(plan: Any) -> None:
    """resource_docker_network.go / resource_docker_volume.go: every field ForceNew; resource_docker_image.go:
    keep_locally has no ForceNew (an update), name has (a new pull, new containers)."""
    before = plan(["hub"])
    net = next(n for n in before.of_type(provider_model.NETWORK) if n.plain_inputs.get("labels"))

    def internal(inputs: dict[str, Any]) -> None:
        inputs["internal"] = not inputs.get("internal", False)

    changes = harness.second_run(before, _edited(before, net.name, provider_model.NETWORK, internal))
    assert ("Network", net.name, "replace") in _summary(changes)

    def relabel(inputs: dict[str, Any]) -> None:
        inputs["labels"] = list(reversed(inputs.get("labels") or [])) * 2  # order and duplicates: a set

    assert harness.second_run(before, _edited(before, net.name, provider_model.NETWORK, relabel)) == []

    image = before.get(provider_model.IMAGE, "image-mariadb")

    def keep(inputs: dict[str, Any]) -> None:
        inputs["keepLocally"] = False

    assert _summary(harness.second_run(before, _edited(before, image.name, provider_model.IMAGE, keep))) == {
        ("RemoteImage", image.name, "update")
    }


def test_a_command_re_runs_when_its_inputs_change_and_triggers_replace_it(plan: Any) -> None:
    """pulumi-command 1.2.1: triggers is replaceOnChanges (common/inputs.go); any other change is an Update
    that runs `update`, else `create` (local/commandController.go)."""
    before = plan(["hub"])
    step = before.get("command:local:Command", "hub-url")

    def env(inputs: dict[str, Any]) -> None:
        inputs["environment"] = {**inputs["environment"], "PUBLIC_URL": "https://erp.clientea.com"}

    changes = harness.second_run(before, _edited(before, step.name, step.type, env))
    assert [(c.name, c.action, c.fields) for c in changes] == [("hub-url", "re-run", ["environment"])]
    assert not provider_model.forces_replacement(step.type, "environment")
    assert provider_model.forces_replacement(step.type, "triggers")


def test_a_replaced_password_reaches_whatever_carries_it(plan: Any) -> None:
    """A replacement generates a new result: every input that carries the old one changes with it."""
    before = plan(["hub"])
    password = before.get(provider_model.PASSWORD, "hub-admin-password")

    def longer(inputs: dict[str, Any]) -> None:
        inputs["length"] = 40

    changes = harness.second_run(before, _edited(before, password.name, password.type, longer))
    assert ("RandomPassword", "hub-admin-password", "replace") in _summary(changes)
    old = harness.plain(before.state[(password.type, password.name)]["result"])
    carriers = {r.name for r in before.resources if old in json.dumps(r.plain_inputs)}
    assert carriers and carriers <= {c.name for c in changes}


def test_a_host_without_swap_accounting_updates_every_capped_container_on_every_run() -> None:
    """funcs.go resourceDockerContainerRead stores memory_swap as the engine kept it: -1 once the engine
    dropped the limit for want of swap accounting (tools/preflight.py refuses such a host)."""
    stack = make_stack(["hub"])
    first = harness.run(stack, host=provider_model.HostFacts(swap_limit=False))
    changes = harness.second_run(first, harness.run(stack))
    capped = [c for c in first.containers() if "memorySwap" in c.plain_inputs]
    assert capped
    assert {(c.name, c.action, tuple(c.fields)) for c in changes} == {
        (c.name, "update", ("memorySwap",)) for c in capped
    }


def test_daemon_log_opts_merge_into_the_read_back_and_replace_every_container() -> None:
    """moby daemon/logs.go mergeAndVerifyLogConfig adds daemon.json log-opts the container leaves out;
    the provider reads HostConfig.LogConfig.Config back whole, and log_opts is ForceNew."""
    stack = make_stack(["hub"])
    host = provider_model.HostFacts(log_opts={"max-size": "100m", "compress": "true"})
    first = harness.run(stack, host=host)
    state = harness.plain(first.state[(provider_model.CONTAINER, "hub-backend")])
    assert state["logOpts"] == {"max-size": "10m", "max-file": "3", "compress": "true"}
    changes = harness.second_run(first, harness.run(stack, host=host))
    assert {c.action for c in changes if c.type == provider_model.CONTAINER} == {"replace"}
    assert all(c.fields == ["logOpts"] for c in changes if c.type == provider_model.CONTAINER)
    # The same daemon.json key the stack sets itself changes nothing: the container's own value wins.
    same = provider_model.HostFacts(log_opts={"max-size": "100m", "max-file": "5"})
    assert harness.second_run(harness.run(stack, host=same), harness.run(stack)) == []
