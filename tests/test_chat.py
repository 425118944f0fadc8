"""Chat (Chatwoot): containers, environment, secrets, routing, networks, the prepare and bootstrap steps
(their order, triggers and idempotence, the latter run for real in Ruby), data, backups and config errors."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components import config
from components.core import catalog, versions
from components.core.deployment import DatabaseDump, FileSet
from components.core.scripts import PROGRESS
from components.core.secrets import ENV_FILE_WRAPPER
from components.services.chat.component import BOOTSTRAP
from components.suite import deploy
from tests.conftest import (
    PlanFn,
    PreUpdateCalls,
    env_file_of,
    env_of,
    labels_of,
    make_stack,
    networks_of,
    secret_file_of,
    secret_file_steps,
)
from tools import harness

RAILS, SIDEKIQ, POSTGRES, REDIS = (f"clientea-chat-{r}" for r in ("rails", "sidekiq", "postgres", "redis"))
CHATWOOT = "chatwoot/chatwoot:v4.18.0"
ADMIN = "soporte@clientea.com"
COMMAND = "command:local:Command"
# An SMTP relay with a login, its password a `secure:` value of the stack.
SMTP_WITH_LOGIN = {
    "address": "smtp.clientea.com",
    "sender": "chat@clientea.com",
    "username": "chat@clientea.com",
    "password": {"secure": "v1:smtp"},
}
ProblemsFn = Callable[..., list[str]]


@pytest.fixture(scope="module")
def routed() -> harness.Plan:
    return harness.run(make_stack(["chat"], chat={"adminEmail": "Soporte@ClienteA.com", "locale": "es"}))


def chat_containers(p: harness.Plan) -> dict[str, harness.PlannedResource]:
    return {c.inputs["name"]: c for c in p.containers() if labels_of(c)["io.versatilehub.service"] == "chat"}


def depends_on(p: harness.Plan, resource: harness.PlannedResource, name: str) -> bool:
    """`name`: a container's name (clientea-chat-redis) or any resource's logical name (chat-prepare)."""
    other = p.container(name) if name.startswith("clientea-") else p.named(name)
    return other.urn in resource.dependencies


def script(step: harness.PlannedResource) -> str:
    return str(harness.plain(step.inputs["create"]))


def app_env(p: harness.Plan, name: str = "clientea-chat-rails") -> dict[str, str]:
    """What Rails (or Sidekiq) runs with: its plain envs and, sourced by the wrapper, its env file."""
    c = chat_containers(p)[name]
    return {**env_of(c), **env_file_of(p, c, "/run/secrets/chat.env")}


def run_argv(step: harness.PlannedResource) -> list[str]:
    """The `docker run` a one-off step executes, as the shell would split it (variables left unexpanded)."""
    text = script(step).removeprefix("set -euo pipefail\n")
    assert text.startswith(PROGRESS)
    words = shlex.split(text.removeprefix(PROGRESS).replace("\\\n", " "))
    assert words[0] == "progress_run" and words[1].startswith("chat ")
    return words[2:]


def step_env(step: harness.PlannedResource) -> dict[str, str]:
    return {k: str(v) for k, v in harness.plain(step.inputs["environment"]).items()}


# -- containers ---------------------------------------------------------------------------------------


def test_four_hardened_containers(routed: harness.Plan) -> None:
    chat = chat_containers(routed)
    assert sorted(chat) == [POSTGRES, RAILS, REDIS, SIDEKIQ]
    images = {name: c.inputs["image"] for name, c in chat.items()}
    assert images == {
        RAILS: CHATWOOT,
        SIDEKIQ: CHATWOOT,
        POSTGRES: "pgvector/pgvector:0.8.7-pg16",
        REDIS: "redis:8.6.7-alpine",
    }
    assert chat[POSTGRES].inputs["user"] == "999:999" and chat[REDIS].inputs["user"] == "999:1000"
    for name, c in chat.items():
        assert c.inputs["readOnly"] is True, name
        assert c.inputs["capabilities"] == {"drops": ["ALL"]}, name
        assert c.inputs["securityOpts"] == ["no-new-privileges:true"], name
        assert "/tmp" in c.inputs["tmpfs"], name
        assert "docker.sock" not in str(harness.plain(c.inputs)), name
    for name in (RAILS, SIDEKIQ):
        # Chatwoot's image runs as root: said where the container is made, and visible to the policy pack.
        assert "user" not in chat[name].inputs, name
        assert "no USER" in labels_of(chat[name])["io.versatilehub.root-reason"]
        assert set(chat[name].inputs["tmpfs"]) == {"/tmp", "/app/tmp", "/app/log"}, "what Rails writes"
    assert {n for n, c in chat.items() if "io.versatilehub.root-reason" in labels_of(c)} == {RAILS, SIDEKIQ}
    default_total = sum(
        catalog.LIMITS[f"chat-{r}"].memory_mb for r in ("rails", "sidekiq", "postgres", "redis")
    )
    assert default_total <= 2560 and sum(c.inputs["memory"] for c in chat.values()) == default_total


def test_limits_are_overridable_and_redis_stays_within_its_own(plan: PlanFn) -> None:
    p = plan(["chat"], resources={"chat-rails": {"memoryMb": 1536}, "chat-redis": {"memoryMb": 256}})
    chat = chat_containers(p)
    assert chat[RAILS].inputs["memory"] == 1536 and chat[RAILS].inputs["memorySwap"] == 1536
    redis_args = " ".join(harness.plain(chat[REDIS].inputs["command"]))
    assert "--maxmemory 192mb --maxmemory-policy noeviction" in redis_args, "3/4 of 256 MB, never evicting"


def test_healthchecks(routed: harness.Plan) -> None:
    chat = chat_containers(routed)
    checks = {name: c.inputs["healthcheck"]["tests"] for name, c in chat.items()}
    assert checks[RAILS][0] == "CMD-SHELL" and "http://127.0.0.1:3000/api" in checks[RAILS][1]
    assert checks[POSTGRES] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "chatwoot", "-d", "chatwoot"]
    assert checks[REDIS] == [
        "CMD-SHELL",
        "REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' /run/secrets/redis.conf)\""
        " redis-cli ping | grep -q PONG",
    ], "the password from the config file, inside the container: never on redis-cli's command line"
    assert checks[SIDEKIQ][0] == "CMD-SHELL" and "/proc/1/cmdline" in checks[SIDEKIQ][1]
    assert chat[RAILS].inputs["wait"] is True and chat[RAILS].inputs["waitTimeout"] == 600
    assert chat[POSTGRES].inputs["wait"] is True and chat[REDIS].inputs["wait"] is True


def _api_stand_in(data_services: str) -> tuple[Any, int]:
    """A local stand-in for ApiController#index (app/controllers/api_controller.rb): always 200, with
    `data_services` "ok" or "failing" as ActiveRecord's connection is or is not active."""
    import http.server
    import threading

    status = {"version": "4.18.0", "queue_services": "ok", "data_services": data_services}
    body = json.dumps(status, separators=(",", ":")).encode()  # as Rails renders it: no spaces

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(("data_services", "healthy"), [("ok", True), ("failing", False)])
def test_rails_is_unhealthy_while_postgres_is_down(
    routed: harness.Plan, data_services: str, healthy: bool
) -> None:
    """/api answers 200 whether or not Postgres is up: Docker's check, run for real against a stand-in,
    passes only when it reports its data services ok."""
    [check] = chat_containers(routed)[RAILS].inputs["healthcheck"]["tests"][1:]
    server, port = _api_stand_in(data_services)
    try:
        ran = subprocess.run(["sh", "-c", check.replace(":3000/", f":{port}/")], timeout=20, check=False)
    finally:
        server.shutdown()
    assert (ran.returncode == 0) is healthy


