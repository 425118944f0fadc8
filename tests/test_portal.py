"""The client portal: the page in the client's name, its routers (hostnames, catch-all), and nginx for real.

The real-nginx tests serve the generated page with the generated server block (Debian's nginx-light,
the same nginx the image ships, on a loopback port) and check what a browser and the verification probe
get back: the page on `/`, a 404 carrying the page for anything else, the CSP that allows exactly the
page's own inline style.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from components.core import container as container_module
from components.core import routing
from components.edge import portal
from tests.conftest import PlanFn, labels_of, networks_of
from tools import harness

ALL = ["hub", "chat", "flow", "agent"]
HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)> & Sons',
    'Tom & Jerry\'s "S.A." </title><b>',
    "{{7*7}} ${IFS} $host; rm -rf / `id`",
    "Ñandú Comercial S.R.L. — 日本",
]


def uploads(p: harness.Plan) -> dict[str, str]:
    c = p.container("edge-portal")
    return {u["file"]: u["content"] for u in harness.plain(c.inputs["uploads"])}


class Text(html.parser.HTMLParser):
    """What a browser would build from the page: text per element, tags, and every attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: dict[str, str] = {}
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.stack.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.text[self.stack[-1]] = self.text.get(self.stack[-1], "") + data


def parsed(page: str) -> Text:
    t = Text()
    t.feed(page)
    return t


# -- what the stack declares -------------------------------------------------------------------------


def test_the_portal_serves_the_base_domain_and_catches_every_unknown_host(plan: PlanFn) -> None:
    p = plan(ALL)
    c = p.container("clientea-edge-portal")
    i = harness.plain(c.inputs)
    assert i["image"] == "nginxinc/nginx-unprivileged:1.30.6-alpine-slim"
    assert i["user"] == "101:101" and i["capabilities"]["drops"] == ["ALL"]
    assert "ports" not in i, "only Traefik publishes ports"
    assert networks_of(c) == ["web"]
    labels = labels_of(c)
    named, catch = "traefik.http.routers.clientea-portal", "traefik.http.routers.clientea-catch-all"
    assert labels[f"{named}.rule"] == "Host(`clientea.com`)"
    assert labels[f"{named}.tls.certresolver"] == "le" and f"{named}.priority" not in labels
    assert labels[f"{catch}.rule"] == "HostRegexp(`.+`)"
    assert labels[f"{catch}.priority"] == "1", "every other router wins over the catch-all"
    for router in (named, catch):
        assert labels[f"{router}.entrypoints"] == "websecure,websecure6" and labels[f"{router}.tls"] == "true"
        assert labels[f"{router}.middlewares"].endswith("-headers@docker")
        service = labels[f"{router}.service"]
        assert labels[f"traefik.http.services.{service}.loadbalancer.server.port"] == "8080"
    # Docker will not copy uploads into a read-only root filesystem: the exception is explicit.
    assert i["readOnly"] is False and "uploads" in labels["io.versatilehub.writable-reason"]
    assert set(uploads(p)) == {"/etc/nginx/conf.d/default.conf", "/usr/share/nginx/html/index.html"}
    assert harness.plain(p.outputs)["portal"] == {
        "url": "https://clientea.com",
        "hostnames": ["clientea.com"],
    }


def test_the_page_lists_exactly_the_active_services_with_their_links(plan: PlanFn) -> None:
    p = plan(["hub", "flow"], hostnames={"hub": "erp.clientea.com"})
    page = parsed(uploads(p)["/usr/share/nginx/html/index.html"])
    assert page.text["title"] == page.text["h1"] == "Cliente A S.A."
    links = [v for tag, k, v in page.attrs if tag == "a" and k == "href"]
    assert links == ["https://erp.clientea.com", "https://flow.clientea.com"]
    assert page.text["b"].startswith("Hub") and "Chat" not in str(page.text)


@pytest.mark.parametrize("company", HOSTILE)
def test_hostile_company_names_stay_text(plan: PlanFn, company: str) -> None:
    p = plan(["flow"], company=company)
    files = uploads(p)
    page = parsed(files["/usr/share/nginx/html/index.html"])
    assert page.text["title"] == company and page.text["h1"] == company
    assert page.tags.count("script") == 0 and page.tags.count("img") == 0
    assert not any(k.startswith("on") for _, k, _ in page.attrs)
    assert company not in files["/etc/nginx/conf.d/default.conf"], "nothing from the stack reaches nginx.conf"


def test_www_and_other_hostnames_are_opt_in(plan: PlanFn) -> None:
    p = plan(["flow"], portal={"hostnames": ["clientea.com", "www.clientea.com"]})
    labels = labels_of(p.container("edge-portal"))
    assert (
        labels["traefik.http.routers.clientea-portal.rule"]
        == "Host(`clientea.com`) || Host(`www.clientea.com`)"
    )


