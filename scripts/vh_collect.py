#!/usr/bin/env python3
"""vh-collect: one client's server watching itself (installed there by the VersatileHub program).

One run, started by a systemd timer every few minutes (no daemon), records in one JSON status file:
each container of the stack (state, health, restarts since the last run, CPU % and memory % of its
limits, error lines since the last run), the host (data-root disk, memory, load), each public endpoint
probed through Traefik on this host (status, latency, certificate expiry), the last backup and the last
restore drill. A bounded history (24 h of compact records, JSON lines) sits beside it. Incidents (a
threshold crossed, a container unhealthy or restarting, a certificate near expiry, stale backups) are
sent once when they open and once when they clear, to a webhook and/or by mail; open incidents are kept
in the status folder so that a persisting one is never re-sent.

Docker is read through its API on the unix socket with GET requests only. Settings come from
collect.json beside this script; the webhook address and the SMTP password from secrets.json (mode 0400),
never from a command line.

Python 3.9 or newer, standard library only. `vh-collect --help` lists the options.
"""

from __future__ import annotations

import argparse
import calendar
import functools
import http.client
import json
import os
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any

FORMAT = 1
HISTORY_SECONDS = 24 * 3600
# Per container and run: what the log reader keeps of the error lines, and how much log it reads at most.
KEEP_ERROR_LINES = 5
MAX_LOG_BYTES = 4 << 20
MAX_LINE = 300
CHUNK = 64 << 10

# Error lines per app, by the service label of the container (io.versatilehub.service) and its role.
# Rails (Chatwoot): the Logger's "E, [time] ERROR -- :" / "F, [...] FATAL" lines and raised exceptions.
# Frappe (Hub): Python tracebacks, frappe exceptions, gunicorn's "[ERROR]".
# n8n (Flow) and Node (Agent): winston/pino levels ("level":"error"|50+), "Error:" stacks, uncaught errors.
PATTERNS = {
    "rails": r"^[EF], \[|\b(ERROR|FATAL) -- |\b[A-Z]\w+(::\w+)*Error\b.*\(|ActiveRecord::\w+Error",
    "frappe": r"Traceback \(most recent call last\)|frappe\.exceptions\.\w+|\[ERROR\]|\bCRITICAL\b",
    "node": r'"level":\s*("error"|"fatal"|5\d|60)(?=[,}\s])|\bUnhandledPromiseRejection|\bUncaught\b|'
    r"FATAL ERROR|^\s*(Type|Reference|Range|Syntax)?Error: |\[error\]|\bERROR\b",
    # Anything else (Traefik, PostgreSQL, MariaDB, Redis, the socket proxy, nginx).
    "generic": r"\b(ERROR|FATAL|PANIC|CRITICAL)\b|level=(error|fatal)|\[(error|crit|alert|emerg)\]",
}
APP_OF_SERVICE = {"chat": "rails", "hub": "frappe", "flow": "node", "agent": "node"}

DEFAULT_THRESHOLDS = {
    "cpu_percent": 70.0,
    "memory_percent": 80.0,
    "disk_percent": 85.0,
    "host_memory_percent": 80.0,
    "endpoint_ms": 2000,
    "cert_days": 14,
    "backup_hours": 26.0,
}


class Failure(Exception):
    """The collector cannot run at all (its settings); exit status 1."""


def say(message: str) -> None:
    print(f"vh-collect: {message}", file=sys.stderr, flush=True)


# -- Docker over its unix socket (GET only) -------------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class Docker:
    """The engine API, read-only. One connection per request: the calls run in parallel threads."""

    def __init__(self, socket_path: str, timeout: float = 20.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def get(self, path: str) -> bytes:
        return b"".join(self.stream(path, 1 << 30))

    def stream(self, path: str, limit: int) -> Iterator[bytes]:
        """The response body in pieces, at most `limit` bytes: a log is scanned, never held whole."""
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            if response.status >= 400:
                raise OSError(f"docker GET {path.split('?')[0]}: {response.status} {response.read(200)!r}")
            while limit > 0:
                piece = response.read1(min(CHUNK, limit))
                if not piece:
                    break
                limit -= len(piece)
                yield piece
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))