# -- environment and secrets -----------------------------------------------------------------------------


def test_app_environment_behind_traefik(routed: harness.Plan) -> None:
    chat = chat_containers(routed)
    env = env_of(chat[RAILS])
    assert env_of(chat[SIDEKIQ]) == env, "Rails and Sidekiq run one configuration"
    expected = {
        "RAILS_ENV": "production",
        "NODE_ENV": "production",
        "INSTALLATION_ENV": "docker",
        "RAILS_LOG_TO_STDOUT": "true",
        "FRONTEND_URL": "https://chat.clientea.com",
        "DEFAULT_LOCALE": "es",
        "ENABLE_ACCOUNT_SIGNUP": "false",
        "POSTGRES_HOST": "postgres",
        "POSTGRES_PORT": "5432",
        "POSTGRES_DATABASE": "chatwoot",
        "POSTGRES_USERNAME": "chatwoot",
        "REDIS_URL": "redis://redis:6379",
        "ACTIVE_STORAGE_SERVICE": "local",
        "TZ": "America/Argentina/Buenos_Aires",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert "FORCE_SSL" not in env and not any(k.startswith("SMTP_") for k in env), "no mail without a server"
    assert harness.plain(chat[RAILS].inputs["command"]) == [
        "bundle",
        "exec",
        "rails",
        "s",
        "-p",
        "3000",
        "-b",
        "0.0.0.0",
    ]
    assert harness.plain(chat[SIDEKIQ].inputs["command"]) == [
        "bundle",
        "exec",
        "sidekiq",
        "-C",
        "config/sidekiq.yml",
    ]
    assert [m["target"] for m in chat[RAILS].inputs["mounts"]] == ["/app/storage", "/run/secrets/chat.env"]
    assert chat[SIDEKIQ].inputs["mounts"] == chat[RAILS].inputs["mounts"], "jobs read and write the uploads"


def test_credentials_match_and_are_dsn_safe(routed: harness.Plan) -> None:
    chat = chat_containers(routed)
    app, db = app_env(routed), env_of(chat[POSTGRES])
    assert (db["POSTGRES_USER"], db["POSTGRES_DB"]) == (app["POSTGRES_USERNAME"], app["POSTGRES_DATABASE"])
    assert "POSTGRES_PASSWORD" not in db, "a file, read by the image's file_env (issue 14)"
    assert secret_file_of(routed, chat[POSTGRES], db["POSTGRES_PASSWORD_FILE"]) == app["POSTGRES_PASSWORD"]
    conf = secret_file_of(routed, chat[REDIS], "/run/secrets/redis.conf")
    assert conf == f"requirepass {app['REDIS_PASSWORD']}\n"
    assert "@" not in app["REDIS_URL"] and app["REDIS_PASSWORD"] not in app["REDIS_URL"]
    for key in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert re.fullmatch(r"[A-Za-z0-9]{32}", app[key]), f"{key} must survive a DSN unescaped"
    assert re.fullmatch(r"[0-9a-f]{128}", app["SECRET_KEY_BASE"]), "alphanumeric, as Chatwoot asks"
    keys = [
        app[f"ACTIVE_RECORD_ENCRYPTION_{k}"]
        for k in ("PRIMARY_KEY", "DETERMINISTIC_KEY", "KEY_DERIVATION_SALT")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", k) for k in keys) and len(set(keys)) == 3
    assert len({app["POSTGRES_PASSWORD"], app["REDIS_PASSWORD"], *keys}) == 5, "no secret serves twice"


def test_secrets_stay_secret(routed: harness.Plan) -> None:
    """Issue 14: no container's env is secret (a preview shows each plain change); the secrets are in the
    env file Rails and Sidekiq source through the wrapper, and reach the one-offs the same way."""
    chat = chat_containers(routed)
    for name, c in chat.items():
        assert not harness.contains_secret(c.inputs["envs"]), f"{name}: a secret in its environment"
    app = app_env(routed)
    assert app_env(routed, SIDEKIQ) == app, "one env file for both"
    secrets = [app[k] for k in app if k.endswith(("PASSWORD", "KEY", "SALT", "KEY_BASE"))]
    assert len(secrets) == 6
    for name in (RAILS, SIDEKIQ):
        assert harness.plain(chat[name].inputs["entrypoints"]) == [*ENV_FILE_WRAPPER, "/run/secrets/chat.env"]
        assert not [s for s in secrets if s in json.dumps(harness.plain(chat[name].inputs))]
    for step in (routed.named("chat-prepare"), routed.named("chat-bootstrap")):
        env = step.inputs["environment"]
        # Kept in the step only so that progress.sh masks them in rails' last lines.
        assert all(
            harness.is_secret(env[k]) for k in ("SECRET_KEY_BASE", "POSTGRES_PASSWORD", "REDIS_PASSWORD")
        )
        argv = run_argv(step)
        assert not [a for a in argv if a.startswith("--env=") and a[6:] in app and app[a[6:]] in secrets]
        assert (
            "--mount=type=bind,source=/srv/versatilehub/clientea/secrets/chat/chat.env,"
            "target=/run/secrets/chat.env,readonly"
        ) in argv
        assert "--entrypoint=/bin/sh" in argv
        assert not any(s in script(step) for s in secrets), "values reach docker run by name only"
        # Only stderr streams, and it holds progress lines and rails' masked last lines (see below).
        assert step.inputs["logging"] == "stderr"
        assert set(step.options["additionalSecretOutputs"]) == {"stdout", "stderr"}
    assert app["REDIS_PASSWORD"] not in json.dumps(harness.plain(chat[REDIS].inputs))
    out = routed.outputs["chat"]
    assert harness.is_secret(out["adminPassword"]) and harness.is_secret(out["encryptionKeys"])


def test_redis_takes_its_password_from_a_config_file_not_its_command_line(routed: harness.Plan) -> None:
    """`redis-server <file> --opt value ...`: the file first, then options (redis.io, Redis configuration);
    the file is read-only at /run/secrets/redis.conf, the redis user's (999), mode 0400."""
    redis = chat_containers(routed)[REDIS]
    assert harness.plain(redis.inputs["entrypoints"]) == ["redis-server"]
    command = harness.plain(redis.inputs["command"])
    assert command[0] == "/run/secrets/redis.conf"
    assert command[1:5] == ["--dir", "/data", "--appendonly", "yes"]
    assert secret_file_of(routed, redis, "/run/secrets/redis.conf").startswith("requirepass ")
    assert env_of(redis) == {"TZ": "America/Argentina/Buenos_Aires"}


def test_encryption_keys_are_generated_once_and_protected(routed: harness.Plan) -> None:
    keys = [r for r in routed.of_type("random:index/randomPassword:RandomPassword") if "encryption" in r.name]
    assert len(keys) == 3
    for key in keys:
        assert key.options["protect"], f"{key.name}: replacing it makes encrypted columns unreadable"
        assert key.inputs["length"] == 32 and key.inputs["special"] is False
    assert not routed.named("chat-db-password").options["protect"]


def test_admin_password_meets_chatwoots_rules(routed: harness.Plan) -> None:
    password = routed.named("chat-admin-password").inputs
    assert password["length"] >= 32
    assert set(password["overrideSpecial"]) <= set("!@#$%^&*()_+-=[]{}|'"), "Chatwoot's special characters"
    assert all(password[k] >= 1 for k in ("minUpper", "minLower", "minNumeric", "minSpecial"))


def test_smtp_from_the_stack_with_its_password_secret(plan: PlanFn) -> None:
    p = plan(["chat"], chat={"adminEmail": ADMIN, "smtp": SMTP_WITH_LOGIN})
    rails = chat_containers(p)[RAILS]
    env = app_env(p)
    assert "SMTP_PASSWORD" not in env_of(rails), "in the env file, not the container's environment"
    assert {k: v for k, v in env.items() if k.startswith(("SMTP_", "MAILER_"))} == {
        "MAILER_SENDER_EMAIL": '"Cliente A S.A." <chat@clientea.com>',
        "SMTP_ADDRESS": "smtp.clientea.com",
        "SMTP_PORT": "587",
        "SMTP_DOMAIN": "clientea.com",
        "SMTP_ENABLE_STARTTLS_AUTO": "true",
        "SMTP_OPENSSL_VERIFY_MODE": "peer",
        "SMTP_USERNAME": "chat@clientea.com",
        "SMTP_AUTHENTICATION": "login",
        "SMTP_PASSWORD": harness.placeholder("versatilehub:chat.smtp.password"),
    }
    assert not harness.contains_secret(rails.inputs["envs"])
    assert harness.is_secret(p.named("chat-bootstrap").inputs["environment"]["SMTP_PASSWORD"])


def test_smtp_without_login_sends_unauthenticated(plan: PlanFn) -> None:
    smtp = {"address": "relay.clientea.com", "port": 25, "sender": "chat@clientea.com"}
    env = env_of(chat_containers(plan(["chat"], chat={"adminEmail": ADMIN, "smtp": smtp}))[RAILS])
    assert env["SMTP_ADDRESS"] == "relay.clientea.com" and env["SMTP_PORT"] == "25"
    assert not {"SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_AUTHENTICATION"} & set(env)


def test_the_smtp_password_travels_with_the_other_chat_secrets(plan: PlanFn) -> None:
    """Issue 16 item 9: the SMTP password is the stack's `secure:` value, never generated; it reaches Rails,
    Sidekiq and the one-off steps exactly as SECRET_KEY_BASE does (today the containers' secret env; with
    issue 14's env file, that file), and never a step's script text."""
    p = plan(["chat"], chat={"adminEmail": ADMIN, "smtp": SMTP_WITH_LOGIN})
    for container in (chat_containers(p)[RAILS], chat_containers(p)[SIDEKIQ]):
        env = env_of(container)
        assert ("SMTP_PASSWORD" in env) == ("SECRET_KEY_BASE" in env)
    for role in ("prepare", "bootstrap"):
        step = p.named(f"chat-{role}")
        names = set(step_env(step)["VH_SECRET_NAMES"].split())
        assert {"SMTP_PASSWORD", "SECRET_KEY_BASE"} <= names, "masked in the step's output like the others"
        assert harness.placeholder("versatilehub:chat.smtp.password") not in script(step)


def test_smtp_on_465_speaks_tls_from_the_first_byte(plan: PlanFn) -> None:
    """Issue 16 item 9: implicit TLS (SMTPS). Chatwoot's config/environments/production.rb (v4.18.0) hands
    SMTP_TLS to the mail gem's `tls` only when it is set; STARTTLS stays off on such a connection."""
    smtp = {"address": "smtp.clientea.com", "port": 465, "sender": "chat@clientea.com"}
    env = env_of(chat_containers(plan(["chat"], chat={"adminEmail": ADMIN, "smtp": smtp}))[RAILS])
    assert (env["SMTP_PORT"], env["SMTP_TLS"], env["SMTP_ENABLE_STARTTLS_AUTO"]) == ("465", "true", "false")
    relay = {**smtp, "port": 2465, "tls": "implicit"}
    env = env_of(chat_containers(plan(["chat"], chat={"adminEmail": ADMIN, "smtp": relay}))[RAILS])
    assert (env["SMTP_PORT"], env["SMTP_TLS"], env["SMTP_ENABLE_STARTTLS_AUTO"]) == ("2465", "true", "false")
    env = env_of(
        chat_containers(plan(["chat"], chat={"adminEmail": ADMIN, "smtp": {**smtp, "port": 587}}))[RAILS]
    )
    assert "SMTP_TLS" not in env and env["SMTP_ENABLE_STARTTLS_AUTO"] == "true"


@pytest.mark.parametrize(
    ("smtp", "key", "says"),
    [
        ({"port": 465, "tls": "starttls"}, "chat.smtp.tls", "port 465 speaks TLS from the first byte"),
        ({"tls": "ssl"}, "chat.smtp.tls", "Input should be 'starttls' or 'implicit'"),
        ({"tls": "implicit\nSMTP_TLS=false"}, "chat.smtp.tls", "Input should be 'starttls' or 'implicit'"),
        ({"port": "465; rm -rf /"}, "chat.smtp.port", "valid integer"),
        ({"port": 0}, "chat.smtp.port", "greater than or equal to 1"),
        ({"address": "smtp.clientea.com\nSMTP_PASSWORD=x"}, "chat.smtp.address", ""),
        ({"address": "smtp.clientea.com:465"}, "chat.smtp.address", ""),
        ({"sender": "chat@clientea.com\r\nBcc: x@evil.example"}, "chat.smtp.sender", ""),
        ({"username": "chat\nSMTP_PASSWORD=x", "password": {"secure": "v1:smtp"}}, "chat.smtp.username", ""),
        ({"authentication": "none"}, "chat.smtp.authentication", "'plain', 'login' or 'cram_md5'"),
    ],
)
def test_bad_smtp_settings_name_the_key_and_the_fix(
    config_problems: ProblemsFn, smtp: dict[str, Any], key: str, says: str
) -> None:
    base = {"address": "smtp.clientea.com", "sender": "chat@clientea.com"}
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "smtp": {**base, **smtp}})
    assert line.startswith(f"versatilehub:{key}: ") and says in line, line
    assert f"fix: pulumi config set --path 'versatilehub:{key}' " in line and "\n" not in line, line
    fix = line.split("fix:")[1]
    assert "rm -rf" not in fix and "SMTP_PASSWORD" not in fix, "the fix is an example value, not the bad one"


