"""Hub (ERPNext): processes, networks, data, MariaDB, the site's setup steps run for real against a fake
`docker`, migrations on version changes, backups, outputs and config errors."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components import config
from components.core import catalog
from components.core.deployment import AppBackupCommand, FileSet
from components.core.scripts import PROGRESS
from components.services.hub import component as hub
from components.services.hub import frontend as hub_frontend
from components.services.hub import steps as hub_steps
from components.suite import deploy
from tests.conftest import (
    PlanFn,
    PreUpdateCalls,
    env_of,
    labels_of,
    make_stack,
    networks_of,
    secret_file_of,
    secret_file_steps,
)
from tools import harness

ProblemsFn = Callable[..., list[str]]
ERPNEXT = "frappe/erpnext:v16.32.3"
BENCH = list(hub.BENCH)
FRAPPE_ROLES = ("configurator", "backend", "frontend", "websocket", "queue-short", "queue-long", "scheduler")
ROLES = (*FRAPPE_ROLES, "mariadb", "redis-cache", "redis-queue")
DATA = "/srv/versatilehub/clientea/hub"
STEP = "command:local:Command"


@pytest.fixture(scope="module")
def routed() -> harness.Plan:
    return harness.run(make_stack(["hub"]))


def hub_containers(p: harness.Plan) -> dict[str, harness.PlannedResource]:
    """Role -> container, for the Hub's containers only."""
    return {
        labels_of(c)["io.versatilehub.role"]: c
        for c in p.containers()
        if labels_of(c)["io.versatilehub.service"] == "hub"
    }


def step(p: harness.Plan, name: str) -> harness.PlannedResource:
    return p.get(STEP, name)


def depends_on(p: harness.Plan, resource: harness.PlannedResource, name: str) -> bool:
    return p.named(name).urn in resource.dependencies


def mounts_of(c: harness.PlannedResource) -> dict[str, str]:
    return {m["target"]: m["source"] for m in harness.plain(c.inputs.get("mounts", []))}


def healthcheck(c: harness.PlannedResource) -> list[str] | None:
    check = c.inputs.get("healthcheck")
    return check["tests"] if check else None


# -- the processes --------------------------------------------------------------------------------------

FRAPPE_MOUNTS = {hub.SITES: f"{DATA}/sites", f"{hub.BENCH_DIR}/logs": f"{DATA}/logs"}
EXPECTED: dict[str, dict[str, Any]] = {
    "configurator": {
        "image": ERPNEXT,
        "entrypoints": [hub.PYTHON, "-c"],
        "command": [hub.CONFIGURE],
        "healthcheck": None,
        "mounts": FRAPPE_MOUNTS,
    },
    "backend": {
        "image": ERPNEXT,
        "command": None,  # the image's start.sh (gunicorn on :8000)
        "healthcheck": [
            "CMD",
            "curl",
            "-fsS",
            "-o",
            "/dev/null",
            "-H",
            "Host: hub.clientea.com",
            "http://127.0.0.1:8000/api/method/ping",
        ],
        "mounts": FRAPPE_MOUNTS,
    },
    "frontend": {
        "image": ERPNEXT,
        "command": ["bash", "-c", hub_frontend.FRONTEND, "hub-frontend"],
        "healthcheck": ["CMD", "curl", "-sS", "-o", "/dev/null", "http://127.0.0.1:8080/"],
        "mounts": {hub.SITES: f"{DATA}/sites", "/var/lib/nginx": f"{DATA}/nginx-tmp"},
    },
    "websocket": {
        "image": ERPNEXT,
        "command": ["node", "/home/frappe/frappe-bench/apps/frappe/socketio.js"],
        "healthcheck": ["CMD", "bash", "-c", "</dev/tcp/127.0.0.1/9000"],
        "mounts": FRAPPE_MOUNTS,
    },
    "queue-short": {
        "image": ERPNEXT,
        "command": [*BENCH, "worker", "--queue", "short,default"],
        "healthcheck": None,
        "mounts": FRAPPE_MOUNTS,
    },
    "queue-long": {
        "image": ERPNEXT,
        "command": [*BENCH, "worker", "--queue", "long,default,short"],
        "healthcheck": None,
        "mounts": FRAPPE_MOUNTS,
    },
    "scheduler": {
        "image": ERPNEXT,
        "command": [*BENCH, "schedule"],
        "healthcheck": None,
        "mounts": FRAPPE_MOUNTS,
    },
    "mariadb": {
        "image": "mariadb:11.8.9",
        "command": [
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--skip-character-set-client-handshake",
        ],
        "healthcheck": ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"],
        "mounts": {
            "/var/lib/mysql": f"{DATA}/mariadb",
            "/tmp": f"{DATA}/mariadb-tmp",
            "/run/secrets/mariadb-root": "/srv/versatilehub/clientea/secrets/hub/mariadb-root",
        },
    },
    "redis-cache": {
        "image": "redis:8.6.7-alpine",
        "entrypoints": ["redis-server"],
        "command": [
            "--maxmemory",
            "72mb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--save",  # followed by an option: `save ""` (tests/test_provider_model.py runs it)
            "--appendonly",
            "no",
        ],
        "healthcheck": ["CMD-SHELL", "redis-cli ping | grep -q PONG"],
        "mounts": {},
    },
    "redis-queue": {
        "image": "redis:8.6.7-alpine",
        "entrypoints": ["redis-server"],
        "command": ["--appendonly", "yes", "--dir", "/data"],
        "healthcheck": ["CMD-SHELL", "redis-cli ping | grep -q PONG"],
        "mounts": {"/data": f"{DATA}/redis-queue"},
    },
}


def test_the_production_topology_is_complete(routed: harness.Plan) -> None:
    assert sorted(hub_containers(routed)) == sorted(ROLES)
    assert set(EXPECTED) == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_each_process_command_image_data_healthcheck_and_limit(routed: harness.Plan, role: str) -> None:
    c = hub_containers(routed)[role]
    want = EXPECTED[role]
    assert c.inputs["name"] == f"clientea-hub-{role}"
    assert c.inputs["image"] == want["image"]
    assert c.inputs.get("command") == want["command"]
    assert c.inputs.get("entrypoints") == want.get("entrypoints")
    assert mounts_of(c) == want["mounts"]
    assert healthcheck(c) == want["healthcheck"]
    if want["healthcheck"] is None:
        assert labels_of(c)["io.versatilehub.no-healthcheck-reason"], "a missing check states why"
    limit = catalog.LIMITS[f"hub-{role}"]
    assert (c.inputs["memory"], c.inputs["memorySwap"], c.inputs["cpus"]) == (
        limit.memory_mb,
        limit.memory_mb,
        str(limit.cpus),
    )
    assert c.inputs["readOnly"] is True, "every Hub container keeps a read-only root"
    assert c.inputs["user"] not in (None, "", "0", "root") and not c.inputs["user"].startswith("0:")


