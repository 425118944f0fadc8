"""The fleet: every client stack in one view, offline.

    python -m tools.fleet            # one line per Pulumi.*.yaml
    python -m tools.fleet --json
    python -m tools.fleet --live [--json]   # what each server's collector reports now (tools/fleet_live.py)

For each stack file: the offline plan (the real program under Pulumi's mock runtime, tools/harness.py) and
the policy pack on that plan (tools/policy.py). One line per client: mode, services, the version each
service runs (a stack's own override marked `*`), mandatory and advisory policy violations, memory limits
against the host's RAM (budget 80%) and CPU caps against its cores (budget 70%).

Stacks are grouped by Docker host (ssh://user@host[:port]; the user does not matter, port 22 is the
default): each host with two stacks or more gets a line with their summed memory and CPU against its
budget, since each stack checks only its own share, and what clashes on one machine: the same `client`
slug (container names are `<client>-<service>-<role>`), the same public hostname, two stacks that both run
Traefik (both publish 80/443) or another port published twice. A `client` slug or a hostname used twice
anywhere in the fleet is flagged too. Stacks on the local socket (unix://) say nothing about which
machine they run on, so they are never summed together. One unreadable stack file is one row. Nothing
here contacts a server: this is what the stacks declare, not what runs. Exit 1 when a stack's config is
invalid, its plan fails, a mandatory policy fails, a host is over budget or something clashes.
"""

from __future__ import annotations

import argparse
import json
import math
import re
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
    server: str = ""  # the machine, for ssh:// hosts (server_of); "" for the local socket
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
    hostnames: list[str] = field(default_factory=list)  # every Host(`...`) a Traefik router of it matches
    published: list[str] = field(default_factory=list)  # "ip:port" bindings on the host
    traefik: bool = False
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


_HOST_RULE = re.compile(r"Host\(`([^`]+)`\)")


def routed_hostnames(plan: harness.Plan) -> list[str]:
    """The hostnames Traefik routes to this stack: its routers' Host(`...`) rules (components/routing.py)."""
    names: set[str] = set()
    for c in plan.of_type(CONTAINER):
        for label, value in _labels(c).items():
            if label.startswith("traefik.http.routers.") and label.endswith(".rule"):
                names.update(n.lower() for n in _HOST_RULE.findall(value))
    return sorted(names)


def published_ports(plan: harness.Plan) -> list[str]:
    ports = {
        f"{p.get('ip') or '0.0.0.0'}:{int(p['external'])}"
        for c in plan.of_type(CONTAINER)
        for p in harness.plain(c.inputs.get("ports") or [])
        if p.get("external")
    }
    return sorted(ports)


def server_of(docker: str) -> str:
    """One key per machine for an ssh:// endpoint (host, plus the port when not 22); "" for a socket."""
    m = re.fullmatch(r"ssh://[^@]+@(\[[^\]]+\]|[^:]+)(?::(\d+))?", docker)
    if not m:
        return ""
    host = m[1].lower()
    return host if m[2] in (None, "22") else f"{host}:{m[2]}"


def policy_counts(plan: harness.Plan, stack: harness.StackConfig) -> tuple[int, int, list[str]]:
    """(mandatory, advisory, one line per violation): the pack's policies on the offline plan."""
    report = policy.check(policy.from_plan(plan, stack))
    return len(report.mandatory), len(report.advisory), [v.line() for v in report.violations]


def inspect(path: Path) -> Client:
    try:
        stack = harness.read_stack_file(path)
    except (OSError, ValueError) as exc:  # one bad file is one row, never the whole fleet
        row = Client(stack=path.name.removeprefix("Pulumi.").rsplit(".", 1)[0])
        row.error = f"file: {exc}"
        return row
    except ConfigError as exc:  # a credential stored in plain text (harness.plaintext_credentials)
        row = Client(stack=path.name.removeprefix("Pulumi.").rsplit(".", 1)[0])
        row.error = f"config: {exc.problems[0]}"
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
    row.server = server_of(row.host)
    row.versions = front_versions(plan)
    row.hostnames, row.published = routed_hostnames(plan), published_ports(plan)
    row.traefik = any(_labels(c).get("io.versatilehub.role") == "traefik" for c in plan.of_type(CONTAINER))
    row.overrides = sorted(json.loads(raw.get("versions", "{}")))
    containers = [harness.plain(c.inputs) for c in plan.of_type(CONTAINER)]
    row.memory_mb = sum(int(c.get("memory", 0)) for c in containers)
    # fsum: exact, so the total does not depend on the order containers are listed (0.055 caps).
    row.cpus = round(math.fsum(float(c.get("cpus", 0)) for c in containers), 2)
    row.host_memory_mb, row.host_cpus = int(out["hostMemoryMb"]), float(out["hostCpus"])
    row.mandatory, row.advisory, row.violations = policy_counts(plan, stack)
    return row


def _overlap(a: str, b: str) -> bool:
    """Two "ip:port" bindings that cannot both be made on one host (a wildcard takes every address)."""
    (ip_a, port_a), (ip_b, port_b) = a.rsplit(":", 1), b.rsplit(":", 1)
    wildcard = {"0.0.0.0", "::", ""}
    return port_a == port_b and (ip_a == ip_b or ip_a in wildcard or ip_b in wildcard)


def _all(stacks: list[str]) -> str:
    """ "a and b both", "a, b and c all"."""
    if len(stacks) == 2:
        return f"{stacks[0]} and {stacks[1]} both"
    return f"{', '.join(stacks[:-1])} and {stacks[-1]} all"


