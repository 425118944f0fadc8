"""tools/fleet: one line per client from the offline plan and the policy pack, budgets included."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BASE_STACK, SERVICE_STACK
from tools import fleet, harness, policy

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5wH6nJ8o2b9ZbqfZ3sK7kQd4GmXr0yLh1N2p3Q4r5S6"
SSH = {"docker": "ssh://deploy@203.0.113.10", "sshHostKey": HOST_KEY}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERSATILEHUB_STATE_DIR", str(tmp_path / "state"))  # ssh hosts write known_hosts


def write(d: Path, stack: str, services: list[str], **overrides: Any) -> Path:
    values = {**BASE_STACK, "client": stack.lower()}
    for s in services:
        values.update(SERVICE_STACK.get(s, {}))
    values.update(services=services, **overrides)
    doc = {"config": {f"versatilehub:{k}": v for k, v in values.items() if v is not None}}
    path = d / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rows(out: str) -> dict[str, str]:
    return {
        line.split()[0]: line
        for line in out.splitlines()[1:]
        if line and not line.startswith(("host ", "budgets"))
    }


def test_one_line_per_client_with_services_versions_policy_and_budgets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = write(tmp_path, "fullA", ["hub", "chat", "flow", "agent"], versions={"erpnext": "v16.33.0"})
    lab = write(tmp_path, "labFlow", ["flow"], mode="standalone", acmeEmail=None, backup={"enabled": False})
    fleet.main([str(full), str(lab)])
    out = capsys.readouterr().out
    lines = rows(out)
    assert set(lines) == {"fullA", "labFlow"}
    a = lines["fullA"]
    assert " suite " in a and " hub,chat,flow,agent " in a
    assert "hub v16.33.0" in a and "edge v3.6.25" in a and "(pinned here: erpnext)" in a
    # The policy pack's own verdict on the same plan.
    stack = harness.read_stack_file(full)
    planned = harness.run(stack)
    report = policy.check(policy.from_plan(planned, stack))
    assert f"{len(report.mandatory)} mandatory, {len(report.advisory)} advisory" in a
    # Budgets: the sum of the containers' limits as planned, against the host.
    containers = [harness.plain(c.inputs) for c in planned.containers()]
    memory = int(sum(c["memory"] for c in containers))
    cpus = round(math.fsum(float(c["cpus"]) for c in containers), 2)
    assert f"{memory}/16384 MB ({100 * memory / 16384:.0f}%)" in a
    assert f"{cpus:g}/8 ({100 * cpus / 8:.0f}%)" in a
    assert memory <= 0.8 * 16384 and cpus <= 0.7 * 8
    assert " standalone " in lines["labFlow"] and "flow 2." in lines["labFlow"]
    assert "budgets: memory limits <= 80% of the host's RAM, CPU caps <= 70% of its cores" in out


def test_a_broken_stack_is_one_line_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good", ["flow"])
    bad = write(tmp_path, "bad", ["flow"], domain="not a domain")
    assert fleet.main([str(good), str(bad)]) == 1
    lines = rows(capsys.readouterr().out)
    assert "config: versatilehub:domain: is not a DNS name" in lines["bad"]
    assert "config:" not in lines["good"]


def test_stacks_sharing_one_host_are_summed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = {**SSH, "memoryMb": 8192, "cpus": 4}
    edge = write(tmp_path, "edgeA", ["flow"], host=small)
    attached = write(tmp_path, "attachB", ["hub"], host=small, mode="attach", webNetwork={"create": False})
    code = fleet.main([str(edge), str(attached), "--json"])
    doc = json.loads(capsys.readouterr().out)
    (shared,) = doc["sharedHosts"]
    assert shared["host"] == "203.0.113.10" and shared["stacks"] == ["edgeA", "attachB"]
    by_stack = {r["stack"]: r for r in doc["stacks"]}
    assert shared["memoryMb"] == by_stack["edgeA"]["memory_mb"] + by_stack["attachB"]["memory_mb"]
    # Each stack is within its own budget; together they are not (CPU: 0.5 + 0.9 + 2.15 > 0.7 * 4).
    assert shared["overBudget"] and code == 1
    table = fleet.table([fleet.Client(**r) for r in doc["stacks"]], doc["sharedHosts"])
    assert "host 203.0.113.10: edgeA + attachB = " in table and table.count("OVER BUDGET") == 1


def test_json_carries_every_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "one", ["flow"])
    fleet.main([str(path), "--json"])
    (row,) = json.loads(capsys.readouterr().out)["stacks"]
    assert row["client"] == "one" and row["services"] == ["flow"]
    assert len(row["violations"]) == row["mandatory"] + row["advisory"]
    assert all(v.startswith(("[mandatory]", "[advisory]")) for v in row["violations"])


def test_the_repositorys_own_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    stacks = list(harness.iter_stack_files())
    assert len(stacks) >= 4
    fleet.main([])
    lines = rows(capsys.readouterr().out)
    assert set(lines) == {p.name.split(".")[1] for p in stacks}
    broken = {name: line for name, line in lines.items() if " config: " in line or " plan: " in line}
    assert not broken, broken