def demux(pieces: Iterable[bytes]) -> Iterator[str]:
    """Lines of a container's log stream. Without a TTY it comes in frames: an 8-byte header (stream 1 or
    2, three zero bytes, the size big-endian) and the payload; with a TTY it is the raw text."""
    buffer = b""
    framed: bool | None = None
    text = b""
    for piece in pieces:
        buffer += piece
        if framed is None and len(buffer) >= 8:
            framed = buffer[0] in (0, 1, 2) and buffer[1:4] == b"\0\0\0"
        if framed is None:
            continue
        if framed:
            i, payloads = 0, [text]
            while len(buffer) - i >= 8:
                size = int.from_bytes(buffer[i + 4 : i + 8], "big")
                if len(buffer) - i < 8 + size:
                    break
                payloads.append(buffer[i + 8 : i + 8 + size])
                i += 8 + size
            text, buffer = b"".join(payloads), buffer[i:]
        else:
            text, buffer = text + buffer, b""
        *lines, text = text.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    rest = text + (buffer if not framed else b"")
    if rest:
        yield from rest.decode("utf-8", "replace").splitlines()


def error_lines(lines: Iterator[str], pattern: re.Pattern[str]) -> tuple[int, list[str]]:
    count, last = 0, []
    for line in lines:
        if pattern.search(line):
            count += 1
            last.append(line[:MAX_LINE])
            if len(last) > KEEP_ERROR_LINES:
                last.pop(0)
    return count, last


def cpu_percent(stats: dict[str, Any], limit_cpus: float) -> float | None:
    """CPU used between the two samples of one stats read, as a % of the container's CPU limit (of the
    host's CPUs without one). The formula of docker/cli's `docker stats` (calculateCPUPercentUnix)."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if system <= 0 or used < 0 or not pre.get("system_cpu_usage"):
        return None
    cores = used / system * online
    return round(100.0 * cores / (limit_cpus or online), 1)


def _restarts_since(seen: dict[str, Any], cid: str, count: int, started_at: str) -> int:
    """Restarts since the last run. dockerd counts a restart when the container exits, before its
    back-off delay (moby v20.10.24 daemon/monitor.go handleContainerExit: `RestartCount++` then
    `SetRestarting`), so a run that saw it "restarting" has already counted the start still to come:
    when that start has happened since (a new StartedAt), it is one more restart, or a crash loop caught
    in its few running seconds after a long back-off would look like a container that recovered."""
    if seen.get("id") != cid:
        return 0
    pending = seen.get("state") == "restarting" and seen.get("started_at", started_at) != started_at
    return max(0, count - int(seen.get("restart_count", count)) + int(pending))


def memory_percent(stats: dict[str, Any]) -> tuple[float | None, int]:
    """(% of the memory limit, bytes used without the page cache): docker/cli's calculateMemUsageUnixNoCache
    subtracts inactive_file (cgroup v2) or total_inactive_file (cgroup v1)."""
    memory = stats.get("memory_stats") or {}
    usage, limit = memory.get("usage"), memory.get("limit")
    if not usage or not limit:
        return None, 0
    detail = memory.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))  # v1 first, as docker/cli
    used = max(0, usage - cache if cache < usage else usage)
    return round(100.0 * used / limit, 1), used


# -- the host -----------------------------------------------------------------------------------------
def host_status(data_root: str) -> dict[str, Any]:
    disk = os.statvfs(data_root)
    total = disk.f_blocks * disk.f_frsize
    free = disk.f_bavail * disk.f_frsize
    meminfo = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            meminfo[key] = int(value.split()[0]) * 1024
    mem_total = meminfo.get("MemTotal", 0)
    mem_available = meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    load = os.getloadavg()
    return {
        "disk_path": data_root,
        "disk_percent": round(100.0 * (total - free) / total, 1) if total else None,
        "disk_free_gb": round(free / 2**30, 2),
        "memory_percent": round(100.0 * (mem_total - mem_available) / mem_total, 1) if mem_total else None,
        "memory_total_mb": mem_total >> 20,
        "load": [round(x, 2) for x in load],
        "cpus": os.cpu_count() or 1,
    }


# -- endpoints and certificates -------------------------------------------------------------------------
def _der_items(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(tag, content start, content end) of each DER element between start and end."""
    i = start
    while i < end:
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        yield tag, i, i + length
        i += length


