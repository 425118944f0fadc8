"""Read what the rules need out of engine properties: containers, Traefik's configuration, secrets, scripts.

Everything here works on resource types and properties (pulumi-docker / pulumi-command inputs as the
engine sends them), never on a particular service: a container is recognised as Traefik by its static
configuration, as a data store by its image (or its healthcheck when the image id is not known yet), as a
socket proxy by its read-only API switches.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .base import (
    CONTAINER,
    COPY_TO_REMOTE,
    IMAGE,
    LOCAL_COMMAND,
    REMOTE_COMMAND,
    UNKNOWN,
    Resource,
    Stack,
    contains_unknown,
    known,
)

# ---------------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    kind: str  # bind | volume | tmpfs
    source: Any  # host path or volume name (UNKNOWN when not known yet)
    target: str
    read_only: bool


class Container:
    """A `docker:index/container:Container` as its inputs describe it."""

    def __init__(self, resource: Resource):
        self.resource = resource
        self.props = resource.props

    @property
    def name(self) -> str:
        return self.resource.display

    def labels(self) -> dict[str, Any]:
        """label -> value (a value may be UNKNOWN during preview; the label names are always known)."""
        items = known(self.props.get("labels") or [], "labels", deep=False)
        return {item["label"]: item.get("value", "") for item in items if isinstance(item, dict)}

    def env(self) -> dict[str, str]:
        """The environment; needs the whole list known (it is one value once any element is a secret)."""
        envs = known(self.props.get("envs") or [], "envs")
        pairs = (str(e).split("=", 1) for e in envs)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}

    def mounts(self) -> list[Mount]:
        found = []
        for m in known(self.props.get("mounts") or [], "mounts", deep=False):
            m = known(m, "mounts", deep=False)
            found.append(
                Mount(
                    m.get("type", "volume"), m.get("source", ""), m.get("target", ""), bool(m.get("readOnly"))
                )
            )
        for v in known(self.props.get("volumes") or [], "volumes", deep=False):
            v = known(v, "volumes", deep=False)
            if v.get("hostPath"):
                found.append(
                    Mount("bind", v["hostPath"], v.get("containerPath", ""), bool(v.get("readOnly")))
                )
            else:
                found.append(
                    Mount(
                        "volume", v.get("volumeName", ""), v.get("containerPath", ""), bool(v.get("readOnly"))
                    )
                )
        return found

    def ports(self) -> list[dict[str, Any]]:
        return list(known(self.props.get("ports") or [], "ports", deep=False))

    def networks(self) -> list[Any]:
        """Names of the networks it joins (UNKNOWN for a name the preview does not know)."""
        nets = known(self.props.get("networksAdvanced") or [], "networksAdvanced", deep=False)
        return [n.get("name", UNKNOWN) if isinstance(n, dict) else UNKNOWN for n in nets]

    @property
    def routed(self) -> bool:
        return str(self.labels().get("traefik.enable", "")).lower() == "true"

    @property
    def one_shot(self) -> bool:
        """A job container (mustRun false and not restarted): runs once, is not a service."""
        return self.props.get("mustRun") is False and self.props.get("restart") in (None, "no")

    def traefik(self) -> TraefikStatic | None:
        return TraefikStatic.of(self)


def containers(stack: Stack) -> list[Container]:
    return [Container(r) for r in stack.of_type(CONTAINER)]


# ---------------------------------------------------------------------------------------------------
# Traefik
# ---------------------------------------------------------------------------------------------------

_STATIC_ROOTS = ("entrypoints.", "providers.", "certificatesresolvers.", "api.", "api")


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}".lower() if prefix else str(k).lower(), out)
    elif isinstance(value, list):
        out[prefix] = ",".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = str(value).lower() if isinstance(value, bool) else str(value)


class TraefikStatic:
    """Traefik's static configuration from its CLI flags, TRAEFIK_* variables and an uploaded traefik.yml.

    Keys are lower-case dotted paths (`providers.docker.exposedbydefault`), as Traefik treats them.
    """

    def __init__(self, values: dict[str, str], complete: bool):
        self.values = values
        self.complete = complete  # False when part of the configuration is unknown (preview)

    @classmethod
    def of(cls, c: Container) -> TraefikStatic | None:
        values: dict[str, str] = {}
        complete = True
        command = c.props.get("command")
        if command is UNKNOWN:
            complete = False
        for arg in command if isinstance(command, list) else []:
            if arg is UNKNOWN:
                complete = False
            elif isinstance(arg, str) and arg.startswith("--"):
                key, sep, val = arg[2:].partition("=")
                values[key.lower()] = val if sep else "true"
        envs = c.props.get("envs")
        if contains_unknown(envs):
            complete = False
        else:
            for key, val in c.env().items():
                if key.startswith("TRAEFIK_"):
                    values.setdefault(key[len("TRAEFIK_") :].lower().replace("_", "."), val)
        uploads = c.props.get("uploads")
        for upload in uploads if isinstance(uploads, list) else []:
            if not isinstance(upload, dict) or not str(upload.get("file", "")).endswith(
                ("traefik.yml", "traefik.yaml")
            ):
                continue
            content = upload.get("content")
            if content is UNKNOWN:
                complete = False
            elif isinstance(content, str):
                parsed: dict[str, str] = {}
                _flatten(yaml.safe_load(content) or {}, "", parsed)
                for key, val in parsed.items():
                    values.setdefault(key, val)
        if not any(k == root or k.startswith(root) for k in values for root in _STATIC_ROOTS):
            return None
        return cls(values, complete)

    def get(self, key: str) -> str | None:
        """The value of `key`; during preview a key that may sit in the unknown part is deferred."""
        value = self.values.get(key.lower())
        if value is None and not self.complete:
            known(UNKNOWN, f"traefik.{key}")
        return value

    def settle(self, what: str) -> None:
        """Before concluding something is absent: defer when part of the configuration is unknown."""
        if not self.complete:
            known(UNKNOWN, f"traefik.{what}")

    def peek(self, key: str) -> str | None:
        """The value of `key` if configured where this pack can see it (no deferral)."""
        return self.values.get(key.lower())

    def is_true(self, key: str) -> bool:
        return (self.get(key) or "").lower() == "true"

    def names(self, prefix: str) -> list[str]:
        """The distinct next path segment under `prefix` (e.g. resolver or entrypoint names)."""
        prefix = prefix.lower().rstrip(".") + "."
        return sorted({k[len(prefix) :].split(".", 1)[0] for k in self.values if k.startswith(prefix)})

    def docker_providers(self) -> list[str]:
        return [p for p in ("providers.docker", "providers.swarm") if self.is_true(p) or self.names(p)]


_ROUTER = re.compile(r"^traefik\.(http|tcp|udp)\.routers\.([^.]+)\.(.+)$", re.IGNORECASE)
_MIDDLEWARE = re.compile(r"^traefik\.http\.middlewares\.([^.]+)\.(.+)$", re.IGNORECASE)


def routers(labels: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(protocol, router) -> {attribute (lower case): value} from Traefik's Docker labels."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in labels.items():
        m = _ROUTER.match(key)
        if m:
            found.setdefault((m[1].lower(), m[2]), {})[m[3].lower()] = value
    return found


def middlewares(labels: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key, value in labels.items():
        m = _MIDDLEWARE.match(key)
        if m:
            found.setdefault(m[1], {})[m[2].lower()] = value
    return found


def split_list(value: Any) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()] if isinstance(value, str) else []


# ---------------------------------------------------------------------------------------------------
# Images and data stores
# ---------------------------------------------------------------------------------------------------

MOVING_TAGS = frozenset(
    {"latest", "stable", "main", "master", "edge", "develop", "dev", "nightly", "beta", "next", "rc"}
)

# Image names (last path segment, prefix match) of databases and caches: never public, never on `web`.
DATA_STORE_IMAGES = {
    "postgres": "postgres",
    "pgvector": "postgres",
    "postgis": "postgres",
    "timescaledb": "postgres",
    "mariadb": "mariadb",
    "mysql": "mariadb",
    "percona": "mariadb",
    "redis": "redis",
    "valkey": "redis",
    "keydb": "redis",
    "mongo": "mongo",
    "memcached": "memcached",
    "couchdb": "couchdb",
    "elasticsearch": "search",
    "opensearch": "search",
    "clickhouse": "clickhouse",
}
# When the image id is not known yet (preview), the healthcheck still says what it is.
_HEALTH_MARKERS = {
    "pg_isready": "postgres",
    "healthcheck.sh": "mariadb",
    "mariadb-admin": "mariadb",
    "mysqladmin": "mariadb",
    "redis-cli": "redis",
    "valkey-cli": "redis",
}


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, _, digest = ref.partition("@")
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            repo, tag = name.rsplit(":", 1)
        else:
            repo, tag = name, None
        return cls(repo, tag, digest or None)

    @property
    def basename(self) -> str:
        return self.repository.rsplit("/", 1)[-1].lower()


def image_reference(container: Resource, stack: Stack) -> Any:
    """The pinned reference a container runs (`repo:tag@digest`), None if it cannot be told, or UNKNOWN.

    `image` is the pulled image's id under the engine (matched to its RemoteImage), the reference itself
    in the offline plan; during a first preview the id is unknown and the RemoteImage it depends on tells.
    """
    image = container.props.get("image")
    images = stack.of_type(IMAGE)
    for remote in images:
        if image is not UNKNOWN and image in (remote.props.get("imageId"), remote.props.get("repoDigest")):
            return remote.props.get("name")
    if isinstance(image, str) and not image.startswith("sha256:"):
        return image
    deps = [r for r in images if r.urn in container.dependencies]
    if len(deps) == 1:
        return deps[0].props.get("name")
    return UNKNOWN if image is UNKNOWN else None


def data_store(container: Container, stack: Stack, images: Mapping[str, str]) -> str | None:
    """'postgres', 'mariadb', 'redis', ... when the container is a database or cache; else None."""
    ref = image_reference(container.resource, stack)
    if isinstance(ref, str):
        base = ImageRef.parse(ref).basename
        return next((kind for prefix, kind in images.items() if base.startswith(prefix)), None)
    health = container.props.get("healthcheck")
    tests = health.get("tests") if isinstance(health, dict) else None
    text = " ".join(str(t) for t in tests) if isinstance(tests, list) else ""
    return next((kind for marker, kind in _HEALTH_MARKERS.items() if marker in text), None)


# ---------------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------------

_SECRET_WORDS = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "SALT",
        "PASSPHRASE",
        "APIKEY",
        "CREDENTIALS",
    }
)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """KEY / *_PASSWORD / *_TOKEN / SECRET_KEY_BASE / *_PASSWORD_HASH ... (not *_FILE, *_ID, *_USER)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name.upper()) if w]
    if not words:
        return False
    if words[-1] in _SECRET_WORDS:
        return True
    return len(words) > 1 and words[-1] in {"BASE", "HASH"} and words[-2] in _SECRET_WORDS


