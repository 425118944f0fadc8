"""Run the real program under Pulumi's mock runtime and record what a stack would create.

One harness for the unit tests, the offline plan (`python -m tools.plan`), the offline policy check
(`python -m tools.policy`), the fleet view and the benchmarks. It runs the real Pulumi SDK, the real
resource classes and the project's real `__main__.py`; only the engine and the providers are replaced
by a recorder that answers with realistic outputs (image ids carrying the pinned reference, passwords
of the requested length and charset marked secret, network names and subnets). No process starts, no
network is used, nothing on a Docker host changes. This is not `pulumi preview`: it cannot see what
already runs on a server, so it shows what the stack declares, not a diff.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import random
import re
import runpy
import string
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime import resource as sdk_resource
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func

from tools import provider_model

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "versatilehub"
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_VALUE = rpc._special_secret_sig
MASK = "[secret]"
STATE_ID = "__resourceId"  # where the recorded state keeps a resource's id (no provider field is named so)


# ---------------------------------------------------------------------------------------------------
# Secret markers: how the engine sees a secret value (a wrapper object), and helpers to unwrap or mask
# ---------------------------------------------------------------------------------------------------


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def wrap_secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def plain(value: Any) -> Any:
    """The value as a policy (or the provider) sees it: secret wrappers removed."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """The value as the plan prints it: every secret replaced by "[secret]", whole numbers as integers."""
    if is_secret(value):
        return MASK
    if isinstance(value, dict):
        return {k: masked(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format carries every number as a float
    return value


def contains_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


# ---------------------------------------------------------------------------------------------------
# Stack files
# ---------------------------------------------------------------------------------------------------


@dataclass
class StackConfig:
    name: str
    values: dict[str, str]  # "versatilehub:key" -> text, as the engine hands config to a program
    secret_keys: list[str] = field(default_factory=list)
    # Secrets the stack file does not carry yet, planned with placeholders (see with_placeholder_secrets).
    placeholders: list[str] = field(default_factory=list)


def placeholder(key: str) -> str:
    """A stand-in for a `secure:` value (the offline plan has no passphrase): long, unique, not a default."""
    return "plan-placeholder-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _config_text(key: str, value: Any, secrets: set[str]) -> str:
    def unsecure(v: Any, path: str) -> Any:
        if isinstance(v, dict) and set(v) == {"secure"}:
            secrets.add(key)
            return placeholder(path)
        if isinstance(v, dict):
            return {k: unsecure(x, f"{path}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            return [unsecure(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return v

    value = unsecure(value, key)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stack_config(name: str, config: Mapping[str, Any]) -> StackConfig:
    """Config as the CLI would pass it: unqualified keys get the project namespace, objects become JSON."""
    secrets: set[str] = set()
    values = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        values[full] = _config_text(full, value, secrets)
    return StackConfig(name, values, sorted(secrets))


_SECRET_FIX = re.compile(r"pulumi config set --secret (?:--path )?'?versatilehub:([A-Za-z0-9_.-]+)'?")


def _set_path(values: dict[str, str], path: list[str], value: str) -> None:
    key = f"{PROJECT}:{path[0]}"
    if len(path) == 1:
        values[key] = value
        return
    doc = json.loads(values.get(key) or "{}")
    node = doc
    for part in path[1:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    values[key] = json.dumps(doc)


def with_placeholder_secrets(stack: StackConfig) -> StackConfig:
    """Fill the credentials a stack file does not carry yet with placeholders (listed in `placeholders`).

    The repository's stack files hold no secrets: an operator adds them with `pulumi config set --secret`,
    which encrypts them with the client's passphrase. Offline, each secret the config model asks for
    (its error line ends with that exact command) gets a placeholder, so everything else can be planned
    and checked; the plan says which keys were filled.
    """
    from components.config import ConfigError, parse

    values, secrets, filled = dict(stack.values), set(stack.secret_keys), []
    for _ in range(10):  # each round may reveal the next requirement (a section's checks run in stages)
        raw = {k.removeprefix(f"{PROJECT}:"): v for k, v in values.items() if k.startswith(f"{PROJECT}:")}
        try:
            parse(raw, frozenset(k.removeprefix(f"{PROJECT}:") for k in secrets))
            break
        except ConfigError as exc:
            wanted = [m.group(1) for line in exc.problems if (m := _SECRET_FIX.search(line))]
            new = [
                key
                for key in wanted
                if key not in filled
                and "is stored in plain text" not in next(line for line in exc.problems if key in line)
            ]
            if not new:
                break
            for key in new:
                path = key.split(".")
                _set_path(values, path, placeholder(f"{PROJECT}:{key}"))
                secrets.add(f"{PROJECT}:{path[0]}")
                filled.append(key)
    return StackConfig(stack.name, values, sorted(secrets), [f"{PROJECT}:{k}" for k in filled])


def resolve_stack(ref: str) -> Path:
    """A stack name (`clienteA`) or a path to a stack file."""
    path = Path(ref)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return ROOT / f"Pulumi.{ref}.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique; PyYAML
    would silently keep the last, so a stack's first value would vanish without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key `{key}` appears twice (first at line {seen[key]}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# What a Pulumi stack file may hold besides `config:` (Pulumi's project/stack file reference).
_STACK_FILE_KEYS = {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}
# Providers' own namespaces a stack may legitimately configure.
_PROVIDER_NAMESPACES = {"pulumi", "docker", "command", "random"}


def load_stack_document(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file; ValueError (one line naming the file) for anything else."""
    try:
        doc = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ValueError(f"{where}: YAML error: {exc.problem or exc.context}; fix the file there") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: YAML error: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a Pulumi stack file (expected a mapping with a `config:` section)")
    outside = sorted(str(k) for k in doc if k not in _STACK_FILE_KEYS)
    if outside:
        raise ValueError(
            f"{path}: found {len(outside)} key(s) outside `config:` ({', '.join(outside[:3])}"
            f"{', ...' if len(outside) > 3 else ''}); move them under `config:`"
        )
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: `config:` is a {type(config).__name__}, not a mapping of `{PROJECT}:<key>: <value>`"
        )
    others: dict[str, int] = {}
    for key in config:
        namespace = str(key).split(":", 1)[0] if ":" in str(key) else PROJECT
        if namespace not in {PROJECT, *_PROVIDER_NAMESPACES}:
            others[namespace] = others.get(namespace, 0) + 1
    if others:
        found = "; ".join(f"found {n} key(s) under `{ns}:`" for ns, n in sorted(others.items()))
        raise ValueError(f"{path}: {found}; this project reads `{PROJECT}:` (rename them)")
    return config


