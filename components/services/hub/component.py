"""Hub: ERPNext on Frappe at hub.<domain> (or its configured hostname), in frappe_docker's production shape.

Containers on the Hub's internal network (no route out), every Frappe process from one erpnext image
sharing ``hub/sites``; the backend and the queue workers also join the client's shared network, their route
out (mail, exchange rates, integrations):

- ``hub-configurator``: one-shot; writes the database, Redis and socket.io addresses into
  ``sites/common_site_config.json`` and exits. It is a container (same image, mounts, hardening and limits as
  the processes it configures, visible to ``docker ps -a`` and the policy pack) rather than a host step; the
  host step ``hub-configured`` turns its exit status into a dependency, since Pulumi considers a container
  created once it starts, not once it finishes (compose's ``service_completed_successfully``).
- ``hub-backend`` (gunicorn :8000), ``hub-websocket`` (socket.io :9000), ``hub-queue-short``,
  ``hub-queue-long`` and ``hub-scheduler``;
- ``hub-frontend``: nginx :8080, the only Hub container on ``web``, the one Traefik routes to;
- ``hub-mariadb`` (11.8 LTS, utf8mb4), ``hub-redis-cache`` (memory only, LRU) and ``hub-redis-queue``
  (append-only file under ``hub/redis-queue``).

The frontend is built in frontend.py. Host steps (steps.py), through pulumi-command on the Docker host
(each idempotent, each triggered on purpose):

- ``hub-site``: ``bench new-site`` once the database is healthy and the configurator has succeeded, with the
  database root and Administrator passwords passed through environments only (see NEW_SITE);
- ``hub-company``: ERPNext's setup wizard, run with the stack's company, country, currency, time zone and
  language, so the client gets a working ERPNext rather than a wizard; then the scheduler is switched on;
- ``hub-url``: the site's public URL (``host_name``), which links in mail and background jobs use;
- ``hub-migrate``: ``bench migrate`` in maintenance mode with the scheduler paused, once per erpnext image
  reference, after the pre-update backup and the containers running that image.

Frappe commands run as ``bench`` itself would run them after dispatching (BENCH): the bench CLI refuses to
dispatch outside a bench directory, which it recognises by ``config/pids`` (among others), and the writable
tmpfs over ``config/`` hides the image's copy of it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.core.container import Attach, Healthcheck
from components.core.deployment import AppBackupCommand, Deployment, FileSet
from components.core.probe import Check
from components.core.scripts import script
from components.core.storage import DataDir
from components.core.versions import tag_of
from components.services.hub.frontend import NGINX_TEMP, Upstreams, frontend
from components.services.hub.steps import BENCH, BENCH_DIR, PYTHON, SITES, site_steps

SERVICE = "hub"
FRAPPE_UID = "1000:1000"  # `frappe` (useradd -u 1000) in frappe/erpnext
MARIADB_UID = "999:999"  # `mysql`, the first system user of the mariadb image's Ubuntu base
REDIS_UID = "999:1000"  # `redis` in redis:*-alpine (gid 1000: Alpine already has a group 999)

BACKEND_PORT = 8000
SOCKETIO_PORT = 9000
MARIADB_PORT = 3306
REDIS_PORT = 6379
HEALTH_PATH = "/api/method/ping"

# utf8mb4 throughout, as Frappe requires (frappe_docker's compose.mariadb.yaml for 11.8; the 10.6-only
# --skip-innodb-read-only-compressed is gone with 11.8).
MARIADB_FLAGS = (
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--skip-character-set-client-handshake",
)

# Writable places of a Frappe process on a read-only root: temporary files (uploads, PDFs, imports) and
# the bench-wide lock files Frappe takes under config/ (e.g. around common_site_config.json).
FRAPPE_TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=256m",
    f"{BENCH_DIR}/config": "rw,noexec,nosuid,nodev,size=1m",
}
# HOME is read-only: per-user caches (fontconfig for PDFs, the headless browser's profile) go to /tmp.
FRAPPE_CACHE_ENV = {"XDG_CACHE_HOME": "/tmp/.cache", "XDG_CONFIG_HOME": "/tmp/.config"}

# frappe_docker's configurator (compose.yaml) as one Python call of the image's interpreter, which also
# works on an empty bind-mounted sites/ (scripts/configure.py).
CONFIGURE = script(__name__, "configure.py")
# The post-deploy checks (components/core/probe.py): each signs in as Administrator through the public route
# (probe-session.sh), then proves one thing a user needs.
PROBE_SESSION = script(__name__, "probe-session.sh")
PROBES = {
    "hub-login": script(__name__, "probe-login.sh"),  # the generated password and a working session
    "hub-realtime": script(__name__, "probe-realtime.sh"),  # a socket.io CONNECT Frappe authenticated
    "hub-company": script(__name__, "probe-company.sh"),  # the company the setup wizard created
}


def _container_name(client: str, role: str) -> str:
    return f"{client}-{SERVICE}-{role}"


class Hub(pulumi.ComponentResource):
    """ERPNext for one client: Frappe's processes, MariaDB, two Redis, the site and its company."""

    outputs: dict[str, Any]
    checks: list[Check]

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:hub:Hub", name, None, opts)
        cfg = d.config
        hub = cfg.hub
        child = pulumi.ResourceOptions(parent=self)
        hostname = cfg.hostname(SERVICE)
        site = hub.site(hostname)
        erpnext_ref = cfg.pin("erpnext")
        # Peers are addressed by container name: unique on the host, so never ambiguous for the frontend,
        # which also sits on `web` with every other client's front containers.
        backend, websocket, mariadb_host, cache_host, queue_host = (
            _container_name(cfg.client, role)
            for role in ("backend", "websocket", "mariadb", "redis-cache", "redis-queue")
        )

        internal = d.network(parent=self, service=SERVICE)
        on_internal = [Attach(internal.name)]
        # Mail, exchange rates and integrations need a route out: the client's shared network gives one to
        # the processes that make those calls (web requests and background jobs); the rest stay internal.
        with_egress = [*on_internal, Attach(d.shared_network)]
        data = d.data_dirs(
            parent=self,
            service=SERVICE,
            dirs=[
                DataDir("mariadb", owner=MARIADB_UID, mode="0700"),
                DataDir("mariadb-tmp", owner=MARIADB_UID, mode="0700"),
                DataDir("sites", owner=FRAPPE_UID),
                DataDir("logs", owner=FRAPPE_UID),
                DataDir("redis-queue", owner=REDIS_UID, mode="0700"),
                DataDir("nginx-tmp", owner=FRAPPE_UID, mode="0700"),  # frontend.NGINX_TEMP
            ],
        )
        sites_mount = data.mount("sites", SITES)
        frappe_mounts = [sites_mount, data.mount("logs", f"{BENCH_DIR}/logs")]

        # Alphanumeric: the root password passes through Frappe's DSN handling; people type the admin one.
        db_root_password = random.RandomPassword(
            f"{name}-db-root-password", length=32, special=False, opts=child
        )
        admin_password = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)

        # A new ERPNext (migrated below) or MariaDB (upgraded in place at start) waits for the snapshot.
        upgrade = d.pre_update_backup(
            parent=self, service=SERVICE, versions=[erpnext_ref, cfg.pin("mariadb")]
        )

        root_file = d.secret_file(self, SERVICE, "mariadb-root", db_root_password.result, MARIADB_UID)
        self.mariadb = d.container(
            parent=self,
            service=SERVICE,
            role="mariadb",
            image="mariadb",
            user=MARIADB_UID,
            command=list(MARIADB_FLAGS),
            envs={
                "MARIADB_ROOT_PASSWORD_FILE": root_file.path,
                # A new image upgrades the system tables of the existing data directory on its first start.
                "MARIADB_AUTO_UPGRADE": "1",
            },
            mounts=[
                data.mount("mariadb", "/var/lib/mysql"),
                # tmpdir on disk: large reports' temporary tables and the sort files of a migration's
                # ALTER TABLE outgrow any tmpfs that fits in the container's memory.
                data.mount("mariadb-tmp", "/tmp"),
            ],
            secret_files=[root_file],
            # The server's socket and pid file; world-writable with the sticky bit, as in the image.
            tmpfs={"/run/mysqld": "rw,noexec,nosuid,nodev,mode=1777,size=8m"},
            networks=on_internal,
            healthcheck=Healthcheck(
                ["healthcheck.sh", "--connect", "--innodb_initialized"],
                interval="5s",
                timeout="5s",
                retries=5,
                start_period="60s",  # a first start initialises the data directory and loads time zones
            ),
            wait_healthy=True,
            depends_on=[*data.ready, *upgrade],
        )

        # The image's entrypoint loads Redis 8's modules (search, JSON, ...); Frappe needs none, so
        # redis-server starts directly (the container is non-root already: nothing to drop).
        cache_memory = cfg.limits(f"{SERVICE}-redis-cache").memory_mb
        self.redis_cache = d.container(
            parent=self,
            service=SERVICE,
            role="redis-cache",
            image="hubRedis",
            user=REDIS_UID,
            entrypoint=["redis-server"],
            command=[
                # A cache: evict the least recently used keys before the container's limit is reached.
                "--maxmemory",
                f"{cache_memory * 3 // 4}mb",
                "--maxmemory-policy",
                "allkeys-lru",
                # `--save` followed by another option is `save ""` (no snapshots); an empty argv element
                # would be refused by the docker provider ("values for command may not be empty").
                "--save",
                "--appendonly",
                "no",
            ],
            tmpfs={"/data": "rw,noexec,nosuid,nodev,size=1m"},  # the image's VOLUME, unused
            networks=on_internal,
            healthcheck=Healthcheck(["redis-cli ping | grep -q PONG"], shell=True, interval="10s"),
        )
        self.redis_queue = d.container(
            parent=self,
            service=SERVICE,
            role="redis-queue",
            image="hubRedis",
            user=REDIS_UID,
            entrypoint=["redis-server"],
            # Background jobs survive a restart: every write goes to the append-only file (fsync each second).
            command=["--appendonly", "yes", "--dir", "/data"],
            mounts=[data.mount("redis-queue", "/data")],
            networks=on_internal,
            healthcheck=Healthcheck(["redis-cli ping | grep -q PONG"], shell=True, interval="10s"),
            depends_on=data.ready,
        )

        self.configurator = d.container(
            parent=self,
            service=SERVICE,
            role="configurator",
            image="erpnext",
            user=FRAPPE_UID,
            entrypoint=[PYTHON, "-c"],
            command=[CONFIGURE],
            envs={
                "DB_HOST": mariadb_host,
                "DB_PORT": str(MARIADB_PORT),
                "REDIS_CACHE": f"{cache_host}:{REDIS_PORT}",
                "REDIS_QUEUE": f"{queue_host}:{REDIS_PORT}",
                "SOCKETIO_PORT": str(SOCKETIO_PORT),
            },
            mounts=frappe_mounts,
            tmpfs=FRAPPE_TMPFS,
            networks=on_internal,
            restart="no",
            must_run=False,
            healthcheck=None,
            no_healthcheck_reason="one-shot: writes common_site_config.json, exits; hub-configured checks it",
            depends_on=[*data.ready, *upgrade],
        )
        configurator_name = _container_name(cfg.client, "configurator")
        configured = d.run(
            f"{name}-configured",
            f"name={shlex.quote(configurator_name)}\n"
            'code=$(docker wait "$name")\n'
            'if [ "$code" != 0 ]; then\n'
            '  echo "$name exited with status $code; its last lines:" >&2\n'
            '  docker logs --tail 40 "$name" >&2\n'
            "  exit 1\n"
            "fi\n"
            'echo "$name wrote common_site_config.json"\n',
            parent=self,
            triggers=[self.configurator.id],  # a new configurator (new image or settings) is waited for again
            depends_on=[self.configurator],
        )

        frappe_ready = [configured, self.mariadb, self.redis_cache, self.redis_queue, *upgrade]
        # Every Frappe process's entrypoint re-links sites/assets on the shared volume (rm, then ln). Started
        # together, one `ln` can land between another's `rm` and `ln` and try to write into the read-only
        # image: start them one after another instead.
        started: list[docker.Container] = []

        def frappe_process(
            role: str,
            *,
            command: list[str] | None,
            healthcheck: Healthcheck | None,
            no_healthcheck_reason: str | None = None,
            envs: Mapping[str, pulumi.Input[str]] | None = None,
            egress: bool = False,
        ) -> docker.Container:
            process = d.container(
                parent=self,
                service=SERVICE,
                role=role,
                image="erpnext",
                user=FRAPPE_UID,
                command=command,
                envs=envs,
                mounts=frappe_mounts,
                tmpfs=FRAPPE_TMPFS,
                networks=with_egress if egress else on_internal,
                healthcheck=healthcheck,
                no_healthcheck_reason=no_healthcheck_reason,
                depends_on=[*frappe_ready, *started[-1:]],
            )
            started.append(process)
            return process

        worker_reason = "PID 1 is the worker (or scheduler) itself: a crash exits it and Docker restarts it"
        self.backend = frappe_process(
            "backend",
            command=None,  # the image's start.sh: gunicorn frappe.app on :8000
            envs=FRAPPE_CACHE_ENV,
            egress=True,
            # The site answering, not only gunicorn: unhealthy until hub-site has created it.
            healthcheck=Healthcheck(
                [
                    "curl",
                    "-fsS",
                    "-o",
                    "/dev/null",
                    "-H",
                    f"Host: {site}",
                    f"http://127.0.0.1:{BACKEND_PORT}{HEALTH_PATH}",
                ],
                start_period="60s",
            ),
        )
        self.websocket = frappe_process(
            "websocket",
            command=["node", f"{BENCH_DIR}/apps/frappe/socketio.js"],
            healthcheck=Healthcheck(["bash", "-c", f"</dev/tcp/127.0.0.1/{SOCKETIO_PORT}"]),
        )
        self.queue_short = frappe_process(
            "queue-short",
            command=[*BENCH, "worker", "--queue", "short,default"],
            envs=FRAPPE_CACHE_ENV,
            egress=True,
            healthcheck=None,
            no_healthcheck_reason=worker_reason,
        )
        self.queue_long = frappe_process(
            "queue-long",
            command=[*BENCH, "worker", "--queue", "long,default,short"],
            envs=FRAPPE_CACHE_ENV,
            egress=True,
            healthcheck=None,
            no_healthcheck_reason=worker_reason,
        )
        self.scheduler = frappe_process(
            "scheduler",
            command=[*BENCH, "schedule"],
            healthcheck=None,
            no_healthcheck_reason=worker_reason,
        )

        self.frontend, exposure = frontend(
            d,
            parent=self,
            service=SERVICE,
            name=_container_name(cfg.client, "frontend"),
            site=site,
            user=FRAPPE_UID,
            upstreams=Upstreams(
                self.backend, self.websocket, f"{backend}:{BACKEND_PORT}", f"{websocket}:{SOCKETIO_PORT}"
            ),
            mounts=[sites_mount, data.mount("nginx-tmp", NGINX_TEMP)],
            internal=on_internal,
            max_body_mb=hub.max_upload_mb,
            depends_on=[self.backend, self.websocket, self.scheduler, *upgrade],  # the last one started
        )

        # -- the site, its company, its public URL, its migrations -------------------------------------------
        self.migrate = site_steps(
            d,
            parent=self,
            name=name,
            site=site,
            backend=backend,
            company={
                "site": site,
                "company": cfg.company,
                "abbr": hub.abbreviation(cfg.company),
                "country": hub.country,
                "currency": hub.currency,
                "language": hub.language,
                "timezone": cfg.timezone,
                "chart_of_accounts": hub.chart_of_accounts,
                "fiscal_year_start": hub.fiscal_year_start,
            },
            passwords={"DB_ROOT_PASSWORD": db_root_password.result, "ADMIN_PASSWORD": admin_password.result},
            public_url=exposure.url,
            erpnext_ref=erpnext_ref,
            site_after=[self.mariadb, configured, self.backend, self.redis_cache, self.redis_queue],
            company_after=[self.queue_short, self.queue_long, self.scheduler, self.websocket],
            migrate_after=[
                self.backend,
                self.websocket,
                self.queue_short,
                self.queue_long,
                self.scheduler,
                self.frontend,
                *upgrade,
            ],
        )

        # What a restore needs: the sites' own backups (database dump and files, consistent), and the site
        # configs next to them (site_config.json holds the encryption key of stored passwords).
        sites_data = data.locations["sites"]
        d.backup_sources.append(
            AppBackupCommand(
                SERVICE,
                backend,
                command=(*BENCH, "--site", "all", "backup", "--with-files"),
                output=sites_data,
                output_subpath="*/private/backups",
            )
        )
        d.backup_sources.append(
            FileSet(SERVICE, sites_data, exclude=("assets", "*/private", "*/public", "*/locks", "*/logs"))
        )

        probe_env: dict[str, pulumi.Input[str]] = {"VH_HUB_SITE": site, "VH_HUB_COMPANY": cfg.company}
        self.checks = [
            Check(
                name,
                PROBE_SESSION + body,
                env=probe_env,
                secret_env={"VH_HUB_ADMIN_PASSWORD": admin_password.result},
            )
            for name, body in PROBES.items()
        ]

        self.outputs = {
            "url": exposure.url,
            "healthPath": HEALTH_PATH,
            "healthBody": '"message":"pong"',  # the site itself answered, not a proxy's error page
            "siteName": site,
            "adminUser": "Administrator",
            # The site's first Administrator password: changing it in ERPNext does not update this.
            "adminPassword": admin_password.result,
            "version": tag_of(erpnext_ref),
        }
        self.register_outputs(self.outputs)
