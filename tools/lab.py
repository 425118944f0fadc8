"""The lab: a stack's planned containers, applied with exactly their planned settings to a real engine.

    python -m tools.lab fields      # which planned container fields the driver applies (and how)
    python -m tools.lab test        # the real apps under the planned settings (tools/lab_apps.py; not CI)

The plan comes from the offline plan (tools/harness.py, the real program under Pulumi's mock runtime, whose
generated secrets are real values). Each planned `docker:index/container:Container` is created through the
Docker Engine API over the engine's socket, as the docker provider does, not through the CLI: the CLI has
no exec-form health check (`--health-cmd` is always CMD-SHELL) and would put env values on a command
line. Every input field is handled by one entry of FIELDS or reported in `Translation.unsupported`:
nothing is dropped silently (tests/test_lab.py). After creation `verify()` compares `docker inspect` with
the plan, field by field.

What the lab changes, and only this: the image (the planned reference becomes the local lab image,
tools/lab_images.py) and bind-mount sources (the host data root becomes a folder under the lab's root).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools import engine as engines

API = "/v1.41"  # Debian's dockerd 20.10
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"


# -- the Engine API over the unix socket ----------------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def api(
    engine: engines.Engine, method: str, path: str, body: Any = None, timeout: float = 120
) -> tuple[int, Any]:
    """One Engine API call: (status, decoded JSON or text)."""
    connection = _UnixConnection(str(engine.socket), timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, API + path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return response.status, raw


# -- planned fields -> Engine API ------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000}


def duration_ns(text: str) -> int:
    """A Go duration as the provider writes it ("2m0s", "30s") in nanoseconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(int(float(n) * _UNIT_NS[u]) for n, u in parts)


@dataclass
class Translation:
    """A planned container as an Engine API create body, plus what the driver itself must do."""

    name: str
    body: dict[str, Any] = field(default_factory=lambda: {"HostConfig": {}})
    networks: list[tuple[str, list[str]]] = field(default_factory=list)  # (network, aliases), in order
    wait_healthy: bool = False
    wait_timeout: float = 300
    must_run: bool = False
    stop_grace: int = 10  # destroyGraceSeconds: the stop timeout when the driver replaces or removes it
    unsupported: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    @property
    def host(self) -> dict[str, Any]:
        host: dict[str, Any] = self.body["HostConfig"]
        return host


@dataclass(frozen=True)
class Context:
    image: Callable[[str], str]  # planned reference -> local image
    source: Callable[[str], str]  # planned bind source -> lab folder


def _set(key: str, host: bool = False, convert: Callable[[Any], Any] = lambda v: v) -> Any:
    def apply(t: Translation, value: Any, _c: Context) -> None:
        (t.host if host else t.body)[key] = convert(value)

    return apply


def _image(t: Translation, value: Any, c: Context) -> None:
    t.body["Image"] = c.image(value)


def _labels(t: Translation, value: Any, _c: Context) -> None:
    t.body["Labels"] = {item["label"]: item["value"] for item in value}


def _healthcheck(t: Translation, value: Any, _c: Context) -> None:
    t.body["Healthcheck"] = {
        "Test": list(value["tests"]),
        "Interval": duration_ns(value.get("interval", "0s")),
        "Timeout": duration_ns(value.get("timeout", "0s")),
        "StartPeriod": duration_ns(value.get("startPeriod", "0s")),
        "Retries": int(value.get("retries", 0)),
    }


def _capabilities(t: Translation, value: Any, _c: Context) -> None:
    t.host["CapDrop"] = list(value.get("drops") or [])
    t.host["CapAdd"] = list(value.get("adds") or [])


def _log_opts(t: Translation, value: Any, _c: Context) -> None:
    t.host.setdefault("LogConfig", {})["Config"] = dict(value)


def _log_driver(t: Translation, value: Any, _c: Context) -> None:
    t.host.setdefault("LogConfig", {})["Type"] = value


def _mounts(t: Translation, value: Any, c: Context) -> None:
    mounts = []
    for m in value:
        if m["type"] not in ("bind", "volume"):
            raise ValueError(f"{t.name}: mount type {m['type']!r} is not one the lab applies")
        source = c.source(m["source"]) if m["type"] == "bind" else m["source"]
        mounts.append(
            {"Type": m["type"], "Source": source, "Target": m["target"], "ReadOnly": bool(m.get("readOnly"))}
        )
    t.host["Mounts"] = mounts


def _ports(t: Translation, value: Any, _c: Context) -> None:
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in value:
        key = f"{p['internal']}/{p.get('protocol', 'tcp')}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": p.get("ip", ""), "HostPort": str(p["external"])})
    t.body["ExposedPorts"] = exposed
    t.host["PortBindings"] = bindings