def test_users_match_the_images_and_their_data_owners(routed: harness.Plan) -> None:
    users = {role: c.inputs["user"] for role, c in hub_containers(routed).items()}
    assert users == {
        **dict.fromkeys(FRAPPE_ROLES, "1000:1000"),
        "mariadb": "999:999",
        "redis-cache": "999:1000",
        "redis-queue": "999:1000",
    }
    chown = step(routed, "hub-data-dirs").inputs["create"]
    made = re.findall(r"install -d -o (\d+) -g (\d+) -m (\d+) /data/([\w-]+)", chown)
    assert sorted(made) == sorted(
        [
            ("999", "999", "0700", "mariadb"),
            ("999", "999", "0700", "mariadb-tmp"),
            ("1000", "1000", "0750", "sites"),
            ("1000", "1000", "0750", "logs"),
            ("999", "1000", "0700", "redis-queue"),
            ("1000", "1000", "0700", "nginx-tmp"),
        ]
    )


def test_frappe_processes_share_sites_and_write_only_where_intended(routed: harness.Plan) -> None:
    containers = hub_containers(routed)
    for role in FRAPPE_ROLES:
        assert mounts_of(containers[role])[hub.SITES] == f"{DATA}/sites", role
    for role in set(FRAPPE_ROLES) - {"frontend"}:
        tmpfs = containers[role].inputs["tmpfs"]
        # Frappe's bench-wide lock files live in config/: writable, though the root is not.
        assert set(tmpfs) == {"/tmp", f"{hub.BENCH_DIR}/config"}, role
    # nginx's body and proxy buffers are on disk (hub/nginx-tmp), not in a tmpfs counted as memory.
    assert set(containers["frontend"].inputs["tmpfs"]) == {"/tmp", "/etc/nginx/conf.d", "/run"}
    assert containers["mariadb"].inputs["tmpfs"] == {
        "/run/mysqld": "rw,noexec,nosuid,nodev,mode=1777,size=8m"
    }


def test_start_order(routed: harness.Plan) -> None:
    containers = hub_containers(routed)
    for role in ("backend", "websocket", "queue-short", "queue-long", "scheduler"):
        for needed in ("hub-configured", "hub-mariadb", "hub-redis-cache", "hub-redis-queue"):
            assert depends_on(routed, containers[role], needed), (role, needed)
    assert depends_on(routed, containers["frontend"], "hub-backend")
    assert depends_on(routed, containers["frontend"], "hub-websocket")
    for role in ("mariadb", "configurator", "redis-queue"):
        assert depends_on(routed, containers[role], "hub-data-dirs"), role
    assert containers["mariadb"].inputs["wait"] is True, "`pulumi up` waits for a healthy database"
    assert containers["backend"].inputs["wait"] is False, "the backend is unhealthy until its site exists"


def test_hub_memory_budget_stays_within_3_gib_and_is_overridable(plan: PlanFn) -> None:
    assert sum(catalog.LIMITS[f"hub-{role}"].memory_mb for role in ROLES) <= 3072
    p = plan(["hub"], resources={"hub-backend": {"memoryMb": 1536}})
    assert hub_containers(p)["backend"].inputs["memory"] == 1536


def test_the_cache_evicts_within_its_own_limit(plan: PlanFn) -> None:
    p = plan(["hub"], resources={"hub-redis-cache": {"memoryMb": 200}})
    assert hub_containers(p)["redis-cache"].inputs["command"][:2] == ["--maxmemory", "150mb"]


# -- networks and routing -------------------------------------------------------------------------------


def test_frontend_is_the_only_hub_container_traefik_reaches(routed: harness.Plan) -> None:
    containers = hub_containers(routed)
    network = routed.get("docker:index/network:Network", "hub-internal")
    assert network.inputs["name"] == "clientea-hub" and network.inputs["internal"] is True
    assert networks_of(containers["frontend"]) == ["web", "clientea-hub"]
    labels = labels_of(containers["frontend"])
    assert labels["traefik.enable"] == "true"
    assert labels["traefik.docker.network"] == "web"
    assert labels["traefik.http.routers.clientea-hub.rule"] == "Host(`hub.clientea.com`)"
    assert labels["traefik.http.services.clientea-hub.loadbalancer.server.port"] == "8080"
    assert "ports" not in containers["frontend"].inputs, "behind Traefik nothing is published"
    for role, c in containers.items():
        if role != "frontend":
            assert "web" not in networks_of(c), role
            assert not any(k.startswith("traefik.") for k in labels_of(c)), role


def test_only_the_processes_that_call_out_have_a_route_out(routed: harness.Plan) -> None:
    # Mail, exchange rates and integrations: web requests and background jobs; the data stays internal.
    with_egress = {"backend", "queue-short", "queue-long"}
    shared = routed.get("docker:index/network:Network", "net-shared")
    assert shared.inputs["name"] == "clientea-shared" and not shared.inputs.get("internal")
    for role, c in hub_containers(routed).items():
        if role in with_egress:
            assert networks_of(c) == ["clientea-hub", "clientea-shared"], role
        elif role != "frontend":
            assert networks_of(c) == ["clientea-hub"], role


def test_frontend_reaches_its_peers_by_container_name(routed: harness.Plan) -> None:
    env = env_of(hub_containers(routed)["frontend"])
    assert env["BACKEND"] == "clientea-hub-backend:8000"
    assert env["SOCKETIO"] == "clientea-hub-websocket:9000"
    configurator = env_of(hub_containers(routed)["configurator"])
    assert {
        k: configurator[k] for k in ("DB_HOST", "DB_PORT", "REDIS_CACHE", "REDIS_QUEUE", "SOCKETIO_PORT")
    } == {
        "DB_HOST": "clientea-hub-mariadb",
        "DB_PORT": "3306",
        "REDIS_CACHE": "clientea-hub-redis-cache:6379",
        "REDIS_QUEUE": "clientea-hub-redis-queue:6379",
        "SOCKETIO_PORT": "9000",
    }


def test_a_replaced_backend_or_websocket_replaces_the_frontend(routed: harness.Plan) -> None:
    """frappe_docker's nginx-template.conf resolves BACKEND and SOCKETIO once (`upstream` blocks, no
    resolver): the frontend carries their container ids in a label, and labels are ForceNew upstream."""
    frontend = hub_containers(routed)["frontend"]
    backend_id, websocket_id = labels_of(frontend)["io.versatilehub.hub.upstreams"].split(",")
    assert backend_id.startswith("hub-backend-") and websocket_id.startswith("hub-websocket-")
    assert depends_on(routed, frontend, "hub-backend") and depends_on(routed, frontend, "hub-websocket")


