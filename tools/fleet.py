"""The fleet: every client stack in one view, offline.

    python -m tools.fleet            # one line per Pulumi.*.yaml
    python -m tools.fleet --json
    python -m tools.fleet --live [--json]   # what each server's collector reports now (tools/fleet_live.py)

For each stack file: the offline plan (the real program under Pulumi's mock runtime, tools/harness.py) and
the policy pack on that plan (tools/policy.py). One line per client: mode, services, the version each
service runs (a stack's own override marked `*`), mandatory and advisory policy violations, memory limits
against the host's RAM (budget 80%) and CPU caps against its cores (budget 70%). Stacks that share one
ssh:// host also get a line with their sum, since each stack checks only its own share. Nothing here
contacts a server: this is what the stacks declare, not what runs. Exit 1 when a stack's config is invalid,
its plan fails, a mandatory policy fails or a shared host is over budget.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.config import CPU_BUDGET_SHARE, MEMORY_BUDGET_SHARE, ConfigError
from components.core.versions import tag_of
from tools import harness, policy

CONTAINER = "docker:index/container:Container"


@dataclass
class Client:
    stack: str
    client: str = ""
    mode: str = ""
    host: str = ""
    services: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # service -> tag of its front container's image
    overrides: list[str] = field(default_factory=list)  # image keys this stack pins itself
    mandatory: int = 0
    advisory: int = 0
    violations: list[str] = field(default_factory=list)
    memory_mb: int = 0
    host_memory_mb: int = 0
    cpus: float = 0.0
    host_cpus: float = 0.0
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error) or bool(self.mandatory)


def _labels(r: harness.PlannedResource) -> dict[str, str]:
    return {i["label"]: i["value"] for i in harness.plain(r.inputs.get("labels", []))}


def front_versions(plan: harness.Plan) -> dict[str, str]:
    """service -> tag of the image its front container runs (the one that publishes ports or is routed)."""
    fronts: dict[str, tuple[int, str]] = {}
    for c in plan.of_type(CONTAINER):
        labels = _labels(c)
        service, reference = labels.get("io.versatilehub.service"), labels.get("io.versatilehub.image")
        if not service or not reference:
            continue
        rank = 2 if c.inputs.get("ports") else 1 if labels.get("traefik.enable") == "true" else 0
        if rank and rank > fronts.get(service, (0, ""))[0]:
            fronts[service] = (rank, tag_of(reference))
    return {service: tag for service, (_, tag) in sorted(fronts.items())}


def policy_counts(plan: harness.Plan, stack: harness.StackConfig) -> tuple[int, int, list[str]]:
    """(mandatory, advisory, one line per violation): the pack's policies on the offline plan."""
    report = policy.check(policy.from_plan(plan, stack))
    return len(report.mandatory), len(report.advisory), [v.line() for v in report.violations]


def inspect(path: Path) -> Client:
    try:
        stack = harness.read_stack_file(path)
    except (FileNotFoundError, ValueError) as exc:  # one bad file is one row, never the whole fleet
        row = Client(stack=path.name.removeprefix("Pulumi.").rsplit(".", 1)[0])
        row.error = f"file: {exc}"
        return row
    row = Client(stack=stack.name)
    try:
        plan = harness.run(stack)
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else "invalid configuration"
        more = (
            f" (+{len(exc.problems) - 1} more: python -m tools.plan {stack.name})"
            if len(exc.problems) > 1
            else ""
        )
        row.error = f"config: {first}{more}"
        return row
    except Exception as exc:  # a component failing on this stack must not hide the rest of the fleet
        row.error = f"plan: {type(exc).__name__}: {exc}"
        return row
    out = harness.plain(plan.outputs)
    raw = {k.split(":", 1)[1]: v for k, v in stack.values.items()}
    row.client, row.mode, row.services = out["client"], out["mode"], list(out["services"])
    row.host = json.loads(raw.get("host", "{}")).get("docker", "unix:///var/run/docker.sock")
    row.versions = front_versions(plan)
    row.overrides = sorted(json.loads(raw.get("versions", "{}")))
    containers = [harness.plain(c.inputs) for c in plan.of_type(CONTAINER)]
    row.memory_mb = sum(int(c.get("memory", 0)) for c in containers)
    # fsum: exact, so the total does not depend on the order containers are listed (0.055 caps).
    row.cpus = round(math.fsum(float(c.get("cpus", 0)) for c in containers), 2)
    row.host_memory_mb, row.host_cpus = int(out["hostMemoryMb"]), float(out["hostCpus"])
    row.mandatory, row.advisory, row.violations = policy_counts(plan, stack)
    return row