def test_no_portal_without_this_stacks_own_traefik(plan: PlanFn) -> None:
    for overrides in ({"mode": "attach", "webNetwork": {"create": False}}, {"mode": "standalone"}):
        p = plan(["flow"], **overrides)
        assert "edge-portal" not in [c.name for c in p.containers()]
        assert "portal" not in p.outputs


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"portal": {"hostnames": ["flow.clientea.com"]}},
            "versatilehub:portal.hostnames[0]: flow.clientea.com is already flow's hostname",
        ),
        (
            {"portal": {"hostnames": ["traefik.clientea.com"]}, "traefik": {"dashboard": True}},
            "versatilehub:portal.hostnames[0]: traefik.clientea.com is already the Traefik dashboard's",
        ),
        (
            {
                "portal": {"hostnames": ["www.clientea.com"]},
                "mode": "attach",
                "webNetwork": {"create": False},
            },
            "versatilehub:portal.hostnames: the portal runs only with this stack's own Traefik",
        ),
        ({"portal": {"hostnames": ["not a host"]}}, "versatilehub:portal.hostnames[0]: is not a DNS name"),
    ],
)
def test_bad_portal_settings_are_one_line_each(
    config_problems: Callable[..., list[str]], overrides: dict[str, Any], expected: str
) -> None:
    (line,) = config_problems(["flow"], **overrides)
    assert line.startswith(expected), line


def test_routing_helper_options_used_by_the_portal() -> None:
    labels = routing.router_labels(
        "c-x", hostname=["a.c.com", "b.c.com"], port=80, network="web", cert_resolver="le", priority=5
    )
    assert labels["traefik.http.routers.c-x.rule"] == "Host(`a.c.com`) || Host(`b.c.com`)"
    assert labels["traefik.http.routers.c-x.priority"] == "5"
    with pytest.raises(ValueError, match="hostname\\(s\\) or a rule"):
        routing.router_labels(
            "c-y", hostname="a.c.com", rule=routing.CATCH_ALL, port=1, network="w", cert_resolver="le"
        )
    with pytest.raises(ValueError, match="hostname\\(s\\) or a rule"):
        routing.router_labels("c-z", port=1, network="w", cert_resolver="le")


def test_uploads_need_a_writable_root_filesystem_reason() -> None:
    with pytest.raises(ValueError, match="writable_reason"):
        container_module.container(
            None,  # type: ignore[arg-type]  # refused before the config is read
            None,  # type: ignore[arg-type]
            parent=None,  # type: ignore[arg-type]
            service="edge",
            role="portal",
            image="nginx",
            networks=[],
            healthcheck=None,
            no_healthcheck_reason="test",
            user="101",
            uploads=[portal.docker.ContainerUploadArgs(file="/x", content="y")],
        )


# -- nginx, for real ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """nginx with the generated server block and page; yields (base URL, page)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tmp_path_factory.mktemp("portal")
    (d / "html").mkdir()
    page = portal.render_page(
        HOSTILE[0], [("hub", "https://hub.clientea.com"), ("chat", "https://chat.clientea.com")]
    )
    (d / "html" / "index.html").write_text(page)
    port = _free_port()
    (d / "site.conf").write_text(portal.site_conf(port=port, root=str(d / "html")))
    # The image's nginx.conf in miniature: mime types, temp paths, the server block included.
    (d / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr warn;\n"
        # As root, workers would drop to `nobody`, who cannot read pytest's private temp directory.
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "events {}\nhttp {\n  types { text/html html; }\n  default_type application/octet-stream;\n"
        f"  access_log off;\n  client_body_temp_path {d}/client;\n  proxy_temp_path {d}/proxy;\n"
        f"  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
        f"  include {d}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen([nginx, "-p", str(d), "-c", str(d / "nginx.conf")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", page
    proc.terminate()
    proc.wait(timeout=10)


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_nginx_serves_the_page_on_slash_only(served: tuple[str, str]) -> None:
    base, page = served
    status, headers, body = get(base + "/")
    assert status == 200 and body == page
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Server"] == "nginx", "no version in the Server header"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Paths a service probe uses: if a service's router is gone, the request falls through to here and
    # must not look healthy.
    for path in ("/api/method/ping", "/api", "/healthz", "/healthz/readiness", "/startupz", "/index.html"):
        status, _, body = get(base + path)
        assert status == 404 and body == page, path


def test_the_csp_allows_exactly_the_pages_own_style(served: tuple[str, str]) -> None:
    base, page = served
    _, headers, _ = get(base + "/")
    csp = headers["Content-Security-Policy"]
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert style
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    _, headers_404, _ = get(base + "/nope")
    assert headers_404["Content-Security-Policy"] == csp, "the 404 page carries the same headers"
