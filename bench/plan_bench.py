"""Benchmark: the offline plan of a stack (default clienteA), as an operator runs it.

    .venv/bin/python bench/plan_bench.py [stack] [--runs 7]

Each run is a fresh `python -m tools.plan <stack> --json` process, after one warm-up run (bytecode
compiled, as on an operator's machine; `uv sync --compile-bytecode` does it for the dependencies).
Reported: median wall time and peak memory (max RSS) of the whole plan, and the program's own share:
the time from "SDKs imported" to "plan recorded" inside the process (config validation, components, the
mock engine), i.e. what the project's code costs beyond importing pulumi, pulumi-docker, pulumi-random,
pulumi-command and pydantic; and that share in parts (see PROBE), to tell the project's code from the
SDK's own work per registration.
Targets (issue 2): <= 1.0 s wall and <= 250 MB for the whole plan, <= 0.3 s for the program's own part.
Results are printed and written to bench/results/plan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# As on an operator's machine: Python keeps compiled bytecode (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

# Runs in the child: import the SDKs (pydantic's lazily loaded parts too), then time the program's own
# evaluation in four parts: importing the project's modules, reading the stack file (config model,
# placeholders), the program's body (config, components, the SDK's synchronous side of each
# registration) and the SDK finishing the registrations against the mock engine after the body returns.
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import pulumi, pulumi_docker, pulumi_random, pulumi_command  # noqa: F401
from pydantic import BaseModel, ConfigDict, Field, SecretStr, types  # noqa: F401
t1 = time.perf_counter()
from tools import harness
import components.suite as suite
t_project = time.perf_counter()
stack = harness.read_stack_file(sys.argv[1])
t2 = time.perf_counter()
marks = {}
deploy = suite.deploy
def timed_deploy(*args, **kwargs):
    result = deploy(*args, **kwargs)
    marks["body"] = time.perf_counter()
    return result
suite.deploy = timed_deploy
plan = harness.run(stack)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "program": t3 - t1, "project_imports": t_project - t1,
                  "read": t2 - t_project, "body": marks["body"] - t2,
                  "registration": t3 - marks["body"], "resources": len(plan.resources)}))
"""


def run_once(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one child process."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=ENV)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child and returns its own resource usage
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed:\n{err.read().decode()}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stack", nargs="?", default="clienteA")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable

    walls, rss, own, imports = [], [], [], []
    parts: dict[str, list[float]] = {"project_imports": [], "read": [], "body": [], "registration": []}
    run_once([py, "-m", "tools.plan", args.stack, "--json"])  # warm-up: compiles the project's bytecode once
    for _ in range(args.runs):
        wall, peak, _ = run_once([py, "-m", "tools.plan", args.stack, "--json"])
        walls.append(wall)
        rss.append(peak)
        _, _, out = run_once([py, "-c", PROBE, args.stack])
        probe = json.loads(out)
        own.append(probe["program"])
        imports.append(probe["imports"])
        for part, values in parts.items():
            values.append(probe[part])
    result = {
        "stack": args.stack,
        "runs": args.runs,
        "resources": probe["resources"],
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_max": round(max(walls), 3),
        "peak_rss_mb_max": round(max(rss), 1),
        "sdk_import_s_median": round(statistics.median(imports), 3),
        "program_s_median": round(statistics.median(own), 3),
        "program_parts_s_median": {part: round(statistics.median(v), 3) for part, v in parts.items()},
        "targets": {"wall_s": 1.0, "peak_rss_mb": 250, "program_s": 0.3},
    }
    result["meets_targets"] = (
        result["wall_s_median"] <= 1.0
        and result["peak_rss_mb_max"] <= 250
        and result["program_s_median"] <= 0.3
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "plan.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
