"""The edge: networks, the read-only socket proxy, Traefik with Let's Encrypt and an optional dashboard."""

from __future__ import annotations

from components.suite import SERVICE_COMPONENTS
from tests.conftest import PlanFn, env_of, labels_of, networks_of, secret_file_of
from tools import harness

NETWORK = "docker:index/network:Network"


def flags(resource: harness.PlannedResource) -> list[str]:
    return list(harness.plain(resource.inputs["command"]))


def test_networks_web_shared_and_the_internal_edge_network(plan: PlanFn) -> None:
    p = plan(["flow"])
    web = p.get(NETWORK, "net-web")
    assert web.inputs["name"] == "web" and not web.inputs.get("internal")
    assert web.options["retainOnDelete"], "other client stacks on the server use `web`"
    assert p.get(NETWORK, "net-shared").inputs["name"] == "clientea-shared"
    edge = p.get(NETWORK, "edge-internal")
    assert edge.inputs["name"] == "clientea-edge" and edge.inputs["internal"] is True


def test_socket_proxy_is_read_only_and_only_on_the_edge_network(plan: PlanFn) -> None:
    proxy = plan(["flow"]).container("clientea-edge-socket-proxy")
    env = env_of(proxy)
    assert env["CONTAINERS"] == "1" and env["POST"] == "0"
    assert not {"EXEC", "SECRETS", "AUTH", "IMAGES", "NETWORKS"} & {k for k, v in env.items() if v == "1"}
    [mount] = proxy.inputs["mounts"]
    assert mount == {
        "type": "bind",
        "source": "/var/run/docker.sock",
        "target": "/var/run/docker.sock",
        "readOnly": True,
    }
    assert networks_of(proxy) == ["clientea-edge"]
    assert "ports" not in proxy.inputs, "2375 is never published"


def test_traefik_reaches_docker_only_through_the_proxy(plan: PlanFn) -> None:
    p = plan(["flow"])
    traefik = p.container("clientea-edge-traefik")
    args = flags(traefik)
    assert "--providers.docker.endpoint=tcp://socket-proxy:2375" in args
    assert "--providers.docker.exposedByDefault=false" in args
    assert "--providers.docker.network=web" in args
    assert not any("docker.sock" in m["source"] for m in traefik.inputs["mounts"])
    assert sorted(networks_of(traefik)) == ["clientea-edge", "web"]


def test_traefik_entrypoints_redirect_acme_logs_and_health(plan: PlanFn) -> None:
    traefik = plan(["flow"]).container("clientea-edge-traefik")
    args = flags(traefik)
    for flag in [
        "--entrypoints.web.address=:8000",
        "--entrypoints.web.http.redirections.entrypoint.to=:443",
        "--entrypoints.web.http.redirections.entrypoint.scheme=https",
        "--entrypoints.websecure.address=:8443",
        "--entrypoints.websecure.http.tls.certresolver=le",
        "--certificatesresolvers.le.acme.email=ops@clientea.com",
        "--certificatesresolvers.le.acme.storage=/letsencrypt/acme.json",
        "--certificatesresolvers.le.acme.httpchallenge.entrypoint=web",
        "--accesslog.format=json",
        "--ping=true",
    ]:
        assert flag in args, flag
    assert not any("caserver" in a or "api" in a.split("=")[0] for a in args), "production CA, no dashboard"
    assert traefik.inputs["healthcheck"]["tests"] == [
        "CMD", "traefik", "healthcheck", "--ping=true", "--ping.entrypoint=ping",
        "--entrypoints.ping.address=127.0.0.1:8082",
    ]  # fmt: skip
    assert traefik.inputs["user"] == "65532:65532", "Traefik runs unprivileged behind Docker's port mapping"
    [acme] = traefik.inputs["mounts"]
    assert (
        acme["target"] == "/letsencrypt" and acme["source"] == "/srv/versatilehub/clientea/edge/letsencrypt"
    )


def test_staging_ca_and_tls_challenge_are_selectable(plan: PlanFn) -> None:
    args = flags(plan(["flow"], traefik={"acmeStaging": True, "challenge": "tls"}).container("edge-traefik"))
    assert (
        "--certificatesresolvers.le.acme.caserver=https://acme-staging-v02.api.letsencrypt.org/directory"
        in args
    )
    assert "--certificatesresolvers.le.acme.tlschallenge=true" in args
    assert not any("httpchallenge" in a for a in args)


def test_dashboard_is_behind_tls_and_basic_auth_with_a_generated_password(plan: PlanFn) -> None:
    p = plan(["flow"], traefik={"dashboard": True})
    traefik = p.container("clientea-edge-traefik")
    args = flags(traefik)
    assert "--api.dashboard=true" in args and not any("insecure" in a for a in args)
    labels = labels_of(traefik)
    router = "traefik.http.routers.clientea-dashboard"
    assert labels[f"{router}.rule"] == "Host(`traefik.clientea.com`)"
    assert labels[f"{router}.service"] == "api@internal"
    assert (
        labels[f"{router}.entrypoints"] == "websecure,websecure6"
        and labels[f"{router}.tls.certresolver"] == "le"
    )
    assert "clientea-dashboard-auth@docker" in labels[f"{router}.middlewares"]
    # The hash in a file Traefik reads, never in a label (labels are readable through the socket proxy).
    assert "traefik.http.middlewares.clientea-dashboard-auth.basicauth.users" not in labels
    path = labels["traefik.http.middlewares.clientea-dashboard-auth.basicauth.usersfile"]
    users = secret_file_of(p, traefik, path)
    assert users.startswith("admin:$2") and len(users) == len("admin:") + 60 + 1  # bcrypt, one line
    assert not any(users.strip() in value for value in labels.values())
    password = p.get("random:index/randomPassword:RandomPassword", "edge-dashboard-password")
    assert password.inputs["length"] >= 32
    out = p.outputs["traefikDashboard"]
    assert out["url"] == "https://traefik.clientea.com/dashboard/"
    assert harness.is_secret(out["password"]) and len(harness.plain(out["password"])) == 32