@dataclass(frozen=True)
class Credential:
    resource: Resource
    key: str  # the variable name, or "<NAME> (password in URL)"
    value: str
    user: str | None = None  # the user name it goes with, when known (URL user, *_USER in the same place)


def _assignments(text: str) -> dict[str, str]:
    """`NAME=value` lines (shell-quoted values allowed), as stdin carries secrets to remote commands."""
    found = {}
    for line in text.splitlines():
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        if len(tokens) == 1 and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            key, _, value = tokens[0].partition("=")
            found[key] = value
    return found


def environment_of(resource: Resource) -> dict[str, str]:
    """The variables a container or host command receives (containers: envs; commands: environment, stdin)."""
    if resource.type == CONTAINER:
        return Container(resource).env()
    env = {k: str(v) for k, v in known(resource.props.get("environment") or {}, "environment").items()}
    if resource.type == REMOTE_COMMAND:
        stdin = known(resource.props.get("stdin") or "", "stdin")
        env.update(_assignments(str(stdin)))
    return env


# The variables of a secret-file step (components/core/secrets.py, scripts/secret_file.sh).
SECRET_FILE_NAME, SECRET_FILE_VALUE = "VH_FILE_NAME", "VH_SECRET_VALUE"


def secret_file(resource: Resource) -> tuple[str, dict[str, str]] | None:
    """A step writing a secret file: its name and the credentials in it (an env file's KEY='value' lines
    each, any other file as one value named after the file), as the containers mounting it read them."""
    if resource.type not in (LOCAL_COMMAND, REMOTE_COMMAND):
        return None
    env = environment_of(resource)
    name, value = env.get(SECRET_FILE_NAME), env.get(SECRET_FILE_VALUE)
    if name is None or value is None:
        return None
    if name.endswith(".env"):
        return name, _assignments(value)
    return name, {f"{name} (secret file)": value}