def _did_you_mean(path: Path) -> str:
    """A stack file whose name differs only in case (`clientea` for `clienteA`)."""
    wanted = path.name.lower()
    for candidate in iter_stack_files():
        if candidate.name.lower() == wanted:
            return f"; did you mean {candidate.name.removeprefix('Pulumi.').rsplit('.', 1)[0]}?"
    return ""


def read_stack_file(ref: str | Path) -> StackConfig:
    path = resolve_stack(str(ref))
    if not path.is_file():
        raise FileNotFoundError(
            f"no stack file {path}{_did_you_mean(path)} "
            "(give a stack name such as clienteA or a Pulumi.<stack>.yaml path)"
        )
    config = load_stack_document(path)
    name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    plaintext = plaintext_credentials(config)
    if plaintext:
        from components.config import ConfigError

        raise ConfigError(plaintext)
    return with_placeholder_secrets(stack_config(name, config))


def plaintext_credentials(doc: Mapping[str, Any]) -> list[str]:
    """Credential leaves a stack file holds without `secure:` (issue 14, item 6): one line each, naming
    the key and the fix. The program cannot see them (Pulumi marks a whole object secret when any one of
    its leaves is `secure:`, and the offline plan fills the rest with placeholders): the file can."""
    from components.config import SuiteConfig
    from components.core.errors import credential_paths

    problems = []
    for path in credential_paths(SuiteConfig):
        if len(path) < 2:
            continue  # a top-level secret: the config model names it already
        leaf: Any = doc.get(f"{PROJECT}:{path[0]}", doc.get(path[0]))
        for part in path[1:]:
            leaf = leaf.get(part) if isinstance(leaf, dict) else None
        if leaf not in (None, "") and not (isinstance(leaf, dict) and set(leaf) == {"secure"}):
            key = f"{PROJECT}:{'.'.join(path)}"
            problems.append(
                f"{key} is stored in plain text; store it encrypted: "
                f"pulumi config set --secret --path '{key}' <value>"
            )
    return problems


