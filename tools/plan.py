"""Offline plan: what a client stack would create, without the Pulumi CLI, a server or a registry.

    python -m tools.plan clienteA            # a table: type, name, image, networks, published ports, memory
    python -m tools.plan Pulumi.clienteB.yaml --json
    python -m tools.plan clienteA --after-up  # what a second, no-op `pulumi up` would replace or re-run
    python -m tools.plan clienteA --after-up --bump erpnext=v16.32.4   # ... after moving one image

It runs the real program under Pulumi's mock runtime (tools/harness.py). It is NOT `pulumi preview`: it
knows nothing about what already runs on the server, so it lists what the stack declares rather than a
diff, and `secure:` values from the stack file are replaced by placeholders (no passphrase needed).
Secrets are printed as "[secret]". Bad config exits 2 with the one-line problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from components.config import ConfigError
from tools import harness, provider_model

SHORT_TYPES = {
    "docker:index/container:Container": "container",
    "docker:index/remoteImage:RemoteImage": "image",
    "docker:index/network:Network": "network",
    "docker:index/volume:Volume": "volume",
    "command:local:Command": "command",
    "command:remote:Command": "command (ssh)",
    "random:index/randomPassword:RandomPassword": "password",
    "random:index/randomBytes:RandomBytes": "random bytes",
    "pulumi:providers:docker": "docker provider",
}


def _row(plan: harness.Plan, r: harness.PlannedResource) -> list[str]:
    inputs = harness.masked(r.inputs)
    kind = SHORT_TYPES.get(r.type, r.type)
    image = networks = ports = memory = ""
    if r.type == "docker:index/container:Container":
        image = str(inputs.get("image", ""))
        networks = ",".join(n["name"] for n in inputs.get("networksAdvanced", []))
        ports = ",".join(
            f"{p.get('ip', '0.0.0.0')}:{p['external']}->{p['internal']}" for p in inputs.get("ports", [])
        )
        memory = f"{inputs['memory']} MB" if "memory" in inputs else "none"
    elif r.type == "docker:index/remoteImage:RemoteImage":
        image = str(inputs.get("name", ""))
    elif r.type == "docker:index/network:Network":
        networks = str(inputs.get("name", "")) + (" (internal)" if inputs.get("internal") else "")
    name = (
        str(inputs.get("name", r.name))
        if r.type.startswith("docker:index/") and r.type.endswith(("container:Container", "volume:Volume"))
        else r.name
    )
    return [kind, name, image, networks, ports, memory]


def table(plan: harness.Plan) -> str:
    rows = [["TYPE", "NAME", "IMAGE", "NETWORKS", "PUBLISHED", "MEMORY"]]
    rows += [_row(plan, r) for r in plan.resources if r.custom]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    outputs = harness.masked(plan.outputs)
    containers = plan.containers()
    total = sum(int(harness.plain(c.inputs).get("memory", 0)) for c in containers)
    host = outputs.get("hostMemoryMb")
    budget = f" of {host} MB host RAM ({100 * total / host:.0f}%)" if host else ""
    cpus = sum(float(harness.plain(c.inputs).get("cpus", 0)) for c in containers)
    cores = outputs.get("hostCpus")
    cpu_budget = f" of {cores:g} cores ({100 * cpus / cores:.0f}%)" if cores else ""
    lines += [
        "",
        f"stack {plan.stack}: {len(plan.resources)} resources, {len(containers)} containers, "
        f"memory limits {total} MB{budget}, CPU limits {cpus:.2f}{cpu_budget}",
        "(offline plan under Pulumi's mock runtime: not `pulumi preview`, no diff against the server)",
    ]
    if plan.placeholders:
        lines.append(
            f"secrets not in the stack file yet, planned with placeholders: {', '.join(plan.placeholders)}"
        )
    return "\n".join(lines)


def _bumped(ref: str, bumps: list[str]) -> harness.StackConfig:
    """The stack with `versatilehub:versions` moved as IMAGE=TAG says (the config model checks the tag)."""
    path = harness.resolve_stack(ref)
    doc = dict(harness.load_stack_document(path))
    versions = dict(doc.get(f"{harness.PROJECT}:versions") or {})
    for bump in bumps:
        image, sep, tag = bump.partition("=")
        if not sep or not image or not tag:
            raise ValueError(f"--bump {bump}: write IMAGE=TAG, e.g. --bump erpnext=v16.32.4")
        versions[image] = tag
    doc[f"{harness.PROJECT}:versions"] = versions
    name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    return harness.with_placeholder_secrets(harness.stack_config(name, doc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a stack name (clienteA) or a path to a Pulumi.<stack>.yaml file")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (secrets masked)")
    parser.add_argument(
        "--after-up",
        action="store_true",
        help="plan twice and print what a second `pulumi up` over the first one's state would change",
    )
    parser.add_argument(
        "--bump",
        action="append",
        default=[],
        metavar="IMAGE=TAG",
        help="with --after-up: the second run moves this image (as versatilehub:versions.IMAGE would)",
    )
    args = parser.parse_args(argv)
    try:
        plan = harness.plan_stack(args.stack)
        if args.after_up:
            stack = harness.read_stack_file(args.stack)
            if args.bump:
                stack = _bumped(args.stack, args.bump)
            changes = harness.second_run(plan, harness.run(stack))
            for c in changes:
                print(f"{c.action:8} {SHORT_TYPES.get(c.type, c.type)} {c.name}: {', '.join(c.fields)}")
            count = {a: sum(1 for c in changes if c.action == a and c.type == provider_model.CONTAINER)
                     for a in ("replace", "update")}  # fmt: skip
            steps = sum(1 for c in changes if c.action == "re-run")
            print(
                f"stack {plan.stack}: a second run replaces {count['replace']} containers, updates "
                f"{count['update']}, re-runs {steps} commands ({len(changes)} resources change)"
            )
            return 0
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except provider_model.ProviderError as exc:  # what the real provider would refuse at create
        print(f"the docker provider would refuse: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        if plan.placeholders:
            print(f"planned with placeholders for: {', '.join(plan.placeholders)}", file=sys.stderr)
        doc: dict[str, Any] = plan.to_json()
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print(table(plan))
    return 0


if __name__ == "__main__":
    harness.exit_after_plans(main())
