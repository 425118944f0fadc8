"""Flow (n8n): containers, environment, secrets, routing, networks, data, upgrades and its config errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest

from components import config
from components.core import catalog, versions
from components.core.deployment import DatabaseDump, FileSet
from components.suite import deploy
from tests.conftest import PlanFn, PreUpdateCalls, env_of, labels_of, make_stack, networks_of, secret_file_of
from tools import harness

TZ = "America/Argentina/Buenos_Aires"
N8N, RUNNER, POSTGRES = "clientea-flow-n8n", "clientea-flow-runner", "clientea-flow-postgres"
ProblemsFn = Callable[..., list[str]]


@pytest.fixture(scope="module")
def routed() -> harness.Plan:
    return harness.run(make_stack(["flow"]))


def flow_containers(p: harness.Plan) -> dict[str, harness.PlannedResource]:
    return {c.inputs["name"]: c for c in p.containers() if labels_of(c)["io.versatilehub.service"] == "flow"}


def depends_on(p: harness.Plan, resource: harness.PlannedResource, name: str) -> bool:
    return p.named(name).urn in resource.dependencies


# -- containers ---------------------------------------------------------------------------------------


def test_three_hardened_containers_at_n8ns_exact_version(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    assert sorted(flow) == [N8N, POSTGRES, RUNNER]
    assert flow[N8N].inputs["image"] == "n8nio/n8n:2.48.5"
    assert flow[RUNNER].inputs["image"] == "n8nio/runners:2.48.5", "the runner must be n8n's exact version"
    assert flow[POSTGRES].inputs["image"] == "postgres:16.15-alpine"
    users = {name: c.inputs["user"] for name, c in flow.items()}
    assert users == {N8N: "1000:1000", RUNNER: "1000:1000", POSTGRES: "70:70"}
    for name, c in flow.items():
        assert c.inputs["readOnly"] is True, name
        assert "/tmp" in c.inputs["tmpfs"], name
        assert "docker.sock" not in str(harness.plain(c.inputs)), f"{name}: never the Docker socket"
    assert flow[POSTGRES].inputs["tmpfs"]["/var/run/postgresql"].startswith("rw,")
    memory = sum(catalog.LIMITS[f"flow-{role}"].memory_mb for role in ("n8n", "runner", "postgres"))
    assert memory <= 1536 and sum(c.inputs["memory"] for c in flow.values()) == memory


def test_healthchecks_and_start_order(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    checks = {name: c.inputs["healthcheck"]["tests"] for name, c in flow.items()}
    assert checks[N8N] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5678/healthz/readiness"]
    assert checks[RUNNER] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5680/healthz"]
    assert checks[POSTGRES] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "n8n", "-d", "n8n"]
    assert all(c.inputs["wait"] is True for c in flow.values()), "`pulumi up` waits until each is healthy"
    assert depends_on(routed, flow[N8N], "flow-postgres")
    assert depends_on(routed, flow[RUNNER], "flow-n8n")
    for c in (flow[N8N], flow[POSTGRES]):
        assert depends_on(routed, c, "flow-data-dirs"), "directories exist, with their owners, first"


# -- environment ----------------------------------------------------------------------------------------


def with_files(p: harness.Plan, c: harness.PlannedResource) -> dict[str, str]:
    """A container's env as n8n reads it: each `<VAR>_FILE` resolved to <VAR> from its secret file."""
    env = env_of(c)
    for key in [k for k in env if k.endswith("_FILE")]:
        assert key.removesuffix("_FILE") not in env, "set, even empty, <VAR> would win over its file"
        env[key.removesuffix("_FILE")] = secret_file_of(p, c, env[key])
    return env


