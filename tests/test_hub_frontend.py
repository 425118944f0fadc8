"""The Hub's nginx (scripts/frontend.sh) run for real: rendered like frappe_docker's entrypoint, with the
socket.io location naming the frontend itself, so Frappe's realtime middleware accepts the connection and
its authentication call comes back through nginx for the site (issue 15, items 2, 3 and 6)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.services.hub import frontend as hub_frontend
from tests.conftest import PlanFn, env_of, networks_of
from tools import harness

# The shape of frappe_docker's resources/core/nginx/nginx-template.conf (HEAD 4b9d356 of
# github.com/frappe/frappe_docker, the template the erpnext image copies to
# /templates/nginx/frappe.conf.template): its two upstreams, the socket.io location setting Origin to
# <scheme>://<site> and Host to $host, the webserver location setting X-Frappe-Site-Name, and the body limit.
# Only the lines these tests need; `listen` is the test's port.
TEMPLATE = """\
upstream backend-server {
	server ${BACKEND} fail_timeout=0;
}
upstream socketio-server {
	server ${SOCKETIO} fail_timeout=0;
}
map $http_x_forwarded_proto $proxy_x_forwarded_proto {
	default $scheme;
	https https;
}
server {
	listen __PORT__;
	server_name ${FRAPPE_SITE_NAME_HEADER};
	set_real_ip_from ${UPSTREAM_REAL_IP_ADDRESS};
	real_ip_header ${UPSTREAM_REAL_IP_HEADER};
	real_ip_recursive ${UPSTREAM_REAL_IP_RECURSIVE};
	location /socket.io {
		proxy_http_version 1.1;
		proxy_set_header X-Frappe-Site-Name ${FRAPPE_SITE_NAME_HEADER};
		proxy_set_header Origin $proxy_x_forwarded_proto://${FRAPPE_SITE_NAME_HEADER};
		proxy_set_header Host $host;
		proxy_pass http://socketio-server;
	}
	location / {
		try_files /${FRAPPE_SITE_NAME_HEADER}/public/$uri @webserver;
	}
	location @webserver {
		proxy_set_header X-Frappe-Site-Name ${FRAPPE_SITE_NAME_HEADER};
		proxy_set_header Host $host;
		proxy_read_timeout ${PROXY_READ_TIMEOUT};
		proxy_pass  http://backend-server;
	}
	client_max_body_size ${CLIENT_MAX_BODY_SIZE};
	client_body_buffer_size 16K;
}
"""

needs_nginx = pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("envsubst"), reason="nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {**{k.lower(): v for k, v in self.headers.items()}, "path": self.path, "len": str(len(body))}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message":"pong"}')

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def recorder() -> tuple[http.server.ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def render(tmp_path: Path, env: dict[str, str], template: str) -> subprocess.CompletedProcess[str]:
    """frontend.sh with a stand-in `nginx` that only records it was started (the real one runs below)."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "nginx"
    fake.write_text('#!/bin/sh\necho "nginx $*"\n')
    fake.chmod(0o755)
    (tmp_path / "template").write_text(template)
    full = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "NGINX_TEMPLATE": str(tmp_path / "template"),
        "NGINX_CONF": str(tmp_path / "frappe.conf"),
        **env,
    }
    return subprocess.run(
        ["bash", "-c", hub_frontend.FRONTEND, "hub-frontend"],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )


ENV = {
    "BACKEND": "clientea-hub-backend:8000",
    "SOCKETIO": "clientea-hub-websocket:9000",
    "FRAPPE_SITE_NAME_HEADER": "erp.clientea.local",
    "REALTIME_SELF": "clientea-hub-frontend:8080",
    "CLIENT_MAX_BODY_SIZE": "80m",
}


def test_the_socketio_location_names_the_frontend_and_nothing_else_changes(tmp_path: Path) -> None:
    done = render(tmp_path, ENV, TEMPLATE.replace("__PORT__", "8080"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nginx -g daemon off;"
    conf = (tmp_path / "frappe.conf").read_text()
    socketio = conf[conf.index("location /socket.io") : conf.index("location / {")]
    assert "proxy_set_header Origin http://clientea-hub-frontend:8080;" in socketio
    assert "proxy_set_header Host clientea-hub-frontend:8080;" in socketio
    assert "proxy_set_header X-Frappe-Site-Name erp.clientea.local;" in socketio
    webserver = conf[conf.index("location @webserver") :]
    assert "proxy_set_header Host $host;" in webserver, "only the socket.io location changes"
    assert "server clientea-hub-backend:8000 fail_timeout=0;" in conf
    assert "client_max_body_size 80m;" in conf
    assert "set_real_ip_from 127.0.0.1;" in conf and "real_ip_recursive off;" in conf  # upstream's defaults
    assert "$proxy_x_forwarded_proto $scheme $uri" not in conf and "default $scheme;" in conf


def test_a_template_of_another_shape_stops_the_frontend_saying_so(tmp_path: Path) -> None:
    changed = TEMPLATE.replace("proxy_set_header Origin", "proxy_set_header X-Origin")
    done = render(tmp_path, ENV, changed)
    assert done.returncode == 1 and "nginx" not in done.stdout
    assert "has no socket.io location with proxy_set_header Origin" in done.stderr


@pytest.fixture
def running_nginx(tmp_path: Path) -> Iterator[tuple[int, list[dict[str, str]], list[dict[str, str]]]]:
    backend, backend_seen = recorder()
    socketio, socketio_seen = recorder()
    port = free_port()
    env = {
        **ENV,
        "BACKEND": f"127.0.0.1:{backend.server_address[1]}",
        "SOCKETIO": f"127.0.0.1:{socketio.server_address[1]}",
        "REALTIME_SELF": f"localhost:{port}",
        "CLIENT_MAX_BODY_SIZE": "1m",
    }
    done = render(tmp_path, env, TEMPLATE.replace("__PORT__", f"127.0.0.1:{port}"))
    assert done.returncode == 0, done.stderr
    temp = tmp_path / "nginx-tmp"  # the frontend's /var/lib/nginx: request bodies on disk
    temp.mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.getuid() == 0 else "")  # as the frontend: one user, no worker `nobody`
        + f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {temp}/body;\n"
        f"proxy_temp_path {temp}/proxy;\nfastcgi_temp_path {temp}/f;\nuwsgi_temp_path {temp}/u;\n"
        f"scgi_temp_path {temp}/s;\ninclude {tmp_path}/frappe.conf;\n}}\n"
    )
    (tmp_path / "sites").mkdir()
    nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(main)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, backend_seen, socketio_seen
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        backend.shutdown()
        socketio.shutdown()


