"""The lab's two tools, in CI: the image builder's cache logic and the driver applying a planned container.

The real-app checks (n8n, its runner, OpenClaw; a cold n8n build alone takes 8 to 13 minutes on 2 cores)
are not written yet (issue 21 items 3-5): they will run apart from CI, next to the cached images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools import engine as engines
from tools import harness, lab, lab_images

FLOW_AGENT = ("clientea-flow-n8n", "clientea-flow-runner", "clientea-flow-postgres", "clientea-agent-gateway")


@pytest.fixture(scope="module")
def plan_a() -> harness.Plan:
    return harness.plan_stack("clienteA")


def _context(tmp_path: Path, image: str = "any") -> lab.Context:
    return lab.Context(image=lambda _ref: image, source=lambda s: str(tmp_path / s.strip("/")))


# -- the builder ------------------------------------------------------------------------------------------
def test_a_spec_hash_changes_with_a_version_a_file_or_the_builder_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "launcher.mjs").write_text("one")
    monkeypatch.setattr(lab_images, "FILES", tmp_path)
    spec = lab_images.specs()["n8nRunners"]
    first = spec.digest()
    assert spec.digest() == first == lab_images.specs()["n8nRunners"].digest()
    (tmp_path / "launcher.mjs").write_text("two")
    assert spec.digest() != first
    changed = lab_images.Spec(**{**spec.__dict__, "npm": ("@n8n/task-runner@2.41.0",)})
    assert changed.digest() != spec.digest()
    before = spec.digest()
    monkeypatch.setattr(lab_images, "BUILDER_VERSION", "other")
    assert spec.digest() != before


def test_the_image_user_replaces_a_same_named_entry(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\npostgres:x:105:111::/var/lib/postgresql:/bin/bash\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\npostgres:x:111:\n")
    lab_images._set_user(tmp_path, "postgres:x:70:70::/var/lib/postgresql:/bin/sh", "postgres:x:70:")
    assert (tmp_path / "etc" / "passwd").read_text().splitlines() == [
        "root:x:0:0::/root:/bin/sh",
        "postgres:x:70:70::/var/lib/postgresql:/bin/sh",
    ]
    assert (tmp_path / "etc" / "group").read_text().splitlines() == ["root:x:0:", "postgres:x:70:"]


def test_every_stack_image_flow_and_agent_use_has_a_lab_spec(plan_a: harness.Plan) -> None:
    keys = {
        lab.image_keys(plan_a)[c.plain_inputs["image"]]
        for c in plan_a.containers()
        if c.plain_inputs["name"] in FLOW_AGENT
    }
    assert keys == {"n8n", "n8nRunners", "flowPostgres", "openclaw"} <= set(lab_images.specs())


def test_a_second_build_reuses_the_image_and_a_changed_spec_rebuilds(
    docker_engine: engines.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = lab_images.specs()["flowPostgres"]
    lab_images.build(docker_engine, spec)
    first = docker_engine.docker("image", "inspect", "-f", "{{.Id}}", spec.ref).strip()
    imports: list[str] = []
    real_import = docker_engine.import_rootfs
    monkeypatch.setattr(
        docker_engine, "import_rootfs", lambda *a, **k: imports.append("x") or real_import(*a, **k)
    )
    lab_images.build(docker_engine, spec)
    assert imports == []
    assert docker_engine.docker("image", "inspect", "-f", "{{.Id}}", spec.ref).strip() == first
    changed = lab_images.Spec(**{**spec.__dict__, "changes": (*spec.changes, "ENV LAB_CHANGED=1")})
    lab_images.build(docker_engine, changed)
    assert imports == ["x"]
    assert "LAB_CHANGED=1" in docker_engine.docker("image", "inspect", "-f", "{{.Config.Env}}", spec.ref)
    lab_images.build(docker_engine, spec)  # back to the spec the other tests use


# -- the driver -------------------------------------------------------------------------------------------
def test_durations_read_as_the_provider_writes_them() -> None:
    assert lab.duration_ns("2m0s") == 120_000_000_000
    assert lab.duration_ns("30s") == 30_000_000_000
    assert lab.duration_ns("1h0m0s") == 3_600_000_000_000
    with pytest.raises(ValueError):
        lab.duration_ns("30")


@pytest.mark.parametrize("stack", [p.stem.removeprefix("Pulumi.") for p in harness.iter_stack_files()])
def test_every_planned_field_is_applied_or_reported_never_dropped(stack: str, tmp_path: Path) -> None:
    plan = harness.plan_stack(stack)
    for container in plan.containers():
        inputs = container.plain_inputs
        t = lab.translate(inputs, _context(tmp_path))
        assert sorted(t.applied + t.unsupported) == sorted(inputs), inputs["name"]
        if inputs["name"].split("-", 1)[1].startswith(("flow-", "agent-")):
            assert t.unsupported == [], f"{inputs['name']}: {t.unsupported}"


def test_a_field_the_driver_does_not_know_is_reported_and_refused(
    plan_a: harness.Plan, tmp_path: Path, docker_engine: engines.Engine
) -> None:
    inputs = {**plan_a.container("clientea-flow-runner").plain_inputs, "privileged": True}
    t = lab.translate(inputs, _context(tmp_path))
    assert t.unsupported == ["privileged"]
    with pytest.raises(lab.LabError, match="does not apply privileged"):
        lab.create(docker_engine, t)


def _apply(
    engine: engines.Engine, plan: harness.Plan, name: str, tmp_path: Path, image: str
) -> lab.Translation:
    networks = lab.planned_networks(plan)
    t = lab.translate(plan.container(name).plain_inputs, _context(tmp_path, image))
    for network, _aliases in t.networks:
        lab.create_network(engine, networks[network])
    for mount in t.host.get("Mounts", []):
        Path(mount["Source"]).mkdir(parents=True, exist_ok=True)
    lab.create(engine, t)
    return t


@pytest.mark.parametrize("name", FLOW_AGENT)
def test_the_engine_holds_every_planned_setting_of_flow_and_agent(
    name: str, plan_a: harness.Plan, tmp_path: Path, docker_engine: engines.Engine
) -> None:
    image = engines.base_image(docker_engine)
    t = _apply(docker_engine, plan_a, name, tmp_path, image)
    try:
        inspected: dict[str, Any] = lab.inspect(docker_engine, t.name)
        assert lab.verify(t, inspected) == []
        # The comparison itself can fail: an engine value unlike the plan is reported.
        inspected["HostConfig"]["Memory"] += 1
        inspected["Config"]["Healthcheck"]["Test"] = ["CMD-SHELL", "true"]
        assert [p.split(":")[0] for p in lab.verify(t, inspected)] == ["Healthcheck", "HostConfig.Memory"]
    finally:
        lab.remove(docker_engine, t)


# -- the real-app runner's pieces that need no app (tools/lab_apps.py) ---------------------------------
def test_the_dns_logger_reads_query_names_and_flags_only_vendor_hosts() -> None:
    from tools import lab_apps

    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x03api\x03n8n\x02io\x00\x00\x01\x00\x01"
    assert lab_apps.DnsLogger.qname(query) == "api.n8n.io"
    logger = object.__new__(lab_apps.DnsLogger)
    logger.names = ["api.n8n.io", "postgres", "notn8n.io", "n8n.io", "telemetry.n8n.cloud"]
    assert logger.vendor_names() == ["api.n8n.io", "n8n.io", "telemetry.n8n.cloud"]
