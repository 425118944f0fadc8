"""Chat: Chatwoot at chat.<domain>, with Sidekiq, Postgres (pgvector) and Redis, prepared and bootstrapped.

Four containers on the Chat internal network:

- ``chat-rails``: the dashboard, the API, the widget and ActionCable websockets on :3000, the only port
  Traefik reaches;
- ``chat-sidekiq``: background jobs (mail, webhooks, channel APIs): on the client's shared network as well,
  for its route out;
- ``chat-postgres``: pgvector's Postgres (Chatwoot 4 needs the extension), reachable by Chat alone;
- ``chat-redis``: Sidekiq's queues, ActionCable and Chatwoot's flags, behind a password.

Data under the data root: ``chat/postgres``, ``chat/redis`` and ``chat/storage`` (uploads, Active Storage's
local disk at ``/app/storage``). Backups take a ``pg_dump`` of the database and the storage files.

No browser step. Before Rails or Sidekiq start, two one-off containers of the pinned image run on the Chat
network: ``db:chatwoot_prepare`` (schema and seeds on an empty database, migrations otherwise; again after
every version change, after the pre-update snapshot), then a ``rails runner`` that creates the first super
admin and account (what the onboarding page does) unless that login exists, optionally the website inbox
(once per site: an inbox the admin deleted stays deleted), closes the onboarding page, so no visitor can
claim the installation, and keeps sign-up closed in Chatwoot's installation setting (ENABLE_ACCOUNT_SIGNUP's
seeded row, which Chatwoot reads before the environment).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from email.utils import formataddr
from typing import Any

import pulumi
import pulumi_random as random

from components.core import postgres as databases
from components.core.container import LABEL_PREFIX, Attach, Healthcheck
from components.core.deployment import Deployment, FileSet
from components.core.model import secret
from components.core.probe import Check
from components.core.scripts import PROGRESS, script
from components.core.secrets import ENV_FILE_WRAPPER, SecretFile
from components.core.storage import DataDir
from components.core.versions import tag_of

SERVICE = "chat"
RAILS_PORT = 3000
POSTGRES_UID = "999:999"  # `postgres` in pgvector's (Debian) Postgres image
REDIS_UID = "999:1000"  # `redis` in the Alpine Redis image
APP_OWNER = "0:0"  # Chatwoot runs as root: see ROOT_REASON
REDIS_ALIAS = "redis"  # names on the Chat internal network
DB_NAME = DB_USER = "chatwoot"
STORAGE = "/app/storage"
BOOTSNAP_CACHE_DIR = "/tmp/bootsnap"
# config/database.yml sets `statement_timeout: ENV["POSTGRES_STATEMENT_TIMEOUT"] || "14s"`; upstream's release
# step (Procfile `release:`) raises it for db:chatwoot_prepare, so a long migration is not cancelled midway.
PREPARE_STATEMENT_TIMEOUT = "600s"

RAILS_HEALTH_CHECK = f'wget -q -O - http://127.0.0.1:{RAILS_PORT}/api | grep -q \'"data_services":"ok"\''

ROOT_REASON = (
    "the Chatwoot image declares no USER and its files belong to root; it runs with every capability "
    "dropped and no-new-privileges, so this root cannot chown, bypass file modes or gain privileges"
)
# What Rails writes besides /app/storage: tmp/ (pid file), log/ (unused with logs on stdout, kept writable
# for gems that open it) and /tmp (uploads being received, image variants being made, bootsnap's cache: see
# BOOTSNAP_CACHE_DIR).
APP_TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=256m",
    "/app/tmp": "rw,noexec,nosuid,nodev,size=64m",
    "/app/log": "rw,noexec,nosuid,nodev,size=16m",
}

# Runs in a one-off container with the app's environment (a Rails boot: the database and Redis must be up).
# The password arrives in the environment only. Idempotent: an existing login is left as it is.
BOOTSTRAP = script(__name__, "bootstrap.rb")
# The post-deploy checks (components/core/probe.py), through the public route: /api's own report of Postgres
# and Redis, and (with a website inbox) the widget page free of X-Frame-Options.
PROBE_API = script(__name__, "probe-api.sh")
PROBE_WIDGET = script(__name__, "probe-widget.sh")


class Chat(pulumi.ComponentResource):
    """Chatwoot, its workers, database and Redis for one client."""

    outputs: dict[str, Any]
    checks: list[Check]

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:chat:Chat", name, None, opts)
        cfg = d.config
        chat = cfg.chat
        assert chat.admin_email is not None, "config: chat.adminEmail is required with chat"
        admin_email = chat.admin_email.lower()  # as Chatwoot stores logins
        child = pulumi.ResourceOptions(parent=self)
        # Replacing these would make what Chatwoot encrypted unreadable (MFA secrets, channel and SMTP
        # credentials): protected, like the data. Retiring a client starts with `pulumi state unprotect`.
        kept = pulumi.ResourceOptions(parent=self, protect=True)

        internal = d.network(parent=self, service=SERVICE)
        data = d.data_dirs(
            parent=self,
            service=SERVICE,
            dirs=[
                DataDir("postgres", owner=POSTGRES_UID, mode="0700"),
                DataDir("redis", owner=REDIS_UID, mode="0750"),
                DataDir("storage", owner=APP_OWNER, mode="0750"),
            ],
        )
        d.backup_sources.append(FileSet(SERVICE, data.locations["storage"]))

        # Alphanumeric: safe in a DSN or a redis:// URL, in environment files and shell assignments alike.
        db_password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        redis_password = random.RandomPassword(f"{name}-redis-password", length=32, special=False, opts=child)
        # `rake secret`'s shape: 128 hex characters (Chatwoot asks for an alphanumeric SECRET_KEY_BASE).
        secret_key_base = random.RandomBytes(f"{name}-secret-key-base", length=64, opts=kept)
        # What `rails db:encryption:init` makes: 32 alphanumeric characters each.
        encryption = {
            key: random.RandomPassword(f"{name}-{suffix}", length=32, special=False, opts=kept)
            for key, suffix in [
                ("ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "encryption-primary-key"),
                ("ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "encryption-deterministic-key"),
                ("ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "encryption-key-derivation-salt"),
            ]
        }
        # Chatwoot's password rules: an upper- and a lower-case letter, a digit and one of its symbols.
        admin_password = random.RandomPassword(
            f"{name}-admin-password",
            length=32,
            override_special="!#%*+-=_",
            min_upper=2,
            min_lower=2,
            min_numeric=2,
            min_special=2,
            opts=child,
        )

        # A new Chatwoot (its migrations) or Postgres waits for the snapshot of the old one.
        chatwoot_ref = cfg.pin("chatwoot")
        upgrade = d.pre_update_backup(
            parent=self, service=SERVICE, versions=[chatwoot_ref, cfg.pin("pgvector")]
        )

        # The image makes POSTGRES_USER a superuser, which Chatwoot's schema needs: it enables extensions
        # (vector, pg_trgm, pgcrypto, pg_stat_statements). Only Chat's own containers reach this server.
        postgres = databases.postgres(
            d,
            parent=self,
            service=SERVICE,
            image="pgvector",
            user=POSTGRES_UID,
            data=data,
            data_dir="postgres",
            database=DB_NAME,
            password=db_password.result,
            network=internal.name,
            depends_on=[*data.ready, *upgrade],
        )

        # Redis keeps at most 3/4 of its limit (the rest is for the AOF rewrite's fork) and never evicts:
        # evicting would drop queued jobs. The password is in a config file (issue 14), not on a command line
        # or in the environment; redis-server reads the file, then the options after it.
        redis_max_mb = cfg.limits(f"{SERVICE}-redis").memory_mb * 3 // 4
        redis_conf = d.secret_file(
            self,
            SERVICE,
            "redis.conf",
            redis_password.result.apply(lambda p: f"requirepass {p}\n"),
            REDIS_UID,
        )
        redis_auth = f"REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' {redis_conf.path})\""
        redis = d.container(
            parent=self,
            service=SERVICE,
            role="redis",
            image="chatRedis",
            user=REDIS_UID,
            entrypoint=["redis-server"],
            command=[
                redis_conf.path,
                *("--dir", "/data", "--appendonly", "yes", "--maxmemory", f"{redis_max_mb}mb"),
                *("--maxmemory-policy", "noeviction"),
            ],
            mounts=[data.mount("redis", "/data")],
            secret_files=[redis_conf],
            networks=[Attach(internal.name, aliases=(REDIS_ALIAS,))],
            # REDISCLI_AUTH, read from the config file inside the container: off redis-cli's command line.
            healthcheck=Healthcheck(
                [f"{redis_auth} redis-cli ping | grep -q PONG"], shell=True, interval="10s"
            ),
            wait_healthy=True,
            depends_on=data.ready,
        )

        # Chatwoot sets X-Frame-Options itself and drops it for /widget, which client websites embed
        # (chatwoot app/controllers/widgets_controller.rb: `response.headers.delete('X-Frame-Options')`).
        exposure = d.expose(SERVICE, "rails", RAILS_PORT, frame_options=None)
        url = exposure.url
        app_env: dict[str, pulumi.Input[str]] = {
            "RAILS_ENV": "production",
            "NODE_ENV": "production",
            "INSTALLATION_ENV": "docker",
            "RAILS_LOG_TO_STDOUT": "true",
            "LOG_LEVEL": "info",
            # Links in mail, the widget's script, OAuth callbacks. TLS ends at Traefik, which sends
            # X-Forwarded-Proto; so FORCE_SSL stays off and the health probe can use plain HTTP.
            "FRONTEND_URL": url,
            "DEFAULT_LOCALE": chat.locale,
            "ENABLE_ACCOUNT_SIGNUP": "false",
            # Explicit: Chatwoot's production defaults (chatwoot_production, chatwoot_prod) name another DB.
            "POSTGRES_HOST": databases.ALIAS,
            "POSTGRES_PORT": "5432",
            "POSTGRES_DATABASE": DB_NAME,
            "POSTGRES_USERNAME": DB_USER,
            "REDIS_URL": f"redis://{REDIS_ALIAS}:6379",
            "ACTIVE_STORAGE_SERVICE": "local",
            # config/boot.rb requires bootsnap/setup, whose default_setup caches under tmp/cache unless
            # BOOTSNAP_CACHE_DIR says otherwise: on the larger /tmp, so a full cache cannot leave Puma
            # without room for its pid file in the 64 MB /app/tmp.
            "BOOTSNAP_CACHE_DIR": BOOTSNAP_CACHE_DIR,
        }
        app_secrets: dict[str, pulumi.Input[str]] = {
            "SECRET_KEY_BASE": secret_key_base.hex,
            "POSTGRES_PASSWORD": db_password.result,
            "REDIS_PASSWORD": redis_password.result,
            **{key: password.result for key, password in encryption.items()},
        }
        smtp = chat.smtp
        if smtp.address is not None:
            assert smtp.sender is not None, "config: smtp.sender comes with smtp.address"
            app_env |= {
                "MAILER_SENDER_EMAIL": formataddr((cfg.company, smtp.sender)),
                "SMTP_ADDRESS": smtp.address,
                "SMTP_PORT": str(smtp.port),
                "SMTP_DOMAIN": cfg.domain,
                "SMTP_OPENSSL_VERIFY_MODE": "peer",
            }
            # production.rb sets the mail gem's `tls` only when SMTP_TLS is present: TLS from the first byte
            # (465), STARTTLS off; otherwise STARTTLS, which the server must offer.
            if smtp.implicit_tls:
                app_env |= {"SMTP_TLS": "true", "SMTP_ENABLE_STARTTLS_AUTO": "false"}
            else:
                app_env["SMTP_ENABLE_STARTTLS_AUTO"] = "true"
            if smtp.username is not None and smtp.password is not None:
                app_env |= {"SMTP_USERNAME": smtp.username, "SMTP_AUTHENTICATION": smtp.authentication}
                app_secrets["SMTP_PASSWORD"] = secret(smtp.password)

        # Chatwoot reads secrets from its environment only: an env file, sourced by the wrapper entrypoint.
        env_file = d.env_file(
            parent=self, service=SERVICE, name="chat.env", values=app_secrets, owner=APP_OWNER
        )
        chatwoot = d.images.get("chatwoot")
        one_off = _OneOff(
            d,
            parent=self,
            image_id=chatwoot.image_id,
            network=internal.name,
            env={"TZ": cfg.timezone, **app_env},
            secret_env=app_secrets,
            env_file=env_file,
        )
        prepare = one_off.run(
            "prepare",
            ["bundle", "exec", "rails", "db:chatwoot_prepare"],
            extra_env={"POSTGRES_STATEMENT_TIMEOUT": PREPARE_STATEMENT_TIMEOUT},
            # Once per version: the schema (first deploy) or the migrations (upgrades).
            triggers=[chatwoot_ref],
            depends_on=[postgres, redis, chatwoot, *upgrade],
        )
        bootstrap_env = {
            "BOOTSTRAP_ADMIN_EMAIL": admin_email,
            "BOOTSTRAP_ADMIN_NAME": chat.admin_name,
            "BOOTSTRAP_ACCOUNT_NAME": cfg.company,
        }
        if chat.website_inbox:
            bootstrap_env["BOOTSTRAP_WEBSITE_URL"] = chat.website_inbox
            bootstrap_env["BOOTSTRAP_WEBSITE_NAME"] = chat.website_inbox.removeprefix("https://")
        bootstrap = one_off.run(
            "bootstrap",
            ["bundle", "exec", "rails", "runner", BOOTSTRAP],
            extra_env=bootstrap_env,
            extra_secrets={"BOOTSTRAP_ADMIN_PASSWORD": admin_password.result},
            extra_file=d.env_file(
                parent=self,
                service=SERVICE,
                name="bootstrap.env",
                values={"BOOTSTRAP_ADMIN_PASSWORD": admin_password.result},
                owner=APP_OWNER,
            ),
            # A new login or website; and after every prepare, so a database seeded anew never keeps the
            # onboarding page open.
            triggers=[chatwoot_ref, admin_email, chat.website_inbox or ""],
            depends_on=[prepare],
        )

        app: dict[str, Any] = {
            "parent": self,
            "service": SERVICE,
            "image": "chatwoot",
            "user": None,
            "root_reason": ROOT_REASON,
            "envs": app_env,
            "mounts": [data.mount("storage", STORAGE)],
            "secret_files": [env_file],
            "tmpfs": APP_TMPFS,
        }
        rails_networks = [*exposure.networks, Attach(internal.name, aliases=("rails",))]
        if not cfg.routed:
            # An internal network can neither publish the loopback port nor reach the channels' APIs.
            rails_networks.insert(0, Attach(d.shared_network))
        self.rails = d.container(
            role="rails",
            # No upstream entrypoint: it waits for Postgres and runs `bundle install`, both done before this
            # starts; its stale-pid cleanup is moot with tmp/ on a tmpfs. The image declares no ENTRYPOINT
            # (chatwoot docker/Dockerfile, final stage, at 02cf698): the wrapper runs the command as given.
            entrypoint=[*ENV_FILE_WRAPPER, env_file.path],
            command=["bundle", "exec", "rails", "s", "-p", str(RAILS_PORT), "-b", "0.0.0.0"],
            networks=rails_networks,
            labels=exposure.labels,
            ports=exposure.ports,
            # /api (ApiController#index) answers 200 unauthenticated even with Postgres down, reporting
            # `"data_services":"failing"`: healthy only when it says ok. The image has busybox wget, not curl.
            healthcheck=Healthcheck(
                [RAILS_HEALTH_CHECK],
                shell=True,
                timeout="10s",
                retries=5,
                start_period="180s",
            ),
            wait_healthy=True,
            wait_timeout=600,
            depends_on=[bootstrap, *data.ready, *upgrade],
            **app,
        )
        self.sidekiq = d.container(
            role="sidekiq",
            entrypoint=[*ENV_FILE_WRAPPER, env_file.path],
            command=["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"],
            # Mail, webhooks and channel APIs need a route out: the client's shared network gives one.
            networks=[Attach(internal.name), Attach(d.shared_network)],
            # Sidekiq serves no port. Once booted it titles its process `sidekiq <version> <tag> [n of m
            # busy]` (and adds `stopping` while it shuts down).
            healthcheck=Healthcheck(
                ["grep -q '^sidekiq .*busy]' /proc/1/cmdline && ! grep -q stopping /proc/1/cmdline"],
                shell=True,
                start_period="180s",
            ),
            depends_on=[bootstrap, *data.ready, *upgrade],
            **app,
        )

        self.checks = [Check("chat-api", PROBE_API)]
        if chat.website_inbox:
            self.checks.append(
                Check(
                    "chat-widget",
                    PROBE_WIDGET,
                    env={"VH_CHAT_ADMIN_EMAIL": admin_email, "VH_CHAT_WEBSITE": chat.website_inbox},
                    secret_env={"VH_CHAT_ADMIN_PASSWORD": admin_password.result},
                )
            )

        self.outputs = {
            "url": url,
            "adminEmail": admin_email,
            # The first password: a change made in Chatwoot afterwards is not reflected here.
            "adminPassword": admin_password.result,
            # Without them a restored database's encrypted columns are unreadable: keep them with the backups.
            "encryptionKeys": pulumi.Output.secret(
                pulumi.Output.all(**{key: password.result for key, password in encryption.items()})
            ),
            "version": tag_of(chatwoot_ref),
            # For the post-deploy probe: no login; "ok" only once Rails reaches Redis with its password.
            "healthPath": "/api",
            "healthBody": '"queue_services":"ok"',
        }
        self.register_outputs(self.outputs)


class _OneOff:
    """A host step: `docker run --rm` of the Chatwoot image on the Chat network, with the app's environment.

    Plain values reach `docker run` by name (`-e NAME`) from the step's environment, so none is in the
    script; secrets come from the app's env file (and the step's own one), mounted read-only and sourced by
    /bin/sh as the entrypoint (issue 14). The step keeps the secrets only so that progress.sh masks them.
    The container is as hardened as the app's and named `<client>-chat-<role>`: a second run of the same
    step while one is still going fails on the name instead of migrating twice at once.
    """

    def __init__(
        self,
        d: Deployment,
        *,
        parent: pulumi.Resource,
        image_id: pulumi.Input[str],
        network: pulumi.Input[str],
        env: Mapping[str, pulumi.Input[str]],
        secret_env: Mapping[str, pulumi.Input[str]],
        env_file: SecretFile,
    ):
        self._d = d
        self._parent = parent
        self._env = dict(env)
        self._secret_env = dict(secret_env)
        self._env_file = env_file
        # The script's own inputs, not forwarded into the container.
        self._control = {"VH_CHAT_IMAGE": image_id, "VH_CHAT_NETWORK": network}

    def run(
        self,
        role: str,
        command: Sequence[str],
        *,
        triggers: Sequence[pulumi.Input[str]],
        depends_on: Sequence[pulumi.Resource],
        extra_env: Mapping[str, str] | None = None,
        extra_secrets: Mapping[str, pulumi.Input[str]] | None = None,
        extra_file: SecretFile | None = None,
    ) -> pulumi.Resource:
        cfg = self._d.config
        env = {**self._env, **(extra_env or {})}
        secret_env = {**self._secret_env, **(extra_secrets or {})}
        files = [self._env_file, *([extra_file] if extra_file else [])]
        limits = cfg.limits(f"{SERVICE}-rails")  # a Rails boot, like the app's
        labels = {
            f"{LABEL_PREFIX}.client": cfg.client,
            f"{LABEL_PREFIX}.service": SERVICE,
            f"{LABEL_PREFIX}.role": role,
            f"{LABEL_PREFIX}.root-reason": ROOT_REASON,
        }
        flags = [
            "--rm",
            f"--name={cfg.client}-{SERVICE}-{role}",
            f"--hostname={role}",
            "--read-only",
            *(f"--tmpfs={path}:{options}" for path, options in APP_TMPFS.items()),
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges:true",
            f"--memory={limits.memory_mb}m",
            f"--memory-swap={limits.memory_mb}m",
            f"--cpus={limits.cpus}",
            *(f"--label={k}={v}" for k, v in sorted(labels.items())),
            *(f"--env={k}" for k in sorted(env)),
            *(f"--mount=type=bind,source={f.host_path},target={f.path},readonly" for f in files),
            "--entrypoint=/bin/sh",
        ]
        wrapper = [
            "-c",
            f'set -a && {" && ".join(f". {f.path}" for f in files)} && set +a && exec "$@"',
            "sh",
        ]
        lines = [
            # Minutes of migrations on an upgrade: progress lines on stderr, rails' own output kept aside
            # (it may print a setting it was given) and shown masked (core/scripts/progress.sh).
            f"progress_run {shlex.quote(f'chat {role}')} docker run",
            '--network="$VH_CHAT_NETWORK"',
            *(shlex.quote(flag) for flag in flags),
            '"$VH_CHAT_IMAGE"',
            " ".join(shlex.quote(part) for part in [*wrapper, *command]),
        ]
        script = PROGRESS + " \\\n  ".join(lines) + "\n"
        return self._d.run(
            f"{SERVICE}-{role}",
            script,
            parent=self._parent,
            env={**env, **self._control, "VH_SECRET_NAMES": " ".join(sorted(secret_env))},
            secret_env=secret_env,
            progress=True,
            triggers=list(triggers),
            depends_on=[*depends_on, *(f.ready for f in files)],
        )
