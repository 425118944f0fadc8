"""Flow: n8n at flow.<domain>, with its external task runner and its own Postgres.

Three containers on the Flow internal network (no route out); n8n alone also joins the routed network:

- ``flow-n8n``: the editor, REST API, webhooks and push on :5678 (the only port Traefik reaches), and the task
  broker on :5679 (never published or routed: the runner connects to it with a shared token);
- ``flow-runner``: ``n8nio/runners`` at n8n's exact version. It runs Code-node JavaScript and Python away
  from n8n's process, database and credentials, on the internal network only, so code has no route out;
- ``flow-postgres``: n8n's database, reachable by n8n alone.

Data under the data root: ``flow/workflows`` is n8n's user folder (``/home/node/.n8n``: the instance config
that repeats the encryption key, binary data), ``flow/files`` the one folder the Read/Write Files from Disk
node may use (``/home/node/.n8n-files``, backed up) and ``flow/database`` is Postgres' directory. Community
packages are off: installing one needs npm and a writable cache on a read-only root, and runs unreviewed code
next to every credential.

No browser step: n8n (2.17+) creates the owner account, and resets it on every start, from
``N8N_INSTANCE_OWNER_*`` with the bcrypt hash of a generated password, so the sign-up form is never open to
whoever visits first. The encryption key is generated once and ``protect``-ed: replacing it would make every
stored credential unreadable. Retiring a client on purpose starts with ``pulumi state unprotect`` on it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_random as random

from components.core import postgres as databases
from components.core.container import Attach, Healthcheck
from components.core.deployment import Deployment, FileSet
from components.core.probe import Check
from components.core.scripts import script
from components.core.storage import DataDir
from components.core.versions import tag_of

N8N_UID = "1000:1000"  # `node` in n8nio/n8n
RUNNER_UID = "1000:1000"  # `runner` in n8nio/runners
POSTGRES_UID = "70:70"  # `postgres` in the Alpine postgres image
N8N_PORT = 5678
BROKER_PORT = 5679
LAUNCHER_HEALTH_PORT = 5680
# n8n's name on the Flow internal network, for the broker alone. Not `n8n`: that is also the container's
# hostname (core/container.py: hostname=role), which Docker writes into /etc/hosts once per network, the
# routed network's address included and in no fixed order; getaddrinfo reads /etc/hosts before Docker's
# DNS, so the broker bound the routed address and the runner, dialling the Flow one, was refused (the lab,
# n8n 2.41.1 on Docker 20.10: "n8n Task Broker ready on n8n" at 10.51.0.2, runner ECONNREFUSED 10.51.1.3).
BROKER_ALIAS = "n8n-broker"
DB_NAME = DB_USER = "n8n"
USER_FOLDER = "/home/node/.n8n"
# SecurityConfig.restrictFileAccessTo's default (`~/.n8n-files`), given explicitly and backed by a data dir.
FILES_FOLDER = "/home/node/.n8n-files"


def _http_ok(port: int, path: str, start_period: str = "30s") -> Healthcheck:
    """Healthy when the URL answers 2xx (both images carry busybox wget, which fails on other statuses)."""
    return Healthcheck(
        ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"], start_period=start_period
    )


class Flow(pulumi.ComponentResource):
    """n8n, its task runner and its Postgres for one client."""

    outputs: dict[str, Any]

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:flow:Flow", name, None, opts)
        cfg = d.config
        service = "flow"
        child = pulumi.ResourceOptions(parent=self)

        internal = d.network(parent=self, service=service)
        data = d.data_dirs(
            parent=self,
            service=service,
            dirs=[
                DataDir("workflows", owner=N8N_UID, mode="0700"),
                DataDir("files", owner=N8N_UID, mode="0700"),
                DataDir("database", owner=POSTGRES_UID, mode="0700"),
            ],
        )
        d.backup_sources.append(FileSet(service, data.locations["workflows"]))
        d.backup_sources.append(FileSet(service, data.locations["files"]))

        # Alphanumeric: these travel in environment variables and database settings, never need quoting.
        db_password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        runner_token = random.RandomPassword(f"{name}-runner-token", length=48, special=False, opts=child)
        # Within n8n's password rules (8-64 characters, a digit, an upper-case letter) for a later UI change.
        owner_password = random.RandomPassword(
            f"{name}-owner-password",
            length=32,
            special=False,
            min_upper=2,
            min_lower=2,
            min_numeric=2,
            opts=child,
        )
        # No keepers, and protected: nothing in the stack may ever regenerate it.
        encryption_key = random.RandomBytes(
            f"{name}-encryption-key", length=32, opts=pulumi.ResourceOptions(parent=self, protect=True)
        )

        # A new n8n (its migrations run at start) or Postgres waits for the snapshot of the old one.
        upgrade = d.pre_update_backup(
            parent=self, service=service, versions=[cfg.pin("n8n"), cfg.pin("flowPostgres")]
        )

        postgres = databases.postgres(
            d,
            parent=self,
            service=service,
            image="flowPostgres",
            user=POSTGRES_UID,
            data=data,
            data_dir="database",
            database=DB_NAME,
            password=db_password.result,
            network=internal.name,
            depends_on=[*data.ready, *upgrade],
        )

        # n8n reads `<VAR>_FILE` for each @Env setting (@n8n/config decorators.ts readEnv: as is, no trim, so
        # the files end without a newline; ignored when <VAR> itself is set, even empty); the runner's
        # launcher too (task-runner-launcher internal/config/lookuper.go, since 1.4.0). One uid (1000) for
        # both: the runner token is one file, mounted in each.
        files = {
            var: d.secret_file(self, service, name, value, N8N_UID)
            for var, name, value in [
                ("N8N_ENCRYPTION_KEY", "encryption-key", encryption_key.hex),
                ("DB_POSTGRESDB_PASSWORD", "db-password", db_password.result),
                ("N8N_RUNNERS_AUTH_TOKEN", "runner-token", runner_token.result),
                ("N8N_INSTANCE_OWNER_PASSWORD_HASH", "owner-password-hash", owner_password.bcrypt_hash),
            ]
        }
        exposure = d.expose(service, "n8n", N8N_PORT)
        url = exposure.url
        email, first_name, last_name = cfg.flow.owner(company=cfg.company, domain=cfg.domain)
        envs: dict[str, pulumi.Input[str]] = {
            # Public addresses: n8n builds the editor's links, OAuth callbacks and webhook URLs from them.
            "N8N_HOST": cfg.hostname(service) if cfg.routed else "127.0.0.1",
            "N8N_PROTOCOL": "https" if cfg.routed else "http",
            "N8N_EDITOR_BASE_URL": url,
            "N8N_WEBHOOK_URL": f"{url}/",  # WEBHOOK_URL before 2.35; the pin refuses older releases
            "N8N_SECURE_COOKIE": "true",  # browsers accept secure cookies on http://127.0.0.1 too
            "GENERIC_TIMEZONE": cfg.timezone,
            "DB_TYPE": "postgresdb",
            "DB_POSTGRESDB_HOST": databases.ALIAS,
            "DB_POSTGRESDB_DATABASE": DB_NAME,
            "DB_POSTGRESDB_USER": DB_USER,
            # The broker binds n8n's address on the Flow network only, so front containers on the routed
            # network cannot reach it: TaskBrokerServer passes this to Node's server.listen(port, host), which
            # resolves a name (net.js lookupAndListen), and Docker's DNS answers the alias with that address.
            "N8N_RUNNERS_MODE": "external",
            "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": BROKER_ALIAS,
            "N8N_INSTANCE_OWNER_MANAGED_BY_ENV": "true",
            "N8N_INSTANCE_OWNER_EMAIL": email,
            "N8N_INSTANCE_OWNER_FIRST_NAME": first_name,
            "N8N_INSTANCE_OWNER_LAST_NAME": last_name,
            # A client's usage is not reported to n8n; the version is the stack's to change, not a banner's.
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            # No call home a client did not ask for (@n8n/config 2.39.0, n8n 2.41.1's: each defaults to
            # true and to an api.n8n.io endpoint): the template gallery, "what's new" and dynamic banners.
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED": "false",
            "N8N_DYNAMIC_BANNERS_ENABLED": "false",
            # The MCP server catalogue, fetched from api.n8n.io/api/mcp-servers at start and every 8 h
            # (n8n 2.41.1 dist/modules/mcp-registry; a default module in @n8n/backend-common 1.41.1, and
            # only a module list turns it off: a name unknown to the version is refused at start).
            "N8N_DISABLED_MODULES": "mcp-registry",
            # @n8n/config NodesConfig.communityPackages (N8N_COMMUNITY_PACKAGES_ENABLED, default true).
            "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
            # @n8n/config SecurityConfig (N8N_RESTRICT_FILE_ACCESS_TO; `;`-separated; empty = no limit).
            "N8N_RESTRICT_FILE_ACCESS_TO": FILES_FOLDER,
        }
        envs |= {f"{var}_FILE": f.path for var, f in files.items()}
        if cfg.routed:
            envs["N8N_PROXY_HOPS"] = "1"  # Traefik: trust one X-Forwarded-* hop, no more
        networks = [*exposure.networks, Attach(internal.name, aliases=(BROKER_ALIAS,))]
        if not cfg.routed:
            # An internal network can neither publish the loopback port nor reach the APIs workflows call.
            networks.insert(0, Attach(d.shared_network))
        self.n8n = d.container(
            parent=self,
            service=service,
            role="n8n",
            image="n8n",
            user=N8N_UID,
            envs=envs,
            mounts=[data.mount("workflows", USER_FOLDER), data.mount("files", FILES_FOLDER)],
            secret_files=list(files.values()),
            # n8n writes its user folder, the files folder and temporary files (uploads); and at start, with
            # the editor on, it copies the editor's assets to ~/.cache/n8n/public (n8n-core InstanceSettings
            # .staticCacheDir): without a writable ~/.cache it cannot start on a read-only root.
            tmpfs={
                "/tmp": "rw,noexec,nosuid,nodev,size=256m",
                "/home/node/.cache": "rw,noexec,nosuid,nodev,size=128m,uid=1000,gid=1000,mode=0700",
            },
            networks=networks,
            labels=exposure.labels,
            ports=exposure.ports,
            # Ready = database connected and migrated; a first start or an upgrade migrates first: allow time.
            healthcheck=_http_ok(N8N_PORT, "/healthz/readiness", start_period="120s"),
            wait_healthy=True,
            wait_timeout=600,
            depends_on=[postgres, *data.ready, *upgrade],
        )

        self.runner = d.container(
            parent=self,
            service=service,
            role="runner",
            image="n8nRunners",
            user=RUNNER_UID,
            envs={
                "N8N_RUNNERS_TASK_BROKER_URI": f"http://{BROKER_ALIAS}:{BROKER_PORT}",
                "N8N_RUNNERS_AUTH_TOKEN_FILE": files["N8N_RUNNERS_AUTH_TOKEN"].path,
                "GENERIC_TIMEZONE": cfg.timezone,  # dates in Code-node JavaScript
            },
            secret_files=[files["N8N_RUNNERS_AUTH_TOKEN"]],
            networks=[Attach(internal.name)],
            healthcheck=_http_ok(LAUNCHER_HEALTH_PORT, "/healthz"),
            wait_healthy=True,
            wait_timeout=120,
            depends_on=[self.n8n, *upgrade],
        )

        # After the endpoint probe (edge/verify.py): ready, and the owner signs in through the route.
        self.checks = [
            Check(
                "flow-login",
                script(__name__, "probe-login.sh"),
                env={"VH_FLOW_OWNER_EMAIL": email},
                secret_env={"VH_FLOW_OWNER_PASSWORD": owner_password.result},
            )
        ]

        self.outputs = {
            "url": url,
            "ownerEmail": email,
            "ownerPassword": owner_password.result,
            # Without it a restored database's credentials cannot be decrypted: keep it with the backup keys.
            "encryptionKey": encryption_key.hex,
            "version": tag_of(cfg.pin("n8n")),
            # For the post-deploy probe: 200 with {"status":"ok"} once the database is connected and migrated.
            "healthPath": "/healthz/readiness",
            "healthBody": '"status":"ok"',
        }
        self.register_outputs(self.outputs)