def not_after(der: bytes) -> float:
    """The notAfter of an X.509 certificate (DER), as epoch seconds: Certificate > TBSCertificate >
    [version], serial, signature, issuer, validity (RFC 5280, 4.1)."""
    _, cert_start, cert_end = next(_der_items(der, 0, len(der)))
    _, tbs_start, tbs_end = next(_der_items(der, cert_start, cert_end))
    fields = list(_der_items(der, tbs_start, tbs_end))
    if fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    _, validity_start, validity_end = fields[3]
    times = list(_der_items(der, validity_start, validity_end))
    tag, s, e = times[1]
    text = der[s:e].decode()
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return float(calendar.timegm(time.strptime(text.rstrip("Z")[:14], "%Y%m%d%H%M%S")))


def probe(endpoint: dict[str, Any], edge: str, timeout: float) -> dict[str, Any]:
    """One request to the endpoint through Traefik on this host (https: 127.0.0.1:443 with SNI = its
    hostname, like components/verify.py's `curl --resolve`), or straight to a loopback http:// address."""
    url = urllib.parse.urlsplit(endpoint["url"])
    hostname = url.hostname or ""
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    result: dict[str, Any] = {"name": endpoint["name"], "url": endpoint["url"], "hostname": hostname}
    started = time.monotonic()
    try:
        if url.scheme == "https":
            address, _, port = edge.rpartition(":")
            tls = _tls((address, int(port)), hostname, timeout, result)
            der = tls.getpeercert(binary_form=True)
            sock: socket.socket = tls
            if der:
                expires = not_after(der)
                result["cert_expires"] = int(expires)
                result["cert_days"] = round((expires - time.time()) / 86400, 1)
        else:
            sock = socket.create_connection((hostname, url.port or 80), timeout=timeout)
        with sock:
            sock.settimeout(timeout)
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nUser-Agent: vh-collect\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer and len(answer) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            want = endpoint.get("body") or ""
            while want and want.encode() not in answer and len(answer) < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status = answer.split(b"\r\n", 1)[0].split()
        code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
        result["status"] = code
        result["ms"] = int((time.monotonic() - started) * 1000)
        expect = str(endpoint.get("expect", "2??"))
        ok = re.fullmatch(expect.replace("?", "[0-9]"), str(code)) is not None
        if ok and want and want.encode() not in answer:
            ok, result["error"] = False, f"its body lacks {want}"
        result["ok"] = ok
    except (OSError, ValueError) as exc:
        result.update(ok=False, status=0, ms=int((time.monotonic() - started) * 1000), error=str(exc))
    return result


