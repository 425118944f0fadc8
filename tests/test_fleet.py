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


BIG = {**SSH, "memoryMb": 32768, "cpus": 16}


def other_user(port: int | None = None) -> dict[str, Any]:
    """The same machine as SSH, reached as another user (and port 22 written out, or another port)."""
    suffix = f":{port}" if port else ""
    return {**BIG, "docker": f"ssh://root@203.0.113.10{suffix}"}


def test_two_suites_on_one_host_are_a_traefik_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "suiteA", ["flow"], host=BIG)
    b = write(tmp_path, "suiteB", ["flow"], host=other_user(22))
    assert fleet.main([str(a), str(b), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    (shared,) = doc["sharedHosts"]
    assert shared["host"] == "203.0.113.10" and not shared["overBudget"]
    assert shared["clashes"] == [
        "suiteA and suiteB both run Traefik (both publish 80/443): keep one in mode suite and set the "
        "others to mode attach (versatilehub:mode attach, webNetwork.create false)"
    ]
    # The table shows it under the host's line.
    table = fleet.table([fleet.Client(**r) for r in doc["stacks"]], doc["sharedHosts"], doc["clashes"])
    assert "\n  clash: suiteA and suiteB both run Traefik" in table


def test_another_ssh_port_is_another_machine_and_local_sockets_are_never_summed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "suiteA", ["flow"], host=BIG, domain="a.example.com")
    b = write(tmp_path, "suiteB", ["flow"], host=other_user(2222), domain="b.example.com")
    c = write(tmp_path, "localC", ["flow"], domain="c.example.com")
    d = write(tmp_path, "localD", ["flow"], domain="d.example.com")
    assert fleet.main([str(c), str(a), str(d), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sharedHosts"] == [] and doc["clashes"] == []
    # Grouped by host: ssh machines first (sorted), the local socket's stacks last.
    assert [(r["stack"], r["server"]) for r in doc["stacks"]] == [
        ("suiteA", "203.0.113.10"),
        ("suiteB", "203.0.113.10:2222"),
        ("localC", ""),
        ("localD", ""),
    ]


def test_the_same_client_slug_or_hostname_twice_is_a_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attach = {"mode": "attach", "webNetwork": {"create": False}}
    edge = write(tmp_path, "edgeA", ["flow"], host=BIG, client="acme")
    same_slug = write(tmp_path, "acmeTwo", ["hub"], host=BIG, client="acme", **attach)
    assert fleet.main([str(edge), str(same_slug), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["clashes"] == [
        "edgeA and acmeTwo both use client 'acme' on one host (container names and data folders are "
        "<client>-...): give each its own versatilehub:client"
    ]
    assert doc["sharedHosts"][0]["clashes"] == []
    # Another client on the same server whose hub takes the first one's flow hostname.
    taken = write(tmp_path, "other", ["hub"], host=BIG, hostnames={"hub": "flow.clientea.com"}, **attach)
    assert fleet.main([str(edge), str(taken), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    flow_host = next(r for r in doc["stacks"] if r["stack"] == "edgeA")["hostnames"]
    assert "flow.clientea.com" in flow_host
    assert doc["clashes"] == [
        "edgeA and other both route flow.clientea.com on one host (DNS points at one server, Traefik "
        "routes it to one stack): change versatilehub:hostnames.<service> (or portal.hostnames) in one"
    ]


def test_two_labs_publishing_one_port_on_one_host_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = {"mode": "standalone", "acmeEmail": None, "backup": {"enabled": False}, "standalonePort": 18080}
    a = write(tmp_path, "labA", ["flow"], host=SSH, **lab)
    b = write(tmp_path, "labB", ["flow"], host=SSH, **lab)
    assert fleet.main([str(a), str(b), "--json"]) == 1
    (shared,) = json.loads(capsys.readouterr().out)["sharedHosts"]
    assert shared["clashes"] == [
        "labA and labB both publish 127.0.0.1:18080: give one another port (versatilehub:standalonePort)"
    ]
    c = write(tmp_path, "labC", ["flow"], host=SSH, **{**lab, "standalonePort": 18081})
    assert fleet.main([str(a), str(c), "--json"]) == 0


def test_stacks_disagreeing_on_the_host_size_are_flagged_and_summed_against_the_smaller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attach = {"mode": "attach", "webNetwork": {"create": False}}
    a = write(tmp_path, "edgeA", ["flow"], host={**SSH, "memoryMb": 16384, "cpus": 8})
    b = write(tmp_path, "attachB", ["flow"], host={**SSH, "memoryMb": 8192, "cpus": 8}, **attach)
    fleet.main([str(a), str(b), "--json"])
    (shared,) = json.loads(capsys.readouterr().out)["sharedHosts"]
    assert shared["hostMemoryMb"] == 8192
    assert shared["clashes"] == [
        "the stacks disagree on the host's size (edgeA 16384 MB/8 CPU, attachB 8192 MB/8 CPU): set the "
        "real versatilehub:host.memoryMb and host.cpus in each"
    ]


def test_unreadable_and_malformed_files_are_one_row_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good", ["flow"])
    folder = tmp_path / "Pulumi.folder.yaml"
    folder.mkdir()
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  versatilehub:client: [unclosed\n")
    binary = tmp_path / "Pulumi.binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00config")
    assert fleet.main([str(folder), str(good), str(broken), str(binary)]) == 1
    lines = rows(capsys.readouterr().out)
    assert set(lines) == {"good", "folder", "broken", "binary"}
    assert all(" file: " in lines[name] for name in ("folder", "broken", "binary"))
    assert "file:" not in lines["good"] and " local socket " in lines["good"]