def get(url: str, headers: dict[str, str], data: bytes | None = None) -> int:
    request = urllib.request.Request(url, headers=headers, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@needs_nginx
def test_realtime_origin_and_host_agree_and_the_auth_call_reaches_the_site(running_nginx: Any) -> None:
    """What Frappe's realtime/middlewares/authenticate.js checks (github.com/frappe/frappe, realtime/):
    the hostnames of Origin and Host are equal, the namespace is the site (X-Frappe-Site-Name), and
    get_url() = Origin + path is where get_user_info is fetched from. Before: Origin https://<site>, Host
    the public hostname (a site name other than the hostname was refused), and the callback went to the
    public URL, which the websocket on the internal network cannot reach."""
    port, backend_seen, socketio_seen = running_nginx
    browser = {"Host": "hub.clientea.com", "Origin": "https://evil.example", "X-Forwarded-Proto": "https"}
    assert get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling", browser) == 200
    (handshake,) = socketio_seen
    host, origin = handshake["host"], handshake["origin"]
    assert host.split(":")[0] == origin.split("://")[1].split(":")[0] == "localhost"
    assert handshake["x-frappe-site-name"] == "erp.clientea.local"
    # The websocket's callback: <Origin>/api/method/frappe.realtime.get_user_info, with the browser's sid.
    callback = f"{origin}/api/method/frappe.realtime.get_user_info"
    assert callback == f"http://localhost:{port}/api/method/frappe.realtime.get_user_info"
    assert get(callback, {"Cookie": "sid=abc"}) == 200
    (auth,) = backend_seen
    assert auth["path"] == "/api/method/frappe.realtime.get_user_info"
    assert auth["x-frappe-site-name"] == "erp.clientea.local" and auth["cookie"] == "sid=abc"


@needs_nginx
def test_bodies_up_to_the_limit_pass_through_disk_buffers_and_larger_ones_are_refused(
    running_nginx: Any, tmp_path: Path
) -> None:
    port, backend_seen, _ = running_nginx
    ok = get(f"http://127.0.0.1:{port}/api/method/upload_file", {"Host": "hub"}, data=b"x" * 900_000)
    assert ok == 200 and backend_seen[-1]["len"] == "900000"
    assert (tmp_path / "nginx-tmp" / "body").is_dir(), "bodies over 16K were buffered in nginx-tmp"
    too_big = get(f"http://127.0.0.1:{port}/api/method/upload_file", {"Host": "hub"}, data=b"x" * 1_200_000)
    assert too_big == 413


def test_the_websocket_reaches_the_frontend_it_is_told_to_call_back(plan: PlanFn) -> None:
    for p in (plan(["hub"]), plan(["hub"], mode="standalone", standalonePort=8081, acmeEmail=None)):
        containers = {c.name.removeprefix("hub-"): c for c in p.containers() if c.name.startswith("hub-")}
        env = env_of(containers["frontend"])
        assert env["REALTIME_SELF"] == f"{harness.plain(containers['frontend'].inputs['name'])}:8080"
        assert set(networks_of(containers["websocket"])) <= set(networks_of(containers["frontend"]))
        assert env["FRAPPE_SITE_NAME_HEADER"] == p.outputs["hub"]["siteName"]


def test_the_body_limit_comes_from_the_stack(plan: PlanFn) -> None:
    default = plan(["hub"])
    frontend = next(c for c in default.containers() if c.name == "hub-frontend")
    assert env_of(frontend)["CLIENT_MAX_BODY_SIZE"] == "50m"  # frappe_docker's default
    bigger = plan(["hub"], hub={"country": "MX", "maxUploadMb": 200})
    frontend = next(c for c in bigger.containers() if c.name == "hub-frontend")
    assert env_of(frontend)["CLIENT_MAX_BODY_SIZE"] == "200m"