_CONTEXTS: dict[bool, ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _context(verified: bool) -> ssl.SSLContext:
    """One context of each kind per run, shared by the probes' threads: loading the CA store is most of a
    probe's CPU time and memory. The unverified one loads none."""
    with _CONTEXTS_LOCK:
        if verified not in _CONTEXTS:
            if verified:
                context = ssl.create_default_context()
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            _CONTEXTS[verified] = context
        return _CONTEXTS[verified]


def _tls(address: tuple[str, int], hostname: str, timeout: float, result: dict[str, Any]) -> ssl.SSLSocket:
    """A verified handshake; when the certificate is not trusted (yet: staging CA, before DNS), recorded as
    `tls: untrusted` and repeated unverified, as the post-deploy probe does (the address is this host)."""
    try:
        sock = _context(True).wrap_socket(
            socket.create_connection(address, timeout=timeout), server_hostname=hostname
        )
        result["tls"] = "trusted"
        return sock
    except ssl.SSLCertVerificationError as exc:
        result["tls"] = "untrusted"
        result["tls_error"] = exc.verify_message
    return _context(False).wrap_socket(
        socket.create_connection(address, timeout=timeout), server_hostname=hostname
    )


# -- backups and drills ----------------------------------------------------------------------------------
def read_result(path: str | None, now: float) -> dict[str, Any]:
    """The last run that vh-backup (or its restore drill) recorded: {"finished", "result", "message"}.
    Absent: never run."""
    if not path:
        return {"result": "not configured"}
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"result": "never run"}
    except (OSError, ValueError) as exc:
        return {"result": "unreadable", "message": str(exc)}
    finished = data.get("finished") or data.get("time") or data.get("at")
    result = data.get("result") or data.get("status") or ("ok" if data.get("ok") else "failed")
    out: dict[str, Any] = {"result": str(result), "finished": finished}
    last_ok = data.get("last_ok", finished if result == "ok" else None)
    if isinstance(last_ok, (int, float)):
        out["last_ok"] = last_ok
        out["age_hours"] = round((now - last_ok) / 3600, 2)
    if data.get("message"):
        out["message"] = str(data["message"])[:500]
    return out


# -- one run -------------------------------------------------------------------------------------------
class Collector:
    def __init__(self, settings: dict[str, Any], now: float | None = None):
        self.s = settings
        self.client: str = settings["client"]
        self.status_dir: str = settings["status_dir"]
        self.now = now if now is not None else time.time()
        self.thresholds = {**DEFAULT_THRESHOLDS, **(settings.get("thresholds") or {})}
        self.docker = Docker(settings.get("docker_socket", "/var/run/docker.sock"))
        self.previous = _load(os.path.join(self.status_dir, "state.json"))

    def containers(self) -> list[dict[str, Any]]:
        label = urllib.parse.quote(json.dumps({"label": [f"io.versatilehub.client={self.client}"]}))
        listed = self.docker.json(f"/containers/json?all=1&filters={label}")
        with ThreadPoolExecutor(max_workers=int(self.s.get("parallel", 8))) as pool:
            return sorted(pool.map(self.container, listed), key=lambda c: c["name"])

    def container(self, listed: dict[str, Any]) -> dict[str, Any]:
        cid = listed["Id"]
        info = self.docker.json(f"/containers/{cid}/json")
        name = info["Name"].lstrip("/")
        state = info.get("State") or {}
        labels = (info.get("Config") or {}).get("Labels") or {}
        service = labels.get("io.versatilehub.service", "")
        host_config = info.get("HostConfig") or {}
        seen = (self.previous.get("containers") or {}).get(name) or {}
        restarts = int(info.get("RestartCount", 0))
        started_at = state.get("StartedAt", "")
        record: dict[str, Any] = {
            "name": name,
            "service": service,
            "role": labels.get("io.versatilehub.role", ""),
            "state": state.get("Status", "unknown"),
            "health": (state.get("Health") or {}).get("Status", "none"),
            "restart_count": restarts,
            # Since the last run; a container re-created in between starts counting again.
            "restarts": _restarts_since(seen, cid, restarts, started_at),
            "id": cid,
            "started_at": started_at,
            "exit_code": state.get("ExitCode"),
            "restart_policy": (host_config.get("RestartPolicy") or {}).get("Name", ""),
        }
        if state.get("Running"):
            stats = self.docker.json(f"/containers/{cid}/stats?stream=false")
            limit_cpus = (host_config.get("NanoCpus") or 0) / 1e9
            record["cpu_percent"] = cpu_percent(stats, limit_cpus)
            record["memory_percent"], used = memory_percent(stats)
            record["memory_mb"] = used >> 20
        since = int(seen.get("logs_until") or self.now - float(self.s.get("first_log_window", 600)))
        log = self.docker.stream(
            f"/containers/{cid}/logs?stdout=1&stderr=1&since={since}&until={int(self.now)}", MAX_LOG_BYTES
        )
        app = APP_OF_SERVICE.get(service, "generic") if record["role"] in APP_ROLES else "generic"
        pattern = _patterns()[app]
        record["errors"], record["error_lines"] = error_lines(demux(log), pattern)
        record["logs_until"] = int(self.now)
        return record

    def run(self) -> dict[str, Any]:
        started_cpu = time.process_time()
        endpoints = list(self.s.get("endpoints") or [])
        timeout = float(self.s.get("probe_timeout", 10))
        edge = self.s.get("edge", "127.0.0.1:443")
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(endpoints)))) as pool:
            probes = pool.map(lambda e: probe(e, edge, timeout), endpoints)
            try:
                containers = self.containers()
                docker_error = None
            except OSError as exc:
                containers, docker_error = [], f"{self.docker.socket_path}: {exc}"
            probed = list(probes)
        status: dict[str, Any] = {
            "format": FORMAT,
            "client": self.client,
            "time": int(self.now),
            "interval_minutes": self.s.get("interval_minutes", 5),
            "thresholds": self.thresholds,
            "containers": containers,
            "host": host_status(self.s.get("data_root", "/")),
            "endpoints": probed,
            "backup": read_result(self.s.get("backup_status"), self.now),
            "drill": read_result(self.s.get("drill_status"), self.now),
        }
        if docker_error:
            status["docker_error"] = docker_error
        status["incidents"] = incidents(status, bool(self.s.get("backup_status")))
        status["overall"] = "ok" if not status["incidents"] else "alert"
        history = self.write_history(status)
        status["errors_last_hour"] = sum(
            h.get("errors", 0) for h in history if h.get("time", 0) > self.now - 3600
        )
        status["collect_cpu_s"] = round(time.process_time() - started_cpu, 3)
        status["collect_peak_rss_mb"] = peak_rss_mb()
        _save(os.path.join(self.status_dir, "status.json"), status)
        _save(
            os.path.join(self.status_dir, "state.json"),
            {
                "containers": {
                    c["name"]: {k: c[k] for k in ("id", "restart_count", "logs_until", "state", "started_at")}
                    for c in containers
                }
            },
        )
        return status

    def write_history(self, status: dict[str, Any]) -> list[dict[str, Any]]:
        """Append this run's compact record; keep only the last 24 h (rewritten in place, atomically)."""
        path = os.path.join(self.status_dir, "history.jsonl")
        kept = []
        try:
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("time", 0) > self.now - HISTORY_SECONDS:
                        kept.append(entry)
        except FileNotFoundError:
            pass
        kept.append(compact(status))
        tmp = f"{path}.new"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n" for e in kept)
        os.replace(tmp, path)
        return kept