# -- routing and networks --------------------------------------------------------------------------------


def test_only_rails_faces_traefik(routed: harness.Plan) -> None:
    chat = chat_containers(routed)
    labels = labels_of(chat[RAILS])
    assert labels["traefik.enable"] == "true" and labels["traefik.docker.network"] == "web"
    assert labels["traefik.http.routers.clientea-chat.rule"] == "Host(`chat.clientea.com`)"
    assert labels["traefik.http.routers.clientea-chat.entrypoints"] == "websecure,websecure6"
    assert labels["traefik.http.services.clientea-chat.loadbalancer.server.port"] == "3000"
    for name in (SIDEKIQ, POSTGRES, REDIS):
        assert not any(k.startswith("traefik.") for k in labels_of(chat[name])), name
        assert "web" not in networks_of(chat[name]), name
    assert not any("ports" in c.inputs for c in chat.values()), "nothing is published on the host"


def test_chat_internal_network_holds_the_data(routed: harness.Plan) -> None:
    net = routed.get("docker:index/network:Network", "chat-internal")
    assert net.inputs["name"] == "clientea-chat" and net.inputs["internal"] is True
    chat = chat_containers(routed)
    assert networks_of(chat[POSTGRES]) == ["clientea-chat"] and networks_of(chat[REDIS]) == ["clientea-chat"]
    aliases = {
        name: harness.plain(chat[name].inputs["networksAdvanced"])[0]["aliases"] for name in (POSTGRES, REDIS)
    }
    assert aliases == {POSTGRES: ["postgres"], REDIS: ["redis"]}
    assert sorted(networks_of(chat[RAILS])) == ["clientea-chat", "web"]
    # Sidekiq delivers mail and webhooks and calls the channels' APIs: it needs a route out.
    assert sorted(networks_of(chat[SIDEKIQ])) == ["clientea-chat", "clientea-shared"]