def test_only_traefik_publishes_ports_and_only_80_and_443(plan: PlanFn) -> None:
    p = plan(sorted(SERVICE_COMPONENTS))  # every service this project ships
    published = {
        c.inputs["name"]: [(pt["external"], pt.get("ip")) for pt in c.inputs.get("ports", [])]
        for c in p.containers()
        if c.inputs.get("ports")
    }
    assert published == {
        "clientea-edge-traefik": [(80.0, "0.0.0.0"), (80.0, "::"), (443.0, "0.0.0.0"), (443.0, "::")]
    }


def test_traefik_publishes_80_and_443_on_ipv4_and_ipv6_unless_the_stack_turns_ipv6_off(plan: PlanFn) -> None:
    """The provider defaults a port's `ip` to 0.0.0.0, which Docker binds on IPv4 only: AAAA records would
    lead IPv6 clients (and Let's Encrypt) to a refused connection. Each family needs its own binding."""
    both = plan(["flow"]).container("clientea-edge-traefik").inputs["ports"]
    # One container port per family (one binding each, so no engine's binding order can matter, #13).
    assert both == [
        {"internal": 8000.0, "external": 80.0, "ip": "0.0.0.0"},
        {"internal": 8001.0, "external": 80.0, "ip": "::"},
        {"internal": 8443.0, "external": 443.0, "ip": "0.0.0.0"},
        {"internal": 8444.0, "external": 443.0, "ip": "::"},
    ]
    v4 = plan(["flow"], traefik={"ipv6": False}).container("clientea-edge-traefik")
    assert v4.inputs["ports"] == [
        {"internal": 8000.0, "external": 80.0, "ip": "0.0.0.0"},
        {"internal": 8443.0, "external": 443.0, "ip": "0.0.0.0"},
    ]
    assert not any("acme" in label for label in labels_of(v4))


def test_each_family_has_its_entrypoints_and_ipv6_gets_the_acme_http_challenge(plan: PlanFn) -> None:
    """Traefik's entrypoints match the container ports: web/websecure (IPv4), web6/websecure6 (IPv6),
    the same redirection, timeouts and resolver on both; every router listens on both HTTPS ones. Traefik
    answers HTTP-01 only on `httpchallenge.entrypoint` (traefik v3.6.24 pkg/provider/traefik/internal.go
    acme()), so a router hands /.well-known/acme-challenge/ on web6 to acme-http@internal, above web6's
    redirection (priority math.MaxInt - 1, pkg/config/static/entrypoints.go
    RedirectEntryPoint.SetDefaults)."""
    traefik = plan(["flow"]).container("clientea-edge-traefik")
    args = flags(traefik)
    for family, (web, websecure) in {"": (8000, 8443), "6": (8001, 8444)}.items():
        assert f"--entrypoints.web{family}.address=:{web}" in args
        assert f"--entrypoints.web{family}.http.redirections.entrypoint.to=:443" in args
        assert f"--entrypoints.websecure{family}.address=:{websecure}" in args
        assert f"--entrypoints.websecure{family}.http.tls.certresolver=le" in args
        assert f"--entrypoints.websecure{family}.transport.respondingTimeouts.readTimeout=600s" in args
    labels = labels_of(traefik)
    acme = "traefik.http.routers.clientea-acme-v6"
    assert labels[f"{acme}.entrypoints"] == "web6" and labels[f"{acme}.service"] == "acme-http@internal"
    assert labels[f"{acme}.rule"] == "PathPrefix(`/.well-known/acme-challenge/`)"
    assert labels[f"{acme}.priority"] == str(2**63 - 1) and labels["traefik.enable"] == "true"
    tls = plan(["flow"], traefik={"challenge": "tls"}).container("clientea-edge-traefik")
    assert not any("acme" in label for label in labels_of(tls))  # TLS-ALPN: on every TLS entrypoint


def test_ping_listens_on_loopback_only_and_the_healthcheck_asks_there(plan: PlanFn) -> None:
    """Without ping.entrypoint, /ping is served on the `traefik` entrypoint (:8080, every interface), so
    any container on the shared `web` network could reach Traefik's internal entrypoint."""
    traefik = plan(["flow"]).container("clientea-edge-traefik")
    args = flags(traefik)
    assert "--ping.entrypoint=ping" in args and "--entrypoints.ping.address=127.0.0.1:8082" in args
    assert not any(a.startswith("--entrypoints.traefik.") for a in args)
    health = traefik.inputs["healthcheck"]["tests"]
    assert "--ping.entrypoint=ping" in health and "--entrypoints.ping.address=127.0.0.1:8082" in health


def test_uploads_get_ten_minutes_to_arrive(plan: PlanFn) -> None:
    """Traefik v3's default readTimeout (60 s for the whole request) cuts a 50 MB upload on a slow link."""
    args = flags(plan(["flow"]).container("clientea-edge-traefik"))
    assert "--entrypoints.websecure.transport.respondingTimeouts.readTimeout=600s" in args