def _networks(t: Translation, value: Any, _c: Context) -> None:
    t.networks = [(n["name"], list(n.get("aliases") or [])) for n in value]


def _restart(t: Translation, value: Any, _c: Context) -> None:
    t.host["RestartPolicy"] = {"Name": value}


def _driver(attribute: str, convert: Callable[[Any], Any]) -> Any:
    def apply(t: Translation, value: Any, _c: Context) -> None:
        setattr(t, attribute, convert(value))

    return apply


def _uploads(t: Translation, value: Any, _c: Context) -> None:
    if value:  # Flow and Agent have none; the provider copies them before start (not modelled here)
        t.unsupported.append("uploads")


# Every container input the project's components set (components/container.py), and how it is applied.
FIELDS: dict[str, Callable[[Translation, Any, Context], None]] = {
    "name": lambda t, v, c: None,  # the create call's ?name=
    "image": _image,
    "command": _set("Cmd"),
    "entrypoints": _set("Entrypoint"),
    "envs": _set("Env", convert=list),
    "user": _set("User"),
    "workingDir": _set("WorkingDir"),
    "hostname": _set("Hostname"),
    "labels": _labels,
    "healthcheck": _healthcheck,
    "stopTimeout": _set("StopTimeout", convert=int),
    "restart": _restart,
    "memory": _set("Memory", host=True, convert=lambda mb: int(mb) * 1024 * 1024),
    "memorySwap": _set("MemorySwap", host=True, convert=lambda mb: int(mb) * 1024 * 1024),
    "cpus": _set("NanoCpus", host=True, convert=lambda cpus: round(float(cpus) * 1e9)),
    "readOnly": _set("ReadonlyRootfs", host=True, convert=bool),
    "tmpfs": _set("Tmpfs", host=True, convert=dict),
    "securityOpts": _set("SecurityOpt", host=True, convert=list),
    "capabilities": _capabilities,
    "logDriver": _log_driver,
    "logOpts": _log_opts,
    "mounts": _mounts,
    "ports": _ports,
    "networksAdvanced": _networks,
    "uploads": _uploads,
    # What the provider does around the create call, done by the driver the same way.
    "wait": _driver("wait_healthy", bool),
    "waitTimeout": _driver("wait_timeout", float),
    "mustRun": _driver("must_run", bool),
    "destroyGraceSeconds": _driver("stop_grace", int),
}


def translate(inputs: Mapping[str, Any], context: Context) -> Translation:
    """The create body for planned `inputs` (plain values); unknown fields land in `unsupported`."""
    t = Translation(name=str(inputs["name"]))
    for key, value in inputs.items():
        handler = FIELDS.get(key)
        if handler is None:
            t.unsupported.append(key)
            continue
        handler(t, value, context)
        if key not in t.unsupported:
            t.applied.append(key)
    return t


def verify(t: Translation, inspected: Mapping[str, Any]) -> list[str]:
    """What `docker inspect` shows differently from the create body (empty: applied as planned)."""
    config, host = inspected["Config"], inspected["HostConfig"]
    problems = []
    for key, want in t.body.items():
        if key in ("HostConfig", "Image", "ExposedPorts"):
            continue
        got = config.get(key)
        if key == "Env":
            missing = sorted(set(want) - set(got or []))
            if missing:
                problems.append(f"Env lacks {[m.split('=', 1)[0] for m in missing]}")
            continue
        if key == "Labels":
            got = {k: v for k, v in (got or {}).items() if k in want}
        if got != want:
            problems.append(f"{key}: planned {want!r}, engine has {got!r}")
    for key, want in t.host.items():
        got = host.get(key)
        if key == "Mounts":
            # inspect leaves ReadOnly out when it is false
            got = [
                {
                    "Type": m["Type"],
                    "Source": m["Source"],
                    "Target": m["Target"],
                    "ReadOnly": bool(m.get("ReadOnly")),
                }
                for m in got or []
            ]
        if key == "RestartPolicy":
            got = {"Name": (got or {}).get("Name")}
        if got != want:
            problems.append(f"HostConfig.{key}: planned {want!r}, engine has {got!r}")
    attached = inspected["NetworkSettings"]["Networks"]
    for network, aliases in t.networks:
        if network not in attached:
            problems.append(f"not attached to {network}")
        elif not set(aliases) <= set(attached[network].get("Aliases") or []):
            problems.append(f"{network}: aliases {aliases} missing from {attached[network].get('Aliases')}")
    return problems


# -- applying ----------------------------------------------------------------------------------------------
class LabError(RuntimeError):
    pass


