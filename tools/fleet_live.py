"""`python -m tools.fleet --live`: what every client's server says about itself now.

Each stack's latest status.json (written by its collector, scripts/vh_collect.py, in
<dataRoot>/<client>/monitor) is read through the host connection the stack itself uses: the file on this
machine for a unix:// host, `ssh` with the stack's pinned host key (StrictHostKeyChecking=yes against a
known_hosts file holding only that key) for an ssh:// one. Stacks on the same server share one ssh
session; the servers are read in parallel (at most `parallel` at once), each with its own timeout. A
host that cannot be read gives each of its stacks one row saying why.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.config import ConfigError, SuiteConfig, parse
from components.monitoring.component import monitor_home
from tools import harness


@dataclass
class LiveRow:
    stack: str
    client: str = ""
    host: str = ""
    overall: str = ""  # ok | alert | stale | unreachable | error
    age_s: int | None = None
    worst: str = ""
    cpu: str = ""
    memory: str = ""
    disk: str = ""
    backup: str = ""
    cert: str = ""
    slowest: str = ""
    errors_last_hour: int | None = None
    incidents: list[str] = field(default_factory=list)
    problem: str = ""
    seconds: float = 0.0


def stack_config(path: Path) -> SuiteConfig:
    stack = harness.read_stack_file(path)
    raw = {k.split(":", 1)[1]: v for k, v in stack.values.items()}
    return parse(raw, frozenset(k.split(":", 1)[1] for k in stack.secret_keys))


MISSING = "==vh-missing=="


def status_path(config: SuiteConfig) -> str:
    return f"{monitor_home(config)}/status.json"


def connection(config: SuiteConfig) -> tuple[str, str]:
    """Stacks with the same connection share one read (one ssh session for every stack on a server)."""
    return config.host.docker, config.host.ssh_host_key or ""


def read_statuses(
    configs: Sequence[SuiteConfig], timeout: float, identity: str | None, known_hosts_dir: str
) -> dict[str, bytes | None]:
    """status path -> its bytes (None: absent), for stacks that share one host connection."""
    paths = [status_path(c) for c in configs]
    host = configs[0].host
    if not host.is_ssh:
        found: dict[str, bytes | None] = {}
        for path in paths:
            try:
                found[path] = Path(path).read_bytes()
            except FileNotFoundError:
                found[path] = None
        return found
    entry = host.ssh_address if host.ssh_port == 22 else f"[{host.ssh_address}]:{host.ssh_port}"
    known = Path(known_hosts_dir) / f"known_hosts.{configs[0].client}"
    known.write_text(f"{entry} {host.ssh_host_key}\n")
    argv = [
        "ssh",
        *("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"),
        *("-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null"),
        *("-o", f"ConnectTimeout={max(1, int(timeout))}", "-p", str(host.ssh_port)),
    ]
    if identity:
        argv += ["-i", identity, "-o", "IdentitiesOnly=yes"]
    # One session reads every stack's file on this server, each after a marker line naming it (a fresh
    # token: a status file quotes log lines, which must never pass for a marker).
    mark = f"==vh-status-{secrets.token_hex(8)}=="
    remote = (
        f"for f in {' '.join(shlex.quote(p) for p in paths)}; do "
        f'echo "{mark} $f"; cat -- "$f" 2>/dev/null || echo {MISSING}; echo; done'
    )
    argv += [f"{host.ssh_user}@{host.ssh_address}", remote]
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(reason[-1] if reason else f"ssh exited with {done.returncode}")
    found = {}
    for chunk in done.stdout.split(f"{mark} ".encode())[1:]:
        name, _, body = chunk.partition(b"\n")
        found[name.decode()] = None if body.strip() == MISSING.encode() else body
    return found


def _pct(value: float | None, limit: float) -> str:
    return "-" if value is None else f"{value:.0f}%/{limit:g}%"


def summarize(row: LiveRow, status: dict[str, Any], now: float) -> LiveRow:
    """One row from a status.json."""
    t = status.get("thresholds") or {}
    containers = status.get("containers") or []
    incidents = sorted(status.get("incidents") or {})
    row.incidents = incidents
    row.age_s = int(now - status.get("time", 0))
    interval = float(status.get("interval_minutes") or 5) * 60
    row.overall = str(status.get("overall", "?"))
    if row.age_s > 3 * interval + 60:  # the timer has not run for three intervals
        row.overall = "stale"
    # The worst container: one with an incident first (restarting > down > unhealthy > cpu/memory), else the
    # one nearest a limit.
    order = ("restarting", "down", "unhealthy", "memory", "cpu")
    flagged = [
        (order.index(k.rsplit(":", 1)[1]), k.split(":")[1]) for k in incidents if k.startswith("container:")
    ]
    if flagged:
        rank, name = min(flagged)
        row.worst = f"{name} ({order[rank]})"
    elif containers:
        nearest = max(containers, key=lambda c: max(c.get("cpu_percent") or 0, c.get("memory_percent") or 0))
        row.worst = f"{nearest['name']} (ok)"
    cpus = [c["cpu_percent"] for c in containers if c.get("cpu_percent") is not None]
    memories = [c["memory_percent"] for c in containers if c.get("memory_percent") is not None]
    row.cpu = _pct(max(cpus) if cpus else None, float(t.get("cpu_percent", 70)))
    row.memory = _pct(max(memories) if memories else None, float(t.get("memory_percent", 80)))
    host = status.get("host") or {}
    row.disk = _pct(host.get("disk_percent"), float(t.get("disk_percent", 85)))
    backup = status.get("backup") or {}
    age = backup.get("age_hours")
    row.backup = (
        f"{age:.0f} h ({backup.get('result')})" if age is not None else str(backup.get("result", "-"))
    )
    endpoints = status.get("endpoints") or []
    days = [e["cert_days"] for e in endpoints if e.get("cert_days") is not None]
    row.cert = f"{min(days):.0f} d" if days else "-"
    if endpoints:
        slowest = max(endpoints, key=lambda e: e.get("ms", 0) if e.get("ok") else 10**9)
        row.slowest = f"{slowest['name']} {slowest.get('ms')} ms" + ("" if slowest.get("ok") else " DOWN")
    row.errors_last_hour = status.get("errors_last_hour")
    return row


def _new_row(path: Path) -> tuple[LiveRow, SuiteConfig | None]:
    row = LiveRow(stack=path.name.removeprefix("Pulumi.").rsplit(".", 1)[0])
    try:
        config = stack_config(path)
    except ConfigError as exc:
        row.overall, row.problem = "error", f"config: {exc.problems[0] if exc.problems else exc}"
        return row, None
    row.client, row.host = config.client, config.host.docker
    return row, config


def _read_host(
    members: list[tuple[LiveRow, SuiteConfig]], timeout: float, identity: str | None, known_hosts_dir: str
) -> None:
    started = time.monotonic()
    try:
        found = read_statuses([c for _, c in members], timeout, identity, known_hosts_dir)
    except subprocess.TimeoutExpired:
        problem = f"no answer within {timeout:g} s"
    except OSError as exc:
        problem = str(exc)
    else:
        problem = ""
    now = time.time()
    for row, config in members:
        row.seconds = round(time.monotonic() - started, 3)
        raw = None if problem else found.get(status_path(config))
        if problem or raw is None:
            row.overall = "unreachable"
            row.problem = problem or "no status.json yet (has the collector run?)"
            continue
        try:
            summarize(row, json.loads(raw), now)
        except ValueError as exc:
            row.overall, row.problem = "unreachable", f"status.json: {exc}"


def collect(
    paths: Sequence[Path], parallel: int = 16, timeout: float = 10.0, identity: str | None = None
) -> list[LiveRow]:
    """One row per stack file, in order; the hosts are read in parallel (one read per host connection)."""
    identity = identity or os.environ.get("VH_FLEET_SSH_IDENTITY") or None
    rows = [_new_row(p) for p in paths]
    by_host: dict[tuple[str, str], list[tuple[LiveRow, SuiteConfig]]] = {}
    for row, config in rows:
        if config is not None:
            by_host.setdefault(connection(config), []).append((row, config))
    workers = max(1, min(parallel, len(by_host)))
    with (
        tempfile.TemporaryDirectory(prefix="vh-fleet-") as known_hosts_dir,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        list(pool.map(lambda m: _read_host(m, timeout, identity, known_hosts_dir), by_host.values()))
    return [row for row, _ in rows]


HEADER = ["STACK", "CLIENT", "HEALTH", "WORST", "CPU", "MEMORY", "DISK", "BACKUP", "CERT", "SLOWEST", "ERR/H"]


def table(rows: Sequence[LiveRow]) -> str:
    cells = [HEADER]
    for r in rows:
        if r.problem:
            cells.append([r.stack, r.client or "-", r.overall, r.problem, *["-"] * 7])
            continue
        health = r.overall + (f" ({len(r.incidents)})" if r.incidents else "")
        errors = "-" if r.errors_last_hour is None else str(r.errors_last_hour)
        cells.append(
            [r.stack, r.client, health, r.worst, r.cpu, r.memory, r.disk, r.backup, r.cert, r.slowest, errors]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )
