"""Collector benchmark: the real vh-collect (scripts/vh_collect.py) on a 21-container stack in a private
Docker engine (tools/engine.py), and `fleet --live` for 20 stacks on one ssh host against one stack.

Measures, per collector run (a fresh process, as the timer starts it): CPU time (user + system) and peak
RSS, from the kernel's accounting of the child (os.wait4); targets: under 1 s of CPU and 50 MB. Then
tools.fleet_live.collect() over ssh to an sshd in a network namespace (host key pinned), for 1 and for 20
stacks; target: 20 stacks close to one stack's time (the reads run in parallel). Prints a table and
writes JSON to bench/results/ (gitignored).

    sudo .venv/bin/python -m bench.collector_bench [--runs 5]

Needs root (dockerd, ip netns), Debian's docker.io, debootstrap, iproute2 and openssh-server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.collector_lab import COLLECTOR, https_edge, netns_sshd  # noqa: E402
from tools import engine, fleet_live  # noqa: E402

CLIENT = "benchclient"
CONTAINERS = 21
LOG_LINES = 2000  # per container, since the last run: a busy interval


def start_stack(docker: engine.Engine) -> None:
    image = engine.base_image(docker)
    for i in range(CONTAINERS):
        service = ("hub", "chat", "flow", "agent")[i % 4]
        role = f"web{i}" if i % 3 else f"worker{i}"
        log = f'i=0; while [ $i -lt {LOG_LINES} ]; do echo "line $i ERROR -- : boom"; i=$((i+1)); done'
        docker.docker(
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            f"{CLIENT}-{service}-{role}",
            *("--label", f"io.versatilehub.client={CLIENT}", "--label", f"io.versatilehub.service={service}"),
            *("--label", f"io.versatilehub.role={role}"),
            *("--memory", "64m", "--memory-swap", "64m", "--cpus", "0.5"),
            *("--health-cmd", "true", "--health-interval", "5s"),
            image,
            "sh",
            "-c",
            f"{log}; exec sleep 3600",
        )


def settings_file(folder: Path, socket: Path, edge: str) -> Path:
    status_dir = folder / "data" / CLIENT / "monitor"
    status_dir.mkdir(parents=True)
    settings = {
        "format": 1,
        "client": CLIENT,
        "docker_socket": str(socket),
        "data_root": str(folder / "data"),
        "status_dir": str(status_dir),
        "edge": edge,
        "interval_minutes": 5,
        "first_log_window": 600,
        "endpoints": [
            {"name": s, "url": f"https://{s}.bench.test/", "expect": "2??", "body": ""}
            for s in ("hub", "chat", "flow", "agent", "portal")
        ],
        "thresholds": {},
        "backup_status": str(status_dir / "backup.json"),
        "drill_status": str(status_dir / "drill.json"),
    }
    path = folder / "collect.json"
    path.write_text(json.dumps(settings))
    return path


# The server's interpreter (the unit runs vh-collect with /usr/bin/env python3 there), not this venv's.
PYTHON = "/usr/bin/python3"


def one_run(settings: Path) -> dict[str, float]:
    """CPU from the kernel's accounting of the child; peak memory from the collector itself (VmHWM):
    ru_maxrss would count the pages of this big benchmark process it was forked from."""
    started = time.monotonic()
    child = subprocess.Popen(
        [PYTHON, str(COLLECTOR), "--settings", str(settings), "--secrets", "/nonexistent", "--quiet"]
    )
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vh-collect exited with {os.waitstatus_to_exitcode(status)}")
    written = json.loads(Path(json.loads(settings.read_text())["status_dir"], "status.json").read_text())
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": written["collect_peak_rss_mb"],
        "wall_s": time.monotonic() - started,
    }


def stack_file(folder: Path, client: str, data_root: Path, address: str, host_key: str) -> Path:
    import yaml

    doc = {
        "config": {
            "versatilehub:client": client,
            "versatilehub:company": "Bench S.A.",
            "versatilehub:domain": f"{client}.com",
            "versatilehub:timezone": "UTC",
            "versatilehub:acmeEmail": f"ops@{client}.com",
            "versatilehub:services": "hub",
            "versatilehub:hub": {"country": "AR"},
            "versatilehub:host": {"docker": f"ssh://root@{address}", "sshHostKey": host_key},
            "versatilehub:storage": {"dataRoot": str(data_root)},
            "versatilehub:backup": {"repository": "/srv/backups/bench"},
        }
    }
    path = folder / f"Pulumi.{client}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vh-collect-bench-"))
    results: dict[str, Any] = {"containers": CONTAINERS, "log_lines_per_container": LOG_LINES}
    try:
        with engine.Engine() as docker:
            start_stack(docker)
            time.sleep(3)  # every container has written its log lines
            routes = {f"{s}.bench.test": (200, "ok") for s in ("hub", "chat", "flow", "agent", "portal")}
            with https_edge(folder, routes, days=60) as edge:
                settings = settings_file(folder, docker.socket, edge)
                runs = [one_run(settings) for _ in range(args.runs)]
            status = json.loads(
                Path(json.loads(settings.read_text())["status_dir"], "status.json").read_text()
            )
            assert len(status["containers"]) == CONTAINERS, len(status["containers"])
        results["collector_runs"] = runs
        # The first run reads every container's log since its start; the later ones only what is new.
        results["collector"] = {
            "cpu_s_first": runs[0]["cpu_s"],
            "cpu_s_max": max(r["cpu_s"] for r in runs),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        }
        status_dir = Path(json.loads(settings.read_text())["status_dir"])
        with netns_sshd() as ssh:
            paths = []
            for i in range(20):
                client = f"bench{i:02d}"
                target = folder / "data" / client / "monitor"
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(status_dir / "status.json", target / "status.json")
                paths.append(stack_file(folder, client, folder / "data", ssh.address, ssh.host_key))
            timings: dict[str, list[float]] = {"1": [], "20": []}
            for _ in range(3):
                for count in (1, 20):
                    started = time.monotonic()
                    rows = fleet_live.collect(paths[:count], identity=str(ssh.identity))
                    timings[str(count)].append(time.monotonic() - started)
                    bad = [r.problem for r in rows if r.problem]
                    assert not bad, bad
        results["fleet_live_s"] = {k: statistics.median(v) for k, v in timings.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    c, f = results["collector"], results["fleet_live_s"]
    print(f"collector, {CONTAINERS} containers, {args.runs} runs:")
    print(
        f"  CPU  max {c['cpu_s_max']:.3f} s (the first run, {LOG_LINES} log lines per container: "
        f"{c['cpu_s_first']:.3f} s), median {c['cpu_s_median']:.3f} s   (target < 1 s)"
    )
    print(f"  RSS  max {c['peak_rss_mb_max']:.1f} MB                (target < 50 MB)")
    print(f"  wall median {c['wall_s_median']:.2f} s (stats reads wait for the engine's second sample)")
    print(
        f"fleet --live over ssh: 1 stack {f['1']:.2f} s, 20 stacks {f['20']:.2f} s ({f['20'] / f['1']:.1f}x)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "collector.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