def test_hostname_override_moves_the_router_and_the_frontend_url(plan: PlanFn) -> None:
    p = plan(["chat"], chat={"adminEmail": ADMIN}, hostnames={"chat": "soporte.clientea.com"})
    rails = chat_containers(p)[RAILS]
    assert labels_of(rails)["traefik.http.routers.clientea-chat.rule"] == "Host(`soporte.clientea.com`)"
    assert env_of(rails)["FRONTEND_URL"] == "https://soporte.clientea.com"
    assert p.outputs["chat"]["url"] == "https://soporte.clientea.com"


def test_standalone_serves_plain_http_on_loopback(plan: PlanFn) -> None:
    p = plan(["chat"], chat={"adminEmail": ADMIN}, mode="standalone", standalonePort=8085, acmeEmail=None)
    rails = chat_containers(p)[RAILS]
    assert rails.inputs["ports"] == [{"internal": 3000.0, "external": 8085.0, "ip": "127.0.0.1"}]
    assert sorted(networks_of(rails)) == ["clientea-chat", "clientea-shared"]
    assert env_of(rails)["FRONTEND_URL"] == "http://127.0.0.1:8085"
    assert not any(k.startswith("traefik.") for k in labels_of(rails))


# -- prepare, bootstrap and upgrades ---------------------------------------------------------------------


def test_prepare_runs_once_per_version_before_anything_serves(routed: harness.Plan) -> None:
    prepare, bootstrap = routed.named("chat-prepare"), routed.named("chat-bootstrap")
    assert prepare.type == COMMAND and harness.plain(prepare.inputs["triggers"]) == [CHATWOOT]
    argv = run_argv(prepare)
    assert argv[:2] == ["docker", "run"] and argv[-4:] == ["bundle", "exec", "rails", "db:chatwoot_prepare"]
    assert "--network=$VH_CHAT_NETWORK" in argv and argv[-8] == "$VH_CHAT_IMAGE"
    # The image declares no ENTRYPOINT (chatwoot docker/Dockerfile at 02cf698): /bin/sh sources the env
    # file, then execs the command as it was.
    assert argv[-7:-4] == ["-c", 'set -a && . /run/secrets/chat.env && set +a && exec "$@"', "sh"]
    env = step_env(prepare)
    assert (env["VH_CHAT_NETWORK"], env["VH_CHAT_IMAGE"]) == ("clientea-chat", CHATWOOT)
    assert depends_on(routed, prepare, POSTGRES) and depends_on(routed, prepare, REDIS)
    assert depends_on(routed, bootstrap, "chat-prepare")
    # config/database.yml: statement_timeout is POSTGRES_STATEMENT_TIMEOUT or 14s; upstream's Procfile
    # release step runs db:chatwoot_prepare with 600s, so a grown database's migration is not cancelled.
    assert env["POSTGRES_STATEMENT_TIMEOUT"] == "600s" and "--env=POSTGRES_STATEMENT_TIMEOUT" in argv
    assert "POSTGRES_STATEMENT_TIMEOUT" not in step_env(bootstrap), "the app keeps Chatwoot's 14 s"
    chat = chat_containers(routed)
    assert "POSTGRES_STATEMENT_TIMEOUT" not in env_of(chat[RAILS])
    for name in (RAILS, SIDEKIQ):
        assert depends_on(routed, chat[name], "chat-bootstrap"), f"{name}: starts on a claimed install"