def credentials(resource: Resource) -> Iterator[Credential]:
    """Every secret a resource hands to a process: secret-named variables, passwords inside URLs, and
    the contents of the secret files it writes."""
    if resource.type not in (CONTAINER, LOCAL_COMMAND, REMOTE_COMMAND):
        return
    env = environment_of(resource)
    written = secret_file(resource)
    if written is not None:  # what the file holds, in place of the step's own variable
        env.pop(SECRET_FILE_VALUE)
        env.update(written[1])
    users = {
        v
        for k, v in env.items()
        if k.upper().endswith(("_USER", "_USERNAME")) or k.upper() in {"USER", "USERNAME"}
    }
    for key, value in sorted(env.items()):
        if is_secret_name(key) or key.endswith(" (secret file)"):
            user = next((u for u in users if u and u == value), None)
            yield Credential(resource, key, value, user)
        m = _URL_PASSWORD.match(value)
        if m and m["password"]:
            yield Credential(resource, f"{key} (password in URL)", m["password"], m["user"] or None)


# ---------------------------------------------------------------------------------------------------
# Scripts: what runs on the host or in job containers (backups, dumps, schedules)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    resource: Resource
    text: str


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        text = value.get("text")  # a StringAsset as the engine serialises it
        if isinstance(text, str):
            yield text
        for v in value.values():
            if isinstance(v, (list, dict)):
                yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif hasattr(value, "text") and isinstance(value.text, str):  # pulumi.StringAsset after deserialisation
        yield value.text


