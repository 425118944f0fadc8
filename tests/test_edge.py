"""The edge: networks, the read-only socket proxy, Traefik with Let's Encrypt and an optional dashboard."""

from __future__ import annotations

from components.suite import SERVICE_COMPONENTS
from tests.conftest import PlanFn, env_of, labels_of, networks_of
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
    assert traefik.inputs["ports"] == [
        {"internal": 8000.0, "external": 80.0},
        {"internal": 8443.0, "external": 443.0},
    ]
    assert traefik.inputs["healthcheck"]["tests"] == ["CMD", "traefik", "healthcheck", "--ping"]
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
    assert labels[f"{router}.entrypoints"] == "websecure" and labels[f"{router}.tls.certresolver"] == "le"
    assert "clientea-dashboard-auth@docker" in labels[f"{router}.middlewares"]
    users = labels["traefik.http.middlewares.clientea-dashboard-auth.basicauth.users"]
    assert (
        users.startswith("admin:$2") and len(users) == len("admin:") + 60
    )  # a bcrypt hash, never the password
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
    assert published == {"clientea-edge-traefik": [(80.0, None), (443.0, None)]}
