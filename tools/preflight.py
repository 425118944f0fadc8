"""Preflight: does the client's Docker host keep what the stack writes, so a second `pulumi up` is a no-op?

    python -m tools.preflight clienteA            # asks the stack's Docker host (host.docker)
    python -m tools.preflight clienteA --daemon-json /etc/docker/daemon.json --info info.json

The docker provider reads every container back and diffs the next run against that (tools/provider_model.py).
Three host settings change the read-back, and with it every later run:

- swap accounting: without it the engine drops `memory_swap` (stores -1) and every capped container is
  updated on every `pulumi up` (moby daemon/daemon_unix.go verifyPlatformContainerResources);
- daemon.json `log-opts` for the containers' log driver that the stack does not set itself: the engine
  merges them into each container's log config (moby daemon/logs.go mergeAndVerifyLogConfig), the provider
  reads them back (log_opts is ForceNew), and every container is replaced on every `pulumi up`;
- an engine that lists a port's IPv4 and IPv6 bindings in reverse (Debian 12's docker.io 20.10, measured
  by tests/test_preflight.py): a container publishing one port on both families is replaced on every
  `pulumi up`. The shipped stacks publish none since #13 (Traefik has a container port per family).

Facts come from `docker info` on the stack's host (through `docker -H <host.docker>`, so over SSH for an
ssh:// host) and its /etc/docker/daemon.json (read over SSH with the pinned host key for an ssh:// host).
What the stack sets (log options, swap limits, published ports) comes from its offline plan. Exit status:
0 ready, 1 a precondition fails (one line each, with the fix), 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import ConfigError, parse
from tools import harness

DAEMON_JSON = "/etc/docker/daemon.json"
GUIDE = "docs/operator-guide.md section 1, host preconditions"


@dataclass
class Needs:
    """What the stack's containers set that the host could change on read-back."""

    swap_limited: list[str]  # containers with memory_swap
    log_opts: dict[str, dict[str, str]]  # log driver -> the option keys the stack's containers set
    log_containers: dict[str, list[str]]  # log driver -> containers
    dual_bindings: list[str]  # containers publishing one port on IPv4 and IPv6


def needs_of(plan: harness.Plan) -> Needs:
    needs = Needs([], {}, {}, [])
    for c in plan.containers():
        inputs = c.plain_inputs
        name = str(inputs.get("name", c.name))
        if "memorySwap" in inputs and int(inputs["memorySwap"]) > 0:
            needs.swap_limited.append(name)
        if "logOpts" in inputs:
            driver = str(inputs.get("logDriver", "json-file"))
            needs.log_opts.setdefault(driver, {}).update(inputs["logOpts"])
            needs.log_containers.setdefault(driver, []).append(name)
        internals = [int(p["internal"]) for p in inputs.get("ports") or []]
        if len(internals) != len(set(internals)):
            needs.dual_bindings.append(name)
    return needs


def _server_major(info: dict[str, Any]) -> int | None:
    version = str(info.get("ServerVersion", ""))
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def check(needs: Needs, info: dict[str, Any], daemon_json: str | None) -> list[str]:
    """The failed preconditions, one line each naming the fix; [] when the host keeps what is written."""
    problems = []
    if needs.swap_limited and info.get("SwapLimit") is False:
        problems.append(
            f"swap accounting is off on the Docker host (docker info: SwapLimit false): the engine drops "
            f"memory_swap, so every `pulumi up` updates {len(needs.swap_limited)} containers again "
            f"({', '.join(needs.swap_limited[:3])}...); fix: enable it (cgroup v2, or swapaccount=1 on the "
            f"kernel command line of a cgroup v1 host) and reboot ({GUIDE})"
        )
    if daemon_json is not None and daemon_json.strip():
        try:
            daemon = json.loads(daemon_json)
        except json.JSONDecodeError as exc:
            return [*problems, f"{DAEMON_JSON} is not valid JSON (line {exc.lineno}): dockerd will not start"]
        if not isinstance(daemon, dict):
            return [*problems, f"{DAEMON_JSON} is not a JSON object"]
        driver = str(daemon.get("log-driver") or info.get("LoggingDriver") or "json-file")
        extra = sorted(set(daemon.get("log-opts") or {}) - set(needs.log_opts.get(driver, {})))
        if extra and driver in needs.log_containers:
            containers = needs.log_containers[driver]
            problems.append(
                f"{DAEMON_JSON} log-opts {', '.join(extra)} merge into the {len(containers)} {driver} "
                f"containers this stack runs, which the provider then replaces on every `pulumi up`; fix: "
                f"remove {', '.join(extra)} from log-opts there (the stack sets "
                f"{', '.join(sorted(needs.log_opts[driver]))} itself) and restart docker ({GUIDE})"
            )
    major = _server_major(info)
    if needs.dual_bindings and major is not None and major < 27:
        problems.append(
            f"Docker Engine {info.get('ServerVersion')} lists a port's IPv4 and IPv6 bindings in reverse, so "
            f"the provider replaces {', '.join(needs.dual_bindings)} on every `pulumi up`; fix: publish each "
            f"address family on its own container port (as components/edge/component.py public_ports does), "
            f"or install docker-ce from Docker's repository ({GUIDE})"
        )
    return problems


