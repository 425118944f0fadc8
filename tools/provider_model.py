"""What the real providers do with the project's inputs: refuse at create, read back, diff, replace.

The harness (tools/harness.py) answers every registration through this module, and its second run
(`harness.second_run`, `python -m tools.plan <stack> --after-up`) diffs the next inputs against the state
read back here, as `pulumi preview` after `up` would. Versions, as the pinned SDKs bundle them:

- pulumi-docker 5.x bridges kreuzwerker/terraform-provider-docker v4.5.0 (pulumi-docker's `upstream`
  submodule is at 5074970, the v4.5.0 tag, from v5.1.0 through the newest commit fetched); files below are
  that tag's ``internal/provider/``. Diffs are terraform-plugin-sdk v2's (schema.go schemaMap.diff: a
  field's DiffSuppressFunc sees every changed sub-attribute; TypeSet compares elements by hash, so order
  and duplicates never count; TypeList compares by index).
- pulumi-command 1.2.1 (its own Go provider, ``provider/pkg/provider/``, tag v1.2.1).
- pulumi-random 4.21.x bridges hashicorp/terraform-provider-random v3.9.0 (f8d869dc, the module
  pulumi-random's provider/go.mod requires), ``internal/provider/``.

===================  ====================================================  ================================
resource / field     provider                                              source
===================  ====================================================  ================================
Container command    an empty element fails create: "values for command   resource_docker_container_funcs.go
                     may not be empty" (entrypoint is not checked)         resourceDockerContainerCreate
Container cpus       opts.ParseCPUs, read back nanoInt64ToDecimalString   funcs.go ...ContainerRead,
                     ("0.05" -> "0.1", "2" -> "2.0")                       helpers.go
healthcheck          time.ParseDuration, read back Duration.String        funcs.go resourceDockerContainerRead
                     ("60s" -> "1m0s"; unset ones "0s")
Container ports      TypeList, read back sorted by port number (bindings  structures.go flattenContainerPorts
                     of one port in the engine's order); the diff is       byPortAndProtocol; container.go
                     suppressed when every old binding matches the FIRST   suppressIfPortsDidNotChange...
                     new one of its internal port (ip, external, proto)   ForMigrationV0ToV1
Container memory     MiB; memory_swap > 0 read back as MiB, else as the   funcs.go resourceDockerContainerRead
 / memorySwap        engine stored it: -1 on a host without swap
                     accounting (the engine drops the limit), so an
                     update on every run (HostFacts.swap_limit)
Container logOpts    read back HostConfig.LogConfig.Config, which the     funcs.go containerLogOptsForState;
                     engine merged with daemon.json "log-opts" of the     moby daemon/logs.go
                     same driver: extra keys replace it every run          mergeAndVerifyLogConfig
Container sets       labels mounts volumes networksAdvanced(+aliases)     resource_docker_container.go schema
                     capabilities(adds, drops) envs securityOpts dns*     (TypeSet); command entrypoints
                     hosts ulimits devices groupAdds uploads: sets;        ports healthcheck.tests: TypeList
                     command entrypoints ports tests: ordered
Container ForceNew   every field but UPDATABLE below; Update applies      resource_docker_container.go;
                     only restart/memory/cpu/device limits (so tmpfs      funcs.go resourceDockerContainer
                     belongs in replaceOnChanges)                          Update
Network              every field ForceNew (no Update); labels and         resource_docker_network.go;
                     ipamConfigs sets; labels read back from the engine's _funcs.go ...ReadRefreshFunc
                     map (one value per key: the last one given)          (mapToLabelSet)
Volume               every field ForceNew; labels a set read back from    resource_docker_volume.go
                     the map; driver "local", mountpoint computed          resourceDockerVolumeRead
RemoteImage          name, pullTriggers (set), triggers, platform         resource_docker_image.go;
                     ForceNew; keepLocally, forceRemove updatable;         _funcs.go resourceDockerImageRead
                     imageId and repoDigest read back
Command (local,      triggers replace (provider:"replaceOnChanges"); any  common/inputs.go; local/
 remote)             other change is an update that runs `update`, else    commandController.go Update;
                     `create` again; state = inputs + stdout/stderr;      remote/command.go (connection
                     remote connection is secret                           provider:"secret")
RandomPassword,      every attribute RequiresReplace; length >= 1 and     resource_password.go
 RandomBytes         >= min_upper+min_lower+min_numeric+min_special;       passwordSchemaV3 (AtLeast,
                     at least one of upper/lower/numeric/special true;     AtLeastSumOf, AtLeastOneOfTrue);
                     result and bcryptHash (hex, base64) secret           resource_bytes.go bytesSchemaV0
===================  ====================================================  ================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COMMANDS = (LOCAL_COMMAND, REMOTE_COMMAND)
PASSWORD = "random:index/randomPassword:RandomPassword"
BYTES = "random:index/randomBytes:RandomBytes"

# Container fields without ForceNew in resource_docker_container.go (v4.5.0), engine (camelCase) names.
UPDATABLE = frozenset(
    {
        "rm", "start", "wait", "waitTimeout", "attach", "logs", "mustRun", "restart", "maxRetryCount",
        "removeVolumes", "tmpfs", "destroyGraceSeconds", "memory", "memoryReservation", "memorySwap",
        "cpuShares", "cpuSet", "healthcheck", "init", "cpuPeriod", "cpuQuota",
        "containerReadRefreshTimeoutMilliseconds",
        "deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops",
    }
)  # fmt: skip


class ProviderError(Exception):
    """An error the real provider would return at create."""


def _float_string(value: Fraction, prec: int) -> str:
    """Go's big.Rat.FloatString: `prec` decimals, the last rounded to nearest, halves away from zero."""
    scaled = value * 10**prec
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest >= scaled.denominator:
        whole += 1
    if prec == 0:
        return str(whole)
    digits = str(whole).rjust(prec + 1, "0")
    return f"{digits[:-prec]}.{digits[-prec:]}"