def test_client_addresses_come_from_traefik_on_web(routed: harness.Plan) -> None:
    # The subnet Docker gave the `web` network this stack created (the mock answers like Docker).
    assert env_of(hub_containers(routed)["frontend"])["UPSTREAM_REAL_IP_ADDRESS"] == harness._subnet("web")


def test_an_adopted_web_network_gives_its_subnet(plan: PlanFn) -> None:
    p = plan(["hub"], mode="attach", webNetwork={"name": "proxy", "create": False}, acmeEmail=None)
    frontend = hub_containers(p)["frontend"]
    assert env_of(frontend)["UPSTREAM_REAL_IP_ADDRESS"] == harness._subnet("proxy")
    assert networks_of(frontend) == ["proxy", "clientea-hub"]


def test_nginx_serves_the_site_by_name_whatever_the_host(plan: PlanFn) -> None:
    """Always by name: the websocket's authentication call arrives with Host <frontend>:8080."""
    same = plan(
        ["hub"], hostnames={"hub": "erp.clientea.com"}, hub={"country": "AR", "siteName": "erp.clienteA.com"}
    )
    assert env_of(hub_containers(same)["frontend"])["FRAPPE_SITE_NAME_HEADER"] == "erp.clientea.com"
    assert same.outputs["hub"]["siteName"] == "erp.clientea.com", "site names are lower-cased like hostnames"
    other = plan(
        ["hub"],
        hostnames={"hub": "erp.clientea.com"},
        hub={"country": "AR", "siteName": "erp.clientea.local"},
    )
    containers = hub_containers(other)
    assert env_of(containers["frontend"])["FRAPPE_SITE_NAME_HEADER"] == "erp.clientea.local"
    assert "Host: erp.clientea.local" in (healthcheck(containers["backend"]) or []), "probed for its site"
    assert other.outputs["hub"]["siteName"] == "erp.clientea.local"
    assert other.outputs["hub"]["url"] == "https://erp.clientea.com"


def test_standalone_serves_the_site_on_loopback(plan: PlanFn) -> None:
    p = plan(["hub"], mode="standalone", standalonePort=8081, acmeEmail=None)
    frontend = hub_containers(p)["frontend"]
    assert harness.plain(frontend.inputs["ports"]) == [
        {"internal": 8080, "external": 8081, "ip": "127.0.0.1"}
    ]
    # An internal network alone cannot publish a port: the client's shared network carries it.
    assert networks_of(frontend) == ["clientea-shared", "clientea-hub"]
    env = env_of(frontend)
    assert env["FRAPPE_SITE_NAME_HEADER"] == "hub.clientea.com", "requests carry 127.0.0.1, not the site"
    assert "UPSTREAM_REAL_IP_ADDRESS" not in env
    assert not any(k.startswith("traefik.") for k in labels_of(frontend))
    assert p.outputs["hub"]["url"] == "http://127.0.0.1:8081"
    assert step(p, "hub-url").inputs["environment"]["PUBLIC_URL"] == "http://127.0.0.1:8081"


# -- MariaDB and its secret -----------------------------------------------------------------------------


def test_mariadb_flags_for_11_8(routed: harness.Plan) -> None:
    mariadb = hub_containers(routed)["mariadb"]
    assert not any("innodb-read-only-compressed" in flag for flag in mariadb.inputs["command"]), "10.6 only"
    check = mariadb.inputs["healthcheck"]
    assert (check["interval"], check["timeout"], check["retries"]) == ("5s", "5s", 5)
    env = env_of(mariadb)
    assert env["MARIADB_AUTO_UPGRADE"] == "1"
    password = routed.get("random:index/randomPassword:RandomPassword", "hub-db-root-password")
    assert password.inputs["special"] is False and password.inputs["length"] >= 32


def test_mariadb_reads_its_root_password_from_a_file(routed: harness.Plan) -> None:
    """MARIADB_ROOT_PASSWORD_FILE: the entrypoint reads it with `$(< file)` (MariaDB/mariadb-docker
    11.8/docker-entrypoint.sh, file_env and _mariadb_file_env, at 1b6429b), as the container's user (mysql,
    999), so the file is that user's, mode 0400; the environment holds no secret (issue 14)."""
    mariadb = hub_containers(routed)["mariadb"]
    env = env_of(mariadb)
    assert "MARIADB_ROOT_PASSWORD" not in env
    assert not harness.contains_secret(mariadb.inputs["envs"]), "a preview shows every env change"
    root = secret_file_of(routed, mariadb, env["MARIADB_ROOT_PASSWORD_FILE"])
    assert root.isalnum() and len(root) == 32
    writer = secret_file_steps(routed)["/srv/versatilehub/clientea/secrets/hub/mariadb-root"]
    assert harness.plain(writer.inputs["environment"])["VH_FILE_OWNER"] == hub.MARIADB_UID
    assert mariadb.inputs["user"] == hub.MARIADB_UID
    site = harness.plain(step(routed, "hub-site").inputs["environment"])
    assert site["DB_ROOT_PASSWORD"] == root, "bench new-site connects with the same root password"


