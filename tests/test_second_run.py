"""A second `pulumi up` over the first one's read-back state (tools/harness.py second_run, the providers as
tools/provider_model.py models them): a no-op changes nothing for every shipped stack in every mode, and a
one-image bump changes that image's pull, its containers and the steps that run it, nothing else."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.core.versions import IMAGES
from tools import harness, provider_model

MODES = ("suite", "attach", "standalone")
# A pinned host key of the right shape (tests/test_config.py checks what the model accepts).
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _mode_config(doc: dict[str, Any], mode: str) -> dict[str, Any] | None:
    """A shipped stack run in another mode, changed only as that mode's config error lines say."""
    cfg = {k.removeprefix(f"{harness.PROJECT}:"): v for k, v in doc.items()}
    own = cfg.get("mode", "suite")
    cfg["mode"] = mode
    if mode != own:
        for key in ("webNetwork", "standalonePort", "portal"):
            cfg.pop(key, None)
    if mode == "suite":
        cfg.setdefault("acmeEmail", f"ops@{cfg['domain']}")
    elif mode == "attach":
        cfg["webNetwork"] = {**(cfg.get("webNetwork") or {}), "create": False}
    elif len(cfg["services"]) != 1:  # standalone runs exactly one service
        return None
    else:
        cfg.setdefault("standalonePort", 18080)
    return cfg


def _variants() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in harness.iter_stack_files():
        doc = harness.load_stack_document(path)
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for mode in MODES:
            cfg = _mode_config(doc, mode)
            if cfg is None:
                continue
            out.append((f"{stack}-{mode}", cfg))
            if mode == doc.get(f"{harness.PROJECT}:mode", "suite"):  # the same stack over SSH (remote steps)
                ssh = {
                    **cfg,
                    "host": {**cfg["host"], "docker": "ssh://deploy@203.0.113.10", "sshHostKey": SSH_KEY},
                }
                out.append((f"{stack}-{mode}-ssh", ssh))
    return out


VARIANTS = _variants()


def _plan(name: str, cfg: dict[str, Any], **host: Any) -> harness.Plan:
    stack = harness.with_placeholder_secrets(harness.stack_config(name, cfg))
    return harness.run(stack, host=provider_model.HostFacts(**host))


def test_every_shipped_stack_runs_in_every_mode_it_can() -> None:
    names = {name for name, _ in VARIANTS}
    assert len(list(harness.iter_stack_files())) >= 6
    assert {n.rsplit("-", 1)[-1] for n in names} >= {"suite", "attach", "standalone", "ssh"}


@pytest.mark.parametrize(("name", "cfg"), VARIANTS, ids=[n for n, _ in VARIANTS])
def test_a_no_op_second_run_changes_nothing(name: str, cfg: dict[str, Any]) -> None:
    """Before a791d12: 13 of clienteA's containers replaced (cpus 0.05 stored as "0.1", healthcheck "60s"
    as "1m0s") and hub-redis-cache refused at create."""
    first = _plan(name, cfg)
    assert first.containers()
    assert harness.second_run(first, _plan(name, cfg)) == []


SUITES = [(n, c) for n, c in VARIANTS if n.endswith("-suite")]  # the variants that run Traefik


@pytest.mark.parametrize(("name", "cfg"), SUITES, ids=[n for n, _ in SUITES])
def test_a_no_op_second_run_changes_nothing_on_an_engine_that_reverses_bindings(
    name: str, cfg: dict[str, Any]
) -> None:
    """Debian 12's docker.io 20.10.24 lists one port's bindings in reverse (tools/provider_model.py
    HostFacts.port_order, measured by tests/test_preflight.py). Before #13's fix Traefik published 8000 and
    8443 on both families and was replaced by every `pulumi up` there."""
    first = _plan(name, cfg, port_order="reversed")
    assert first.container("edge-traefik")
    assert harness.second_run(first, _plan(name, cfg)) == []


def _bumped(tag: str) -> str:
    """The next patch-level tag (the last number + 1): 8.6.7-alpine -> 8.6.8-alpine, v16.32.3 -> v16.32.4."""
    match = list(re.finditer(r"\d+", tag))[-1]
    return f"{tag[: match.start()]}{int(match.group()) + 1}{tag[match.end() :]}"