def parse_cpus(text: str) -> int:
    """docker/cli opts.ParseCPUs: a rational number of CPUs, as an exact number of nano-CPUs."""
    nano = Fraction(text) * 10**9
    if nano.denominator != 1:
        raise ProviderError(f"Error setting cpus: value is too precise: {text}")
    return nano.numerator


def nano_to_decimal_string(nano: int) -> str:
    """helpers.go nanoInt64ToDecimalString, ported as written (it counts every "0", not trailing ones)."""
    if nano == 0:
        return "0"
    text = _float_string(Fraction(nano, 10**9), 9)
    if text.count("0") == 9:
        return _float_string(Fraction(nano, 10**9), 1)
    return text.rstrip("0")


def cpus_read_back(text: str) -> str:
    return nano_to_decimal_string(parse_cpus(text))


def cpus_round_trips(text: str) -> bool:
    """Whether the stored cpus string still means the same number of CPUs (0.05 -> "0.1" does not)."""
    try:
        return parse_cpus(cpus_read_back(text)) == parse_cpus(text)
    except (ValueError, ProviderError):
        return False


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds ("0" alone is allowed, as in Go)."""
    if text == "0":
        return 0
    pos, total = 0, Fraction(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += Fraction(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ProviderError(f'time: invalid duration "{text}"')
    return int(total)


def _fraction_text(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    return f"{whole}." + str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")


def duration_string(ns: int) -> str:
    """time.Duration.String for a non-negative duration: "1m0s", "30s", "1h0m0s", "500ms", "0s"."""
    if ns == 0:
        return "0s"
    if ns < 10**3:
        return f"{ns}ns"
    if ns < 10**6:
        return _fraction_text(ns, 10**3) + "µs"
    if ns < 10**9:
        return _fraction_text(ns, 10**6) + "ms"
    hours, ns = divmod(ns, 3600 * 10**9)
    minutes, ns = divmod(ns, 60 * 10**9)
    seconds = _fraction_text(ns, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def duration_read_back(text: str) -> str:
    return duration_string(parse_duration(text))


HEALTHCHECK_DURATIONS = ("interval", "timeout", "startPeriod", "startInterval")

# Fields a change to which is applied in place; every other field of the type forces a replacement.
_UPDATABLE: dict[str, frozenset[str]] = {
    CONTAINER: UPDATABLE,
    NETWORK: frozenset(),  # resource_docker_network.go: every field ForceNew, no Update function
    VOLUME: frozenset(),  # resource_docker_volume.go: every field ForceNew (Update is for cluster volumes)
    IMAGE: frozenset({"keepLocally", "forceRemove"}),  # resource_docker_image.go: the fields without ForceNew
    PASSWORD: frozenset(),  # resource_password.go: every attribute has a RequiresReplace plan modifier
    BYTES: frozenset(),  # resource_bytes.go: length and keepers RequiresReplace
}
# pulumi-command: only `triggers` is replaceOnChanges (common/inputs.go); the rest updates (re-runs).
_COMMAND_REPLACING = frozenset({"triggers"})

# TypeSet fields (engine names, dotted into blocks): order and duplicates never make a diff. Every other
# list (command, entrypoints, ports, healthcheck.tests) is a TypeList and compares by index.
SET_FIELDS: dict[str, frozenset[str]] = {
    CONTAINER: frozenset(
        {
            "labels", "mounts", "mounts.volumeOptions.labels", "volumes", "networksAdvanced",
            "networksAdvanced.aliases", "networksAdvanced.linkLocalIps", "networksAdvanced.driverOpts",
            "capabilities.adds", "capabilities.drops", "envs", "securityOpts", "dns", "dnsOpts",
            "dnsSearches", "hosts", "ulimits", "devices", "groupAdds", "uploads", "deviceReadBps",
            "deviceReadIops", "deviceWriteBps", "deviceWriteIops", "deviceRequests",
        }
    ),
    NETWORK: frozenset({"labels", "ipamConfigs"}),
    VOLUME: frozenset({"labels"}),
    IMAGE: frozenset({"pullTriggers"}),
}  # fmt: skip


# TypeMap fields: compared whole (a key only the state has is a diff), unlike a block, whose state also
# carries the schema defaults of the fields the inputs leave out.
MAP_FIELDS: dict[str, frozenset[str]] = {
    CONTAINER: frozenset({"tmpfs", "logOpts", "sysctls", "storageOpts"}),
    NETWORK: frozenset({"options", "ipamOptions"}),
    VOLUME: frozenset({"driverOpts"}),
    IMAGE: frozenset({"triggers"}),
    LOCAL_COMMAND: frozenset({"environment"}),
    REMOTE_COMMAND: frozenset({"environment"}),
}


def forces_replacement(type_: str, field_name: str) -> bool:
    """Whether a change to this top-level field replaces the resource (ForceNew / RequiresReplace)."""
    if type_ in COMMANDS:
        return field_name in _COMMAND_REPLACING
    updatable = _UPDATABLE.get(type_)
    return updatable is not None and field_name not in updatable


@dataclass(frozen=True)
class HostFacts:
    """What the Docker host adds to a container's read-back (tools/preflight.py checks both):
    - swap_limit: the kernel accounts swap (`docker info` SwapLimit). Without it the engine stores
      MemorySwap -1 (moby daemon/daemon_unix.go verifyPlatformContainerResources: "Memory limited without
      swap") and memory_swap reads back as -1;
    - log_opts: daemon.json "log-opts" for its "log-driver", merged into every container of that driver
      whose own log_opts leave the key out (moby daemon/logs.go mergeAndVerifyLogConfig)."""

    swap_limit: bool = True
    log_driver: str = "json-file"
    log_opts: Mapping[str, str] = field(default_factory=dict)
    # How the engine lists one port's bindings in NetworkSettings.Ports: "given" (IPv4 first, the order the
    # project writes; moby's newer libnetwork sorts bindings so, bridge/port_mapping_linux.go
    # cmpPortBinding), or "reversed": measured on Debian 12's docker.io 20.10.24, which reports
    # [0.0.0.0, ::] given as [::, 0.0.0.0] and the reverse too, so no order of two bindings round-trips.
    port_order: str = "given"


DOCUMENTED_HOST = HostFacts()  # docs/operator-guide.md "Host preconditions"


def validate_container(name: str, inputs: dict[str, Any]) -> None:
    """The create-time checks of resourceDockerContainerCreate that the project's inputs can meet."""
    if any(element == "" for element in inputs.get("command") or []):
        raise ProviderError(f"container {name}: values for command may not be empty")
    if "cpus" in inputs:
        parse_cpus(str(inputs["cpus"]))
    memory, swap = int(inputs.get("memory", 0)), int(inputs.get("memorySwap", 0))
    if memory > 0 and 0 < swap < memory:  # moby daemon/daemon_unix.go verifyPlatformContainerResources
        raise ProviderError(
            f"container {name}: Error response from daemon: Minimum memoryswap limit should be larger than "
            "memory limit, see usage"
        )


def validate_password(name: str, inputs: dict[str, Any]) -> None:
    """resource_password.go passwordSchemaV3 validators, as terraform-plugin-framework words them."""
    length = int(inputs.get("length", 0))
    if length < 1:
        raise ProviderError(
            f"random password {name}: Attribute length value must be at least 1, got: {length}"
        )
    mins = sum(int(inputs.get(k, 0)) for k in ("minUpper", "minLower", "minNumeric", "minSpecial"))
    if length < mins:
        raise ProviderError(
            f"random password {name}: Attribute length value must be at least sum of min_upper + min_lower"
            f" + min_numeric + min_special, got: {length}"
        )
    if not any(inputs.get(k, True) for k in ("upper", "lower", "numeric", "special")):
        raise ProviderError(
            f"random password {name}: at least one attribute out of [special, upper, lower, numeric] "
            "must be specified as true"
        )


def validate_bytes(name: str, inputs: dict[str, Any]) -> None:
    length = int(inputs.get("length", 0))
    if length < 1:  # resource_bytes.go bytesSchemaV0: int64validator.AtLeast(1)
        raise ProviderError(f"random bytes {name}: Attribute length value must be at least 1, got: {length}")


def validate(type_: str, name: str, inputs: dict[str, Any]) -> None:
    """What the provider refuses at create (plain inputs)."""
    if type_ == CONTAINER:
        validate_container(name, inputs)
    elif type_ == PASSWORD:
        validate_password(name, inputs)
    elif type_ == BYTES:
        validate_bytes(name, inputs)
    elif type_ == IMAGE and not inputs.get("name"):
        raise ProviderError(f"image {name}: name is required")  # resource_docker_image.go Required


def _label_set(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # helpers.go labelSetToMap then mapToLabelSet: through the engine's map, one value per key, the last.
    by_key = {str(entry.get("label")): entry for entry in labels}
    return [by_key[key] for key in sorted(by_key)]


def sorted_ports(ports: list[dict[str, Any]], order: str = "given") -> list[dict[str, Any]]:
    """flattenContainerPorts: schema defaults applied, sorted by port number (byPortAndProtocol), the
    bindings of one port in the order the engine reports them (HostFacts.port_order)."""
    filled = [{"ip": "0.0.0.0", "protocol": "tcp", **p} for p in ports]
    for p in filled:
        p["ip"] = p["ip"] or "0.0.0.0"  # the ip StateFunc
    if order == "reversed":
        filled.reverse()  # sorted() is stable: one port's bindings end up reversed
    return sorted(filled, key=lambda p: int(p["internal"]))


def ports_diff_suppressed(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """resource_docker_container.go suppressIfPortsDidNotChangeForMigrationV0ToV1, as written: each old
    binding is compared with the FIRST new binding of the same internal port."""
    if len(old) != len(new):
        return False
    new = [{"ip": "0.0.0.0", "protocol": "tcp", **p} for p in new]
    for o in old:
        for n in new:
            if _normal(n["internal"]) == _normal(o["internal"]):
                if n["protocol"] != o["protocol"]:
                    if any(_normal(p["internal"]) == _normal(o["internal"]) and p["protocol"] == o["protocol"]
                           for p in new):  # fmt: skip
                        continue
                    return False
                if _normal(n.get("external")) != _normal(o.get("external")) or n["ip"] != o["ip"]:
                    return False
                break
        else:
            return False
    return True


def container_read_back(inputs: dict[str, Any], host: HostFacts = DOCUMENTED_HOST) -> dict[str, Any]:
    """The container's state after create: what resourceDockerContainerRead stores."""
    state = dict(inputs)
    if "cpus" in state:
        state["cpus"] = cpus_read_back(str(state["cpus"]))
    if isinstance(state.get("healthcheck"), dict):
        check = dict(state["healthcheck"])
        for key in HEALTHCHECK_DURATIONS:
            check[key] = duration_read_back(str(check.get(key, "0s")))  # schema Default "0s"
        state["healthcheck"] = check
    if state.get("ports"):
        state["ports"] = sorted_ports(state["ports"], host.port_order)
    if "memorySwap" in state and not host.swap_limit and "memory" in state:
        state["memorySwap"] = -1
    if "logOpts" in state and state.get("logDriver", host.log_driver) == host.log_driver:
        state["logOpts"] = {**host.log_opts, **state["logOpts"]}
    # labels and envs are not read back (funcs.go: "We decided not to set the environment variables and
    # labels"): the state keeps the configured set.
    return state


def read_back(
    type_: str, name: str, inputs: dict[str, Any], host: HostFacts = DOCUMENTED_HOST
) -> dict[str, Any]:
    """The provider's state after create for the fields the project sets (computed ones: the harness)."""
    if type_ == CONTAINER:
        return container_read_back(inputs, host)
    state = dict(inputs)
    if type_ in (NETWORK, VOLUME) and isinstance(state.get("labels"), list):
        state["labels"] = _label_set(state["labels"])
    if type_ == NETWORK:
        state.setdefault("driver", "bridge")  # Computed: the engine's default driver
        state.setdefault("ipamDriver", "default")  # schema Default
    if type_ == VOLUME:
        state.setdefault("driver", "local")
        state.setdefault("mountpoint", f"/var/lib/docker/volumes/{state.get('name', name)}/_data")
    return state


def changed_fields(inputs: dict[str, Any], state: dict[str, Any], type_: str = CONTAINER) -> list[str]:
    """Top-level input fields whose value differs from the recorded state (plain values), as the
    provider's diff sees them: sets as sets, lists by index, the ports suppression applied."""
    sets = SET_FIELDS.get(type_, frozenset())
    maps = MAP_FIELDS.get(type_, frozenset())
    changed = []
    for key, value in inputs.items():
        stored = state.get(key)
        if key in maps and isinstance(value, dict):
            if _normal(value) != _normal(stored or {}):
                changed.append(key)
        elif type_ == CONTAINER and key == "ports" and isinstance(value, list) and isinstance(stored, list):
            given = [{"ip": "0.0.0.0", "protocol": "tcp", **p} for p in value]
            if _normal(given) != _normal(stored) and not ports_diff_suppressed(stored, value):
                changed.append(key)
        elif _differs(value, stored, key, sets):
            changed.append(key)
    return sorted(changed)


def _differs(given: Any, stored: Any, path: str = "", sets: frozenset[str] = frozenset()) -> bool:
    if given in ([], {}, None) and stored in ([], {}, None):
        return False  # an empty list or map is no value at all for the SDK
    if path in sets and isinstance(given, list) and isinstance(stored, list):
        return _as_set(given, path, sets) != _as_set(stored, path, sets)
    # A block's state also carries the schema defaults of the fields the inputs leave out.
    if isinstance(given, dict) and isinstance(stored, dict):
        return any(_differs(v, stored.get(k), f"{path}.{k}", sets) for k, v in given.items())
    if isinstance(given, list) and isinstance(stored, list):
        return len(given) != len(stored) or any(
            _differs(g, s, path, sets) for g, s in zip(given, stored, strict=True)
        )
    return _normal(given) != _normal(stored)


def _canonical(value: Any, path: str, sets: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v, f"{path}.{k}", sets) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canonical(v, path, sets) for v in value]
        if path in sets:
            return sorted({json.dumps(i, sort_keys=True) for i in items})
        return items
    return _normal(value)


def _as_set(values: list[Any], path: str, sets: frozenset[str]) -> frozenset[str]:
    return frozenset(json.dumps(_canonical(v, path, sets), sort_keys=True) for v in values)


def _normal(value: Any) -> Any:
    # The wire format carries numbers as floats; a healthcheck read back carries its defaults.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value