def test_a_real_mariadb_server_takes_the_flags() -> None:
    """Debian's mariadbd (10.11 on this machine; the option names are 11.8's too) parses the flags."""
    result = subprocess.run(
        ["/usr/sbin/mariadbd", "--no-defaults", *hub.MARIADB_FLAGS, "--verbose", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    settings = dict(re.findall(r"^(\S+)[ \t]+(\S.*)$", result.stdout, re.MULTILINE))
    assert settings["character-set-server"] == "utf8mb4"
    assert settings["collation-server"] == "utf8mb4_unicode_ci"
    assert settings["character-set-client-handshake"] == "FALSE"


# -- configurator and the host steps --------------------------------------------------------------------


def test_configurator_is_a_one_shot_container_whose_exit_status_gates_the_rest(routed: harness.Plan) -> None:
    configurator = hub_containers(routed)["configurator"]
    assert (configurator.inputs["restart"], configurator.inputs["mustRun"]) == ("no", False)
    assert configurator.inputs["entrypoints"] == [hub.PYTHON, "-c"]
    configured = step(routed, "hub-configured")
    assert depends_on(routed, configured, "hub-configurator")
    assert "docker wait" in configured.inputs["create"]
    # The configurator's container id: a replaced configurator (new image or settings) is waited for again.
    [trigger] = configured.inputs["triggers"]
    assert trigger.startswith("hub-configurator-")


def run_configurator(bench: Path, routed: harness.Plan) -> subprocess.CompletedProcess[str]:
    """The configurator's program as its container runs it (`python -c`, its env) against `bench`."""
    configurator = hub_containers(routed)["configurator"]
    return subprocess.run(
        [sys.executable, "-c", *configurator.inputs["command"]],
        env={**env_of(configurator), "BENCH_DIR": str(bench)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_configurator_fills_an_empty_bind_mounted_sites(routed: harness.Plan, tmp_path: Path) -> None:
    """A bind-mounted sites/ starts empty: no `{}` common_site_config.json, no apps.txt (the image's
    Containerfile writes both; `bench set-config -g` fails on the missing file)."""
    for app in ("erpnext", "frappe"):
        (tmp_path / "apps" / app).mkdir(parents=True)
    (tmp_path / "sites").mkdir()
    ran = run_configurator(tmp_path, routed)
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "sites" / "common_site_config.json").read_text()) == {
        "db_host": "clientea-hub-mariadb",
        "db_port": 3306,
        "redis_cache": "redis://clientea-hub-redis-cache:6379",
        "redis_queue": "redis://clientea-hub-redis-queue:6379",
        "redis_socketio": "redis://clientea-hub-redis-queue:6379",
        "socketio_port": 9000,
        "chromium_path": "/usr/bin/chromium-headless-shell",
    }
    assert (tmp_path / "sites" / "apps.txt").read_text() == "frappe\nerpnext\n"
    # Frappe's build version (assets' ?v=) is sites/.build's mtime: each new configurator moves it on.
    build = tmp_path / "sites" / ".build"
    first = build.stat().st_mtime_ns
    time.sleep(0.01)
    assert run_configurator(tmp_path, routed).returncode == 0
    assert build.stat().st_mtime_ns > first


def test_configurator_keeps_settings_made_by_hand(routed: harness.Plan, tmp_path: Path) -> None:
    """Keys set by hand stay; and no bench `apps.json` is written: only bench reads it, and bench does not run
    in these containers (frappe/bench bench/bench.py BenchApps.states_path; docs/hub.md)."""
    (tmp_path / "apps" / "frappe").mkdir(parents=True)
    (tmp_path / "sites").mkdir()
    config = tmp_path / "sites" / "common_site_config.json"
    config.write_text(json.dumps({"db_host": "old", "mail_server": "smtp.example.com"}))
    assert run_configurator(tmp_path, routed).returncode == 0
    written = json.loads(config.read_text())
    assert written["mail_server"] == "smtp.example.com" and written["db_host"] == "clientea-hub-mariadb"
    assert sorted(p.name for p in config.parent.iterdir()) == [
        ".build",
        "apps.txt",
        "common_site_config.json",
    ]


@pytest.fixture
def fake_docker(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """run(script, **env) -> the script run by bash with a recording `docker` first on PATH.

    The fake answers `exec ... test -f` from FAKE_SITE_EXISTS, `list-apps` with FAKE_APPS, `wait` with
    FAKE_EXIT, fails (status 3, a traceback echoing DB_ROOT_PASSWORD) a call whose argv holds FAKE_FAIL,
    and logs every call (argv, stdin when -i, the secrets it could see in its environment).
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """\
            import json, os, sys
            args = sys.argv[1:]
            call = {
                "argv": args,
                "stdin": sys.stdin.read() if "-i" in args else None,
                "env": {k: os.environ.get(k) for k in ("SITE_NAME", "DB_ROOT_PASSWORD", "ADMIN_PASSWORD")},
            }
            with open(os.environ["FAKE_LOG"], "a") as log:
                log.write(json.dumps(call) + "\\n")
            if "-i" in args and os.environ.get("FAKE_SLEEP"):  # a long Frappe command
                import time
                time.sleep(float(os.environ["FAKE_SLEEP"]))
            if "-i" in args and os.environ.get("FAKE_ECHO_SECRETS"):  # Frappe printing what it was given
                print("admin password:", os.environ.get("ADMIN_PASSWORD"))
                print("root password:", os.environ.get("DB_ROOT_PASSWORD"), file=sys.stderr)
            if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in " ".join(args):
                print("Installing frappe...")
                print("Traceback (most recent call last):", file=sys.stderr)
                secret = os.environ.get("DB_ROOT_PASSWORD", "")
                print(f"pymysql.err.OperationalError: (1045, 'denied for {secret}')", file=sys.stderr)
                sys.exit(3)
            if args[0] == "wait":
                print(os.environ.get("FAKE_EXIT", "0"))
            elif args[0] == "exec" and "test" in args:
                sys.exit(0 if os.environ.get("FAKE_SITE_EXISTS") == "1" else 1)
            elif "list-apps" in args:
                print(os.environ.get("FAKE_APPS", ""))
            """
        )
    )
    docker.chmod(0o755)
    log = tmp_path / "docker.log"

    def run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
        log.write_text("")
        result = subprocess.run(
            ["/bin/bash", "-c", script],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        result.calls = [json.loads(line) for line in log.read_text().splitlines()]  # type: ignore[attr-defined]
        return result

    return run


def test_configured_step_fails_on_a_failed_configurator(routed: harness.Plan, fake_docker: Any) -> None:
    script = step(routed, "hub-configured").inputs["create"]
    ok = fake_docker(script, FAKE_EXIT="0")
    assert ok.returncode == 0 and ok.calls[0]["argv"] == ["wait", "clientea-hub-configurator"]
    failed = fake_docker(script, FAKE_EXIT="1")
    assert failed.returncode != 0
    assert ["logs", "--tail", "40", "clientea-hub-configurator"] in [c["argv"] for c in failed.calls]


def test_site_creation_waits_for_the_database_and_the_configurator(routed: harness.Plan) -> None:
    site = step(routed, "hub-site")
    for needed in ("hub-mariadb", "hub-configured", "hub-backend", "hub-redis-cache", "hub-redis-queue"):
        assert depends_on(routed, site, needed), needed
    assert site.inputs["triggers"] == ["hub.clientea.com"], "once per site name"


def test_site_secrets_travel_in_the_environment_only(routed: harness.Plan) -> None:
    site = step(routed, "hub-site")
    env = site.inputs["environment"]
    assert harness.is_secret(env["DB_ROOT_PASSWORD"]) and harness.is_secret(env["ADMIN_PASSWORD"])
    assert env["SITE_NAME"] == "hub.clientea.com"
    # Only stderr streams: the step's progress lines and, on failure, Frappe's masked last lines.
    assert site.inputs["logging"] == "stderr"
    assert set(site.options["additionalSecretOutputs"]) == {"stdout", "stderr"}
    secrets = [harness.plain(env["DB_ROOT_PASSWORD"]), harness.plain(env["ADMIN_PASSWORD"])]
    for r in routed.of_type(STEP):
        for field in ("create", "delete", "update"):
            assert not any(s in str(r.inputs.get(field, "")) for s in secrets), (r.name, field)
    create = site.inputs["create"]
    for flag in ("--db-root-username", "--mariadb-user-host-login-scope", "--install-app", "--set-default"):
        assert flag in create, flag
    assert '"--db-root-password", os.environ.pop("DB_ROOT_PASSWORD")' in create


def test_site_secrets_go_on_stdin_over_ssh(
    plan: PlanFn, routed: harness.Plan, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VERSATILEHUB_STATE_DIR", str(tmp_path))  # where the pinned known_hosts is written
    ssh = {"docker": "ssh://deploy@203.0.113.10", "sshHostKey": "ssh-ed25519 " + "A" * 68}
    p = plan(["hub"], host={**ssh, "memoryMb": 16384, "cpus": 8})
    site = p.get("command:remote:Command", "hub-site")
    assert harness.is_secret(site.inputs["stdin"]) and "environment" not in site.inputs
    local = harness.plain(step(routed, "hub-site").inputs["environment"])
    lines = harness.plain(site.inputs["stdin"]).splitlines()
    for key in ("DB_ROOT_PASSWORD", "ADMIN_PASSWORD"):
        assert f"{key}={local[key]}" in lines, key
        assert local[key] not in site.inputs["create"], key


def test_site_step_creates_the_site_once_without_secrets_on_any_command_line(
    routed: harness.Plan, fake_docker: Any
) -> None:
    script = step(routed, "hub-site").inputs["create"]
    secrets = {"DB_ROOT_PASSWORD": "Root0Secret0Value", "ADMIN_PASSWORD": "Admin0Secret0Value"}
    env = {"SITE_NAME": "hub.clientea.com", **secrets}

    created = fake_docker(script, **env)
    assert created.returncode == 0, created.stderr
    exec_call = created.calls[-1]
    assert exec_call["argv"][:8] == [
        "exec",
        "-i",
        "-e",
        "SITE_NAME",
        "-e",
        "DB_ROOT_PASSWORD",
        "-e",
        "ADMIN_PASSWORD",
    ]
    assert exec_call["argv"][-2:] == [hub.PYTHON, "-"]
    assert exec_call["env"] == env, "docker exec -e takes each value from its own environment"
    assert exec_call["stdin"] == hub_steps.NEW_SITE, "the program comes on stdin and holds no secret"
    for call in created.calls:
        assert not any(value in " ".join(call["argv"]) for value in secrets.values())

    kept = fake_docker(script, FAKE_SITE_EXISTS="1", FAKE_APPS="frappe\nerpnext\n", **env)
    assert kept.returncode == 0 and "left as it is" in kept.stdout
    assert not any(c["stdin"] for c in kept.calls), "an existing site is never created again"

    broken = fake_docker(script, FAKE_SITE_EXISTS="1", FAKE_APPS="frappe\n", **env)
    assert broken.returncode != 0 and "drop-site" in broken.stderr
    assert not any(c["stdin"] for c in broken.calls), "a half-made site is reported, never overwritten"


def frappe_stub(root: Path, files: dict[str, str]) -> Path:
    """A minimal stand-in for the Frappe modules a setup program imports."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for directory in [p for p in root.rglob("*") if p.is_dir()]:
        (directory / "__init__.py").touch(exist_ok=True)
    return root


def test_new_site_program_builds_bench_arguments_in_memory(tmp_path: Path) -> None:
    stub = frappe_stub(
        tmp_path / "stub",
        {
            "frappe/utils/bench_helper.py": """\
                import json, os, sys
                left = [k for k in ("DB_ROOT_PASSWORD", "ADMIN_PASSWORD") if k in os.environ]
                json.dump({"argv": sys.argv[1:], "left": left}, open(os.environ["OUT"], "w"))
            """,
        },
    )
    out = tmp_path / "out.json"
    subprocess.run(
        [sys.executable, "-"],
        input=hub_steps.NEW_SITE,
        text=True,
        check=True,
        timeout=30,
        env={
            "PYTHONPATH": str(stub),
            "OUT": str(out),
            "SITE_NAME": "erp.clienteb.com",
            "DB_ROOT_PASSWORD": "r00t",
            "ADMIN_PASSWORD": "adm1n",
        },
    )
    got = json.loads(out.read_text())
    assert got["argv"] == [
        "frappe",
        "new-site",
        "erp.clienteb.com",
        "--db-root-username",
        "root",
        "--db-root-password",
        "r00t",
        "--mariadb-user-host-login-scope",
        "%",
        "--admin-password",
        "adm1n",
        "--install-app",
        "erpnext",
        "--set-default",
    ]
    assert got["left"] == [], "the passwords leave the environment before Frappe starts child processes"


FAKE_FRAPPE = {
    "frappe/__init__.py": """\
        import json, os
        STATE = json.loads(os.environ["FAKE_FRAPPE"])
        calls = []
        def init(site): calls.append(["init", site])
        def connect(): calls.append(["connect"])
        def is_setup_complete(): return STATE["complete"]
        def destroy():
            calls.append(["destroy"])
            json.dump(calls, open(os.environ["OUT"], "w"))
        class _DB:
            def get_value(self, doctype, name, field=None):
                if doctype == "Country":
                    return STATE["countries"].get(name["code"])
                return STATE["languages"].get(name)
            def exists(self, doctype, name):
                if doctype == "Currency":
                    return name in STATE["currencies"]
                calls.append(["exists", doctype, name])
                return STATE["exists"].get(doctype, False)
            def commit(self): calls.append(["commit"])
        db = _DB()
        def get_all(doctype, filters=None, fields=None, order_by=None, limit=None):
            calls.append(["get_all", doctype, filters])
            return STATE["error_logs"]
    """,
    "frappe/utils/__init__.py": """\
        def now(): return "2026-12-02 20:00:00.000000"
    """,
    "frappe/desk/page/setup_wizard/setup_wizard.py": """\
        import frappe
        def setup_complete(args):
            frappe.calls.append(["setup_complete", args])
            return {"status": frappe.STATE["status"]}
    """,
    "frappe/geo/country_info.py": """\
        def get_country_info(country): return {"Mexico": {"currency": "MXN"}}.get(country, {})
    """,
}


@pytest.fixture
def company_setup(tmp_path: Path) -> Callable[..., tuple[int, list[Any], str]]:
    """run(wanted, **site_state) -> (exit code, the Frappe calls made, stderr) of the company program."""
    stub = frappe_stub(tmp_path / "stub", FAKE_FRAPPE)

    def run(wanted: dict[str, Any], **state: Any) -> tuple[int, list[Any], str]:
        site = {
            "complete": False,
            "status": "ok",
            "countries": {"mx": "Mexico"},
            "languages": {"es-MX": "Español (México)"},
            "currencies": ["MXN", "USD"],
            "exists": {"Company": True, "Fiscal Year": True},
            "error_logs": [],
            **state,
        }
        out = tmp_path / "calls.json"
        out.write_text("[]")
        result = subprocess.run(
            [sys.executable, "-"],
            input=hub_steps.COMPANY,
            text=True,
            capture_output=True,
            timeout=30,
            env={
                "PYTHONPATH": str(stub),
                "OUT": str(out),
                "FAKE_FRAPPE": json.dumps(site),
                "HUB_COMPANY": json.dumps(wanted),
            },
        )
        return result.returncode, json.loads(out.read_text()), result.stderr

    return run


@pytest.fixture(scope="module")
def clienteb() -> harness.Plan:
    return harness.plan_stack("clienteB")


def company_of(p: harness.Plan) -> dict[str, Any]:
    return dict(json.loads(step(p, "hub-company").inputs["environment"]["HUB_COMPANY"]))


def test_company_setup_runs_the_wizard_with_the_stack_answers(
    company_setup: Any, clienteb: harness.Plan
) -> None:
    wanted = {**company_of(clienteb), "fiscal_year_start": "04-01"}
    code, calls, stderr = company_setup(wanted)
    assert code == 0, stderr
    [args] = [c[1] for c in calls if c[0] == "setup_complete"]
    assert {k: v for k, v in args.items() if not k.startswith("fy_")} == {
        "language": "Español (México)",
        "lang": "Español (México)",
        "country": "Mexico",
        "timezone": "America/Mexico_City",
        "currency": "MXN",
        "company_name": "Cliente B Corp",
        "company_abbr": "CBC",
        "chart_of_accounts": "Standard",
    }
    start, end = (
        datetime.date.fromisoformat(args["fy_start_date"]),
        datetime.date.fromisoformat(args["fy_end_date"]),
    )
    today = datetime.date.today()
    assert (start.month, start.day) == (4, 1) and start <= today <= end
    assert end == start.replace(year=start.year + 1) - datetime.timedelta(days=1), "one whole year"
    assert calls[0] == ["init", "erp.clienteb.com"] and ["commit"] in calls and calls[-1] == ["destroy"]


def test_company_setup_takes_the_countrys_currency_and_runs_once(
    company_setup: Any, clienteb: harness.Plan
) -> None:
    code, calls, _ = company_setup({**company_of(clienteb), "currency": None})
    assert code == 0 and [c[1]["currency"] for c in calls if c[0] == "setup_complete"] == ["MXN"]
    code, calls, _ = company_setup(company_of(clienteb), complete=True)
    assert code == 0 and not [c for c in calls if c[0] == "setup_complete"], "a finished setup is not redone"


@pytest.mark.parametrize(
    ("change", "state", "message"),
    [
        ({"country": "ZZ"}, {}, "hub.country ZZ"),
        ({"language": "pt-BR"}, {}, "hub.language pt-BR"),
        ({"currency": "XXZ"}, {}, "hub.currency XXZ"),
        ({}, {"status": "fail"}, "setup wizard did not finish"),
    ],
)
def test_company_setup_fails_loudly(
    company_setup: Any, clienteb: harness.Plan, change: dict[str, Any], state: dict[str, Any], message: str
) -> None:
    code, calls, stderr = company_setup({**company_of(clienteb), **change}, **state)
    assert code != 0 and message in stderr
    assert calls[-1] == ["destroy"], "the site connection is closed on every path"


@pytest.mark.parametrize("absent", ["Company", "Fiscal Year"])
def test_a_wizard_that_reports_ok_without_the_company_fails_with_its_error(
    company_setup: Any, clienteb: harness.Plan, absent: str
) -> None:
    """ERPNext's setup stages swallow insert errors (frappe's make_records): status "ok", no Company."""
    traceback = "Traceback (most recent call last):\n  ...\nfrappe.exceptions.ValidationError: bad chart"
    code, calls, stderr = company_setup(
        company_of(clienteb),
        exists={"Company": absent != "Company", "Fiscal Year": absent != "Fiscal Year"},
        error_logs=[{"method": "Exception during Setup", "error": traceback}],
    )
    assert code != 0 and "finished without" in stderr and "ValidationError: bad chart" in stderr
    assert ["exists", "Company", "Cliente B Corp"] in calls
    [fiscal_year] = [c[2] for c in calls if c[:2] == ["exists", "Fiscal Year"]]
    start = next(c[1]["fy_start_date"] for c in calls if c[0] == "setup_complete")
    assert fiscal_year == {"year_start_date": start}
    assert [c for c in calls if c[0] == "get_all"] == [
        ["get_all", "Error Log", {"creation": [">=", "2026-12-02 20:00:00.000000"]}]
    ]
    assert calls[-1] == ["destroy"]


def test_company_setup_enables_the_scheduler_and_runs_after_the_site(routed: harness.Plan) -> None:
    company = step(routed, "hub-company")
    assert depends_on(routed, company, "hub-site")
    assert company.inputs["triggers"] == ["hub.clientea.com"]
    script = company.inputs["create"]
    bench = "docker exec clientea-hub-backend " + " ".join(BENCH)
    assert f'{bench} --site "$SITE_NAME" enable-scheduler\n' in script
    assert f'{bench} --site "$SITE_NAME" scheduler resume\n' in script
    assert not harness.contains_secret(company.inputs["environment"]), "no secret: its output may be shown"
    assert company.inputs["logging"] == "stdoutAndStderr"


def test_company_url_and_migrate_steps_run_what_they_say(routed: harness.Plan, fake_docker: Any) -> None:
    bench = ["exec", "clientea-hub-backend", *BENCH]
    company = step(routed, "hub-company")
    ran = fake_docker(company.inputs["create"], **company.inputs["environment"])
    assert ran.returncode == 0, ran.stderr
    wizard, enable, resume = ran.calls
    assert wizard["argv"] == [
        "exec",
        "-i",
        "-e",
        "HUB_COMPANY",
        "-w",
        hub.SITES,
        "clientea-hub-backend",
        hub.PYTHON,
        "-",
    ]
    assert wizard["stdin"] == hub_steps.COMPANY
    assert enable["argv"] == [*bench, "--site", "hub.clientea.com", "enable-scheduler"]
    assert resume["argv"] == [*bench, "--site", "hub.clientea.com", "scheduler", "resume"]

    url = step(routed, "hub-url")
    ran = fake_docker(url.inputs["create"], **url.inputs["environment"])
    assert ran.returncode == 0 and [c["argv"] for c in ran.calls] == [
        [*bench, "--site", "hub.clientea.com", "set-config", "host_name", "https://hub.clientea.com"]
    ]

    migrate = step(routed, "hub-migrate")
    ran = fake_docker(migrate.inputs["create"], **migrate.inputs["environment"])
    assert ran.returncode == 0, ran.stderr
    assert [c["argv"][len(bench) + 2 :] for c in ran.calls] == MIGRATION
    assert all(c["argv"][: len(bench) + 2] == [*bench, "--site", "hub.clientea.com"] for c in ran.calls)


# frappe/commands/scheduler.py: set-maintenance-mode on|off, scheduler pause|resume (pause_scheduler).
MIGRATION = [
    ["set-maintenance-mode", "on"],
    ["scheduler", "pause"],
    ["migrate"],
    ["scheduler", "resume"],
    ["set-maintenance-mode", "off"],
]


@pytest.mark.parametrize(
    ("failing", "ran_before_undo"),
    [("migrate", 3), ("scheduler pause", 2), ("set-maintenance-mode on", 1)],
)
def test_a_failed_migration_leaves_neither_maintenance_mode_nor_a_paused_scheduler(
    routed: harness.Plan, fake_docker: Any, failing: str, ran_before_undo: int
) -> None:
    migrate = step(routed, "hub-migrate")
    ran = fake_docker(migrate.inputs["create"], FAKE_FAIL=failing, **migrate.inputs["environment"])
    assert ran.returncode == 3, "the failure's own status"
    bench = len(BENCH) + 4
    assert [c["argv"][bench:] for c in ran.calls] == [*MIGRATION[:ran_before_undo], *MIGRATION[3:]]
    assert f"{failing} failed (exit status 3)" in ran.stderr and "OperationalError" in ran.stderr


def test_a_failed_undo_fails_the_migration(routed: harness.Plan, fake_docker: Any) -> None:
    migrate = step(routed, "hub-migrate")
    ran = fake_docker(migrate.inputs["create"], FAKE_FAIL="scheduler resume", **migrate.inputs["environment"])
    assert ran.returncode == 3 and [c["argv"][len(BENCH) + 4 :] for c in ran.calls] == MIGRATION


def test_failed_steps_end_with_frappes_last_lines_and_no_secret(
    routed: harness.Plan, fake_docker: Any
) -> None:
    site = step(routed, "hub-site")
    ran = fake_docker(
        site.inputs["create"],
        FAKE_FAIL="DB_ROOT_PASSWORD",
        SITE_NAME="hub.clientea.com",
        DB_ROOT_PASSWORD="r00tSecret",
        ADMIN_PASSWORD="adm1nSecret",
    )
    assert ran.returncode == 3
    assert "bench new-site hub.clientea.com failed (exit status 3)" in ran.stderr
    assert "OperationalError: (1045, 'denied for [secret]')" in ran.stderr
    assert "r00tSecret" not in ran.stderr + ran.stdout
    company = step(routed, "hub-company")
    ran = fake_docker(company.inputs["create"], FAKE_FAIL="HUB_COMPANY", **company.inputs["environment"])
    assert ran.returncode == 3 and "ERPNext's setup wizard failed (exit status 3)" in ran.stderr
    assert "Traceback" in ran.stderr and len(ran.calls) == 1, "nothing runs after a failed wizard"


@pytest.mark.parametrize("name", ["hub-configured", "hub-site", "hub-company", "hub-url", "hub-migrate"])
def test_step_scripts_are_shellcheck_clean(routed: harness.Plan, name: str) -> None:
    script = step(routed, name).inputs["create"]
    checked = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=script, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout


def test_public_url_is_the_sites_host_name(plan: PlanFn) -> None:
    p = plan(
        ["hub"],
        hostnames={"hub": "erp.clientea.com"},
        hub={"country": "AR", "siteName": "erp.clientea.local"},
    )
    url = step(p, "hub-url")
    assert url.inputs["environment"] == {
        "SITE_NAME": "erp.clientea.local",
        "PUBLIC_URL": "https://erp.clientea.com",
    }
    assert 'set-config host_name "$PUBLIC_URL"' in url.inputs["create"]
    assert url.inputs["triggers"] == ["erp.clientea.local", "https://erp.clientea.com"]


# -- upgrades -------------------------------------------------------------------------------------------


def test_migration_runs_once_per_erpnext_version(plan: PlanFn, routed: harness.Plan) -> None:
    migrate = step(routed, "hub-migrate")
    assert migrate.inputs["triggers"] == [ERPNEXT]
    assert "triggers[*]" in migrate.options["replaceOnChanges"], "a new trigger replaces, i.e. runs, the step"
    again = plan(["hub"])
    assert step(again, "hub-migrate").inputs["triggers"] == migrate.inputs["triggers"], (
        "no version change, no run"
    )

    bumped = plan(["hub"], versions={"erpnext": "v16.33.0"})
    assert step(bumped, "hub-migrate").inputs["triggers"] == ["frappe/erpnext:v16.33.0"]
    for role in FRAPPE_ROLES:
        assert hub_containers(bumped)[role].inputs["image"] == "frappe/erpnext:v16.33.0", role
    for name in ("hub-site", "hub-company", "hub-url"):
        assert step(bumped, name).inputs["triggers"] == step(routed, name).inputs["triggers"], f"{name} stays"
    assert bumped.outputs["hub"]["version"] == "v16.33.0"


def test_migration_follows_the_new_containers_and_the_company(routed: harness.Plan) -> None:
    migrate = step(routed, "hub-migrate")
    for role in ("backend", "websocket", "queue-short", "queue-long", "scheduler", "frontend"):
        assert depends_on(routed, migrate, f"hub-{role}"), role
    assert depends_on(routed, migrate, "hub-company")


def test_a_version_change_waits_for_the_pre_update_backup(pre_update_calls: PreUpdateCalls) -> None:
    asked = pre_update_calls
    p = harness.run(make_stack(["hub"], versions={"erpnext": "v16.33.0"}))
    assert asked == [("hub", ["frappe/erpnext:v16.33.0", "mariadb:11.8.9"])]
    containers = hub_containers(p)
    for role in (*FRAPPE_ROLES, "mariadb"):
        assert depends_on(p, containers[role], "hub-pre-update-backup"), role
    assert depends_on(p, step(p, "hub-migrate"), "hub-pre-update-backup")
    assert not depends_on(p, containers["redis-cache"], "hub-pre-update-backup")


def test_versions_outside_erpnext_16_and_mariadb_11_8_are_refused(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["hub"], versions={"erpnext": "v17.0.0"})
    assert "erpnext" in line and "outside the releases" in line
    [line] = config_problems(["hub"], versions={"mariadb": "12.0.2"})
    assert "mariadb" in line and "outside the releases" in line


# -- backups and outputs --------------------------------------------------------------------------------


def test_backups_take_benchs_own_backup_and_the_site_configs() -> None:
    built: list[Any] = []
    harness.run(make_stack(["hub"]), program=lambda: built.append(deploy(config.load())))
    sources = [s for s in built[0].deployment.backup_sources if s.service == "hub"]
    [app] = [s for s in sources if isinstance(s, AppBackupCommand)]
    assert app.container == "clientea-hub-backend"
    assert list(app.command) == [*BENCH, "--site", "all", "backup", "--with-files"]
    assert (app.output.source, app.output_subpath) == (f"{DATA}/sites", "*/private/backups")
    [files] = [s for s in sources if isinstance(s, FileSet)]
    assert files.location.source == f"{DATA}/sites", "site_config.json holds the encryption key"
    assert {"*/private", "*/public", "assets"} <= set(files.exclude), "files come in bench's own backup"
    assert len(sources) == 2, "never the live MariaDB directory"


def test_outputs(routed: harness.Plan) -> None:
    out = routed.outputs["hub"]
    assert set(out) == {
        "url",
        "healthPath",
        "healthBody",
        "siteName",
        "adminUser",
        "adminPassword",
        "version",
    }
    assert (out["url"], out["siteName"], out["adminUser"], out["version"]) == (
        "https://hub.clientea.com",
        "hub.clientea.com",
        "Administrator",
        "v16.32.3",
    )
    assert (out["healthPath"], out["healthBody"]) == ("/api/method/ping", '"message":"pong"')
    assert harness.is_secret(out["adminPassword"])
    admin = routed.get("random:index/randomPassword:RandomPassword", "hub-admin-password")
    assert (admin.inputs["length"], admin.inputs["special"]) == (32, False)
    created_with = step(routed, "hub-site").inputs["environment"]["ADMIN_PASSWORD"]
    assert harness.plain(out["adminPassword"]) == harness.plain(created_with), "the site's own password"


def test_clienteb_stack(clienteb: harness.Plan) -> None:
    p = clienteb
    assert p.outputs["services"] == ["hub"]
    assert (p.outputs["hub"]["url"], p.outputs["hub"]["siteName"]) == (
        "https://erp.clienteb.com",
        "erp.clienteb.com",
    )
    containers = hub_containers(p)
    assert containers["backend"].inputs["name"] == "clienteb-hub-backend"
    assert env_of(containers["backend"])["TZ"] == "America/Mexico_City"
    assert env_of(containers["frontend"])["FRAPPE_SITE_NAME_HEADER"] == "erp.clienteb.com"
    assert {
        k: v for k, v in company_of(p).items() if k in ("company", "country", "currency", "language")
    } == {
        "company": "Cliente B Corp",
        "country": "MX",
        "currency": "MXN",
        "language": "es-MX",
    }
    assert p.outputs["memoryBudgetMb"] <= 0.8 * p.outputs["hostMemoryMb"]


# -- config errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub_section", "key", "text"),
    [
        ({"country": "AR", "siteName": "erp_cliente"}, "hub.siteName", "is not a DNS name"),
        ({"country": "Narnia"}, "hub.country", "is not a country"),
        ({"country": "AR", "currency": "XYZ"}, "hub.currency", "is not an ISO 4217 currency code"),
        ({"country": "AR", "language": "xx"}, "hub.language", "is not a language code"),
        ({"country": "AR", "companyAbbr": "TOOLONG"}, "hub.companyAbbr", "1-5 letters or digits"),
        ({"country": "AR", "fiscalYearStart": "02-29"}, "hub.fiscalYearStart", "MM-DD"),
        ({}, "hub.country", "needs the client's country"),
    ],
)
def test_bad_input_is_one_clear_line(
    config_problems: ProblemsFn, hub_section: dict[str, Any], key: str, text: str
) -> None:
    [line] = config_problems(["hub"], hub=hub_section)
    assert line.startswith(f"versatilehub:{key}: ") and text in line
    assert f"fix: pulumi config set --path 'versatilehub:{key}' " in line


def test_accepted_spellings_are_normalised(plan: PlanFn) -> None:
    p = plan(["hub"], hub={"country": "mexico", "currency": "mxn", "language": "es_mx", "companyAbbr": "cb"})
    wanted = json.loads(step(p, "hub-company").inputs["environment"]["HUB_COMPANY"])
    assert (wanted["country"], wanted["currency"], wanted["language"], wanted["abbr"]) == (
        "MX",
        "MXN",
        "es-MX",
        "CB",
    )


def test_hub_settings_are_ignored_without_the_hub(plan: PlanFn) -> None:
    p = plan(["flow"], hub={})
    assert not hub_containers(p), "a stack without the Hub needs no country"


def test_default_abbreviation_follows_the_setup_wizard() -> None:
    section = config.HubConfig.model_validate({})
    assert section.abbreviation("Cliente A S.A.") == "CAS"
    assert section.abbreviation("Cliente B Corp") == "CBC"
    assert config.HubConfig.model_validate({"companyAbbr": "xy"}).abbreviation("Cliente B Corp") == "XY"


def test_a_long_secret_step_streams_progress_lines_and_no_secret(
    routed: harness.Plan, fake_docker: Any
) -> None:
    site = step(routed, "hub-site")
    secrets = {"DB_ROOT_PASSWORD": "Root0Secret0Value", "ADMIN_PASSWORD": "Admin0Secret0Value"}
    ran = fake_docker(
        site.inputs["create"],
        SITE_NAME="hub.clientea.com",
        VH_PROGRESS_SECONDS="1",
        FAKE_SLEEP="3.5",
        FAKE_ECHO_SECRETS="1",
        **secrets,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    assert lines[0] == "bench new-site hub.clientea.com: started"
    # One tick a second while it runs (how many depends on the machine's load, never fewer than two).
    ticks = [int(m[1]) for line in lines if (m := re.fullmatch(r".*: still running after (\d+) s", line))]
    assert len(ticks) >= 2 and ticks == sorted(ticks) and ticks[0] >= 1, lines
    assert re.fullmatch(r"bench new-site hub\.clientea\.com: done in \d+ s", lines[-1])
    assert int(lines[-1].split()[-2]) >= 3
    # What Frappe printed stays out of the streamed stream; stdout (not streamed) has it masked.
    assert not any(v in ran.stderr for v in secrets.values())
    assert "admin password: [secret]" in ran.stdout and "Admin0Secret0Value" not in ran.stdout
    # The ticker is gone when the command is: with a 60 s tick, an orphaned sleep would hold the step's
    # stderr open for a minute after a command of half a second.
    started = time.monotonic()
    quick = fake_docker(
        site.inputs["create"],
        SITE_NAME="hub.clientea.com",
        VH_PROGRESS_SECONDS="60",
        FAKE_SLEEP="0.5",
        **secrets,
    )
    took = time.monotonic() - started
    assert quick.returncode == 0, quick.stderr
    assert took < 30, took

    failed = fake_docker(
        site.inputs["create"], SITE_NAME="hub.clientea.com", FAKE_FAIL="DB_ROOT_PASSWORD", **secrets
    )
    assert failed.returncode == 3
    assert re.search(r"^bench new-site hub\.clientea\.com: failed after \d+ s$", failed.stderr, re.M)
    assert not any(v in failed.stderr for v in secrets.values())


def test_the_progress_helper_is_shellcheck_clean() -> None:
    result = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=PROGRESS, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