def test_a_new_version_prepares_and_bootstraps_again(plan: PlanFn) -> None:
    p = plan(["chat"], chat={"adminEmail": ADMIN}, versions={"chatwoot": "v4.18.1"})
    assert harness.plain(p.named("chat-prepare").inputs["triggers"]) == ["chatwoot/chatwoot:v4.18.1"]
    assert harness.plain(p.named("chat-bootstrap").inputs["triggers"])[0] == "chatwoot/chatwoot:v4.18.1"
    assert chat_containers(p)[RAILS].inputs["image"] == "chatwoot/chatwoot:v4.18.1"


def test_one_off_containers_are_hardened_like_the_app(routed: harness.Plan) -> None:
    argv = run_argv(routed.named("chat-prepare"))
    for flag in (
        "--rm",
        "--name=clientea-chat-prepare",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges:true",
        "--memory=1024m",
        "--tmpfs=/app/tmp:rw,noexec,nosuid,nodev,size=64m",
        "--label=io.versatilehub.role=prepare",
    ):
        assert flag in argv, flag
    envs = [a.removeprefix("--env=") for a in argv if a.startswith("--env=")]
    assert envs and all(re.fullmatch(r"[A-Z_]+", e) for e in envs), "names only, values from the environment"
    assert set(envs) - {"POSTGRES_STATEMENT_TIMEOUT"} == set(env_of(chat_containers(routed)[RAILS])), (
        "the app's exact environment, and the migrations' longer statement timeout"
    )


def test_bootsnap_caches_on_the_larger_tmpfs(routed: harness.Plan) -> None:
    """config/boot.rb requires bootsnap/setup; Bootsnap.default_setup takes ENV["BOOTSNAP_CACHE_DIR"] and
    falls back to tmp/cache, i.e. the 64 MB /app/tmp that also holds Puma's pid file."""
    for name in (RAILS, SIDEKIQ):
        c = chat_containers(routed)[name]
        cache = env_of(c)["BOOTSNAP_CACHE_DIR"]
        assert cache.startswith("/tmp/"), name
        assert c.inputs["tmpfs"]["/tmp"].endswith("size=256m"), name


def test_a_version_change_waits_for_the_pre_update_backup(pre_update_calls: PreUpdateCalls) -> None:
    asked = pre_update_calls
    p = harness.run(make_stack(["chat"], versions={"chatwoot": "v4.18.1"}))
    assert asked == [("chat", ["chatwoot/chatwoot:v4.18.1", "pgvector/pgvector:0.8.7-pg16"])]
    for name in (POSTGRES, RAILS, SIDEKIQ):
        assert depends_on(p, p.container(name), "chat-pre-update-backup"), name
    assert depends_on(p, p.named("chat-prepare"), "chat-pre-update-backup"), "migrate after the snapshot"


def test_bootstrap_creates_the_super_admin_from_the_stack(routed: harness.Plan) -> None:
    step = routed.named("chat-bootstrap")
    argv = run_argv(step)
    assert argv[-5:-1] == ["bundle", "exec", "rails", "runner"] and argv[-1] == BOOTSTRAP
    env = step_env(step)
    assert env["BOOTSTRAP_ADMIN_EMAIL"] == ADMIN, "lower-cased, as Chatwoot stores logins"
    assert (env["BOOTSTRAP_ACCOUNT_NAME"], env["BOOTSTRAP_ADMIN_NAME"]) == ("Cliente A S.A.", "Administrator")
    assert harness.is_secret(step.inputs["environment"]["BOOTSTRAP_ADMIN_PASSWORD"])
    assert "--env=BOOTSTRAP_ADMIN_PASSWORD" not in argv, "from its own env file (issue 14)"
    assert 'set -a && . /run/secrets/chat.env && . /run/secrets/bootstrap.env && set +a && exec "$@"' in argv
    writer = secret_file_steps(routed)["/srv/versatilehub/clientea/secrets/chat/bootstrap.env"]
    assert harness.plain(writer.inputs["environment"]["VH_SECRET_VALUE"]) == (
        f"BOOTSTRAP_ADMIN_PASSWORD={shlex.quote(env['BOOTSTRAP_ADMIN_PASSWORD'])}\n"
    )
    assert depends_on(routed, step, writer.name), "the file exists before the one-off starts"
    assert env["BOOTSTRAP_ADMIN_PASSWORD"] not in script(step)
    assert "BOOTSTRAP_WEBSITE_URL" not in env
    # The guard, the builder call derived from Chatwoot's onboarding controller, and the page closed.
    assert "User.find_by(email: email)" in BOOTSTRAP
    assert "super_admin: true" in BOOTSTRAP and "confirmed: true" in BOOTSTRAP
    assert "Redis::Alfred.delete(Redis::Alfred::CHATWOOT_INSTALLATION_ONBOARDING)" in BOOTSTRAP
    assert harness.plain(step.inputs["triggers"]) == [CHATWOOT, ADMIN, ""]


