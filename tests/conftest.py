"""The mocks harness for every test: a fresh runtime, config and recorder per plan (see tools/harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pytest

from components.config import ConfigError
from tools import harness

# A valid stack most tests start from; each test states only what it changes.
BASE_STACK: dict[str, Any] = {
    "client": "clientea",
    "company": "Cliente A S.A.",
    "domain": "clientea.com",
    "timezone": "America/Argentina/Buenos_Aires",
    "acmeEmail": "ops@clientea.com",
    "host": {"memoryMb": 16384, "cpus": 8},
    # Backups are on by default; a local repository needs no credentials (tests/test_backup.py covers B2).
    "backup": {"repository": "/srv/backups/clientea"},
}

# What a service needs in its own section before it can be deployed, added when the stack enables it.
# `secure:` leaves stand for `pulumi config set --secret` values (the harness turns them into placeholders).
SERVICE_STACK: dict[str, dict[str, Any]] = {
    "hub": {"hub": {"country": "AR"}},
    "chat": {"chat": {"adminEmail": "soporte@clientea.com"}},
    "agent": {
        "agent": {
            "model": "anthropic/claude-sonnet-4-5",
            "providerKeys": {"anthropic": {"secure": "v1:test:anthropic"}},
        }
    },
}

PlanFn = Callable[..., harness.Plan]


def make_stack(services: list[str] | tuple[str, ...], **overrides: Any) -> harness.StackConfig:
    """A stack from BASE_STACK and each enabled service's SERVICE_STACK; `overrides` replace top-level keys
    (value None removes one)."""
    needed = {k: v for s in services for k, v in SERVICE_STACK.get(s, {}).items()}
    config = {**BASE_STACK, **needed, "services": list(services), **overrides}
    return harness.stack_config("test", {k: v for k, v in config.items() if v is not None})


@pytest.fixture
def plan() -> PlanFn:
    """plan(services, **overrides) -> the recorded plan of the real program for that stack."""

    def _plan(services: list[str] | tuple[str, ...] = ("hub",), **overrides: Any) -> harness.Plan:
        return harness.run(make_stack(services, **overrides))

    return _plan


@pytest.fixture
def config_problems() -> Callable[..., list[str]]:
    """config_problems(services, **overrides) -> the one-line problems, asserting nothing was registered."""

    def _problems(services: list[str] | tuple[str, ...] = ("hub",), **overrides: Any) -> list[str]:
        with pytest.raises(ConfigError) as info:
            harness.run(make_stack(services, **overrides))
        assert info.value.planned == [], "bad config must fail before any resource is registered"  # type: ignore[attr-defined]
        for line in info.value.problems:
            assert "\n" not in line and line.startswith("versatilehub:"), line
        return info.value.problems

    return _problems


def env_of(resource: harness.PlannedResource) -> dict[str, str]:
    """A container's environment as a dict (secrets unwrapped)."""
    return dict(item.split("=", 1) for item in harness.plain(resource.inputs.get("envs", [])))


def secret_file_steps(plan: harness.Plan) -> dict[str, harness.PlannedResource]:
    """The secret-file steps (components/core/secrets.py) by the host path they write."""
    out = {}
    for r in [*plan.of_type("command:local:Command"), *plan.of_type("command:remote:Command")]:
        env = harness.plain(r.inputs.get("environment") or {})
        if "VH_FILE_NAME" in env:
            out[f"{env['VH_FILE_DIR']}/{env['VH_FILE_NAME']}"] = r
    return out


def secret_file_of(plan: harness.Plan, container: harness.PlannedResource, path: str) -> str:
    """What `container` reads at `path` (a read-only mount of a secret file): the value its step writes."""
    [mount] = [m for m in harness.plain(container.inputs.get("mounts", [])) if m["target"] == path]
    assert mount["type"] == "bind" and mount["readOnly"] is True, mount
    step = secret_file_steps(plan)[mount["source"]]
    assert harness.is_secret(step.inputs["environment"]["VH_SECRET_VALUE"]), "secret in state"
    name = path.rsplit("/", 1)[1]
    assert labels_of(container)[f"io.versatilehub.secret.{name}"], "its fingerprint label"
    return str(harness.plain(step.inputs["environment"]["VH_SECRET_VALUE"]))


def env_file_of(plan: harness.Plan, container: harness.PlannedResource, path: str) -> dict[str, str]:
    """The variables of an env file `container` reads at `path` (KEY='value' lines, as `. file` reads)."""
    import shlex

    text = secret_file_of(plan, container, path)
    return dict(shlex.split(line)[0].split("=", 1) for line in text.splitlines())


def labels_of(resource: harness.PlannedResource) -> dict[str, str]:
    return {item["label"]: item["value"] for item in harness.plain(resource.inputs.get("labels", []))}


def networks_of(resource: harness.PlannedResource) -> list[str]:
    return [n["name"] for n in harness.plain(resource.inputs.get("networksAdvanced", []))]


PreUpdateCalls = list[tuple[str, list[Any]]]  # (service, versions) per call


@pytest.fixture
def pre_update_calls(monkeypatch: pytest.MonkeyPatch) -> PreUpdateCalls:
    """Stand in a plain `<service>-pre-update-backup` step for the backup component's; record what asked."""
    from components.core.deployment import Deployment

    asked: PreUpdateCalls = []

    def pre_update_backup(
        self: Deployment, *, parent: pulumi.Resource, service: str, versions: list[Any]
    ) -> list[pulumi.Resource]:
        asked.append((service, versions))
        return [self.run(f"{service}-pre-update-backup", "true\n", parent=parent)]

    monkeypatch.setattr(Deployment, "pre_update_backup", pre_update_backup)
    return asked


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A private dockerd for this session (tools/engine.py); it fails, never skips, where none can run."""
    from tools import engine

    reason = engine.available()
    if reason:
        pytest.fail(f"real-engine tests need a private dockerd: {reason}")
    with engine.Engine() as running:
        yield running
