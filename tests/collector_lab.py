"""What the collector's real tests and its benchmark share: a webhook receiver and an HTTPS endpoint on
loopback, and an sshd in a network namespace of its own (reached over a veth pair, host key pinned)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "scripts" / "vh_collect.py"


# -- a webhook receiver ----------------------------------------------------------------------------------
@dataclass
class Webhook:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False  # answer 503 (a receiver that is down)

    def opened(self) -> list[str]:
        return [m["incident"] for m in self.received if m["state"] == "open"]

    def cleared(self) -> list[str]:
        return [m["incident"] for m in self.received if m["state"] == "cleared"]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if hook.refuse:
                self.send_response(503)
            else:
                hook.received.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


# -- an HTTPS endpoint standing in for Traefik --------------------------------------------------------------
def self_signed(folder: Path, hostnames: list[str], days: int) -> tuple[Path, Path]:
    key, cert = folder / "edge.key", folder / "edge.crt"
    san = ",".join(f"DNS:{h}" for h in hostnames)
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ),
            *("-days", str(days), "-subj", f"/CN={hostnames[0]}", "-addext", f"subjectAltName={san}"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@contextlib.contextmanager
def https_edge(folder: Path, routes: dict[str, tuple[int, str]], days: int) -> Iterator[str]:
    """127.0.0.1:<port> answering by Host header: hostname -> (status, body); a self-signed certificate
    valid for `days`. Yields "127.0.0.1:<port>" (the collector's `edge`)."""
    key, cert = self_signed(folder, sorted(routes), days)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.headers.get("Host", ""), (404, "no route"))
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_collector(settings: Path, secrets: Path | None = None) -> dict[str, Any]:
    """One run of the real script, as the timer starts it; the status it wrote."""
    argv = ["python3", str(COLLECTOR), "--settings", str(settings), "--quiet"]
    argv += ["--secrets", str(secrets)] if secrets else ["--secrets", "/nonexistent"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    status_dir = json.loads(settings.read_text())["status_dir"]
    return dict(json.loads(Path(status_dir, "status.json").read_text()))


# -- an sshd in a network namespace --------------------------------------------------------------------------
@dataclass
class SshHost:
    namespace: str
    address: str
    host_key: str  # "ssh-ed25519 AAAA..." as a stack pins it
    identity: Path  # the client's private key
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def netns_sshd(name: str = "") -> Iterator[SshHost]:
    """sshd (root login by key only) inside a fresh namespace, at 10.<a>.<b>.2 over a veth pair; this
    side gets .1. Everything (namespace, veth, keys) is removed afterwards."""
    pid = os.getpid()
    namespace = name or f"vhc{pid % 100000}"
    outside, inside = f"vho{pid % 100000}", f"vhi{pid % 100000}"
    a, b = 200 + pid % 50, pid % 250
    work = Path(tempfile.mkdtemp(prefix="vh-sshd-"))

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    process: subprocess.Popen[bytes] | None = None
    try:
        ip("netns", "add", namespace)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("addr", "add", f"10.{a}.{b}.1/30", "dev", outside)
        ip("link", "set", outside, "up")
        ip("-n", namespace, "addr", "add", f"10.{a}.{b}.2/30", "dev", inside)
        ip("-n", namespace, "link", "set", inside, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        for key in ("host", "client"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)],
                check=True,
                capture_output=True,
            )
        (work / "authorized_keys").write_text((work / "client.pub").read_text())
        os.chmod(work / "authorized_keys", 0o600)
        os.chmod(work, 0o700)
        Path("/run/sshd").mkdir(exist_ok=True)
        config = work / "sshd_config"
        config.write_text(
            f"ListenAddress 10.{a}.{b}.2\nPort 22\nHostKey {work / 'host'}\n"
            f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            # The keys live under /tmp (world-writable): StrictModes would refuse them.
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {work / 'sshd.pid'}\nMaxStartups 100:30:200\nMaxSessions 100\n"
        )
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "sshd.log").open("wb"),
        )
        host_key = " ".join((work / "host.pub").read_text().split()[:2])
        host = SshHost(namespace, f"10.{a}.{b}.2", host_key, work / "client", process)
        for _ in range(100):
            probe = subprocess.run(
                ["ip", "netns", "exec", namespace, "ss", "-ltn"], capture_output=True, text=True, check=False
            )
            if f"10.{a}.{b}.2:22" in probe.stdout:
                break
            time.sleep(0.05)
        yield host
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