def host_clashes(members: list[Client]) -> list[str]:
    """What two stacks on one Docker host cannot both have."""
    found = []
    traefiks = [m.stack for m in members if m.traefik]
    if len(traefiks) > 1:
        found.append(
            f"{_all(traefiks)} run Traefik (both publish 80/443): keep one in mode suite "
            "and set the others to mode attach (versatilehub:mode attach, webNetwork.create false)"
        )
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if a.traefik and b.traefik:
                continue  # said above
            both = sorted({pa for pa in a.published for pb in b.published if _overlap(pa, pb)})
            if both:
                found.append(
                    f"{a.stack} and {b.stack} both publish {', '.join(both)}: give one another port "
                    "(versatilehub:standalonePort)"
                )
    if len({m.host_memory_mb for m in members}) > 1 or len({m.host_cpus for m in members}) > 1:
        sizes = ", ".join(f"{m.stack} {m.host_memory_mb} MB/{m.host_cpus:g} CPU" for m in members)
        found.append(
            f"the stacks disagree on the host's size ({sizes}): set the real versatilehub:host.memoryMb "
            "and host.cpus in each"
        )
    return found


def fleet_clashes(rows: Iterable[Client]) -> list[str]:
    """A client slug or a public hostname that two stacks use, wherever they run."""
    ok = [r for r in rows if not r.error]
    found = []
    by_client: dict[str, list[Client]] = defaultdict(list)
    by_name: dict[str, list[Client]] = defaultdict(list)
    for r in ok:
        by_client[r.client].append(r)
        for name in r.hostnames:
            by_name[name].append(r)

    def where(members: list[Client]) -> str:
        servers = {m.server for m in members}
        return " on one host" if len(servers) == 1 and "" not in servers else ""

    for client, members in sorted(by_client.items()):
        if len(members) > 1:
            found.append(
                f"{_all([m.stack for m in members])} use client '{client}'{where(members)} "
                "(container names and data folders are <client>-...): give each its own versatilehub:client"
            )
    for name, members in sorted(by_name.items()):
        if len(members) > 1:
            found.append(
                f"{_all([m.stack for m in members])} route {name}{where(members)} (DNS points at one "
                "server, Traefik routes it to one stack): change versatilehub:hostnames.<service> "
                "(or portal.hostnames) in one"
            )
    return found


def shared_hosts(rows: Iterable[Client]) -> list[dict[str, Any]]:
    """Stacks grouped by Docker host (ssh:// only): their limits add up on one machine."""
    by_host: dict[str, list[Client]] = defaultdict(list)
    for row in rows:
        if not row.error and row.server:
            by_host[row.server].append(row)
    found = []
    for host, members in sorted(by_host.items()):
        if len(members) < 2:
            continue
        memory = sum(m.memory_mb for m in members)
        cpus = round(math.fsum(m.cpus for m in members), 2)
        ram, cores = min(m.host_memory_mb for m in members), min(m.host_cpus for m in members)
        found.append(
            {
                "host": host,
                "stacks": [m.stack for m in members],
                "memoryMb": memory,
                "hostMemoryMb": ram,
                "cpus": cpus,
                "hostCpus": cores,
                "overBudget": memory > ram * MEMORY_BUDGET_SHARE or cpus > cores * CPU_BUDGET_SHARE + 1e-9,
                "clashes": host_clashes(members),
            }
        )
    return found


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "?"


def line_of(row: Client) -> list[str]:
    if row.error:
        return [row.stack, row.client or "-", "-", "-", "-", "-", "-", "-", "-", row.error]
    versions = ", ".join(f"{s} {t}" for s, t in row.versions.items())
    if row.overrides:
        versions += f" (pinned here: {', '.join(row.overrides)})"
    verdict = f"{row.mandatory} mandatory, {row.advisory} advisory"
    memory = f"{row.memory_mb}/{row.host_memory_mb} MB ({_pct(row.memory_mb, row.host_memory_mb)})"
    cpu = f"{row.cpus:g}/{row.host_cpus:g} ({_pct(row.cpus, row.host_cpus)})"
    server = row.server or "local socket"
    return [
        row.stack,
        row.client,
        server,
        row.mode,
        ",".join(row.services),
        versions,
        verdict,
        memory,
        cpu,
        "",
    ]


def table(rows: list[Client], hosts: list[dict[str, Any]], clashes: Iterable[str] = ()) -> str:
    header = ["STACK", "CLIENT", "HOST", "MODE", "SERVICES", "VERSIONS", "POLICY", "MEMORY", "CPU", "PROBLEM"]
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
        out.extend(f"  clash: {c}" for c in h.get("clashes", []))
    out.extend(f"clash: {c}" for c in clashes)
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
    # Grouped by Docker host: a machine's stacks next to each other, local-socket stacks last.
    rows.sort(key=lambda r: (not r.server, r.server))
    hosts = shared_hosts(rows)
    clashes = fleet_clashes(rows)
    if args.json:
        doc = {"stacks": [asdict(r) for r in rows], "sharedHosts": hosts, "clashes": clashes}
        print(json.dumps(doc, indent=2))
    else:
        print(table(rows, hosts, clashes))
    bad_host = any(h["overBudget"] or h["clashes"] for h in hosts)
    return 1 if any(r.failed for r in rows) or bad_host or clashes else 0


def live(paths: list[Path], args: argparse.Namespace) -> int:
    """Exit 1 when a server reports an incident, is stale or cannot be read."""
    from tools import fleet_live

    rows = fleet_live.collect(paths, parallel=args.parallel, timeout=args.timeout, identity=args.identity)
    print(json.dumps({"live": [asdict(r) for r in rows]}, indent=2) if args.json else fleet_live.table(rows))
    return 0 if all(r.overall == "ok" for r in rows) else 1


if __name__ == "__main__":
    harness.exit_after_plans(main())