def shared_hosts(rows: Iterable[Client]) -> list[dict[str, Any]]:
    """Stacks on the same ssh:// host: their limits add up on one machine."""
    by_host: dict[str, list[Client]] = defaultdict(list)
    for row in rows:
        if not row.error and row.host.startswith("ssh://"):
            by_host[row.host.split("@", 1)[1]].append(row)
    found = []
    for host, members in sorted(by_host.items()):
        if len(members) < 2:
            continue
        memory = sum(m.memory_mb for m in members)
        cpus = round(sum(m.cpus for m in members), 2)
        ram, cores = max(m.host_memory_mb for m in members), max(m.host_cpus for m in members)
        found.append(
            {
                "host": host,
                "stacks": [m.stack for m in members],
                "memoryMb": memory,
                "hostMemoryMb": ram,
                "cpus": cpus,
                "hostCpus": cores,
                "overBudget": memory > ram * MEMORY_BUDGET_SHARE or cpus > cores * CPU_BUDGET_SHARE + 1e-9,
            }
        )
    return found


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "?"


def line_of(row: Client) -> list[str]:
    if row.error:
        return [row.stack, row.client or "-", "-", "-", "-", "-", "-", "-", row.error]
    versions = ", ".join(f"{s} {t}" for s, t in row.versions.items())
    if row.overrides:
        versions += f" (pinned here: {', '.join(row.overrides)})"
    verdict = f"{row.mandatory} mandatory, {row.advisory} advisory"
    memory = f"{row.memory_mb}/{row.host_memory_mb} MB ({_pct(row.memory_mb, row.host_memory_mb)})"
    cpu = f"{row.cpus:g}/{row.host_cpus:g} ({_pct(row.cpus, row.host_cpus)})"
    return [row.stack, row.client, row.mode, ",".join(row.services), versions, verdict, memory, cpu, ""]


def table(rows: list[Client], hosts: list[dict[str, Any]]) -> str:
    header = ["STACK", "CLIENT", "MODE", "SERVICES", "VERSIONS", "POLICY", "MEMORY", "CPU", "PROBLEM"]
    cells = [header, *(line_of(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(cells_row, widths, strict=True)).rstrip() for cells_row in cells
    ]
    for h in hosts:
        out.append(
            f"host {h['host']}: {' + '.join(h['stacks'])} = {h['memoryMb']}/{h['hostMemoryMb']} MB "
            f"({_pct(h['memoryMb'], h['hostMemoryMb'])}), {h['cpus']:g}/{h['hostCpus']:g} CPU "
            f"({_pct(h['cpus'], h['hostCpus'])})" + (" OVER BUDGET" if h["overBudget"] else "")
        )
    out.append(
        f"budgets: memory limits <= {MEMORY_BUDGET_SHARE:.0%} of the host's RAM, CPU caps <= "
        f"{CPU_BUDGET_SHARE:.0%} of its cores (offline: what the stacks declare, not what runs)"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="*", type=Path, help="stack files (default: every Pulumi.*.yaml)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON, with every violation")
    parser.add_argument("--live", action="store_true", help="each server's latest collector status instead")
    parser.add_argument("--parallel", type=int, default=16, help="--live: hosts read at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="--live: seconds per host")
    parser.add_argument("--identity", help="--live: ssh private key (default: ssh's own, or the agent)")
    args = parser.parse_args(argv)
    paths = args.stacks or list(harness.iter_stack_files())
    if not paths:
        print("no Pulumi.*.yaml stack files here", file=sys.stderr)
        return 2
    if args.live:
        return live(paths, args)
    rows = [inspect(p) for p in paths]
    hosts = shared_hosts(rows)
    if args.json:
        print(json.dumps({"stacks": [asdict(r) for r in rows], "sharedHosts": hosts}, indent=2))
    else:
        print(table(rows, hosts))
    return 1 if any(r.failed for r in rows) or any(h["overBudget"] for h in hosts) else 0


def live(paths: list[Path], args: argparse.Namespace) -> int:
    """Exit 1 when a server reports an incident, is stale or cannot be read."""
    from tools import fleet_live

    rows = fleet_live.collect(paths, parallel=args.parallel, timeout=args.timeout, identity=args.identity)
    print(json.dumps({"live": [asdict(r) for r in rows]}, indent=2) if args.json else fleet_live.table(rows))
    return 0 if all(r.overall == "ok" for r in rows) else 1


if __name__ == "__main__":
    harness.exit_after_plans(main())