# The containers whose logs are the app's own (the rest: its databases, caches and proxies).
# (components/hub.py, chat.py, flow.py, agent.py); Hub's frontend is nginx: the generic patterns.
APP_ROLES = frozenset(
    {
        "backend",
        "websocket",
        "queue-short",
        "queue-long",
        "scheduler",
        "rails",
        "sidekiq",
        "n8n",
        "runner",
        "gateway",
    }
)


@functools.cache
def _patterns() -> dict[str, re.Pattern[str]]:
    return {app: re.compile(p, re.MULTILINE) for app, p in PATTERNS.items()}


def compact(status: dict[str, Any]) -> dict[str, Any]:
    containers = status["containers"]
    return {
        "time": status["time"],
        "overall": status["overall"],
        "incidents": sorted(status["incidents"]),
        "errors": sum(c.get("errors", 0) for c in containers),
        "cpu": {c["name"]: c.get("cpu_percent") for c in containers if c.get("cpu_percent") is not None},
        "memory": {
            c["name"]: c.get("memory_percent") for c in containers if c.get("memory_percent") is not None
        },
        "disk": status["host"]["disk_percent"],
        "endpoints": {e["name"]: e.get("ms") for e in status["endpoints"]},
    }


def incidents(status: dict[str, Any], backups_on: bool) -> dict[str, str]:
    """Every condition to alert on now: key (stable while it lasts) -> one line saying what is wrong."""
    t = status["thresholds"]
    found: dict[str, str] = {}
    if status.get("docker_error"):
        found["docker"] = f"the Docker engine does not answer: {status['docker_error']}"
    for c in status["containers"]:
        name = c["name"]
        if c["state"] == "restarting" or c["restarts"] > 0:
            found[f"container:{name}:restarting"] = (
                f"{name} is restarting ({c['restarts']} restarts since the last run, state {c['state']})"
            )
        elif c["state"] != "running" and not _finished_job(c):
            found[f"container:{name}:down"] = f"{name} is {c['state']} (exit code {c.get('exit_code')})"
        if c["health"] == "unhealthy":
            found[f"container:{name}:unhealthy"] = f"{name} is unhealthy"
        cpu, memory = c.get("cpu_percent"), c.get("memory_percent")
        if cpu is not None and cpu > t["cpu_percent"]:
            found[f"container:{name}:cpu"] = (
                f"{name} uses {cpu:.0f}% of its CPU limit (> {t['cpu_percent']:g}%)"
            )
        if memory is not None and memory > t["memory_percent"]:
            found[f"container:{name}:memory"] = (
                f"{name} uses {memory:.0f}% of its memory limit (> {t['memory_percent']:g}%)"
            )
    host = status["host"]
    if host.get("disk_percent") is not None and host["disk_percent"] > t["disk_percent"]:
        found["host:disk"] = (
            f"{host['disk_path']} is {host['disk_percent']:.0f}% full (> {t['disk_percent']:g}%)"
        )
    if host.get("memory_percent") is not None and host["memory_percent"] > t["host_memory_percent"]:
        found["host:memory"] = (
            f"the host uses {host['memory_percent']:.0f}% of its memory (> {t['host_memory_percent']:g}%)"
        )
    for e in status["endpoints"]:
        budget = e.get("budget_ms") or t["endpoint_ms"]
        if not e["ok"]:
            found[f"endpoint:{e['url']}:down"] = (
                f"{e['url']} does not answer as expected (status {e['status']}"
                + (f", {e['error']})" if e.get("error") else ")")
            )
        elif e["ms"] > budget:
            found[f"endpoint:{e['url']}:slow"] = f"{e['url']} answered in {e['ms']} ms (> {budget} ms)"
        days = e.get("cert_days")
        if days is not None and days < t["cert_days"]:
            found[f"cert:{e['hostname']}"] = (
                f"the certificate of {e['hostname']} expires in {days:.1f} days (< {t['cert_days']:g})"
            )
    if backups_on:
        backup = status["backup"]
        age = backup.get("age_hours")
        if backup["result"] not in ("ok",) and backup["result"] != "never run":
            found["backup:failed"] = (
                f"the last backup {backup['result']}: {backup.get('message', '')}".rstrip(": ")
            )
        if age is None or age > t["backup_hours"]:
            found["backup:stale"] = f"no complete backup in the last {t['backup_hours']:g} h" + (
                f" (the last one {age:.0f} h ago)" if age is not None else " (none recorded)"
            )
    drill = status["drill"]
    if drill["result"] not in ("ok", "never run", "not configured"):
        found["drill:failed"] = (
            f"the last restore drill {drill['result']}: {drill.get('message', '')}".rstrip(": ")
        )
    return found