def test_n8n_environment_behind_traefik(routed: harness.Plan) -> None:
    env = with_files(routed, flow_containers(routed)[N8N])
    expected = {
        "N8N_HOST": "flow.clientea.com",
        "N8N_PROTOCOL": "https",
        "N8N_EDITOR_BASE_URL": "https://flow.clientea.com",
        "N8N_WEBHOOK_URL": "https://flow.clientea.com/",
        "N8N_PROXY_HOPS": "1",
        "N8N_SECURE_COOKIE": "true",
        "GENERIC_TIMEZONE": TZ,
        "TZ": TZ,
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": "postgres",
        "DB_POSTGRESDB_DATABASE": "n8n",
        "DB_POSTGRESDB_USER": "n8n",
        "N8N_RUNNERS_MODE": "external",
        "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "n8n-broker",
        "N8N_INSTANCE_OWNER_MANAGED_BY_ENV": "true",
        "N8N_INSTANCE_OWNER_EMAIL": "admin@clientea.com",
        "N8N_INSTANCE_OWNER_FIRST_NAME": "Cliente A S.A.",
        "N8N_INSTANCE_OWNER_LAST_NAME": "Admin",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert "WEBHOOK_URL" not in env, "deprecated since 2.35 in favour of N8N_WEBHOOK_URL"
    assert re.fullmatch(r"[0-9a-f]{64}", env["N8N_ENCRYPTION_KEY"])


def test_n8n_makes_no_call_home_a_client_did_not_ask_for(routed: harness.Plan) -> None:
    """Each setting defaults to on and to an n8n.io endpoint in n8n 2.41.1 (@n8n/config 2.39.0 configs/
    templates, version-notifications, dynamic-banners, diagnostics; the mcp-registry default module in
    @n8n/backend-common 1.41.1); `python -m tools.lab test flow` checks the real n8n resolves no vendor host.
    """
    env = env_of(flow_containers(routed)[N8N])
    off = {
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_DYNAMIC_BANNERS_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "false",  # also gates the vetted community-node list fetch
        "N8N_DISABLED_MODULES": "mcp-registry",
    }
    assert {k: env.get(k) for k in off} == off


def test_timezone_follows_the_stack(plan: PlanFn) -> None:
    flow = flow_containers(plan(["flow"], timezone="Europe/Madrid"))
    for name in (N8N, RUNNER):
        assert env_of(flow[name])["GENERIC_TIMEZONE"] == env_of(flow[name])["TZ"] == "Europe/Madrid"


def test_owner_account_is_created_from_the_stack_with_a_bcrypt_hash(plan: PlanFn) -> None:
    owner = {"ownerEmail": "Automatizacion@ClienteA.com", "ownerFirstName": "Ana", "ownerLastName": "Pérez"}
    p = plan(["flow"], flow=owner)
    env = with_files(p, flow_containers(p)[N8N])
    assert env["N8N_INSTANCE_OWNER_EMAIL"] == "automatizacion@clientea.com", "as n8n stores and compares it"
    assert (env["N8N_INSTANCE_OWNER_FIRST_NAME"], env["N8N_INSTANCE_OWNER_LAST_NAME"]) == ("Ana", "Pérez")
    hashed = env["N8N_INSTANCE_OWNER_PASSWORD_HASH"]
    assert re.fullmatch(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}", hashed), "the form n8n accepts"
    password = harness.plain(p.outputs["flow"]["ownerPassword"])
    assert bcrypt.checkpw(password.encode(), hashed.encode()), "the exported password opens the owner account"
    assert p.outputs["flow"]["ownerEmail"] == "automatizacion@clientea.com"


def test_owner_names_default_from_the_company_within_n8ns_32_characters(plan: PlanFn) -> None:
    company = "Cooperativa de Trabajo Los Andes Limitada"
    env = env_of(flow_containers(plan(["flow"], company=company))[N8N])
    assert env["N8N_INSTANCE_OWNER_FIRST_NAME"] == "Cooperativa de Trabajo Los"
    assert env["N8N_INSTANCE_OWNER_LAST_NAME"] == "Admin"


def test_runner_and_n8n_share_one_token_and_the_database_one_password(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    n8n, runner = with_files(routed, flow[N8N]), with_files(routed, flow[RUNNER])
    postgres = env_of(flow[POSTGRES])
    assert runner["N8N_RUNNERS_AUTH_TOKEN"] == n8n["N8N_RUNNERS_AUTH_TOKEN"]
    # One file, mounted in both (uid 1000 in both images): the launcher reads N8N_RUNNERS_AUTH_TOKEN_FILE
    # (n8n-io/task-runner-launcher internal/config/lookuper.go, since 1.4.0; it trims trailing newlines).
    token_file = env_of(flow[N8N])["N8N_RUNNERS_AUTH_TOKEN_FILE"]
    assert env_of(flow[RUNNER])["N8N_RUNNERS_AUTH_TOKEN_FILE"] == token_file
    assert re.fullmatch(r"[A-Za-z0-9]{48}", runner["N8N_RUNNERS_AUTH_TOKEN"])
    assert runner["N8N_RUNNERS_TASK_BROKER_URI"] == "http://n8n-broker:5679"
    db_password = secret_file_of(routed, flow[POSTGRES], postgres["POSTGRES_PASSWORD_FILE"])
    assert "POSTGRES_PASSWORD" not in postgres, "a file, read by the image's file_env (issue 14)"
    assert db_password == n8n["DB_POSTGRESDB_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", db_password), "alphanumeric: no quoting anywhere"
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("n8n", "n8n")
    assert postgres["PGDATA"] == "/var/lib/postgresql/data"
    assert "N8N_RUNNERS_AUTH_TOKEN" not in postgres and "DB_POSTGRESDB_PASSWORD" not in runner
    assert "DB_POSTGRESDB_PASSWORD_FILE" not in env_of(flow[RUNNER]), "the runner reads only its token"


# -- secrets ------------------------------------------------------------------------------------------


def test_secrets_stay_secret(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    for name, c in flow.items():  # secrets are files (issue 14): a preview shows every env change
        assert not harness.contains_secret(c.inputs["envs"]), name
    out = routed.outputs["flow"]
    assert harness.is_secret(out["ownerPassword"]) and harness.is_secret(out["encryptionKey"])
    assert not harness.contains_secret({k: out[k] for k in ("url", "ownerEmail", "version")})
    assert harness.plain(out["encryptionKey"]) == with_files(routed, flow[N8N])["N8N_ENCRYPTION_KEY"]
    text = str([c.inputs.get(k) for c in flow.values() for k in ("labels", "command", "healthcheck", "envs")])
    assert harness.plain(out["encryptionKey"]) not in text


def test_encryption_key_is_generated_once_and_protected(routed: harness.Plan) -> None:
    key = routed.get("random:index/randomBytes:RandomBytes", "flow-encryption-key")
    assert key.options["protect"], "a replaced key makes every stored credential unreadable"
    assert "keepers" not in key.inputs and key.inputs["length"] == 32
    for name in ("flow-db-password", "flow-runner-token", "flow-owner-password"):
        password = routed.get("random:index/randomPassword:RandomPassword", name)
        assert password.inputs["special"] is False and password.inputs["length"] >= 32, name


# -- routing and networks ---------------------------------------------------------------------------------


def test_only_n8n_faces_traefik(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    labels = labels_of(flow[N8N])
    assert labels["traefik.http.routers.clientea-flow.rule"] == "Host(`flow.clientea.com`)"
    assert labels["traefik.http.services.clientea-flow.loadbalancer.server.port"] == "5678"
    assert labels["traefik.http.routers.clientea-flow.tls.certresolver"] == "le"
    assert labels["traefik.docker.network"] == "web"
    for name in (RUNNER, POSTGRES):
        assert not any(k.startswith("traefik.") for k in labels_of(flow[name])), name
    assert not any(c.inputs.get("ports") for c in flow.values()), "nothing published: Traefik routes"


def test_flow_internal_network_holds_the_runner_and_the_database(routed: harness.Plan) -> None:
    network = routed.get("docker:index/network:Network", "flow-internal")
    assert network.inputs["name"] == "clientea-flow" and network.inputs["internal"] is True
    flow = flow_containers(routed)
    assert networks_of(flow[N8N]) == ["web", "clientea-flow"]
    assert networks_of(flow[RUNNER]) == ["clientea-flow"], "Code-node code has no route out"
    assert networks_of(flow[POSTGRES]) == ["clientea-flow"]
    aliases = {
        c.inputs["name"]: n.get("aliases")
        for c in flow.values()
        for n in c.plain_inputs["networksAdvanced"]
        if n["name"] == "clientea-flow"
    }
    assert aliases == {N8N: ["n8n-broker"], RUNNER: None, POSTGRES: ["postgres"]}


def test_hostname_override_moves_every_public_url(plan: PlanFn) -> None:
    p = plan(["flow"], hostnames={"flow": "n8n.clientea.com"})
    n8n = flow_containers(p)[N8N]
    env = env_of(n8n)
    assert env["N8N_HOST"] == "n8n.clientea.com"
    assert env["N8N_EDITOR_BASE_URL"] == "https://n8n.clientea.com" == p.outputs["flow"]["url"]
    assert env["N8N_WEBHOOK_URL"] == "https://n8n.clientea.com/"
    assert labels_of(n8n)["traefik.http.routers.clientea-flow.rule"] == "Host(`n8n.clientea.com`)"


def test_attach_mode_routes_through_the_adopted_network(plan: PlanFn) -> None:
    p = plan(["flow"], mode="attach", webNetwork={"name": "proxy", "create": False}, acmeEmail=None)
    n8n = flow_containers(p)[N8N]
    assert networks_of(n8n) == ["proxy", "clientea-flow"]
    assert labels_of(n8n)["traefik.docker.network"] == "proxy"
    assert env_of(n8n)["N8N_PROTOCOL"] == "https"


def test_standalone_serves_plain_http_on_loopback(plan: PlanFn) -> None:
    p = plan(["flow"], mode="standalone", acmeEmail=None, standalonePort=8088)
    n8n = flow_containers(p)[N8N]
    env = env_of(n8n)
    assert env["N8N_PROTOCOL"] == "http" and env["N8N_HOST"] == "127.0.0.1"
    assert env["N8N_EDITOR_BASE_URL"] == "http://127.0.0.1:8088" == p.outputs["flow"]["url"]
    assert env["N8N_WEBHOOK_URL"] == "http://127.0.0.1:8088/"
    assert "N8N_PROXY_HOPS" not in env, "no proxy in front: forwarded headers are not to be trusted"
    assert n8n.inputs["ports"] == [{"internal": 5678, "external": 8088, "ip": "127.0.0.1"}]
    # A port cannot be published from an internal network alone, and workflows call outside APIs.
    assert networks_of(n8n) == ["clientea-shared", "clientea-flow"]
    assert not any(k.startswith("traefik.") for k in labels_of(n8n))


# -- data, backups, upgrades ---------------------------------------------------------------------------


def test_data_under_the_data_root_with_the_right_owners(routed: harness.Plan) -> None:
    flow = flow_containers(routed)
    assert harness.plain(flow[N8N].inputs["mounts"]) == [
        {
            "type": "bind",
            "source": "/srv/versatilehub/clientea/flow/workflows",
            "target": "/home/node/.n8n",
            "readOnly": False,
        },
        {
            "type": "bind",
            "source": "/srv/versatilehub/clientea/flow/files",
            "target": "/home/node/.n8n-files",
            "readOnly": False,
        },
        *(
            {
                "type": "bind",
                "source": f"/srv/versatilehub/clientea/secrets/flow/{name}",
                "target": f"/run/secrets/{name}",
                "readOnly": True,
            }
            for name in ("encryption-key", "db-password", "runner-token", "owner-password-hash")
        ),
    ]
    assert (
        harness.plain(flow[POSTGRES].inputs["mounts"])[0]["source"]
        == "/srv/versatilehub/clientea/flow/database"
    )
    assert [m["target"] for m in harness.plain(flow[RUNNER].inputs["mounts"])] == [
        "/run/secrets/runner-token"
    ]
    script = harness.plain(routed.named("flow-data-dirs").inputs["create"])
    assert "install -d -o 1000 -g 1000 -m 0700 /data/workflows" in script
    assert "install -d -o 70 -g 70 -m 0700 /data/database" in script
    assert "install -d -o 1000 -g 1000 -m 0700 /data/files" in script


def test_n8n_has_a_writable_cache_owned_by_node(routed: harness.Plan) -> None:
    """n8n-core's InstanceSettings.staticCacheDir is `<userHome>/.cache/n8n/public` (packages/core/src/
    instance-settings/instance-settings.ts): the editor's assets are copied there at start, so on a read-only
    root n8n needs ~/.cache writable by `node` (uid 1000), or it stops at boot."""
    tmpfs = flow_containers(routed)[N8N].inputs["tmpfs"]
    options = tmpfs["/home/node/.cache"].split(",")
    assert options[0] == "rw" and {"uid=1000", "gid=1000"} <= set(options)
    assert any(o.startswith("size=") for o in options), "bounded: a tmpfs counts against n8n's memory"


def test_file_access_and_community_packages_are_decided(routed: harness.Plan) -> None:
    """@n8n/config: SecurityConfig.restrictFileAccessTo (N8N_RESTRICT_FILE_ACCESS_TO, default
    `~/.n8n-files`) and NodesConfig.communityPackages.enabled (N8N_COMMUNITY_PACKAGES_ENABLED, default true).
    The one folder the file nodes may use is a mounted, backed-up data dir; no npm installs at run time."""
    n8n = flow_containers(routed)[N8N]
    env = env_of(n8n)
    assert env["N8N_COMMUNITY_PACKAGES_ENABLED"] == "false"
    assert env["N8N_RESTRICT_FILE_ACCESS_TO"] == "/home/node/.n8n-files"
    targets = {m["target"]: m["source"] for m in harness.plain(n8n.inputs["mounts"])}
    assert targets[env["N8N_RESTRICT_FILE_ACCESS_TO"]].startswith("/srv/versatilehub/clientea/flow/")


def test_task_broker_listens_on_the_flow_network_only(routed: harness.Plan) -> None:
    """TaskBrokerServer (packages/cli/src/task-runners/task-broker/task-broker-server.ts) calls
    `server.listen(port, listenAddress)`; Node resolves a host name there, and Docker's DNS gives the alias
    the address on the network that carries it: the Flow internal one, never the routed one.

    Unless the name is the container's hostname: Docker writes that into /etc/hosts with an address per
    network, the routed one included, and getaddrinfo reads /etc/hosts first. The lab saw it (tools/lab_apps,
    n8n 2.41.1): with `n8n` for both, the broker listened on the routed address and the runner was refused."""
    n8n = flow_containers(routed)[N8N]
    address = env_of(n8n)["N8N_RUNNERS_BROKER_LISTEN_ADDRESS"]
    assert address not in ("0.0.0.0", "::", ""), "every interface includes the routed network"
    assert address != n8n.inputs["hostname"], "/etc/hosts maps the hostname to every network's address"
    attached = n8n.plain_inputs["networksAdvanced"]
    carrying = [n["name"] for n in attached if address in (n.get("aliases") or [])]
    assert carrying == ["clientea-flow"], "the alias names the internal network alone, not the routed one"
    assert routed.get("docker:index/network:Network", "flow-internal").inputs["internal"] is True
    runner_uri = env_of(flow_containers(routed)[RUNNER])["N8N_RUNNERS_TASK_BROKER_URI"]
    assert runner_uri == f"http://{address}:5679", "the runner dials the address the broker listens on"


def test_volume_storage_keeps_both_volumes(plan: PlanFn) -> None:
    p = plan(["flow"], storage={"kind": "volume"})
    volumes = {v.inputs["name"]: v for v in p.of_type("docker:index/volume:Volume")}
    assert {"clientea-flow-workflows", "clientea-flow-database"} <= set(volumes)
    assert volumes["clientea-flow-database"].options["retainOnDelete"]


def _suite_of(stack: harness.StackConfig) -> Any:
    """The Suite object itself (for what it hands to the backup component), built under the mocks."""
    built: list[Any] = []
    harness.run(stack, program=lambda: built.append(deploy(config.load())))
    return built[0]


def test_backups_dump_the_database_and_copy_the_user_folder() -> None:
    sources = [s for s in _suite_of(make_stack(["flow"])).deployment.backup_sources if s.service == "flow"]
    assert (
        DatabaseDump("flow", "postgres", POSTGRES, "n8n", "n8n", "/run/secrets/postgres-password") in sources
    )
    copied = sorted(s.location.source for s in sources if isinstance(s, FileSet))
    assert copied == [
        "/srv/versatilehub/clientea/flow/files",  # what workflows write to disk
        "/srv/versatilehub/clientea/flow/workflows",  # holds the instance config
    ]
    assert len(sources) == 3


def test_a_version_change_waits_for_the_pre_update_backup(pre_update_calls: PreUpdateCalls) -> None:
    asked = pre_update_calls
    p = harness.run(make_stack(["flow"], versions={"n8n": "2.49.0"}))
    assert asked == [("flow", ["n8nio/n8n:2.49.0", "postgres:16.15-alpine"])]
    for c in flow_containers(p).values():
        assert depends_on(p, c, "flow-pre-update-backup"), c.inputs["name"]


# -- outputs and versions -----------------------------------------------------------------------------------


def test_outputs(routed: harness.Plan) -> None:
    out = routed.outputs["flow"]
    public = {"url", "ownerEmail", "version", "healthPath", "healthBody"}
    assert set(out) == public | {"ownerPassword", "encryptionKey"}
    assert (out["healthPath"], out["healthBody"]) == ("/healthz/readiness", '"status":"ok"')
    assert (out["url"], out["ownerEmail"], out["version"]) == (
        "https://flow.clientea.com",
        "admin@clientea.com",
        "2.48.5",
    )
    assert len(harness.plain(out["ownerPassword"])) == 32


def test_the_runner_follows_an_n8n_override(plan: PlanFn) -> None:
    p = plan(["flow"], versions={"n8n": "2.49.0@sha256:" + "a" * 64})
    flow = flow_containers(p)
    assert flow[N8N].inputs["image"] == "n8nio/n8n:2.49.0@sha256:" + "a" * 64
    assert flow[RUNNER].inputs["image"] == "n8nio/runners:2.49.0", "same release, not n8n's digest"
    assert p.outputs["flow"]["version"] == "2.49.0"
    assert p.outputs["versions"]["n8nRunners"] == "2.49.0"


def test_default_pins_agree() -> None:
    assert versions.IMAGES["n8nRunners"].tag == versions.IMAGES["n8n"].tag
    versions.check_override("n8n", versions.IMAGES["n8n"].tag)
    versions.check_override("flowPostgres", versions.IMAGES["flowPostgres"].tag)


# -- config errors ------------------------------------------------------------------------------------------


def test_runner_version_cannot_be_set_on_its_own(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["flow"], versions={"n8nRunners": "2.49.0"})
    assert line.startswith("versatilehub:versions.n8nRunners: always runs n8n's exact version")
    assert "remove versions.n8nRunners and set versions.n8n" in line


@pytest.mark.parametrize(
    ("key", "tag"),
    [("n8n", "2.20.0"), ("n8n", "3.0.1"), ("n8n", "snapshot"), ("flowPostgres", "17.2-alpine")],
)
def test_releases_the_configuration_is_not_written_for_are_refused(
    config_problems: ProblemsFn, key: str, tag: str
) -> None:
    [line] = config_problems(["flow"], versions={key: tag})
    assert line.startswith(f"versatilehub:versions.{key}: '{tag}' is outside the releases")


def test_a_newer_release_within_the_range_is_accepted(plan: PlanFn) -> None:
    p = plan(["flow"], versions={"flowPostgres": "16.16-alpine"})
    assert flow_containers(p)[POSTGRES].inputs["image"] == "postgres:16.16-alpine"


@pytest.mark.parametrize(
    ("flow", "key", "message"),
    [
        ({"ownerEmail": "not-an-email"}, "ownerEmail", "is not a valid email address"),
        ({"ownerFirstName": "A" * 33}, "ownerFirstName", "at most 32 characters"),
        ({"ownerLastName": "Pérez\nAdmin"}, "ownerLastName", "control character or line break"),
    ],
)
def test_bad_owner_settings_name_the_key(
    config_problems: ProblemsFn, flow: dict[str, str], key: str, message: str
) -> None:
    [line] = config_problems(["flow"], flow=flow)
    assert line.startswith(f"versatilehub:flow.{key}: ") and message in line
    assert f"fix: pulumi config set --path 'versatilehub:flow.{key}'" in line


def test_a_misspelt_flow_key_suggests_the_right_one(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["flow"], flow={"ownerEmial": "ana@clientea.com"})
    assert line.startswith("versatilehub:flow.ownerEmial is not a known key (did you mean 'ownerEmail'?)")


# -- the example stack ---------------------------------------------------------------------------------


def test_advanced_automation_example_stack() -> None:
    p = harness.plan_stack("clienteD")
    assert p.outputs["client"] == "cliented" and p.outputs["services"] == ["hub", "flow"]
    assert p.outputs["memoryBudgetMb"] <= p.outputs["hostMemoryMb"] * config.MEMORY_BUDGET_SHARE
    n8n = p.container("cliented-flow-n8n")
    env = env_of(n8n)
    assert env["N8N_EDITOR_BASE_URL"] == "https://flow.cliented.com"
    assert env["N8N_INSTANCE_OWNER_EMAIL"] == "automatizacion@cliented.com"
    assert env["N8N_INSTANCE_OWNER_FIRST_NAME"] == "Automatización"
    assert {labels_of(c)["io.versatilehub.service"] for c in p.containers()} >= {"hub", "flow"}