def test_website_inbox_is_part_of_the_bootstrap(plan: PlanFn) -> None:
    p = plan(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": "https://WWW.clientea.com/"})
    step = p.named("chat-bootstrap")
    env = step_env(step)
    assert (env["BOOTSTRAP_WEBSITE_URL"], env["BOOTSTRAP_WEBSITE_NAME"]) == (
        "https://www.clientea.com",
        "www.clientea.com",
    )
    assert harness.plain(step.inputs["triggers"])[-1] == "https://www.clientea.com"


# Chatwoot's classes as the bootstrap uses them, with their state in a JSON file between runs: enough to
# run the real script twice and see what it creates, what it leaves alone and what it deletes.
STAND_INS = r"""
require "json"
STATE = ENV.fetch("STATE_FILE")
$db = JSON.parse(File.read(STATE))
at_exit { File.write(STATE, JSON.dump($db)) }

module I18n
  def self.locale = @locale || "en"
  def self.with_locale(locale)
    before, @locale = @locale, locale.to_s
    yield
  ensure
    @locale = before
  end
end

module ActiveRecord
  class Base
    def self.transaction = yield
  end
end

class Account
  attr_reader :id
  def initialize(row) = @id = row["id"]
  def inboxes = Inboxes.new(id)
end

class Inboxes
  def initialize(account_id) = @account_id = account_id
  def where(channel_type:)
    $db["inboxes"].select { |i| i["account_id"] == @account_id && i["channel_type"] == channel_type }
                  .map { |row| Inbox.new(row) }
  end
  def create!(name:, channel:)
    row = { "id" => $db["inboxes"].size + 1, "account_id" => @account_id, "name" => name,
            "channel_type" => "Channel::WebWidget", "website_url" => channel.website_url }
    $db["inboxes"] << row
    Inbox.new(row)
  end
end

class Inbox
  attr_reader :id
  def initialize(row) = (@row = row; @id = row["id"])
  def channel = Channel::WebWidget.new(@row["website_url"])
end

module Channel
  class WebWidget
    attr_reader :website_url
    def initialize(url) = @website_url = url
    def self.create!(account:, website_url:) = new(website_url)
  end
end

class AccountsOf
  def initialize(user_id) = @user_id = user_id
  def order(*) = self
  def first
    $db["accounts"].select { |a| a["owner"] == @user_id }.min_by { |a| a["id"] }&.then { Account.new(_1) }
  end
end

class User
  attr_reader :id
  def initialize(row) = @id = row["id"]
  def self.find_by(email:) = $db["users"].find { |u| u["email"] == email }&.then { new(_1) }
  def accounts = AccountsOf.new(id)
end

class AccountBuilder
  def initialize(**args) = @args = args
  def perform
    $db["built"] << @args.transform_keys(&:to_s).merge("locale" => I18n.locale)
    user = { "id" => $db["users"].size + 1, "email" => @args.fetch(:email) }
    account = { "id" => $db["accounts"].size + 1, "owner" => user["id"] }
    $db["users"] << user
    $db["accounts"] << account
    [User.new(user), Account.new(account)]
  end
end

class InboxMember
  def self.find_or_create_by!(inbox:, user:)
    pair = [inbox.id, user.id]
    $db["members"] << pair unless $db["members"].include?(pair)
  end
end

# Chatwoot's app/models/installation_config.rb keeps `value` in serialized_value; here a row is a JSON pair.
class InstallationConfig
  attr_accessor :value, :locked
  def self.find_or_initialize_by(name:)
    row = $db["installation_configs"][name]
    config = new(name, row.nil?)
    config.value, config.locked = row["value"], row["locked"] if row
    config
  end
  def initialize(name, fresh) = (@name = name; @fresh = fresh)
  def new_record? = @fresh
  def save!
    $db["installation_configs"][@name] = { "value" => value, "locked" => locked }
    $db["saved"] << @name
  end
end

class GlobalConfig
  def self.clear_cache = $db["cache_cleared"] = true
end

module ActiveModel
  module Type
    class Boolean
      def cast(value) = value.nil? ? nil : !["false", "0", "f", "off", false, 0].include?(value)
    end
  end
end

class Redis
  module Alfred
    CHATWOOT_INSTALLATION_ONBOARDING = "CHATWOOT_INSTALLATION_ONBOARDING"
    def self.delete(key) = $db["redis"].delete(key)
  end
end
"""


# What db:chatwoot_prepare seeds from config/installation_config.yml: sign-up off, editable by a super admin.
SEEDED = {"ENABLE_ACCOUNT_SIGNUP": {"value": False, "locked": False}}
Edit = Callable[[dict[str, Any]], None]


def bootstrap_runner(p: harness.Plan, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Runs the planned step's exact Ruby and environment against the stand-ins; the state persists."""
    step = p.named("chat-bootstrap")
    code = run_argv(step)[-1]
    env = {k: v for k, v in step_env(step).items() if k.startswith("BOOTSTRAP_") or k == "DEFAULT_LOCALE"}
    stand_ins = tmp_path / "chatwoot.rb"
    stand_ins.write_text(STAND_INS)
    state = tmp_path / "state.json"
    fresh = {"users": [], "accounts": [], "inboxes": [], "members": [], "built": []}
    fresh |= {"installation_configs": dict(SEEDED), "saved": []}

    def run_once(edit: Edit | None = None) -> dict[str, Any]:
        db = json.loads(state.read_text()) if state.exists() else json.loads(json.dumps(fresh))
        # db:chatwoot_prepare's seeds open the onboarding page on a new database; assume that every time.
        db["redis"] = {"CHATWOOT_INSTALLATION_ONBOARDING": "true"}
        db["saved"], db["cache_cleared"] = [], False
        if edit:
            edit(db)
        state.write_text(json.dumps(db))
        done = subprocess.run(
            ["ruby", "-r", str(stand_ins), "-e", code],
            env={"PATH": "/usr/bin:/bin", "STATE_FILE": str(state), **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(state.read_text())
        result["stdout"] = done.stdout
        return result

    return run_once


def test_bootstrap_is_idempotent_when_run_for_real(plan: PlanFn, tmp_path: Path) -> None:
    """The planned step's exact Ruby and environment, run twice against stand-ins of Chatwoot's classes."""
    p = plan(
        ["chat"], chat={"adminEmail": ADMIN, "locale": "pt-br", "websiteInbox": "https://www.clientea.com"}
    )
    env = step_env(p.named("chat-bootstrap"))
    run_once = bootstrap_runner(p, tmp_path)

    first = run_once()
    [built] = first["built"]
    assert built == {
        "account_name": "Cliente A S.A.",
        "user_full_name": "Administrator",
        "email": ADMIN,
        "user_password": env["BOOTSTRAP_ADMIN_PASSWORD"],
        "super_admin": True,
        "confirmed": True,
        "locale": "pt_BR",  # the account is created in the stack's language
    }
    assert first["redis"] == {}, "the onboarding page is closed"
    assert [(i["website_url"], i["name"]) for i in first["inboxes"]] == [
        ("https://www.clientea.com", "www.clientea.com")
    ]
    assert first["members"] == [[1, 1]], "the admin answers the website inbox"

    second = run_once()
    assert second["built"] == first["built"], "an existing login is left as it is"
    assert (second["users"], second["inboxes"], second["members"]) == (
        first["users"],
        first["inboxes"],
        first["members"],
    )
    assert second["redis"] == {}, "closed again after a re-seed"


def test_a_website_inbox_the_admin_deleted_is_not_provisioned_again(plan: PlanFn, tmp_path: Path) -> None:
    """Issue 16 item 7: the bootstrap runs again on every version change; it provisions the inbox once."""
    p = plan(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": "https://www.clientea.com"})
    run_once = bootstrap_runner(p, tmp_path)
    first = run_once()
    assert len(first["inboxes"]) == 1
    assert first["installation_configs"]["VERSATILEHUB_WEBSITE_INBOX"]["value"] == "https://www.clientea.com"

    def admin_deletes_it(db: dict[str, Any]) -> None:
        db["inboxes"], db["members"] = [], []

    after_upgrade = run_once(admin_deletes_it)
    assert after_upgrade["inboxes"] == [], "a deleted inbox stays deleted"
    assert "provisioned before, left as the admin keeps it" in after_upgrade["stdout"]


def test_a_new_website_gets_its_inbox_and_an_existing_one_is_adopted(plan: PlanFn, tmp_path: Path) -> None:
    """A stack deployed before the marker existed: its inbox is adopted, not doubled; a new site gets one."""
    p = plan(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": "https://www.clientea.com"})
    run_once = bootstrap_runner(p, tmp_path)
    first = run_once()

    def before_the_marker(db: dict[str, Any]) -> None:
        del db["installation_configs"]["VERSATILEHUB_WEBSITE_INBOX"]

    again = run_once(before_the_marker)
    assert again["inboxes"] == first["inboxes"]
    assert again["installation_configs"]["VERSATILEHUB_WEBSITE_INBOX"]["value"] == "https://www.clientea.com"
    moved = bootstrap_runner(
        plan(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": "https://tienda.clientea.com"}), tmp_path
    )()
    assert [i["website_url"] for i in moved["inboxes"]] == [
        "https://www.clientea.com",
        "https://tienda.clientea.com",
    ]


@pytest.mark.parametrize("stored", [True, "true", None])
def test_the_bootstrap_closes_sign_up_in_the_installation_setting(
    plan: PlanFn, tmp_path: Path, stored: object
) -> None:
    """Issue 16 item 8: Chatwoot's GlobalConfigService.load reads the seeded InstallationConfig row first
    (the env is a fallback for a missing row), so the row is what keeps sign-up closed."""
    run_once = bootstrap_runner(plan(["chat"], chat={"adminEmail": ADMIN}), tmp_path)

    def opened(db: dict[str, Any]) -> None:
        if stored is None:
            del db["installation_configs"]["ENABLE_ACCOUNT_SIGNUP"]
        else:
            db["installation_configs"]["ENABLE_ACCOUNT_SIGNUP"]["value"] = stored

    done = run_once(opened)
    assert done["installation_configs"]["ENABLE_ACCOUNT_SIGNUP"]["value"] is False
    assert done["cache_cleared"], "GlobalConfig's cached copy is dropped"
    assert "account sign-up closed" in done["stdout"]
    again = run_once()
    assert again["saved"] == [] and "sign-up" not in again["stdout"], "a closed setting is left alone"
    assert env_of(chat_containers(plan(["chat"], chat={"adminEmail": ADMIN}))[RAILS])[
        "ENABLE_ACCOUNT_SIGNUP"
    ] == ("false"), "the env stays, for a row that is missing"


# -- data, backups and outputs ---------------------------------------------------------------------------


def test_data_under_the_data_root_with_the_right_owners(routed: harness.Plan) -> None:
    text = script(routed.named("chat-data-dirs"))
    assert "-v /srv/versatilehub/clientea/chat:/data " in text  # the daemon creates the directory
    for line in (
        "-o 999 -g 999 -m 0700 /data/postgres",
        "-o 999 -g 1000 -m 0750 /data/redis",
        "-o 0 -g 0 -m 0750 /data/storage",
    ):
        assert line in text, line
    chat = chat_containers(routed)
    assert chat[POSTGRES].inputs["mounts"][0]["source"] == "/srv/versatilehub/clientea/chat/postgres"
    assert env_of(chat[POSTGRES])["PGDATA"] == chat[POSTGRES].inputs["mounts"][0]["target"]
    assert chat[REDIS].inputs["mounts"][0]["source"] == "/srv/versatilehub/clientea/chat/redis"
    assert chat[RAILS].inputs["mounts"][0]["source"] == "/srv/versatilehub/clientea/chat/storage"


def test_backups_dump_the_database_and_copy_the_storage() -> None:
    built: list[Any] = []
    harness.run(make_stack(["chat"]), program=lambda: built.append(deploy(config.load())))
    sources = [s for s in built[0].deployment.backup_sources if s.service == "chat"]
    assert (
        DatabaseDump("chat", "postgres", POSTGRES, "chatwoot", "chatwoot", "/run/secrets/postgres-password")
        in sources
    )
    [files] = [s for s in sources if isinstance(s, FileSet)]
    assert files.location.source == "/srv/versatilehub/clientea/chat/storage"
    assert len(sources) == 2


def test_outputs(routed: harness.Plan) -> None:
    out = routed.outputs["chat"]
    assert set(out) == {
        "url",
        "adminEmail",
        "adminPassword",
        "encryptionKeys",
        "version",
        "healthPath",
        "healthBody",
    }
    assert (out["url"], out["adminEmail"], out["version"]) == ("https://chat.clientea.com", ADMIN, "v4.18.0")
    assert (out["healthPath"], out["healthBody"]) == ("/api", '"queue_services":"ok"')
    keys = harness.plain(out["encryptionKeys"])
    app = app_env(routed)
    assert keys == {k: app[k] for k in keys} and len(keys) == 3
    assert routed.outputs["versions"]["chatwoot"] == "v4.18.0"


def test_pins() -> None:
    assert versions.IMAGES["chatwoot"].reference() == CHATWOOT
    assert versions.IMAGES["pgvector"].tag.endswith("-pg16"), "the Postgres major of existing data"
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", versions.IMAGES["chatRedis"].tag), "an exact patch release"


def test_a_chatwoot_3_tag_is_refused(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], versions={"chatwoot": "v3.16.0"})
    assert line.startswith("versatilehub:versions.chatwoot: 'v3.16.0' is outside the releases")


# -- config errors -----------------------------------------------------------------------------------


def test_chat_needs_its_admin_email(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], chat={"locale": "es"})
    assert line.startswith("versatilehub:chat.adminEmail: Chat creates its first super admin")
    assert line.endswith("fix: pulumi config set --path 'versatilehub:chat.adminEmail' soporte@cliente.com")


def test_an_invalid_admin_email_names_the_key(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], chat={"adminEmail": "soporte@"})
    assert line.startswith("versatilehub:chat.adminEmail: is not a valid email address")
    assert "fix: pulumi config set --path 'versatilehub:chat.adminEmail' soporte@cliente.com" in line


def test_an_unknown_locale_names_the_key_and_suggests_one(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "locale": "esp"})
    assert line.startswith("versatilehub:chat.locale: is not a language Chatwoot offers (did you mean 'es'?)")
    assert line.endswith("fix: pulumi config set --path 'versatilehub:chat.locale' es")
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "locale": "klingon"})
    assert "one of ar, bg, ca" in line, "no near match: the whole list"


def test_locales_are_written_as_chatwoot_names_them() -> None:
    assert config.ChatConfig(admin_email=ADMIN, locale="pt-br").locale == "pt_BR"
    assert config.ChatConfig(admin_email=ADMIN, locale="ZH_tw").locale == "zh_TW"
    assert {"es", "en", "pt_BR", "sl", "uz"} <= config.CHATWOOT_LOCALES
    assert "hi" not in config.CHATWOOT_LOCALES, "Hindi is listed but not enabled in v4.18.0"
    # v4.18.0's languages.rb: indices 0-43; 5 (hi) and 11 (zh) disabled; 42 (uz) and 43 (sl) the last.
    assert len(config.CHATWOOT_LOCALES) == 44 - 2 and "zh" not in config.CHATWOOT_LOCALES


def test_an_incomplete_smtp_setup_names_each_missing_key(config_problems: ProblemsFn) -> None:
    lines = config_problems(
        ["chat"],
        chat={"adminEmail": ADMIN, "smtp": {"address": "smtp.clientea.com", "username": "chat@clientea.com"}},
    )
    assert sorted(line.split(":", 2)[1] for line in lines) == ["chat.smtp.password", "chat.smtp.sender"]
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "smtp": {"port": 465}})
    assert line.startswith("versatilehub:chat.smtp.address: the SMTP server is required once smtp has port")