def _finished_job(c: dict[str, Any]) -> bool:
    """A one-shot container (restart "no", such as Hub's configurator) that ended well is not down."""
    return c.get("restart_policy") == "no" and c["state"] == "exited" and c.get("exit_code") == 0


# -- alerts --------------------------------------------------------------------------------------------
class Alerts:
    """Open and cleared incidents, each sent once. alerts.json keeps what was sent; an incident whose
    message could not be delivered is tried again next run (never a second time once delivered)."""

    def __init__(self, settings: dict[str, Any], secrets: dict[str, str]):
        self.client = settings["client"]
        self.path = os.path.join(settings["status_dir"], "alerts.json")
        self.webhook = secrets.get("webhook_url")
        self.email = settings.get("email") or {}
        self.smtp_password = secrets.get("smtp_password")
        self.timeout = float(settings.get("alert_timeout", 10))

    def update(self, now: float, current: dict[str, str]) -> list[dict[str, Any]]:
        state = _load(self.path).get("open", {})
        sent: list[dict[str, Any]] = []
        for key, message in sorted(current.items()):
            entry = state.setdefault(key, {"since": int(now), "message": message, "notified": False})
            if not entry["notified"]:
                event = {"client": self.client, "incident": key, "state": "open", "since": entry["since"]}
                entry["notified"] = self.send({**event, "message": message})
                if entry["notified"]:
                    sent.append({**event, "message": message})
        for key in sorted(set(state) - set(current)):
            entry = state[key]
            if entry["notified"]:
                event = {
                    "client": self.client,
                    "incident": key,
                    "state": "cleared",
                    "since": entry["since"],
                    "message": f"cleared: {entry['message']}",
                }
                if not self.send(event):
                    continue  # tell it next run
                sent.append(event)
            del state[key]
        _save(self.path, {"open": state})
        return sent

    def send(self, event: dict[str, Any]) -> bool:
        """True when every configured channel took the message (none configured: nothing to deliver)."""
        text = f"[{event['client']}] {event['state'].upper()}: {event['message']}"
        delivered = True
        if self.webhook:
            try:
                body = json.dumps({"text": text, **event}).encode()
                request = urllib.request.Request(
                    self.webhook, data=body, headers={"Content-Type": "application/json"}, method="POST"
                )
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
            except OSError as exc:
                say(f"webhook: {exc}")
                delivered = False
        if self.email.get("to"):
            try:
                self.mail(text, event)
            except (OSError, smtplib.SMTPException) as exc:
                say(f"mail to {self.email['to']}: {exc}")
                delivered = False
        return delivered

    def mail(self, text: str, event: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = text[:150]
        message["From"] = self.email["sender"]
        message["To"] = self.email["to"]
        message.set_content(f"{text}\n\nclient: {event['client']}\nincident: {event['incident']}\n")
        with smtplib.SMTP(self.email["host"], int(self.email.get("port", 587)), timeout=self.timeout) as smtp:
            if self.email.get("starttls", True):
                smtp.starttls(context=ssl.create_default_context())
            if self.email.get("username") and self.smtp_password:
                smtp.login(self.email["username"], self.smtp_password)
            smtp.send_message(message)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM: of its own program, unlike ru_maxrss, which keeps the
    peak of the process it was forked from)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