def _full_stack() -> tuple[str, dict[str, Any]]:
    path = harness.resolve_stack("clienteA")  # all four services, backups, the portal: every image
    return "clienteA", dict(harness.load_stack_document(path))


BUMPABLE = [key for key, pin in IMAGES.items() if not pin.follows]


@pytest.fixture(scope="module")
def before() -> harness.Plan:
    return harness.run(harness.read_stack_file("clienteA"))


@pytest.mark.parametrize("key", BUMPABLE)
def test_a_one_image_bump_changes_that_image_its_containers_and_its_steps(
    key: str, before: harness.Plan
) -> None:
    name, doc = _full_stack()
    tag = _bumped(IMAGES[key].tag)
    after = harness.run(
        harness.with_placeholder_secrets(
            harness.stack_config(name, {**doc, "versatilehub:versions": {key: tag}})
        )
    )
    changes = harness.second_run(before, after)
    moved = {key} | {k for k, pin in IMAGES.items() if pin.follows == key}  # n8n's runner follows n8n
    old_refs = {
        harness.plain(before.get(provider_model.IMAGE, f"image-{k}").inputs["name"])
        for k in moved
        if any(r.name == f"image-{k}" for r in before.of_type(provider_model.IMAGE))
    }
    assert old_refs, key
    by_type: dict[str, list[harness.Change]] = {}
    for c in changes:
        by_type.setdefault(c.type, []).append(c)
    assert {c.action for c in changes} <= {"replace", "re-run"}, changes  # no create, no in-place update
    assert {c.name for c in by_type.get(provider_model.IMAGE, [])} == {
        f"image-{k}"
        for k in moved
        if any(r.name == f"image-{k}" for r in before.of_type(provider_model.IMAGE))
    }
    # Exactly the containers that run one of those images, replaced for that and nothing else.
    pulls = {r.urn for r in before.of_type(provider_model.IMAGE) if r.name in {f"image-{k}" for k in moved}}
    runs_it = {c.name for c in before.containers() if pulls & set(c.dependencies)}  # image=<that>.image_id
    containers = by_type.get(provider_model.CONTAINER, [])
    assert {c.name for c in containers} == runs_it
    assert all(set(c.fields) <= {"image", "labels"} for c in containers), containers  # io.versatilehub.image
    # Steps: the ones that run the image or carry its tag (the pre-update snapshot, the migration) and the
    # ones triggered by a replaced container's id (the post-deploy probe, the configurator check).
    replaced_ids = {
        str(harness.plain(before.state[(provider_model.CONTAINER, c.name)][k]))
        for c in containers
        for k in ("id", harness.STATE_ID)
    }
    old_tags = {ref.split("@")[0].rsplit(":", 1)[1] for ref in old_refs}
    for c in by_type.get("command:local:Command", []):
        carried = json.dumps(before.get(c.type, c.name).plain_inputs)
        assert any(t in carried for t in old_tags | replaced_ids), (key, c)
    steps = {c.name for c in by_type.get("command:local:Command", [])}
    migration = {"erpnext": {"hub-migrate"}, "chatwoot": {"chat-prepare"}}.get(key, set())
    assert migration <= steps, (key, steps)
    assert not ({"hub-migrate", "chat-prepare"} - migration) & steps, (key, steps)
    assert set(by_type) <= {provider_model.IMAGE, provider_model.CONTAINER, "command:local:Command"}


def test_plan_after_up_prints_the_counts_and_a_bump(capsys: pytest.CaptureFixture[str]) -> None:
    from tools import plan

    assert plan.main(["labHub", "--after-up"]) == 0
    out = capsys.readouterr().out
    assert "stack labHub: a second run replaces 0 containers, updates 0, re-runs 0 commands" in out
    assert plan.main(["labHub", "--after-up", "--bump", "mariadb=11.8.10"]) == 0
    out = capsys.readouterr().out
    assert "replace  container hub-mariadb: image, labels" in out
    assert "replaces 1 containers, updates 0, re-runs" in out
    assert plan.main(["labHub", "--after-up", "--bump", "mariadb=latest"]) == 2
    assert "versatilehub:versions.mariadb" in capsys.readouterr().err