def test_an_smtp_password_in_plain_text_is_refused(config_problems: ProblemsFn) -> None:
    smtp = {"address": "smtp.clientea.com", "sender": "chat@clientea.com", "username": "u"}
    smtp["password"] = "Xy7!"
    lines = config_problems(["chat"], chat={"adminEmail": ADMIN, "smtp": smtp})
    assert any(line.startswith("versatilehub:chat.smtp.password is stored in plain text") for line in lines)
    assert not any("Xy7!" in line for line in lines), "a credential is never echoed"


def test_a_website_inbox_needs_an_https_address(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "websiteInbox": "www.clientea.com"})
    assert line.startswith("versatilehub:chat.websiteInbox: is not an https:// address")


def test_a_misspelt_chat_key_suggests_the_right_one(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["chat"], chat={"adminEmail": ADMIN, "adminMail": ADMIN})
    assert line.startswith("versatilehub:chat.adminMail is not a known key (did you mean 'adminEmail'?)")


def test_chat_settings_are_ignored_without_chat() -> None:
    assert "chat" not in harness.run(make_stack(["flow"], chat={"locale": "es"})).outputs


# -- the example stack ---------------------------------------------------------------------------------


def test_crm_and_chat_example_stack() -> None:
    p = harness.plan_stack("clienteC")
    assert p.outputs["client"] == "clientec" and p.outputs["services"] == ["hub", "chat"]
    assert p.outputs["memoryBudgetMb"] <= p.outputs["hostMemoryMb"] * config.MEMORY_BUDGET_SHARE
    assert p.outputs["cpuBudget"] <= p.outputs["hostCpus"] * config.CPU_BUDGET_SHARE
    rails = p.container("clientec-chat-rails")
    env = env_of(rails)
    assert (env["FRONTEND_URL"], env["DEFAULT_LOCALE"]) == ("https://chat.clientec.com", "es")
    bootstrap = step_env(p.named("chat-bootstrap"))
    assert bootstrap["BOOTSTRAP_ADMIN_EMAIL"] == "soporte@clientec.com"
    assert bootstrap["BOOTSTRAP_WEBSITE_URL"] == "https://www.clientec.com"
    assert {labels_of(c)["io.versatilehub.service"] for c in p.containers()} >= {"hub", "chat"}