# -- files ---------------------------------------------------------------------------------------------
def _load(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def _save(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.new"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_secrets(path: str | None) -> dict[str, str]:
    if not path or not os.path.exists(path):
        return {}
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise Failure(f"{path} is readable by others (mode {mode:o}); it must be 0400")
    data = _load(path)
    return {k: str(v) for k, v in data.items() if v}


def main(argv: Sequence[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(prog="vh-collect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=os.path.join(here, "collect.json"), help="collect.json")
    parser.add_argument(
        "--secrets", default=os.path.join(here, "secrets.json"), help="webhook_url, smtp_password (0400)"
    )
    parser.add_argument("--quiet", action="store_true", help="no summary line")
    args = parser.parse_args(argv)
    try:
        settings = _load(args.settings)
        if settings.get("format") != FORMAT or "client" not in settings or "status_dir" not in settings:
            raise Failure(f"{args.settings}: not a collect.json of format {FORMAT} (pulumi up writes it)")
        secrets = read_secrets(args.secrets)
        os.makedirs(settings["status_dir"], mode=0o755, exist_ok=True)
        status = Collector(settings).run()
        sent = Alerts(settings, secrets).update(status["time"], status["incidents"])
    except Failure as failure:
        say(str(failure))
        return 1
    if not args.quiet:
        say(
            f"{status['client']}: {status['overall']}, {len(status['containers'])} containers, "
            f"{len(status['incidents'])} incidents, {len(sent)} alerts sent"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