# ---------------------------------------------------------------------------------------------------
# The recorder: realistic provider answers, every registration kept with its options
# ---------------------------------------------------------------------------------------------------


def _seed(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:16], 16)


def _fake_password(inputs: dict[str, Any], name: str) -> str:
    length = int(inputs.get("length", 16))
    alphabet = ""
    if inputs.get("upper", True):
        alphabet += string.ascii_uppercase
    if inputs.get("lower", True):
        alphabet += string.ascii_lowercase
    if inputs.get("numeric", True):
        alphabet += string.digits
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    rng = random.Random(_seed("password", name))
    return "".join(rng.choice(alphabet) for _ in range(length))


def _bcrypt(password: str, name: str) -> str:
    # Deterministic salt so two plans of one stack are identical; cost 4 keeps the plan fast.
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    rng = random.Random(_seed("salt", name))
    salt = "$2b$04$" + "".join(rng.choice(alphabet) for _ in range(21)) + "e"
    return bcrypt.hashpw(password.encode(), salt.encode()).decode()


def _subnet(name: str) -> str:
    n = _seed("subnet", name)
    return f"172.{18 + n % 12}.{n // 12 % 256}.0/24"


class Recorder(mocks.Mocks):
    """Answers for the providers: what `pulumi up` would get back, made deterministic."""

    def __init__(self, host: provider_model.HostFacts = provider_model.DOCUMENTED_HOST) -> None:
        self.state: dict[tuple[str, str], dict[str, Any]] = {}  # (type, name) -> outputs, as after `up`
        self.host = host

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        rid = hashlib.sha256(f"{args.typ}::{args.name}".encode()).hexdigest()
        typ = args.typ
        # As the real provider: refuse at create what it refuses, then store its read-back form.
        provider_model.validate(typ, args.name, plain(inputs))
        inputs = provider_model.read_back(typ, args.name, inputs, self.host)
        if typ == provider_model.IMAGE:
            ref = plain(inputs["name"])
            repo = ref.split("@")[0].rsplit(":", 1)[0]
            digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
            # The real image_id is the engine's "sha256:..." id; here the container's `image` shows the
            # pinned reference, so a plan reads like the stack file (a new pin is a new id either way).
            inputs.update(imageId=ref, repoDigest=f"{repo}@{digest}")
        elif typ == provider_model.NETWORK:
            inputs.setdefault("ipamConfigs", [{"subnet": _subnet(plain(inputs.get("name", args.name)))}])
        elif typ == provider_model.CONTAINER:
            inputs.update(id=rid[:64])
        elif typ == provider_model.PASSWORD:
            result = _fake_password(inputs, args.name)
            inputs.update(result=wrap_secret(result), bcryptHash=wrap_secret(_bcrypt(result, args.name)))
        elif typ == provider_model.BYTES:
            raw = random.Random(_seed("bytes", args.name)).randbytes(int(inputs.get("length", 32)))
            inputs.update(hex=wrap_secret(raw.hex()), base64=wrap_secret(base64.b64encode(raw).decode()))
        elif typ in provider_model.COMMANDS:
            inputs.update(stdout=wrap_secret(""), stderr=wrap_secret(""))
            if typ == provider_model.REMOTE_COMMAND and "connection" in inputs:
                inputs["connection"] = wrap_secret(plain(inputs["connection"]))  # provider:"secret"
        resource_id = f"{args.name}-{rid[:12]}"
        self.state[(typ, args.name)] = {**inputs, STATE_ID: resource_id}
        return resource_id, inputs

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "docker:index/getNetwork:getNetwork":
            name = args.args["name"]
            return {
                "id": hashlib.sha256(name.encode()).hexdigest(),
                "name": name,
                "driver": "bridge",
                "internal": False,
                "ipamConfigs": [{"subnet": _subnet(name), "gateway": ""}],
            }, []  # no check failures (the SDK iterates this list)
        return {}, []


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None  # parent URN
    inputs: dict[str, Any]  # engine (camelCase) names, secrets as wrapper objects
    provider: str
    dependencies: list[str]
    options: dict[str, Any]

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return plain(self.inputs)


