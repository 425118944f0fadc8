"""What the real Docker provider does with a container's inputs: refuse at create, and read back.

pulumi-docker 5.x bridges kreuzwerker/terraform-provider-docker v4.5.0 (pulumi-docker's `upstream`
submodule is at 5074970, the v4.5.0 tag, from v5.1.0 through the newest commit fetched). The rules, each
from that tag's ``internal/provider/``:

=======================  ===========================================  =====================================
field                    provider                                     source
=======================  ===========================================  =====================================
command                  an empty element fails create: "values for   resource_docker_container_funcs.go,
                         command may not be empty" (entrypoint is     resourceDockerContainerCreate
                         not checked)
cpus                     parsed with opts.ParseCPUs, read back with   funcs.go resourceDockerContainerRead;
                         nanoInt64ToDecimalString ("0.05" -> "0.1",   helpers.go nanoInt64ToDecimalString
                         "2" -> "2.0")
healthcheck durations    time.ParseDuration, read back with           funcs.go resourceDockerContainerRead
                         time.Duration.String ("60s" -> "1m0s")
ForceNew                 every container field but UPDATABLE below    resource_docker_container.go schema
=======================  ===========================================  =====================================
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

CONTAINER = "docker:index/container:Container"

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


def validate_container(name: str, inputs: dict[str, Any]) -> None:
    """The create-time checks of resourceDockerContainerCreate that the project's inputs can meet."""
    if any(element == "" for element in inputs.get("command") or []):
        raise ProviderError(f"container {name}: values for command may not be empty")
    if "cpus" in inputs:
        parse_cpus(str(inputs["cpus"]))


def container_read_back(inputs: dict[str, Any]) -> dict[str, Any]:
    """The container's state after create: what resourceDockerContainerRead stores (plain values)."""
    state = dict(inputs)
    if "cpus" in state:
        state["cpus"] = cpus_read_back(str(state["cpus"]))
    if isinstance(state.get("healthcheck"), dict):
        check = dict(state["healthcheck"])
        for key in HEALTHCHECK_DURATIONS:
            check[key] = duration_read_back(str(check.get(key, "0s")))  # schema Default "0s"
        state["healthcheck"] = check
    return state


def changed_fields(inputs: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Top-level input fields whose value differs from the recorded state (plain values)."""
    return sorted(k for k, v in inputs.items() if _differs(v, state.get(k)))


def _differs(given: Any, stored: Any) -> bool:
    # A block's state also carries the schema defaults of the fields the inputs leave out.
    if isinstance(given, dict) and isinstance(stored, dict):
        return any(_differs(v, stored.get(k)) for k, v in given.items())
    return _normal(given) != _normal(stored)


def _normal(value: Any) -> Any:
    # The wire format carries numbers as floats; a healthcheck read back carries its defaults.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value
