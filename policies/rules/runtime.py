"""CIS Docker Benchmark v1.6.0, section 5 (container runtime) and the image rules, on every container.

Rule ids follow docker-bench-security's v1.6.0 numbering (it drifts between benchmark versions).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import pulumi

from .base import (
    CONTAINER,
    IMAGE,
    Anchor,
    Finding,
    Resource,
    Settings,
    Stack,
    known,
    list_of,
    resource_rule,
    stack_rule,
)
from .model import MOVING_TAGS, Container, ImageRef, containers

REASON_PREFIX = "io.versatilehub."  # containers made by components/core/container.py record exceptions here


def _reason(c: Container, label: str) -> bool:
    value = c.labels().get(label)
    return isinstance(value, str) and bool(value.strip())


def _reason_label(default: str) -> dict[str, Any]:
    return {
        "type": "string",
        "default": default,
        "description": "Label whose non-empty value documents why this container is an exception.",
    }


@resource_rule(
    "healthcheck-required",
    "Every long-running container has a healthcheck Docker runs (or a recorded reason for none).",
    anchor=Anchor(
        seed="services verified after deploy",
        cis=("5.27",),
        checkers=("KICS 698ed579", "CKV_DOCKER_2", "DS-0026"),
    ),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Give the container a healthcheck (d.container(healthcheck=...)); the image's own "
    "HEALTHCHECK is invisible to a plan, so state it.",
    config={"reasonLabel": _reason_label(REASON_PREFIX + "no-healthcheck-reason")},
)
def healthcheck_required(r: Resource, s: Settings) -> Iterator[str]:
    c = Container(r)
    if c.one_shot:
        return
    health = known(r.props.get("healthcheck"), "healthcheck")
    tests = health.get("tests") if isinstance(health, dict) else None
    if tests and str(tests[0]).upper() != "NONE":
        return
    if not _reason(c, s["reasonLabel"]):
        yield "has no healthcheck"


@resource_rule(
    "no-privileged",
    "No container runs privileged.",
    anchor=Anchor(cis=("5.5",), checkers=("KICS ae5b6871", "KSV-0017")),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Remove privileged=True; add the one capability the process needs instead.",
)
def no_privileged(r: Resource, _: Settings) -> Iterator[str]:
    if known(r.props.get("privileged"), "privileged") is True:
        yield "runs privileged (every capability, every device, no confinement)"


# Docker's default capability set (CIS 5.4: adds beyond it must be justified).
DOCKER_DEFAULT_CAPABILITIES = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
]


def _cap(name: Any) -> str:
    return str(name).upper().removeprefix("CAP_")


@resource_rule(
    "capabilities-restricted",
    "Containers drop ALL capabilities and add back only some of Docker's default set.",
    anchor=Anchor(cis=("5.4",), checkers=("KICS ce76b7d0", "KSV-0003")),
    level="mandatory",
    types=(CONTAINER,),
    remediation="capabilities=ContainerCapabilitiesArgs(drops=['ALL'], adds=[only what the process needs]).",
    config={
        "allowedCapabilities": list_of(DOCKER_DEFAULT_CAPABILITIES, "Capabilities a container may add back.")
    },
)
def capabilities_restricted(r: Resource, s: Settings) -> Iterator[str]:
    caps = known(r.props.get("capabilities") or {}, "capabilities")
    drops = {_cap(c) for c in caps.get("drops") or []}
    adds = sorted({_cap(c) for c in caps.get("adds") or []} - {_cap(c) for c in s["allowedCapabilities"]})
    if "ALL" not in drops:
        yield "does not drop ALL capabilities"
    if adds:
        yield f"adds capabilities beyond the allowed set: {', '.join(adds)}"


@resource_rule(
    "no-host-namespaces",
    "No container shares the host's network, PID, IPC or user namespace.",
    anchor=Anchor(
        cis=("5.10", "5.16", "5.17", "5.31"),
        checkers=("KICS 071a71ff", "KICS 4f31dd9f", "KICS baa3890f", "KICS 8af7162d"),
    ),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Drop networkMode/pidMode/ipcMode/usernsMode 'host'; use Docker networks and Traefik.",
)
def no_host_namespaces(r: Resource, _: Settings) -> Iterator[str]:
    for prop, what in (
        ("networkMode", "network"),
        ("pidMode", "PID"),
        ("ipcMode", "IPC"),
        ("usernsMode", "user"),
    ):
        if str(known(r.props.get(prop), prop) or "").lower() == "host":
            yield f"shares the host's {what} namespace ({prop}=host)"


SENSITIVE_PATHS = [
    "/",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/sys",
    "/usr",
    "/bin",
    "/sbin",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/docker",
]
SOCKET_SUFFIXES = ("docker.sock", "containerd.sock", "podman.sock")


@resource_rule(
    "no-sensitive-host-mounts",
    "No container mounts a sensitive host directory (/, /etc, /proc, /sys, /usr, /run, Docker's data...).",
    anchor=Anchor(cis=("5.6",), checkers=("KICS 1c1325ff",)),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Mount only the service's own data directory or volume; pass configuration with uploads.",
    config={
        "sensitivePaths": list_of(SENSITIVE_PATHS, "Host paths (and everything below them) never mounted."),
        "allowedReadOnly": list_of(
            ["/etc/localtime", "/etc/timezone"], "Single host files a container may mount read-only."
        ),
    },
)
def no_sensitive_host_mounts(r: Resource, s: Settings) -> Iterator[str]:
    for m in Container(r).mounts():
        if m.kind != "bind":
            continue
        source = posixpath.normpath(str(known(m.source, "mounts.source")))
        if source.endswith(SOCKET_SUFFIXES):
            continue  # the Docker socket has its own rule (no-docker-socket)
        if m.read_only and source in s["allowedReadOnly"]:
            continue
        for path in s["sensitivePaths"]:
            if source == path or (path != "/" and source.startswith(path.rstrip("/") + "/")):
                yield f"mounts the host's {source} at {m.target}"
                break


@resource_rule(
    "memory-limit",
    "Every container has a memory limit.",
    anchor=Anchor(seed="memory below 80% of the host", cis=("5.11",), checkers=("KICS bb9ac4f7", "KSV-0018")),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Set memory (MB) from the catalog (components/core/catalog.py) or the stack's resources "
    "override.",
)
def memory_limit(r: Resource, _: Settings) -> Iterator[str]:
    memory = known(r.props.get("memory"), "memory")
    if not isinstance(memory, (int, float)) or memory <= 0:
        yield "has no memory limit (it can take the whole host's memory)"


HOST_CONFIG_KEY = "versatilehub:host"
# The program's own default when a stack does not say how big its host is (components/config.py).
DEFAULT_HOST_MEMORY_MB = 8192


def host_memory_mb(s: Settings) -> tuple[float, str]:
    """The host's RAM and where the number came from: policy config, the stack's config, the default.

    Under the engine the pack sees the stack's config (`pulumi.Config` works inside a pack); the offline
    runner hands the same config to the runtime before it runs the pack.
    """
    configured = s.get("hostMemoryMb")
    if isinstance(configured, (int, float)) and configured > 0:
        return float(configured), "hostMemoryMb in the policy config"
    namespace, _, key = str(s["hostConfigKey"]).partition(":")
    host = pulumi.Config(namespace).get_object(key)
    memory = host.get("memoryMb") if isinstance(host, dict) else None
    if isinstance(memory, (int, float)) and memory > 0:
        return float(memory), f"{s['hostConfigKey']}.memoryMb"
    return float(DEFAULT_HOST_MEMORY_MB), f"the default ({s['hostConfigKey']}.memoryMb is not set)"


@stack_rule(
    "memory-budget",
    "The stack's memory limits add up to at most 80% of the host's RAM.",
    anchor=Anchor(seed="memory below 80% of the host", cis=("5.11",)),
    level="mandatory",
    remediation="Lower per-container limits (versatilehub:resources.<container>.memoryMb), move a service to "
    "another host, or state the real host size (versatilehub:host.memoryMb).",
    config={
        "maxFraction": {
            "type": "number",
            "default": 0.8,
            "description": "Share of host RAM the limits may use.",
        },
        "hostMemoryMb": {"type": "number", "description": "Host RAM in MB (overrides the stack's config)."},
        "hostConfigKey": {
            "type": "string",
            "default": HOST_CONFIG_KEY,
            "description": "Stack config object holding memoryMb.",
        },
    },
)
def memory_budget(stack: Stack, s: Settings) -> Iterator[Finding]:
    total = 0.0
    for c in containers(stack):
        memory = known(c.props.get("memory"), f"{c.name}.memory")
        total += memory if isinstance(memory, (int, float)) and memory > 0 else 0
    host, source = host_memory_mb(s)
    budget = host * float(s["maxFraction"])
    if total > budget:
        yield Finding(
            f"memory limits add up to {total:.0f} MB, more than {100 * float(s['maxFraction']):.0f}% of the "
            f"host's {host:.0f} MB ({budget:.0f} MB; host size from {source})"
        )


@resource_rule(
    "restart-policy",
    "Services restart on their own (unless-stopped/always, or on-failure with at most 5 retries).",
    anchor=Anchor(cis=("5.15",), checkers=("KICS 2fc99041",)),
    level="mandatory",
    types=(CONTAINER,),
    remediation="restart='unless-stopped' (the container helper's default); one-shot jobs: must_run=False.",
)
def restart_policy(r: Resource, _: Settings) -> Iterator[str]:
    c = Container(r)
    if c.one_shot:
        return
    restart = known(r.props.get("restart"), "restart")
    if restart in ("always", "unless-stopped"):
        return
    if restart == "on-failure":
        retries = known(r.props.get("maxRetryCount"), "maxRetryCount")
        if isinstance(retries, (int, float)) and 0 < retries <= 5:
            return
        yield "restarts on-failure without a retry count of 1 to 5"
        return
    yield f"has restart policy {restart or 'no (the default)'}: it stays down after a crash or a reboot"


def _security_opts(r: Resource) -> list[str]:
    return [str(o).lower().replace(" ", "") for o in known(r.props.get("securityOpts") or [], "securityOpts")]


@resource_rule(
    "no-new-privileges",
    "Containers run with no-new-privileges (setuid binaries cannot raise privileges).",
    anchor=Anchor(cis=("5.26",), checkers=("KICS 27fcc7d6", "KSV-0001")),
    level="mandatory",
    types=(CONTAINER,),
    remediation="security_opts=['no-new-privileges:true'] (the container helper's default).",
)
def no_new_privileges(r: Resource, _: Settings) -> Iterator[str]:
    opts = _security_opts(r)
    if not any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true") for o in opts):
        yield "lacks security option no-new-privileges:true"


@resource_rule(
    "no-unconfined-profiles",
    "No container disables its seccomp or AppArmor profile (or unmasks /proc and /sys paths).",
    anchor=Anchor(cis=("5.2", "5.22"), checkers=("KICS 404fde2c",)),
    level="mandatory",
    types=(CONTAINER,),
    remediation="Remove seccomp/apparmor/systempaths=unconfined; add the one capability needed instead.",
)
def no_unconfined_profiles(r: Resource, _: Settings) -> Iterator[str]:
    for opt in _security_opts(r):
        kind, sep, value = opt.replace(":", "=", 1).partition("=")
        if sep and kind in ("seccomp", "apparmor", "systempaths") and value == "unconfined":
            yield f"runs with {kind} unconfined"


@resource_rule(
    "non-root-user",
    "Containers run as a non-root user, or record why the image needs root.",
    anchor=Anchor(
        seed="non-root containers",
        cis=("4.1",),
        checkers=("CKV_DOCKER_3", "CKV_DOCKER_8", "DS-0002", "KSV-0012"),
    ),
    level="advisory",
    types=(CONTAINER,),
    remediation="Set user='uid:gid'; if the image must start as root (it steps down itself), pass "
    "root_reason= to d.container so the exception is recorded.",
    config={"reasonLabel": _reason_label(REASON_PREFIX + "root-reason")},
)
def non_root_user(r: Resource, s: Settings) -> Iterator[str]:
    user = str(known(r.props.get("user"), "user") or "")
    name = user.split(":", 1)[0]
    if name and name not in ("root", "0"):
        return
    if not _reason(Container(r), s["reasonLabel"]):
        yield "runs as root" + ("" if user else " (no user set: the image's default)")


@resource_rule(
    "read-only-rootfs",
    "Containers have a read-only root filesystem, or record why the image must write to it.",
    anchor=Anchor(cis=("5.13",), checkers=("KSV-0014",)),
    level="advisory",
    types=(CONTAINER,),
    remediation="read_only stays True (the helper's default) with tmpfs for scratch space; otherwise pass "
    "writable_reason= to d.container.",
    config={"reasonLabel": _reason_label(REASON_PREFIX + "writable-reason")},
)
def read_only_rootfs(r: Resource, s: Settings) -> Iterator[str]:
    if known(r.props.get("readOnly"), "readOnly") is True:
        return
    if not _reason(Container(r), s["reasonLabel"]):
        yield "has a writable root filesystem"


ROTATING_DRIVERS = [
    "local",
    "journald",
    "syslog",
    "fluentd",
    "gelf",
    "awslogs",
    "gcplogs",
    "splunk",
    "etwlogs",
]


@resource_rule(
    "log-rotation",
    "Container logs rotate: the local driver, a remote driver, or json-file with max-size and max-file.",
    anchor=Anchor(
        seed="stable disk I/O (monitoring)", checkers=("Docker docs: json-file does not rotate by default",)
    ),
    level="mandatory",
    types=(CONTAINER,),
    remediation="log_driver='json-file', log_opts={'max-size': '10m', 'max-file': '3'} (the default).",
    config={
        "rotatingDrivers": list_of(ROTATING_DRIVERS, "Log drivers that rotate or ship logs off the host.")
    },
)
def log_rotation(r: Resource, s: Settings) -> Iterator[str]:
    driver = known(r.props.get("logDriver"), "logDriver")
    if driver in s["rotatingDrivers"]:
        return
    opts = known(r.props.get("logOpts") or {}, "logOpts")
    if driver in (None, "", "json-file") and opts.get("max-size") and opts.get("max-file"):
        return
    if driver not in (None, "", "json-file"):
        yield f"logs with driver {driver}, which this pack does not know to rotate"
    else:
        yield "keeps json-file logs without max-size and max-file (they grow until the disk is full)"


@resource_rule(
    "image-pinned",
    "Images are pinned to an explicit version tag or digest, never latest or another moving tag.",
    anchor=Anchor(cis=("5.28",), checkers=("CKV_DOCKER_7", "DS-0001", "KSV-0013")),
    level="mandatory",
    types=(IMAGE, CONTAINER),
    remediation="Pin the tag in components/core/versions.py (or the stack's versatilehub:versions override).",
    config={"movingTags": list_of(sorted(MOVING_TAGS), "Tags that move under a deployment.")},
)
def image_pinned(r: Resource, s: Settings) -> Iterator[str]:
    # A RemoteImage names the reference; a container normally holds the pulled image's id (sha256:..., not
    # known before the pull), and is checked here only when it names a reference itself.
    ref = known(r.props.get("name"), "name") if r.type == IMAGE else r.props.get("image")
    if not isinstance(ref, str) or ref.startswith("sha256:"):
        return
    parsed = ImageRef.parse(ref)
    if parsed.digest:
        return
    if parsed.tag is None:
        yield f"uses {ref} without a tag (that is latest)"
    elif parsed.tag.lower() in s["movingTags"]:
        yield f"uses the moving tag {ref}"


@resource_rule(
    "image-digest",
    "Images are pinned by digest as well, so a re-pushed tag cannot change what runs.",
    anchor=Anchor(cis=("5.28",), checkers=("CIS Docker 4.5 content trust",)),
    level="advisory",
    types=(IMAGE,),
    remediation=(
        "get each image's digest from its registry and write it into the pins: python -m tools.pin_digests "
        "--write (skopeo, or docker buildx imagetools; components/core/versions.py). A stack's own pin takes "
        "it in its tag: pulumi config set --path 'versatilehub:versions.<image>' '<tag>@sha256:<digest>'"
    ),
)
def image_digest(r: Resource, _: Settings) -> Iterator[str]:
    ref = known(r.props.get("name"), "name")
    if isinstance(ref, str) and not ImageRef.parse(ref).digest:
        yield f"{ref} is pinned by tag only"