def _ssh_target(url: str) -> tuple[list[str], str]:
    """ssh options and user@host for an ssh://user@host[:port] Docker endpoint."""
    rest = url.removeprefix("ssh://")
    port = None
    if rest.rsplit(":", 1)[-1].isdigit() and not rest.endswith("]"):
        rest, port = rest.rsplit(":", 1)
    return (["-p", port] if port else []), rest


def host_facts(docker_url: str, host_key: str | None) -> tuple[dict[str, Any], str | None]:
    """`docker info` and daemon.json of the stack's Docker host."""
    env = {**os.environ, "DOCKER_HOST": docker_url}
    got = subprocess.run(
        ["docker", "info", "--format", "{{json .}}"], capture_output=True, text=True, env=env, check=False
    )
    if got.returncode != 0:
        raise RuntimeError(f"docker info on {docker_url} failed: {got.stderr.strip().splitlines()[-1:]}")
    info = json.loads(got.stdout)
    if not docker_url.startswith("ssh://"):
        path = Path(DAEMON_JSON)
        return info, path.read_text() if path.exists() else None
    options, target = _ssh_target(docker_url)
    with tempfile.NamedTemporaryFile("w", suffix=".known_hosts") as known:
        host = target.split("@", 1)[1]
        port = options[1] if options else None
        known.write(f"{f'[{host}]:{port}' if port else host} {host_key}\n")
        known.flush()
        read = subprocess.run(
            ["ssh", *options, "-o", f"UserKnownHostsFile={known.name}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", target, f"cat {DAEMON_JSON} 2>/dev/null || true"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if read.returncode != 0:
        raise RuntimeError(f"reading {DAEMON_JSON} over ssh failed: {read.stderr.strip().splitlines()[-1:]}")
    return info, read.stdout or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a stack name (clienteA) or a path to a Pulumi.<stack>.yaml file")
    parser.add_argument(
        "--info", type=Path, help="`docker info --format '{{json .}}'` output, instead of asking"
    )
    parser.add_argument("--daemon-json", type=Path, help="the host's daemon.json, instead of reading it")
    args = parser.parse_args(argv)
    try:
        stack = harness.read_stack_file(args.stack)
        prefix = f"{harness.PROJECT}:"
        raw = {k.removeprefix(prefix): v for k, v in stack.values.items() if k.startswith(prefix)}
        host = parse(raw, frozenset(k.removeprefix(prefix) for k in stack.secret_keys)).host
        plan = harness.run(stack)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    needs = needs_of(plan)
    try:
        if args.info is not None:
            info = json.loads(args.info.read_text())
            daemon_json = None
        else:
            info, daemon_json = host_facts(host.docker, host.ssh_host_key)
        if args.daemon_json is not None:
            daemon_json = args.daemon_json.read_text() if args.daemon_json.exists() else None
    except (OSError, RuntimeError, json.JSONDecodeError) as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    problems = check(needs, info, daemon_json)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(
            f"preflight {plan.stack}: the Docker host keeps what the stack writes (engine "
            f"{info.get('ServerVersion', '?')}, swap accounting "
            f"{'on' if info.get('SwapLimit') else 'off, unused'}, no extra log-opts)"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    harness.exit_after_plans(main())
