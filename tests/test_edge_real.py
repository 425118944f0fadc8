"""Traefik's planned port bindings on a real Docker engine: what IPv4 and IPv6 clients can reach.

The provider sends each port's `ip` as Docker's HostIp; a binding on 0.0.0.0 is IPv4 only, so the plan
needs a second binding on `::` for AAAA records to work. A busybox httpd stands in for Traefik (no
registry here); host ports are shifted by 18000 so the test never needs 80/443 free on the machine.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import PlanFn
from tools import engine

SHIFT = 18000


def _answers(family: socket.AddressFamily, address: str, port: int) -> bool:
    with socket.socket(family) as s:
        s.settimeout(3)
        try:
            s.connect((address, port))
            s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False


@pytest.mark.parametrize("ipv6", [True, False])
def test_planned_bindings_reach_exactly_the_families_the_stack_asks_for(
    plan: PlanFn, docker_engine: engine.Engine, ipv6: bool
) -> None:
    ports = plan(["flow"], traefik={"ipv6": ipv6}).container("clientea-edge-traefik").inputs["ports"]
    image = engine.base_image(docker_engine, "versatilehub-lab/busybox:bookworm", packages=("busybox",))
    publish: list[str] = []
    for p in ports:
        host_ip = f"[{p['ip']}]" if ":" in p["ip"] else p["ip"]
        publish += ["--publish", f"{host_ip}:{int(p['external']) + SHIFT}:{int(p['internal'])}"]
    name = f"edge-ports-{'dual' if ipv6 else 'v4'}"
    # The engine has no default bridge (tools/engine.py): publish through a network of the test's own.
    docker_engine.docker("network", "create", name)
    # One httpd per container port Traefik listens on (an entrypoint per address family, edge/component.py).
    internal = sorted({int(p["internal"]) for p in ports})
    serve = " && ".join(f"busybox httpd -p {port} -h /etc" for port in internal[:-1])
    serve += f"{' && ' if serve else ''}busybox httpd -f -p {internal[-1]} -h /etc"
    docker_engine.docker(
        "run", "-d", "--name", name, "--network", name, *publish, image, "sh", "-c", serve,
    )  # fmt: skip
    try:
        external = sorted({int(p["external"]) + SHIFT for p in ports})
        # The two httpds start one after the other: wait until each answers on IPv4 (always published).
        deadline = time.monotonic() + 30
        for port in external:
            while not _answers(socket.AF_INET, "127.0.0.1", port) and time.monotonic() < deadline:
                time.sleep(0.2)
        for port in external:
            assert _answers(socket.AF_INET, "127.0.0.1", port), port
            assert _answers(socket.AF_INET6, "::1", port) is ipv6, (port, ipv6)
    finally:
        docker_engine.run("rm", "-f", name)
        docker_engine.run("network", "rm", name)
