"""The one Traefik label writer: every router TLS-only on websecure with the resolver and the headers."""

from __future__ import annotations

import pytest

from components.core import routing


def test_router_labels_publish_one_host_over_tls_with_security_headers() -> None:
    labels = routing.router_labels(
        "clientea-hub", hostname="erp.clientea.com", port=8080, network="web", cert_resolver="le"
    )
    r = "traefik.http.routers.clientea-hub"
    assert labels["traefik.enable"] == "true"
    assert labels["traefik.docker.network"] == "web"
    assert labels[f"{r}.rule"] == "Host(`erp.clientea.com`)"
    assert labels[f"{r}.entrypoints"] == "websecure,websecure6"
    assert labels[f"{r}.tls"] == "true"
    assert labels[f"{r}.tls.certresolver"] == "le"
    assert labels[f"{r}.service"] == "clientea-hub"
    assert labels[f"{r}.middlewares"] == "clientea-hub-headers@docker"
    assert labels["traefik.http.services.clientea-hub.loadbalancer.server.port"] == "8080"
    headers = "traefik.http.middlewares.clientea-hub-headers.headers"
    assert labels[f"{headers}.stsSeconds"] == "31536000"
    assert labels[f"{headers}.contentTypeNosniff"] == "true"
    # Nothing routes on the plain-HTTP entrypoint: web only redirects.
    assert not any(v == "web" for k, v in labels.items() if k.endswith(".entrypoints"))


def test_extra_middlewares_follow_the_headers() -> None:
    labels = routing.router_labels(
        "c-x",
        hostname="x.c.com",
        port=1,
        network="web",
        cert_resolver="le",
        extra_middlewares=("auth@docker",),
    )
    assert labels["traefik.http.routers.c-x.middlewares"] == "c-x-headers@docker,auth@docker"


def test_internal_service_router_has_no_port_and_keeps_tls() -> None:
    labels = routing.internal_service_labels(
        "c-dashboard",
        hostname="traefik.c.com",
        service="api@internal",
        network="web",
        cert_resolver="le",
        middlewares=("c-auth@docker",),
    )
    assert labels["traefik.http.routers.c-dashboard.service"] == "api@internal"
    assert labels["traefik.http.routers.c-dashboard.tls.certresolver"] == "le"
    assert (
        labels["traefik.http.routers.c-dashboard.middlewares"] == "c-dashboard-headers@docker,c-auth@docker"
    )
    assert not any("loadbalancer" in k for k in labels)


@pytest.mark.parametrize("name", ["Hub", "hub.x", "hub x", "", "-hub", "hub`)"])
def test_router_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="router name"):
        routing.router_labels(name, hostname="x.c.com", port=1, network="web", cert_resolver="le")


def _headers(plan_container: object) -> dict[str, str]:
    from tests.conftest import labels_of

    labels = labels_of(plan_container)  # type: ignore[arg-type]
    return {
        k.split(".headers.", 1)[1]: v
        for k, v in labels.items()
        if k.startswith("traefik.http.middlewares.") and ".headers." in k
    }


def test_hsts_is_plain_max_age_by_default_and_xss_filter_is_gone(plan) -> None:  # type: ignore[no-untyped-def]
    """includeSubDomains on the apex portal would force HTTPS on every other subdomain the client has, and
    preload signs the client up for browsers' hard-coded list: both are opt-ins now."""
    p = plan(["hub", "chat"])
    for name in ("clientea-hub-frontend", "clientea-edge-portal"):
        headers = _headers(p.container(name))
        assert headers["stsSeconds"] == "31536000"
        assert "stsIncludeSubdomains" not in headers and "stsPreload" not in headers, name
        assert "browserXssFilter" not in headers, name


def test_hsts_opt_ins_reach_every_router(plan) -> None:  # type: ignore[no-untyped-def]
    p = plan(["hub"], traefik={"hstsIncludeSubdomains": True, "hstsPreload": True})
    for name in ("clientea-hub-frontend", "clientea-edge-portal"):
        headers = _headers(p.container(name))
        assert headers["stsIncludeSubdomains"] == "true" and headers["stsPreload"] == "true", name


def test_preload_without_subdomains_is_one_line_naming_the_key(config_problems) -> None:  # type: ignore[no-untyped-def]
    problems = config_problems(["hub"], traefik={"hstsPreload": True})
    assert len(problems) == 1 and "hstsIncludeSubdomains" in problems[0], problems


def test_chat_leaves_frame_options_to_chatwoot_others_keep_sameorigin(plan) -> None:  # type: ignore[no-untyped-def]
    """Chatwoot removes X-Frame-Options for /widget (client websites embed it); a SAMEORIGIN set by the
    router on every response would block the widget everywhere."""
    p = plan(["hub", "chat"])
    chat = _headers(p.container("clientea-chat-rails"))
    assert "customFrameOptionsValue" not in chat and "frameDeny" not in chat
    hub = _headers(p.container("clientea-hub-frontend"))
    assert hub["customFrameOptionsValue"] == "SAMEORIGIN"


def test_each_router_frame_options_as_decided(plan) -> None:  # type: ignore[no-untyped-def]
    """Issue 16 item 4, per app: Chat leaves framing to Chatwoot (its /widget is embedded by client sites);
    the Hub and Flow (ERPNext and n8n frame only their own pages) and the Agent (OpenClaw's control UI is
    not for other sites to embed) keep SAMEORIGIN, no router sets DENY."""
    p = plan(["hub", "chat", "flow", "agent"])
    chosen = {
        role: _headers(p.container(f"clientea-{role}")).get("customFrameOptionsValue")
        for role in ("chat-rails", "hub-frontend", "flow-n8n", "agent-gateway")
    }
    assert chosen == {
        "chat-rails": None,
        "hub-frontend": "SAMEORIGIN",
        "flow-n8n": "SAMEORIGIN",
        "agent-gateway": "SAMEORIGIN",
    }