def create(engine: engines.Engine, t: Translation) -> str:
    """Create (not start) the container and attach its networks; its id. Refuses unsupported fields."""
    if t.unsupported:
        raise LabError(f"{t.name}: the lab does not apply {', '.join(t.unsupported)}")
    body = json.loads(json.dumps(t.body))
    if t.networks:
        first, aliases = t.networks[0]
        body["HostConfig"]["NetworkMode"] = first
        body["NetworkingConfig"] = {"EndpointsConfig": {first: {"Aliases": aliases}}}
    status, answer = api(engine, "POST", f"/containers/create?name={urllib.parse.quote(t.name)}", body)
    if status != 201:
        raise LabError(f"{t.name}: create refused ({status}): {answer}")
    cid = str(answer["Id"])
    for network, aliases in t.networks[1:]:
        status, answer = api(
            engine,
            "POST",
            f"/networks/{network}/connect",
            {"Container": cid, "EndpointConfig": {"Aliases": aliases}},
        )
        if status != 200:
            raise LabError(f"{t.name}: connect to {network} refused ({status}): {answer}")
    return cid


def inspect(engine: engines.Engine, name: str) -> dict[str, Any]:
    status, answer = api(engine, "GET", f"/containers/{name}/json")
    if status != 200:
        raise LabError(f"{name}: inspect failed ({status}): {answer}")
    return dict(answer)


def health(engine: engines.Engine, name: str) -> str:
    state = inspect(engine, name)["State"]
    return str((state.get("Health") or {}).get("Status") or state.get("Status"))


def wait_healthy(engine: engines.Engine, name: str, timeout: float) -> float:
    """Seconds until healthy; LabError with the last health log and logs when not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = inspect(engine, name)["State"]
        status = (state.get("Health") or {}).get("Status")
        if status == "healthy":
            return time.monotonic() - started
        if state.get("Status") in ("exited", "dead") and state.get("Restarting") is False:
            break
        time.sleep(1)
    waited = time.monotonic() - started
    raise LabError(f"{name} is {health(engine, name)} after {waited:.0f} s: {logs(engine, name)[-3000:]}")


def logs(engine: engines.Engine, name: str) -> str:
    done = engine.run("logs", name)
    return done.stdout + done.stderr


def start(engine: engines.Engine, t: Translation) -> float:
    """Start as the provider does: running (mustRun), then healthy when `wait` (seconds it took)."""
    status, answer = api(engine, "POST", f"/containers/{t.name}/start")
    if status not in (204, 304):
        raise LabError(f"{t.name}: start refused ({status}): {answer}")
    if t.must_run and not inspect(engine, t.name)["State"]["Running"]:
        raise LabError(f"{t.name}: not running after start: {logs(engine, t.name)[-2000:]}")
    return wait_healthy(engine, t.name, t.wait_timeout) if t.wait_healthy else 0.0


def remove(engine: engines.Engine, t: Translation) -> None:
    """Stop with the planned grace (destroyGraceSeconds), then remove: what a replacement does first."""
    api(engine, "POST", f"/containers/{t.name}/stop?t={t.stop_grace}", timeout=t.stop_grace + 60)
    api(engine, "DELETE", f"/containers/{t.name}?force=true")


# -- from a plan ------------------------------------------------------------------------------------------
def planned_networks(plan: Any) -> dict[str, dict[str, Any]]:
    """Network name -> planned inputs (plain)."""
    return {r.plain_inputs["name"]: r.plain_inputs for r in plan.of_type(NETWORK)}


def create_network(engine: engines.Engine, inputs: Mapping[str, Any]) -> None:
    labels = {item["label"]: item["value"] for item in inputs.get("labels", [])}
    # CheckDuplicate: without it the engine (API 1.41) makes a second network of the same name, and then
    # refuses every later reference to the name as ambiguous.
    body = {
        "Name": inputs["name"],
        "Internal": bool(inputs.get("internal")),
        "Labels": labels,
        "CheckDuplicate": True,
    }
    status, answer = api(engine, "POST", "/networks/create", body)
    if status not in (201, 409):  # 409: exists already
        raise LabError(f"network {inputs['name']}: {answer}")


def image_keys(plan: Any) -> dict[str, str]:
    """Planned image reference -> image key (`image-<key>` RemoteImage resources)."""
    return {r.plain_inputs["name"]: r.name.removeprefix("image-") for r in plan.of_type(IMAGE)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=["fields", "test"], help="test: the real-app checks (tools/lab_apps.py)"
    )
    args, rest = parser.parse_known_args(argv)
    if args.what == "test":
        from tools import lab_apps

        return lab_apps.main(rest)
    for key in FIELDS:
        print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
