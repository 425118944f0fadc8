"""The stack config model: every bad input is one line naming the key and the fix, before any resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components import config
from components.config import ConfigError, parse
from tests.conftest import make_stack

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5wH6nJ8o2b9ZbqfZ3sK7kQd4GmXr0yLh1N2p3Q4r5S6"


def stack(services: Any = ("hub",), **overrides: Any) -> tuple[dict[str, str], frozenset[str]]:
    """Stack config as the engine hands it to the program (text; objects as JSON), and its secret keys."""
    made = make_stack(list(services), **overrides)
    values = {k.removeprefix("versatilehub:"): v for k, v in made.values.items()}
    return values, frozenset(k.removeprefix("versatilehub:") for k in made.secret_keys)


def raw(services: Any = ("hub",), **overrides: Any) -> dict[str, str]:
    return stack(services, **overrides)[0]


def problems(
    services: Any = ("hub",), secret_keys: frozenset[str] = frozenset(), **overrides: Any
) -> list[str]:
    values, secrets = stack(services, **overrides)
    with pytest.raises(ConfigError) as info:
        parse(values, secrets | secret_keys)
    for line in info.value.problems:
        assert "\n" not in line and "Traceback" not in line
    return info.value.problems


def only(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    return lines[0]


def test_a_valid_stack_parses_with_documented_defaults() -> None:
    cfg = parse(raw(["hub", "chat"]))
    assert cfg.hostname("hub") == "hub.clientea.com"
    assert cfg.url("chat") == "https://chat.clientea.com"
    assert cfg.mode == "suite" and cfg.runs_traefik and cfg.routed
    assert cfg.host.docker == "unix:///var/run/docker.sock" and not cfg.host.is_ssh
    assert cfg.web_network.name == "web" and cfg.web_network.create
    assert cfg.storage.kind == "bind" and cfg.storage.data_root == "/srv/versatilehub"
    assert cfg.traefik.cert_resolver == "le" and not cfg.traefik.dashboard


def test_services_accept_a_comma_list_as_typed_on_the_command_line() -> None:
    values = raw(["hub", "chat"])
    values["services"] = "hub, chat"
    assert parse(values).services == ["hub", "chat"]


def test_missing_required_key_names_it_and_the_command() -> None:
    line = only(problems(domain=None))
    assert line.startswith("versatilehub:domain is required")
    assert "pulumi config set versatilehub:domain cliente.com" in line


@pytest.mark.parametrize(
    "domain",
    [
        "exa mple.com",
        "localhost",
        "-bad.com",
        "a..com",
        "cliente.com/x",
        "1.2.3.4",
        "ñandú.com",
        "x" * 64 + ".com",
    ],
)
def test_invalid_domain(domain: str) -> None:
    line = only(problems(domain=domain))
    assert line.startswith("versatilehub:domain: is not a DNS name")
    assert "fix: pulumi config set versatilehub:domain" in line


def test_invalid_hostname_override_names_the_service_key() -> None:
    line = only(problems(hostnames={"hub": "erp_cliente.com"}))
    assert line.startswith("versatilehub:hostnames.hub: is not a DNS name")
    assert "--path 'versatilehub:hostnames.hub'" in line


def test_hostnames_are_normalised_to_lower_case() -> None:
    assert parse(raw(hostnames={"hub": "ERP.ClienteB.com."})).hostname("hub") == "erp.clienteb.com"


def test_unknown_service() -> None:
    line = only(problems(["hub", "crm"]))
    assert line.startswith("versatilehub:services[1]: Input should be 'agent', 'chat', 'hub' or 'flow'")
    assert "--path 'versatilehub:services[1]' hub" in line


def test_empty_service_list() -> None:
    line = only(problems([]))
    assert line.startswith("versatilehub:services: List should have at least 1 item")
    assert "pulumi config set versatilehub:services hub,chat,flow,agent" in line


def test_duplicate_service() -> None:
    assert "lists hub more than once" in only(problems(["hub", "hub"]))


@pytest.mark.parametrize("tz", ["Mars/Olympus", "GMT+3", "", "../../etc/passwd"])
def test_invalid_timezone(tz: str) -> None:
    line = only(problems(timezone=tz))
    assert line.startswith("versatilehub:timezone")
    assert "America/Argentina/Buenos_Aires" in line


@pytest.mark.parametrize("email", ["ops@", "ops", "ops@cliente", "ops @cliente.com"])
def test_invalid_email(email: str) -> None:
    line = only(problems(acmeEmail=email))
    assert line.startswith("versatilehub:acmeEmail: is not a valid email address")


def test_acme_email_is_required_only_when_this_stack_runs_traefik() -> None:
    assert only(problems(acmeEmail=None)).startswith(
        "versatilehub:acmeEmail: the Let's Encrypt contact is required"
    )
    assert parse(raw(acmeEmail=None, mode="attach", webNetwork={"create": False})).acme_email is None


def test_two_services_on_one_hostname() -> None:
    line = only(problems(["hub", "chat"], hostnames={"chat": "hub.clientea.com"}))
    assert line.startswith("versatilehub:hostnames.chat: hub.clientea.com is already hub's hostname")


def test_hostname_for_a_service_that_is_not_enabled() -> None:
    line = only(problems(["hub"], hostnames={"flow": "n8n.clientea.com"}))
    assert line.startswith("versatilehub:hostnames.flow: flow is not in services")


@pytest.mark.parametrize(
    "docker",
    [
        "ssh://root@",
        "ssh://203.0.113.10",
        "tcp://203.0.113.10:2375",
        "ssh://deploy@host:99999",
        "unix://docker.sock",
        "ssh://deploy@host;rm -rf /",
    ],
)
def test_malformed_docker_host(docker: str) -> None:
    line = only(problems(host={"docker": docker, "sshHostKey": HOST_KEY}))
    assert line.startswith("versatilehub:host.docker:")


def test_ssh_host_without_a_pinned_key() -> None:
    line = only(problems(host={"docker": "ssh://deploy@203.0.113.10"}))
    assert line.startswith("versatilehub:host.sshHostKey: an ssh:// host needs its host key pinned")
    assert "ssh-keyscan" in line


def test_malformed_host_key() -> None:
    line = only(problems(host={"docker": "ssh://deploy@203.0.113.10", "sshHostKey": "AAAA"}))
    assert line.startswith("versatilehub:host.sshHostKey: is not a public host key line")


def test_ssh_host_parts() -> None:
    cfg = parse(raw(host={"docker": "ssh://deploy@[2001:db8::1]:2222", "sshHostKey": HOST_KEY + " comment"}))
    assert (cfg.host.ssh_user, cfg.host.ssh_address, cfg.host.ssh_port) == ("deploy", "2001:db8::1", 2222)
    assert cfg.host.ssh_host_key == HOST_KEY  # the comment is dropped


@pytest.mark.parametrize("memory", [0, -512])
def test_non_positive_memory(memory: int) -> None:
    line = only(problems(resources={"hub-backend": {"memoryMb": memory}}))
    assert line.startswith("versatilehub:resources.hub-backend.memoryMb: Input should be greater than 0")
    assert "--path 'versatilehub:resources.hub-backend.memoryMb' 1024" in line
    line = only(problems(host={"memoryMb": memory}))
    assert line.startswith("versatilehub:host.memoryMb: Input should be greater than 0")


def test_unknown_container_in_resources_suggests_the_right_one() -> None:
    assert "(did you mean 'hub-backend'?)" in only(problems(resources={"hub-bakend": {"memoryMb": 512}}))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "traefik",
            {"dashbaord": True},
            "versatilehub:traefik.dashbaord is not a known key (did you mean 'dashboard'?)",
        ),
        ("host", {"memroyMb": 1}, "versatilehub:host.memroyMb is not a known key (did you mean 'memoryMb'?)"),
        (
            "webNetwork",
            {"name": "web", "created": False},
            "versatilehub:webNetwork.created is not a known key",
        ),
        (
            "resources",
            {"hub-backend": {"memory": 5}},
            "versatilehub:resources.hub-backend.memory is not a known key",
        ),
    ],
)
def test_unknown_keys_in_structured_values(key: str, value: Any, expected: str) -> None:
    line = only(problems(**{key: value}))
    assert line.startswith(expected)
    assert "pulumi config rm --path" in line


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    line = only(problems(domian="clientea.com"))
    assert line.startswith("versatilehub:domian is not a known key (did you mean versatilehub:domain?)")
    assert "pulumi config rm versatilehub:domian" in line


def test_every_problem_is_reported_at_once() -> None:
    lines = problems(["hub", "crm"], domain="bad domain", timezone="Nowhere/City", acmeEmail="x@")
    assert [line.split(":", 2)[1].split(" ")[0] for line in lines] == [
        "domain",
        "timezone",
        "acmeEmail",
        "services[1]",
    ]


def test_private_key_in_plain_text_is_refused_without_echoing_it() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----abc"
    line = only(problems(sshPrivateKey=key))
    assert line.startswith("versatilehub:sshPrivateKey is stored in plain text")
    assert "pulumi config set --secret versatilehub:sshPrivateKey" in line and key not in line
    cfg = parse(raw(sshPrivateKey=key), frozenset({"sshPrivateKey"}))
    assert key not in repr(cfg)


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ({"erpnext": "latest"}, "moves under your feet"),
        ({"traefik": "v3"}, None),
        ({"erpnxt": "v16.1.0"}, "is not an image of this suite (did you mean 'erpnext'?)"),
        ({"n8n": "2.46.5 && reboot"}, "is not an image tag"),
        ({"mariadb": "11.8.6@sha256:" + "0" * 64}, None),
    ],
)
def test_version_overrides(versions: dict[str, str], expected: str | None) -> None:
    if expected is None:
        cfg = parse(raw(versions=versions))
        key, tag = next(iter(versions.items()))
        assert cfg.pin(key).endswith(f":{tag}")
    else:
        line = only(problems(versions=versions))
        key = next(iter(versions))
        assert line.startswith(f"versatilehub:versions.{key}") and expected in line, line


def test_standalone_runs_exactly_one_service_and_attach_adopts_the_web_network() -> None:
    assert only(problems(["hub", "chat"], mode="standalone")).startswith(
        "versatilehub:services: mode standalone deploys exactly one service"
    )
    assert only(problems(mode="attach")).startswith(
        "versatilehub:webNetwork.create: mode attach joins an edge"
    )


@pytest.mark.parametrize("root", ["/", "/etc", "relative/path", "/srv/../etc"])
def test_data_root_must_be_a_dedicated_absolute_directory(root: str) -> None:
    assert only(problems(storage={"dataRoot": root})).startswith("versatilehub:storage.dataRoot")


@pytest.mark.parametrize("client", ["Clientea", "cliente a", "-a", "a" * 25, "cliente_a", ""])
def test_client_slug(client: str) -> None:
    line = only(problems(client=client))
    assert line.startswith("versatilehub:client")


def test_company_with_a_line_break_is_refused() -> None:
    assert "control character" in only(problems(company="ACME\nInjected: yes"))


def test_budgets_come_from_the_catalog_and_the_overrides() -> None:
    cfg = parse(raw(["hub"], resources={"hub-backend": {"memoryMb": 2000, "cpus": 2}}))
    assert cfg.limits("hub-backend") == (2000, 2)
    assert cfg.limits("hub-frontend") == config.catalog.LIMITS["hub-frontend"]
    hub = sum(v.memory_mb for k, v in config.catalog.LIMITS.items() if k.startswith("hub-"))
    edge = sum(v.memory_mb for k, v in config.catalog.LIMITS.items() if k.startswith("edge-"))
    backend = config.catalog.LIMITS["hub-backend"].memory_mb
    assert cfg.memory_budget_mb() == hub + edge - backend + 2000


# -- a fix line corrects the value that failed, at its exact path (issue 18 item 1) ----------------------
@pytest.mark.parametrize(
    ("image", "pinned"),
    [("erpnext", "v16.32.3"), ("n8n", None), ("traefik", None)],
)
def test_a_moving_version_tag_gets_that_images_pin_at_its_own_path(
    config_problems: Callable[..., list[str]], image: str, pinned: str | None
) -> None:
    from components.core import versions

    tag = pinned or versions.IMAGES[image].tag
    [line] = config_problems(["hub", "flow"], versions={image: "latest"})
    assert line.startswith(f"versatilehub:versions.{image}: 'latest' moves under your feet"), line
    # Applying the fix sets that one entry (not the whole map, which would loop) to that image's pin.
    assert line.endswith(f"fix: pulumi config set --path 'versatilehub:versions.{image}' {tag}"), line


def test_two_bad_versions_get_one_line_each_with_their_own_fix(
    config_problems: Callable[..., list[str]],
) -> None:
    from components.core import versions

    lines = config_problems(["hub", "flow"], versions={"erpnext": "latest", "n8n": "main"})
    assert len(lines) == 2
    assert any(x.endswith(f"'versatilehub:versions.n8n' {versions.IMAGES['n8n'].tag}") for x in lines)
    assert any(x.endswith("'versatilehub:versions.erpnext' v16.32.3") for x in lines)


def test_a_service_listed_twice_gets_the_same_list_once(config_problems: Callable[..., list[str]]) -> None:
    [line] = config_problems(["hub", "chat", "hub"])
    assert line == (
        "versatilehub:services: lists hub more than once; "
        "fix: pulumi config set versatilehub:services hub,chat"
    )


def test_standalone_with_two_services_suggests_one_service_or_suite(
    config_problems: Callable[..., list[str]],
) -> None:
    [line] = config_problems(["hub", "flow"], mode="standalone")
    assert "pulumi config set versatilehub:services hub " in line
    assert "pulumi config set versatilehub:mode suite" in line
    assert "hub,chat,flow,agent" not in line


def test_a_typo_in_a_resources_key_names_the_entry_and_the_closest_container(
    config_problems: Callable[..., list[str]],
) -> None:
    [line] = config_problems(["hub"], resources={"hub-backendd": {"memoryMb": 512}})
    assert line.startswith("versatilehub:resources.hub-backendd is not a container of this suite")
    assert "did you mean 'hub-backend'?" in line
    assert "pulumi config rm --path 'versatilehub:resources.hub-backendd'" in line
    assert "versatilehub:resources.hub-backend.memoryMb" in line


def test_a_typo_in_a_hostnames_key_names_the_entry_and_the_closest_service(
    config_problems: Callable[..., list[str]],
) -> None:
    [line] = config_problems(["hub"], hostnames={"hubb": "erp.clientea.com"})
    assert line.startswith("versatilehub:hostnames.hubb is not a known key (did you mean 'hub'?)"), line
    assert "[key]" not in line
    assert "pulumi config set --path 'versatilehub:hostnames.hub'" in line