class RecordingMonitor(mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent, dependencies and options."""

    def __init__(self, recorder: Recorder):
        super().__init__(recorder)
        self.planned: list[PlannedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.planned.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=bool(request.custom),
                    parent=request.parent or None,
                    inputs=json_format.MessageToDict(request.object),
                    provider=request.provider,
                    dependencies=list(request.dependencies),
                    options={
                        "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                        "protect": bool(request.protect),
                        "retainOnDelete": bool(request.retainOnDelete),
                        "additionalSecretOutputs": list(request.additionalSecretOutputs),
                        "replaceOnChanges": list(request.replaceOnChanges),
                        "ignoreChanges": list(request.ignoreChanges),
                    },
                )
            )
        return response


# ---------------------------------------------------------------------------------------------------
# Running a program
# ---------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]  # secrets as wrapper objects
    placeholders: list[str] = field(default_factory=list)  # secrets planned with placeholders
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # outputs after `up`

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, type_: str, name: str) -> PlannedResource:
        for r in self.resources:
            if r.type == type_ and r.name == name:
                return r
        raise KeyError(f"no {type_} named {name!r}; have: {sorted(r.name for r in self.of_type(type_))}")

    def named(self, name: str) -> PlannedResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]

    def children(self, parent: PlannedResource) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    def containers(self) -> list[PlannedResource]:
        return self.of_type("docker:index/container:Container")

    def container(self, name: str) -> PlannedResource:
        """By container name (`clientea-hub-backend`) or logical name (`hub-backend`)."""
        for r in self.containers():
            if r.name == name or r.inputs.get("name") == name:
                return r
        raise KeyError(
            f"no container {name!r}; have: {sorted(r.inputs.get('name', r.name) for r in self.containers())}"
        )

    def parent_name(self, r: PlannedResource) -> str | None:
        return r.parent.rsplit("::", 1)[-1] if r.parent else None

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "resources": [
                {
                    "type": r.type,
                    "name": r.name,
                    "parent": self.parent_name(r),
                    "inputs": masked(r.inputs),
                    "options": r.options,
                }
                # By URN (children under their component): registrations arrive in no fixed order.
                for r in sorted(self.resources, key=lambda r: r.urn)
            ],
            "outputs": masked(self.outputs),
        }


async def _serialize_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    struct = await rpc.serialize_properties(outputs, {})
    return json_format.MessageToDict(struct)


def _no_stack_trace() -> Any:
    return source_pb2.StackTrace()


@contextmanager
def _offline_engine() -> Iterator[None]:
    """What only a real engine needs, left out while a plan runs (the recorder keeps neither):
    - the SDK walks the Python stack and reads source files at every registration, to show the engine
      where each resource was declared;
    - the cyclic garbage collector rescans the SDKs' import-time objects again and again while a plan
      creates thousands of short-lived futures and outputs: paused for the run, it collects afterwards."""
    stack_trace = sdk_resource._get_stack_trace
    sdk_resource._get_stack_trace = _no_stack_trace
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = stack_trace
        if collecting:
            gc.enable()


def run(
    stack: StackConfig,
    program: Callable[[], Any] | None = None,
    host: provider_model.HostFacts = provider_model.DOCUMENTED_HOST,
) -> Plan:
    """Run `program` (default: the project's `__main__.py`) for `stack` under mocks; return the plan.

    A fresh event loop, runtime settings, config and recorder each time, so runs never leak into each other.
    Exceptions from the program (a ConfigError for bad config) propagate unchanged. `host`: what the Docker
    host adds to the read-back (provider_model.HostFacts; the default is the documented precondition).
    """
    with _offline_engine():
        return _run(stack, program, host)


def _run(stack: StackConfig, program: Callable[[], Any] | None, host: provider_model.HostFacts) -> Plan:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        recorder = Recorder(host)
        monitor = RecordingMonitor(recorder)
        mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack.name, preview=False, monitor=monitor)
        pulumi.runtime.set_all_config(dict(stack.values), list(stack.secret_keys))
        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()

        def main() -> None:
            if program is not None:
                program()
            else:
                runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

        try:
            loop.run_until_complete(run_pulumi_func(main))
        except BaseException as exc:
            exc.planned = monitor.planned  # type: ignore[attr-defined]  # what was registered before it failed
            raise
        root = settings.get_root_resource()
        exported = dict(getattr(root, "outputs", {}) or {})
        outputs = loop.run_until_complete(_serialize_outputs(exported))
        return Plan(stack.name, monitor.planned, outputs, list(stack.placeholders), recorder.state)
    finally:
        pulumi.runtime.set_all_config({}, [])
        loop.close()
        asyncio.set_event_loop(None)


def exit_after_plans(code: int) -> NoReturn:
    """End a command-line tool that ran plans. The interpreter's last garbage collection over the SDKs' and
    the plans' objects takes longer than a plan (0.3 to 0.5 s); frozen, they are simply freed by the OS."""
    gc.freeze()
    sys.exit(code)


def plan_stack(ref: str | Path) -> Plan:
    return run(read_stack_file(ref))


def iter_stack_files() -> Iterator[Path]:
    yield from sorted(ROOT.glob("Pulumi.*.yaml"))


# ---------------------------------------------------------------------------------------------------
# A second run against the first one's state
# ---------------------------------------------------------------------------------------------------


@dataclass
class Change:
    type: str
    name: str
    action: str  # "create", "update", "replace"
    fields: list[str]  # the fields that differ (for a replace: the ones that force it)


# Outputs that a replacement makes new (the engine's container id, a new random value): whatever carries
# the old one in its inputs changes with it. Image ids are left out: in the harness a new pin is already
# a new `imageId`, and two images pinned alike (hubRedis, chatRedis) share one.
_REGENERATED = {
    provider_model.CONTAINER: ("id", STATE_ID),
    provider_model.PASSWORD: ("result", "bcryptHash"),
    provider_model.BYTES: ("hex", "base64"),
}


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _values(v)
    elif isinstance(value, str) and len(value) >= 16:  # ids and generated values, never a short word
        yield value


def second_run(before: Plan, after: Plan) -> list[Change]:
    """What the engine would do running `after` over the state `before` left: each provider diffs the
    resource's new inputs against its read-back state (tools/provider_model.py): sets as sets, lists by
    index; a changed ForceNew field (or one in replaceOnChanges) replaces, any other change updates. A
    replacement regenerates its outputs (a container's id, a password), so whatever carries the old ones
    changes too, to a fixed point: a command whose triggers carry a replaced container's id runs again."""
    stale: set[str] = set()
    decided: dict[tuple[str, str], Change] = {}
    for _ in range(len(after.resources) + 1):
        grew = False
        for r in after.resources:
            if not r.custom or r.type.startswith("pulumi:providers:"):
                continue
            key = (r.type, r.name)
            state = before.state.get(key)
            if state is None:
                decided.setdefault(key, Change(r.type, r.name, "create", []))
                continue
            inputs = r.plain_inputs
            fields = provider_model.changed_fields(inputs, plain(state), r.type)
            carried = [
                k for k, v in inputs.items() if k not in fields and any(x in stale for x in _values(v))
            ]
            if not fields and not carried:
                continue
            forcing = [
                f
                for f in [*fields, *carried]
                if provider_model.forces_replacement(r.type, f)
                or f in r.options["replaceOnChanges"]
                or any(o.split("[", 1)[0] == f for o in r.options["replaceOnChanges"])
            ]
            if r.type in provider_model.COMMANDS:
                change = Change(r.type, r.name, "re-run", sorted([*fields, *carried]))
            elif forcing:
                change = Change(r.type, r.name, "replace", sorted(forcing))
            else:
                change = Change(r.type, r.name, "update", sorted(fields))
            if decided.get(key) != change:
                decided[key] = change
                grew = True
            if change.action in ("replace", "re-run") and r.type in _REGENERATED:
                new = {str(plain(state[k])) for k in _REGENERATED[r.type] if k in state}
                if not new <= stale:
                    stale |= new
                    grew = True
        if not grew:
            break
    order = {(r.type, r.name): i for i, r in enumerate(after.resources)}
    return sorted(decided.values(), key=lambda c: order[(c.type, c.name)])
