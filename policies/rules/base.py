"""How a rule is declared: its metadata, its configurable exclusions, and values a preview cannot know yet.

A rule is a plain function over a small view of the resource (``Resource``) or of the whole stack
(``Stack``) that yields violation messages; ``resource_rule`` / ``stack_rule`` turn it into the real
``pulumi_policy`` policy object with its name, one-line description, anchor (the seed's checklist item
or the CIS Docker Benchmark v1.6.0 id and the checkers that implement it), enforcement level and a config
schema. Every rule accepts ``excludeFor``: resource names (logical, e.g. ``hub-mariadb``, or the
container's name, e.g. ``clientea-hub-mariadb``; shell-style globs allowed) the rule leaves alone, so an
exception is a reviewed line of policy config, never a code change::

    {"non-root-user": {"excludeFor": ["chat-*"]}, "image-digest": "disabled"}

Values a preview cannot know yet (ids, generated passwords) are kept as ``UNKNOWN``; a rule that needs one
calls ``known()``, which raises the SDK's ``UnknownValueError``: the engine then reports "can't run
policy ... during preview" (advisory) and runs the rule for real during the update.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, _is_unknown

# Resource types the rules read (engine tokens).
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
DOCKER_PROVIDER = "pulumi:providers:docker"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
COMMANDS = (LOCAL_COMMAND, REMOTE_COMMAND)

CIS = "CIS Docker Benchmark"
CIS_VERSION = "1.6.0"
SEED = "VersatileHub seed checklist"

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


# ---------------------------------------------------------------------------------------------------
# Values unknown during preview
# ---------------------------------------------------------------------------------------------------


class _Unknown:
    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Any = _Unknown()


def snapshot(value: Any) -> Any:
    """Plain dicts/lists from the SDK's unknown-checking proxies; unknown values become ``UNKNOWN``.

    One unknown element (a generated password inside `envs`) then costs only the checks that read it.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[key] = snapshot(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(snapshot(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    if _is_unknown(value):
        return UNKNOWN
    return value


def known(value: Any, what: str, *, deep: bool = True) -> Any:
    """`value`, or the SDK's UnknownValueError when the preview does not know it yet (anywhere inside it,
    or with deep=False only the value itself: a list whose elements may still hold unknowns)."""
    if value is UNKNOWN or (deep and contains_unknown(value)):
        raise UnknownValueError(UNKNOWN_STRING_VALUE, what.split("."))
    return value


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


# ---------------------------------------------------------------------------------------------------
# What a rule sees
# ---------------------------------------------------------------------------------------------------


@dataclass
class Resource:
    """One resource: engine type, logical name, URN, its properties (plain, with UNKNOWN where unknown)."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    parent: str | None = None  # parent URN
    dependencies: list[str] = field(default_factory=list)  # URNs

    @property
    def names(self) -> tuple[str, ...]:
        """The names an operator may use for it: logical name, and the physical `name` when set."""
        physical = self.props.get("name")
        return (self.name, physical) if isinstance(physical, str) and physical != self.name else (self.name,)

    @property
    def display(self) -> str:
        return self.names[-1]


def service_of(resource: Resource) -> str:
    """What a resource belongs to: its parent component (a service), or itself when it sits at the root."""
    if resource.parent and "::pulumi:pulumi:Stack::" not in resource.parent:
        return resource.parent
    return resource.urn


@dataclass
class Stack:
    resources: list[Resource]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]


class NotApplicable(Exception):
    """Raised by a check when the stack says, on purpose, that the rule does not apply to it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Finding:
    message: str
    resource: Resource | None = None


def _resource_from_args(args: ResourceValidationArgs) -> Resource:
    return Resource(args.resource_type, args.name, args.urn, snapshot(args.props), parent=args.opts.parent)


def _resource_from_stack(r: PolicyResource) -> Resource:
    return Resource(
        r.resource_type,
        r.name,
        r.urn,
        snapshot(r.props),
        parent=r.parent.urn if r.parent is not None else None,
        dependencies=[d.urn for d in r.dependencies],
    )


# ---------------------------------------------------------------------------------------------------
# Metadata and configuration
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """Where a rule comes from: the seed's checklist item and/or a CIS Docker v1.6.0 id, plus checker ids."""

    seed: str | None = None
    cis: tuple[str, ...] = ()  # e.g. ("5.10", "5.16")
    checkers: tuple[str, ...] = ()

    def text(self) -> str:
        parts = []
        if self.seed:
            parts.append(f"seed: {self.seed}")
        if self.cis:
            parts.append(f"CIS Docker v{CIS_VERSION} {', '.join(self.cis)}")
        parts.extend(self.checkers)
        return "; ".join(parts)

    def framework(self) -> PolicyComplianceFramework:
        if self.cis:
            return PolicyComplianceFramework(name=CIS, version=CIS_VERSION, reference=", ".join(self.cis))
        return PolicyComplianceFramework(name=SEED, reference=self.seed)

    def tags(self) -> list[str]:
        tags = ["versatilehub", *(f"cis-docker-{CIS_VERSION}-{c}" for c in self.cis)]
        if self.seed:
            tags.append("seed-checklist")
        return tags


def list_of(default: list[Any], description: str, item: str = "string") -> dict[str, Any]:
    """The config schema of a rule setting that is a list (of strings unless `item` says otherwise)."""
    return {"type": "array", "items": {"type": item}, "default": default, "description": description}


EXCLUDE_FOR = list_of([], "Resource names (logical or physical; shell-style globs) this rule leaves alone.")

ANCHORS: dict[str, Anchor] = {}


class Settings:
    """A rule's configuration: the policy config (``--policy-pack-config``) over the schema's defaults."""

    def __init__(self, config: Mapping[str, Any] | None, schema: Mapping[str, Mapping[str, Any]]):
        self._values = {k: v["default"] for k, v in schema.items() if "default" in v}
        self._values.update({k: v for k, v in (config or {}).items() if k != "enforcementLevel"})

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def excludes(self, resource: Resource) -> bool:
        patterns = self._values.get("excludeFor") or []
        return any(fnmatch.fnmatchcase(name, p) for p in patterns for name in resource.names)


ResourceCheck = Callable[[Resource, Settings], Iterable[str]]
StackCheck = Callable[[Stack, Settings], Iterable[Finding]]


def _schema(config: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {"excludeFor": dict(EXCLUDE_FOR), **{k: dict(v) for k, v in (config or {}).items()}}


def _severity(level: str) -> Severity:
    return Severity.HIGH if level == "mandatory" else Severity.MEDIUM


def resource_rule(
    name: str,
    description: str,
    *,
    anchor: Anchor,
    level: str,
    types: Sequence[str],
    remediation: str,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    severity: Severity | None = None,
) -> Callable[[ResourceCheck], ResourceValidationPolicy]:
    """Declare a rule checked on each resource of `types`; the decorated function yields messages."""
    schema = _schema(config)

    def wrap(check: ResourceCheck) -> ResourceValidationPolicy:
        def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
            if args.resource_type not in types:
                return
            settings = Settings(args.get_config(), schema)
            resource = _resource_from_args(args)
            if settings.excludes(resource):
                return
            for message in check(resource, settings):
                report_violation(message, None)

        return ResourceValidationPolicy(
            validate=validate, **_metadata(name, description, anchor, level, schema, severity, remediation)
        )

    return wrap


def _metadata(
    name: str,
    description: str,
    anchor: Anchor,
    level: str,
    schema: dict[str, Any],
    severity: Severity | None,
    remediation: str,
) -> dict[str, Any]:
    """What every rule declares, resource or stack (and its anchor, kept for the docs and the runner)."""
    ANCHORS[name] = anchor
    return {
        "name": name,
        "description": description,
        "enforcement_level": LEVELS[level],
        "config_schema": PolicyConfigSchema(properties=schema),
        "severity": severity or _severity(level),
        "framework": anchor.framework(),
        "tags": anchor.tags(),
        "remediation_steps": remediation,
    }


def stack_rule(
    name: str,
    description: str,
    *,
    anchor: Anchor,
    level: str,
    remediation: str,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    severity: Severity | None = None,
) -> Callable[[StackCheck], StackValidationPolicy]:
    """Declare a rule over the whole stack; the decorated function yields Findings (message, resource)."""
    schema = _schema(config)

    def wrap(check: StackCheck) -> StackValidationPolicy:
        def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
            settings = Settings(args.get_config(), schema)
            resources = [_resource_from_stack(r) for r in args.resources]
            stack = Stack([r for r in resources if not settings.excludes(r)])
            try:
                findings = list(check(stack, settings))
            except NotApplicable as exc:
                # Raises the SDK's own signal: the engine lists the rule as not applicable, with the reason.
                args.not_applicable(exc.reason)
                return
            for finding in findings:
                report_violation(finding.message, finding.resource.urn if finding.resource else None)

        return StackValidationPolicy(
            validate=validate, **_metadata(name, description, anchor, level, schema, severity, remediation)
        )

    return wrap


def level_name(policy: Policy) -> str:
    return "mandatory" if policy.enforcement_level == EnforcementLevel.MANDATORY else "advisory"
