"""Offline policy check: the pack's real policy objects, fed with what the offline plan would send.

    python -m tools.policy clienteA                      # a stack name, or a Pulumi.<stack>.yaml path
    python -m tools.policy plan.json                     # the output of `python -m tools.plan ... --json`
    python -m tools.policy clienteA --policy-pack-config policy-config.json

Each resource of the plan goes through every resource policy as `ResourceValidationArgs` (engine-style
camelCase inputs, secrets decrypted, exactly as the engine's analyzer receives them), and the whole plan
through every stack policy as `PolicyResource`s with their parents and dependencies. The stack's config
is handed to the runtime as the engine does for a pack, so rules that read it (the host's RAM) see it.
A plan.json has its secrets masked: checks that need a secret are reported as not run (use the stack).

Prints each violation with its rule, level and resource; exit 1 on any mandatory violation, 2 when the
stack cannot be planned or the policy config is invalid, 0 otherwise. Not `pulumi preview`: see
tools/harness.py for what an offline plan can and cannot know.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from components.config import ConfigError
from policies.rules import POLICIES
from tools import harness

LEVELS = {level.value: level for level in EnforcementLevel}


# ---------------------------------------------------------------------------------------------------
# What the pack is run on
# ---------------------------------------------------------------------------------------------------


@dataclass
class Subject:
    """One resource as the engine hands it to an analyzer (properties in wire form)."""

    type: str
    name: str
    urn: str
    parent: str | None
    props: dict[str, Any]  # secrets as wrapper objects, unknowns as the engine's sentinels
    options: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)


@dataclass
class Target:
    stack: str
    resources: list[Subject]
    config: dict[str, str]  # "namespace:key" -> text, as the engine passes stack config to a pack
    secret_keys: list[str] = field(default_factory=list)
    masked: bool = False  # secrets replaced by "[secret]" (a plan.json)


def from_plan(plan: harness.Plan, stack: harness.StackConfig) -> Target:
    return Target(
        stack=plan.stack,
        resources=[
            Subject(r.type, r.name, r.urn, r.parent, r.inputs, r.options, list(r.dependencies))
            for r in plan.resources
        ],
        config=dict(stack.values),
        secret_keys=list(stack.secret_keys),
    )


def _unmask(value: Any) -> Any:
    if value == harness.MASK:
        return UNKNOWN_STRING_VALUE
    if isinstance(value, dict):
        return {k: _unmask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmask(v) for v in value]
    return value


def from_plan_json(doc: Mapping[str, Any]) -> Target:
    """A `python -m tools.plan --json` document: parents are names, secrets are "[secret]" (unknown here)."""
    stack = str(doc.get("stack") or "plan")
    items = list(doc.get("resources") or [])
    root = f"urn:pulumi:{stack}::{harness.PROJECT}::pulumi:pulumi:Stack::{harness.PROJECT}-{stack}"
    # Parents are components: the resources other resources name as their parent.
    parents = {item.get("parent") for item in items}
    components = {
        item["name"]: item for item in items if item["name"] in parents and ":index/" not in item["type"]
    }
    urns: dict[int, str] = {}

    def chain(item: Mapping[str, Any], depth: int = 0) -> str:
        parent = components.get(item.get("parent") or "")
        if parent is None or parent is item or depth > 50:
            return str(item["type"])
        return f"{chain(parent, depth + 1)}${item['type']}"

    for i, item in enumerate(items):
        urns[i] = f"urn:pulumi:{stack}::{harness.PROJECT}::{chain(item)}::{item['name']}"
    urn_of_component = {
        item["name"]: urns[i]
        for i, item in enumerate(items)
        if item["name"] in components and components[item["name"]] is item
    }
    resources = [
        Subject(
            type=str(item["type"]),
            name=str(item["name"]),
            urn=urns[i],
            parent=urn_of_component.get(item.get("parent") or "", root),
            props=_unmask(item.get("inputs") or {}),
            options=dict(item.get("options") or {}),
        )
        for i, item in enumerate(items)
    ]
    # A plan.json carries no stack config: what the rules read from it comes from the plan's outputs.
    outputs = doc.get("outputs") or {}
    config = {}
    if isinstance(outputs.get("hostMemoryMb"), (int, float)):
        config[f"{harness.PROJECT}:host"] = json.dumps({"memoryMb": outputs["hostMemoryMb"]})
    if "backup" not in outputs:  # the program exports `backup` whenever the stack has backups
        config[f"{harness.PROJECT}:backup"] = json.dumps({"enabled": False})
    return Target(stack, resources, config, masked=True)


def load(ref: str) -> Target:
    """A stack name, a stack file, or a plan.json."""
    if ref.endswith(".json"):
        return from_plan_json(json.loads(Path(ref).read_text()))
    stack = harness.read_stack_file(ref)
    return from_plan(harness.run(stack), stack)


# ---------------------------------------------------------------------------------------------------
# Running the policies
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str  # "mandatory" | "advisory"
    message: str
    resource_type: str | None = None
    resource_name: str | None = None

    def line(self) -> str:
        where = f" ({self.resource_type} {self.resource_name})" if self.resource_name else ""
        return f"[{self.level}] {self.policy}{where}: {self.message}"


@dataclass
class Report:
    stack: str
    violations: list[Violation] = field(default_factory=list)
    not_run: list[Violation] = field(default_factory=list)  # needed a value the plan does not have
    not_applicable: list[tuple[str, str]] = field(default_factory=list)  # (policy, reason the stack gives)
    masked: bool = False

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "advisory"]


class PolicyConfigError(ValueError):
    """A policy config the CLI would refuse: an unknown policy or setting, or an unknown level."""


def resolve_config(
    policy_config: Mapping[str, Any],
) -> dict[str, tuple[EnforcementLevel, dict[str, Any]]]:
    """Per policy: its level and properties, as the CLI resolves --policy-pack-config (`all` included)."""
    known = {p.name: p for p in POLICIES}
    for name in policy_config:
        if name != "all" and name not in known:
            raise PolicyConfigError(f"{name}: not a policy of this pack (known: {', '.join(sorted(known))})")
    default = policy_config.get("all")
    resolved = {}
    for name, policy in known.items():
        level = policy.enforcement_level or EnforcementLevel.ADVISORY
        if isinstance(default, str):
            level = _level(default, "all")
        entry = policy_config.get(name, {})
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        if not isinstance(entry, dict):
            raise PolicyConfigError(f"{name}: expected a level or an object")
        if "enforcementLevel" in entry:
            level = _level(entry["enforcementLevel"], name)
        schema = policy.config_schema.properties if policy.config_schema else {}
        props = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        for key in props:
            if key not in schema:
                raise PolicyConfigError(
                    f"{name}.{key}: not a setting of this policy (settings: {', '.join(schema)})"
                )
        resolved[name] = (level, props)
    return resolved


def _level(value: Any, where: str) -> EnforcementLevel:
    if value not in LEVELS:
        raise PolicyConfigError(f"{where}: enforcement level {value!r} is not one of {', '.join(LEVELS)}")
    return LEVELS[value]


def _props(subject: Subject) -> Any:
    return unknown_checking_proxy(deserialize_properties(subject.props))


def _options(subject: Subject) -> PolicyResourceOptions:
    o = subject.options
    return PolicyResourceOptions(
        bool(o.get("protect")),
        list(o.get("ignoreChanges") or []),
        o.get("deleteBeforeReplace"),
        [],
        PolicyCustomTimeouts(0, 0, 0),
        list(o.get("additionalSecretOutputs") or []),
        subject.parent,
    )


def _stack_resources(target: Target) -> list[PolicyResource]:
    built = {
        s.urn: PolicyResource(s.type, _props(s), s.urn, s.name, _options(s), None, None, [], {})
        for s in target.resources
    }
    for s in target.resources:
        built[s.urn].parent = built.get(s.parent or "")
        built[s.urn].dependencies = [built[d] for d in s.dependencies if d in built]
    return list(built.values())


def _run(result: Any) -> None:
    if inspect.isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


def check(
    target: Target, policy_config: Mapping[str, Any] | None = None, only: Iterable[str] | None = None
) -> Report:
    """Run the pack's policies (all, or those named in `only`) on `target`.

    Raises PolicyConfigError for a policy config the CLI would refuse.
    """
    settings = resolve_config(policy_config or {})
    wanted = set(only) if only is not None else None
    report = Report(target.stack, masked=target.masked)
    previous_config = dict(pulumi.runtime.config.CONFIG.get())
    pulumi.runtime.set_all_config(dict(target.config), list(target.secret_keys))
    try:
        for policy in POLICIES:
            level, config = settings[policy.name]
            if level == EnforcementLevel.DISABLED or (wanted is not None and policy.name not in wanted):
                continue
            shown = (
                "mandatory"
                if level in (EnforcementLevel.MANDATORY, EnforcementLevel.REMEDIATE)
                else "advisory"
            )
            for outcome in _apply(policy, target, config, shown):
                if outcome.level == "not applicable":
                    report.not_applicable.append((outcome.policy, outcome.message))
                else:
                    (report.not_run if outcome.level == "not run" else report.violations).append(outcome)
    finally:
        pulumi.runtime.set_all_config(previous_config, [])
    return report


def _apply(policy: Policy, target: Target, config: dict[str, Any], level: str) -> Iterator[Violation]:
    found: list[Violation] = []

    def collect(subject: Subject | None) -> Any:
        def report_violation(message: str, urn: str | None = None) -> None:
            where = next((s for s in target.resources if s.urn == urn), subject) if urn else subject
            found.append(
                Violation(
                    policy.name, level, message, where.type if where else None, where.name if where else None
                )
            )

        return report_violation

    def guarded(subject: Subject | None, call: Any) -> None:
        try:
            _run(call())
        except UnknownValueError as exc:
            found.append(
                Violation(
                    policy.name,
                    "not run",
                    f"needs .{'.'.join(exc.props)}",
                    subject.type if subject else None,
                    subject.name if subject else None,
                )
            )
        except _NotApplicableError as exc:
            found.append(Violation(policy.name, "not applicable", exc.reason or "", None, None))

    if isinstance(policy, ResourceValidationPolicy):
        for s in target.resources:
            args = ResourceValidationArgs(s.type, _props(s), s.urn, s.name, _options(s), None, config, {})
            guarded(s, lambda args=args, s=s: policy.validate(args, collect(s)))
    elif isinstance(policy, StackValidationPolicy):
        stack_args = StackValidationArgs(_stack_resources(target), config, {})
        guarded(None, lambda: policy.validate(stack_args, collect(None)))
    yield from found


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def remediation(policy: str) -> str:
    return next((p.remediation_steps or "" for p in POLICIES if p.name == policy), "")


def grouped(violations: list[Violation]) -> list[str]:
    """Each policy once: its one violation, or how many resources it found and an example; then its fix."""
    lines: list[str] = []
    by_policy: dict[str, list[Violation]] = {}
    for v in violations:
        by_policy.setdefault(v.policy, []).append(v)
    for policy, found in by_policy.items():
        found.sort(key=lambda v: (v.resource_name or "", v.message))
        if len(found) == 1:
            lines.append(found[0].line())
        else:
            names = ", ".join(v.resource_name or "the stack" for v in found)
            lines.append(
                f"[{found[0].level}] {policy}, {len(found)} resources ({names}): e.g. {found[0].message}"
            )
        fix = remediation(policy)
        if fix:
            lines.append(f"  fix: {fix}")
    return lines


def render(report: Report, *, each: bool = False) -> str:
    """The report; with `each`, one line per violation (as `pulumi preview` lists them), else grouped."""
    if each:
        lines = [v.line() for v in report.mandatory] + [v.line() for v in report.advisory]
    else:
        lines = grouped(report.mandatory) + grouped(report.advisory)
    if report.not_run:
        why = (
            "secrets are masked in a plan.json: run on the stack itself for these"
            if report.masked
            else "values the plan does not know"
        )
        lines.append(f"not run ({why}):")
        lines += [
            f"  {v.policy} ({v.resource_type} {v.resource_name}): {v.message}"
            if v.resource_name
            else f"  {v.policy}: {v.message}"
            for v in report.not_run
        ]
    lines += [f"not applicable: {policy}: {reason}" for policy, reason in report.not_applicable]
    lines.append(
        f"stack {report.stack}: {len(report.mandatory)} mandatory, {len(report.advisory)} advisory "
        f"violation(s) from {len(POLICIES)} policies"
        + (f"; {len(report.not_run)} check(s) not run" if report.not_run else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.policy", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a stack name (clienteA), a Pulumi.<stack>.yaml path, or a plan.json")
    parser.add_argument(
        "--policy-pack-config",
        metavar="FILE",
        help="policy config, as for `pulumi preview --policy-pack-config` (levels, excludeFor, ...)",
    )
    parser.add_argument(
        "--each", action="store_true", help="one line per violation, instead of one per policy with its fix"
    )
    args = parser.parse_args(argv)
    try:
        policy_config = (
            json.loads(Path(args.policy_pack_config).read_text()) if args.policy_pack_config else {}
        )
        resolve_config(policy_config)  # refuse a bad policy config before planning
        report = check(load(args.target), policy_config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:  # PolicyConfigError, bad JSON included
        print(f"{args.target}: {exc}", file=sys.stderr)
        return 2
    print(render(report, each=args.each))
    return 1 if report.mandatory else 0


if __name__ == "__main__":
    harness.exit_after_plans(main())