def scripts(stack: Stack) -> tuple[list[Script], bool]:
    """(scripts, complete): host commands (create/update/triggers/environment), job containers (command,
    entrypoint, environment, uploaded files) and files copied to the host. `complete` is False when part of
    one is unknown (preview), so a rule never concludes "missing" from an incomplete picture."""
    found: list[Script] = []
    complete = True
    for r in stack.resources:
        p = r.props
        # `essential` is where a job and its flags live; `extra` only feeds variables (often secret, so
        # unknown during preview, which must not make every preview inconclusive).
        if r.type in (LOCAL_COMMAND, REMOTE_COMMAND):
            essential = [p.get("create"), p.get("update"), p.get("triggers")]
            env = p.get("environment")
            extra = [[f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else None, p.get("stdin")]
        elif r.type == CONTAINER:
            uploads = p.get("uploads")
            contents = (
                [u.get("content") for u in uploads if isinstance(u, dict)]
                if isinstance(uploads, list)
                else uploads
            )
            essential = [p.get("command"), p.get("entrypoints"), contents]
            extra = [p.get("envs")]
        elif r.type == COPY_TO_REMOTE:
            essential, extra = [p.get("source")], []
        else:
            continue
        if contains_unknown(essential):
            complete = False
        text = "\n".join(_strings([*essential, *extra]))
        if text.strip():
            # Join shell line continuations so one command is one line.
            found.append(Script(r, re.sub(r"\\\r?\n\s*", " ", text)))
    return found, complete


def ssh_options(value: Any) -> list[str]:
    """The docker provider's sshOpts: a list, or (as the engine passes provider config) its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return shlex.split(value)
    return [str(v) for v in value] if isinstance(value, list) else []