def test_a_one_off_streams_progress_and_masks_what_rails_prints(routed: harness.Plan, tmp_path: Path) -> None:
    prepare = routed.named("chat-prepare")
    env = step_env(prepare)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `docker run` that takes a while and prints a setting it was given, as a failing rails task can.
    (bin_dir / "docker").write_text(
        '#!/bin/sh\nsleep 2.5\necho "connecting with $POSTGRES_PASSWORD" >&2\nexit "${FAKE_EXIT:-0}"\n'
    )
    (bin_dir / "docker").chmod(0o755)

    logs = tmp_path / "logs"

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/bash", "-c", script(prepare)],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env, "VH_PROGRESS_SECONDS": "1",
                 "VH_STEP_LOG_DIR": str(logs), **extra},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    ok = run()
    assert ok.returncode == 0, ok.stderr
    lines = ok.stderr.splitlines()
    assert lines[:2] == ["chat prepare: started", "chat prepare: still running after 1 s"]
    done = re.fullmatch(r"chat prepare: done in (\d+) s", lines[-1])
    assert done and int(done[1]) >= 2, lines  # the 2.5 s command; more on a loaded machine
    assert env["POSTGRES_PASSWORD"] not in ok.stderr + ok.stdout
    # The command's output: in the host's private step log (core/scripts/steplog.sh), masked there too.
    log = logs / "chat_prepare.log"
    assert log.read_text() == "connecting with [secret]\n" and (log.stat().st_mode & 0o777) == 0o600
    failed = run(FAKE_EXIT="1")
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1].startswith(
        f"chat prepare failed (exit status 1); its output: {log} on "
    )
    assert env["POSTGRES_PASSWORD"] not in failed.stderr + failed.stdout and "connecting" not in failed.stderr


def test_redis_and_the_wrapper_read_the_files_for_real(routed: harness.Plan, tmp_path: Path) -> None:
    """The planned redis-server argv and healthcheck, run by this machine's redis-server/redis-cli with the
    planned config file at the planned path's place: the password is enforced and the check passes, with the
    password on no command line. Then the planned wrapper entrypoint, run by /bin/sh over the planned env
    file: the app sees each secret exactly (under 2 s)."""
    import shutil
    import socket

    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.skip("no redis-server here")
    chat = chat_containers(routed)
    redis = chat[REDIS]
    conf = tmp_path / "redis.conf"
    conf.write_text(secret_file_of(routed, redis, "/run/secrets/redis.conf"))
    password = conf.read_text().split()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "data").mkdir()
    argv = [a.replace("/run/secrets/redis.conf", str(conf)) for a in harness.plain(redis.inputs["command"])]
    argv = [a.replace("/data", str(tmp_path / "data")) for a in argv]
    server = subprocess.Popen(
        ["redis-server", *argv, "--port", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL
    )
    try:
        check = harness.plain(redis.inputs["healthcheck"])["tests"][1]
        check = check.replace("/run/secrets/redis.conf", str(conf)).replace(
            "redis-cli", f"redis-cli -p {port}"
        )
        for _ in range(50):
            if subprocess.run(["sh", "-c", check], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the healthcheck never passed")
        noauth = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        assert "NOAUTH" in noauth.stdout + noauth.stderr, "requirepass from the file is enforced"
        assert password not in check
    finally:
        server.terminate()
        server.wait(timeout=10)

    rails = chat[RAILS]
    env_file = tmp_path / "chat.env"
    env_file.write_text(secret_file_of(routed, rails, "/run/secrets/chat.env"))
    entry = [
        a.replace("/run/secrets/chat.env", str(env_file)) for a in harness.plain(rails.inputs["entrypoints"])
    ]
    seen = subprocess.run([*entry, "env"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    got = dict(line.split("=", 1) for line in seen.stdout.splitlines() if "=" in line)
    wanted = env_file_of(routed, rails, "/run/secrets/chat.env")
    assert {k: got.get(k) for k in wanted} == wanted and len(wanted) == 6
