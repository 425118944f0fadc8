"""Backups in the plan: what the stack installs on the host (the tool, its settings, the timers), the order
around upgrades, the config errors, and that no secret ever reaches a command line.

What the installed script does is tested for real in tests/test_backup_real.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from components.backup import component as backup
from components.core.host import EOF_MARK
from tests.conftest import PlanFn, make_stack
from tools import harness

ROOT = Path(__file__).resolve().parent.parent
ALL = ["hub", "chat", "flow", "agent"]
B2 = "s3:https://s3.eu-central-003.backblazeb2.com/acme-backups/clientea"
B2_STACK = {
    "repository": B2,
    "keyId": {"secure": "v1:test:key-id"},
    "applicationKey": {"secure": "v1:test:application-key"},
}
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5wH6nJ8o2b9ZbqfZ3sK7kQd4GmXr0yLh1N2p3Q4r5S6"
ProblemsFn = Callable[..., list[str]]
COMMANDS = ("command:local:Command", "command:remote:Command")


def create(p: harness.Plan, name: str) -> str:
    return str(harness.plain(p.named(name).inputs["create"]))


def depends(p: harness.Plan, resource: harness.PlannedResource, name: str) -> bool:
    return p.named(name).urn in resource.dependencies


def heredoc(script: str, path: str) -> str:
    """The content a host step writes to `path` (see backup.write_file)."""
    m = re.search(rf"sh {re.escape(path)} <<'{EOF_MARK}'\n(.*?)\n{EOF_MARK}\n", script, re.S)
    assert m, f"{path} is not written by this step"
    return m.group(1)


@pytest.fixture(scope="module")
def full() -> harness.Plan:
    return harness.run(make_stack(ALL, backup=B2_STACK))


# -- what gets installed -------------------------------------------------------------------------------------


def test_backups_are_on_by_default_with_every_part(plan: PlanFn) -> None:
    p = plan(["flow"])
    password = p.get("random:index/randomPassword:RandomPassword", "backup-password")
    assert password.inputs["length"] == 40 and password.inputs["special"] is False
    assert password.options["protect"], "losing the repository password loses every backup"
    for name in ("backup-tool", "backup-init", "flow-pre-update-backup", "backup-schedule-timers"):
        assert p.named(name).type == "command:local:Command"
    assert "backup-schedule-initial" in {r.name for r in p.of_type("command:local:Command")}
    assert p.outputs["backup"]["repository"] == "/srv/backups/clientea"
    assert harness.is_secret(p.outputs["backup"]["repositoryPassword"])


def test_the_installed_tool_is_the_tested_script_with_the_stacks_settings(full: harness.Plan) -> None:
    script = create(full, "backup-tool")
    home = "/srv/versatilehub/clientea/backup"
    assert heredoc(script, f"{home}/vh-backup") + "\n" == (ROOT / "scripts" / "vh_backup.py").read_text()
    settings = json.loads(heredoc(script, f"{home}/settings.json"))
    assert settings == {
        "format": 1,
        "client": "clientea",
        # Where its last run and last restore drill are recorded for the collector (components/monitoring.py).
        "status_file": "/srv/versatilehub/clientea/monitor/backup.json",
        "drill_status_file": "/srv/versatilehub/clientea/monitor/drill.json",
        "runtime": "docker",
        "image": "restic/restic:0.19.1",
        "forget": ["--keep-daily=7", "--keep-weekly=5", "--keep-monthly=12"],
        "check_subset": "1/8",
        "max_age_hours": 26,
    }
    assert "restic/restic:0.19.1" in {
        harness.plain(i.inputs["name"]) for i in full.of_type("docker:index/remoteImage:RemoteImage")
    }
    assert depends(full, full.named("backup-tool"), "image-restic")
    assert len(script.encode()) < backup.MAX_SCRIPT
    # init: through the installed tool, after it, once per repository.
    init = full.named("backup-init")
    assert create(full, "backup-init").endswith(f"as_root {home}/vh-backup init\n")
    assert harness.plain(init.inputs["triggers"]) == [B2] and depends(full, init, "backup-tool")


def test_b2_keys_reach_restic_env_through_the_environment_only(full: harness.Plan) -> None:
    tool = full.named("backup-tool")
    env = tool.inputs["environment"]
    assert set(env) == {"VH_RESTIC_PASSWORD", "VH_KEY_ID", "VH_APPLICATION_KEY"}
    assert all(harness.is_secret(value) for value in env.values()), "each travels as a secret"
    script = create(full, "backup-tool")
    assert f"printf 'RESTIC_REPOSITORY=%s\\n' {B2}" in script
    assert "printf 'AWS_ACCESS_KEY_ID=%s\\n' \"$VH_KEY_ID\"" in script
    assert "printf 'AWS_SECRET_ACCESS_KEY=%s\\n' \"$VH_APPLICATION_KEY\"" in script
    assert (
        "umask 077" in script
        and 'mv "$1.new" "$1"\' sh /srv/versatilehub/clientea/backup/restic.env' in script
    )


def test_native_b2_uses_restics_b2_variables(plan: PlanFn) -> None:
    p = plan(["flow"], backup={**B2_STACK, "repository": "b2:acme-backups:clientea"})
    script = create(p, "backup-tool")
    assert "printf 'B2_ACCOUNT_ID=%s\\n' \"$VH_KEY_ID\"" in script
    assert "printf 'B2_ACCOUNT_KEY=%s\\n' \"$VH_APPLICATION_KEY\"" in script


def test_a_local_repository_takes_no_keys(plan: PlanFn) -> None:
    script = create(plan(["flow"]), "backup-tool")
    assert "printf 'AWS_" not in script and "printf 'B2_" not in script
    assert set(harness.plain(plan(["flow"]).named("backup-tool").inputs["environment"])) == {
        "VH_RESTIC_PASSWORD"
    }


def test_an_adopted_repository_password_replaces_the_generated_one(plan: PlanFn) -> None:
    p = plan(["flow"], backup={**B2_STACK, "password": {"secure": "v1:test:old-password"}})
    assert "backup-password" not in {r.name for r in p.resources}
    env = harness.plain(p.named("backup-tool").inputs["environment"])
    assert env["VH_RESTIC_PASSWORD"] == harness.placeholder("versatilehub:backup.password")
    assert harness.is_secret(p.outputs["backup"]["repositoryPassword"])


# -- schedule, retention, check ------------------------------------------------------------------------------


def test_daily_timer_and_weekly_check_in_the_clients_time_zone(full: harness.Plan) -> None:
    script = create(full, "backup-schedule-timers")
    units = "/etc/systemd/system/vh-backup"
    timer = heredoc(script, f"{units}-clientea.timer")
    assert "OnCalendar=*-*-* 03:00:00 America/Argentina/Buenos_Aires" in timer and "Persistent=true" in timer
    service = heredoc(script, f"{units}-clientea.service")
    assert "Type=oneshot" in service
    assert "ExecStart=/srv/versatilehub/clientea/backup/vh-backup run --reason daily" in service
    check_timer = heredoc(script, f"{units}-check-clientea.timer")
    assert "OnCalendar=Sun *-*-* 04:30:00 America/Argentina/Buenos_Aires" in check_timer
    assert "ExecStart=/srv/versatilehub/clientea/backup/vh-backup check" in heredoc(
        script, f"{units}-check-clientea.service"
    )
    # systemd judges both schedules before anything is installed; then both timers are enabled and started.
    assert script.index(
        "systemd-analyze calendar '*-*-* 03:00:00 America/Argentina/Buenos_Aires'"
    ) < script.index("sources.json")
    assert "as_root systemctl enable --now vh-backup-clientea.timer vh-backup-check-clientea.timer" in script
    delete = str(harness.plain(full.named("backup-schedule-timers").inputs["delete"]))
    assert "systemctl disable --now vh-backup-clientea.timer vh-backup-check-clientea.timer" in delete
    assert full.outputs["backup"]["schedule"] == "*-*-* 03:00:00 America/Argentina/Buenos_Aires"


def test_schedule_and_retention_come_from_the_stack(plan: PlanFn) -> None:
    custom = {
        **B2_STACK,
        "schedule": "01:30",
        "checkSchedule": "Sat,Wed 05:00",
        "keepDaily": 14,
        "keepWeekly": 0,
        "keepMonthly": 24,
        "checkSubset": "5%",
    }
    p = plan(["flow"], backup=custom)
    script = create(p, "backup-schedule-timers")
    assert "OnCalendar=*-*-* 01:30:00 America/Argentina/Buenos_Aires" in script
    assert "OnCalendar=Sat,Wed *-*-* 05:00:00 America/Argentina/Buenos_Aires" in script
    settings = json.loads(
        heredoc(create(p, "backup-tool"), "/srv/versatilehub/clientea/backup/settings.json")
    )
    assert settings["forget"] == ["--keep-daily=14", "--keep-monthly=24"] and settings["check_subset"] == "5%"
    assert p.outputs["backup"]["retention"] == "--keep-daily=14 --keep-monthly=24"
    raw = plan(["flow"], backup={**B2_STACK, "schedule": "Mon..Fri *-*-* 22:00:00 UTC"})
    assert "OnCalendar=Mon..Fri *-*-* 22:00:00 UTC\n" in create(raw, "backup-schedule-timers")


def test_the_script_prunes_by_group_and_checks_a_rotating_slice() -> None:
    vh = load_script()
    text = (ROOT / "scripts" / "vh_backup.py").read_text()
    assert '"--group-by",\n        "host,tags",\n        *m.forget,\n        "--prune",' in text
    week = 604800
    slices = {vh.check_subset("1/8", week * n + 5) for n in range(8)}
    assert slices == {f"{n}/8" for n in range(1, 9)}, "eight weeks read every slice once"
    assert vh.check_subset("5%", 0) == "5%"


def test_sources_are_what_the_services_registered(full: harness.Plan) -> None:
    sources = json.loads(
        heredoc(create(full, "backup-schedule-timers"), "/srv/versatilehub/clientea/backup/sources.json")
    )
    by_id = {s["id"]: s for s in sources["sources"]}
    assert {s["service"] for s in sources["sources"]} == {"edge", *ALL}
    kinds = {s["kind"] for s in sources["sources"]}
    assert kinds == {"database", "files", "app"}
    databases = {s["engine"] for s in by_id.values() if s["kind"] == "database"}
    assert databases == {"postgres"} or databases == {"postgres", "mariadb"}
    assert (
        by_id["edge/files-letsencrypt"]["location"]["source"] == "/srv/versatilehub/clientea/edge/letsencrypt"
    )
    for source in by_id.values():
        if source["kind"] in ("database", "app"):
            assert source["container"].startswith("clientea-")
    assert full.outputs["backup"]["services"] == ["agent", "chat", "edge", "flow", "hub"]


# -- upgrades: a snapshot first ------------------------------------------------------------------------------


def test_each_service_is_snapshotted_before_its_images_change(full: harness.Plan) -> None:
    init = full.named("backup-init")
    timers = full.named("backup-schedule-timers")
    for service in ALL:
        step = full.named(f"{service}-pre-update-backup")
        assert full.parent_name(step) == service, "a child of the service it protects"
        assert init.urn in step.dependencies
        script = create(full, f"{service}-pre-update-backup")
        assert f"vh-backup run --reason pre-update --service {service} --if-deployed" in script
        # Its triggers are the service's image references: a version change re-runs it.
        triggers = harness.plain(step.inputs["triggers"])
        images = {
            harness.plain(c.inputs["image"])
            for c in full.containers()
            if any(
                lbl["label"] == "io.versatilehub.service" and lbl["value"] == service
                for lbl in harness.plain(c.inputs["labels"])
            )
        }
        assert set(triggers) & images, f"{service}: triggered by the images it runs"
        # The containers running those images wait for it.
        waiting = [c for c in full.containers() if harness.plain(c.inputs["image"]) in triggers]
        assert waiting and all(step.urn in c.dependencies for c in waiting), service
        # The new sources.json (and its new container names) is installed only after the snapshot.
        assert step.urn in timers.dependencies


def test_the_initial_backup_waits_for_every_service(full: harness.Plan) -> None:
    initial = full.named("backup-schedule-initial")
    assert create(full, "backup-schedule-initial").endswith("vh-backup run --reason initial\n")
    assert harness.plain(initial.inputs["triggers"]) == ["agent,chat,edge,flow,hub"]
    assert depends(full, initial, "backup-schedule-timers")
    for container in full.containers():
        if full.parent_name(container) in {*ALL, "edge"}:
            assert container.urn in initial.dependencies, container.name


def test_backups_off_leave_no_trace(plan: PlanFn) -> None:
    p = plan(["flow"], backup={"enabled": False})
    assert not [r for r in p.resources if "backup" in r.name]
    assert "backup" not in p.outputs


# -- secrets -------------------------------------------------------------------------------------------------


SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|TOKEN|CREDENTIAL", re.IGNORECASE)


def _secret_values(value: Any, inside: bool = False) -> Iterator[str]:
    """Every secret value in a plan: secret leaves; inside a secret env list or the stdin that carries
    variables over SSH, the values of the secret-named variables (the plain ones, TZ=..., are not)."""
    if harness.is_secret(value):
        yield from _secret_values(value["value"], True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _secret_values(v, inside)
    elif isinstance(value, list):
        for v in value:
            yield from _secret_values(v, inside)
    elif inside and isinstance(value, str):
        for line in value.splitlines():
            assignment = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
            if assignment is None:
                yield line
            elif SECRET_NAME.search(assignment[1]):
                yield assignment[2].strip("'")


@pytest.mark.parametrize("host", ["local", "ssh"])
def test_no_secret_on_any_command_line(host: str) -> None:
    overrides: dict[str, Any] = {"backup": B2_STACK}
    if host == "ssh":
        overrides["host"] = {
            "docker": "ssh://deploy@203.0.113.10",
            "sshHostKey": HOST_KEY,
            "memoryMb": 16384,
            "cpus": 8,
        }
    p = harness.run(make_stack(ALL, **overrides))
    secrets = {s for r in p.resources for s in _secret_values(r.inputs)} | set(_secret_values(p.outputs))
    secrets = {s for s in secrets if len(s) >= 8}
    for needed in ("versatilehub:backup.keyId", "versatilehub:backup.applicationKey"):
        assert harness.placeholder(needed) in secrets
    assert harness.plain(p.outputs["backup"]["repositoryPassword"]) in secrets
    checked = 0
    for r in p.resources:
        if r.type in COMMANDS:
            texts = [r.inputs.get(k) for k in ("create", "update", "delete", "triggers")]
        elif r.type == "docker:index/container:Container":
            texts = [r.inputs.get("command"), r.inputs.get("entrypoints")]
        else:
            continue
        checked += 1
        line = json.dumps(harness.plain(texts))
        leaked = [s[:4] + "..." for s in secrets if s in line]
        assert not leaked, f"{r.type} {r.name}: a secret on its command line ({leaked})"
    assert checked > 30
    tool = p.named("backup-tool")
    if host == "ssh":  # sshd refuses client environment: the secrets go on stdin, marked secret
        assert harness.is_secret(tool.inputs["stdin"])
        assert tool.type == "command:remote:Command"
        assert p.outputs["backup"]["freshnessCommand"] == (
            "ssh deploy@203.0.113.10 sudo /srv/versatilehub/clientea/backup/vh-backup freshness"
        )


def test_the_repository_password_is_a_secret_output_with_its_read_command(full: harness.Plan) -> None:
    assert harness.is_secret(full.outputs["backup"]["repositoryPassword"])
    commands = harness.plain(full.outputs["secretCommands"])
    assert commands["backup.repositoryPassword"].endswith("--json backup | jq -r '.repositoryPassword'")


# -- config errors -------------------------------------------------------------------------------------------


def test_a_stack_without_a_repository_is_told_how_to_add_one(config_problems: ProblemsFn) -> None:
    [line] = config_problems(["flow"], backup=None)
    assert line.startswith(
        "versatilehub:backup.repository: backups are on for every stack and need a repository"
    )
    assert "fix: pulumi config set --path 'versatilehub:backup.repository' s3:https://" in line
    assert "'versatilehub:backup.enabled' false" in line


def test_b2_without_keys_names_each_key(config_problems: ProblemsFn) -> None:
    lines = config_problems(["flow"], backup={"repository": B2})
    assert [line.split(":")[1].split(" ")[0] for line in lines] == ["backup.keyId", "backup.applicationKey"]
    assert "fix: pulumi config set --secret --path 'versatilehub:backup.keyId' " in lines[0]
    assert "fix: pulumi config set --secret --path 'versatilehub:backup.applicationKey' " in lines[1]


def test_keys_stored_in_plain_text_are_refused_without_echoing_them(config_problems: ProblemsFn) -> None:
    lines = config_problems(
        ["flow"],
        backup={
            "repository": B2,
            "keyId": "0031234567890abcdef000001",
            "applicationKey": "K003SecretValue123",
        },
    )
    assert lines == [
        "versatilehub:backup.keyId is stored in plain text; store it encrypted: "
        "pulumi config set --secret --path 'versatilehub:backup.keyId' <value>",
        "versatilehub:backup.applicationKey is stored in plain text; store it encrypted: "
        "pulumi config set --secret --path 'versatilehub:backup.applicationKey' <value>",
    ]


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        (
            {"repository": "ftp://backups.example.com/x"},
            "repository",
            "is not s3:https://s3.<region>.backblazeb2.com",
        ),
        ({"repository": "s3:http://s3.example.com/bucket"}, "repository", "is not s3:https://"),
        ({"repository": "relative/path"}, "repository", "or an absolute local path"),
        ({"repository": "/srv/../etc"}, "repository", "or an absolute local path"),
        ({"repository": "/srv/b", "keyId": {"secure": "v1:x"}}, "keyId", "a local repository takes no key"),
        ({"repository": "/srv/b", "schedule": "25:00"}, "schedule", "is not HH:MM"),
        ({"repository": "/srv/b", "schedule": "daily"}, "schedule", "is not HH:MM"),
        ({"repository": "/srv/b", "checkSchedule": "Sunday 04:00"}, "checkSchedule", "is not HH:MM"),
        ({"repository": "/srv/b", "keepDaily": 0}, "keepDaily", "greater than or equal to 1"),
        ({"repository": "/srv/b", "keepMonthly": -1}, "keepMonthly", "greater than or equal to 0"),
        ({"repository": "/srv/b", "checkSubset": "2/8"}, "checkSubset", "is not 1/N"),
        ({"repository": "/srv/b", "maxAgeHours": 0}, "maxAgeHours", "greater than or equal to 1"),
        ({"repository": "/srv/b", "retention": 7}, "retention", "is not a known key"),
    ],
)
def test_bad_backup_settings_name_their_key(
    config_problems: ProblemsFn, section: dict[str, Any], key: str, message: str
) -> None:
    [line] = config_problems(["flow"], backup=section)
    assert line.startswith(f"versatilehub:backup.{key}") and message in line, line


def test_a_placeholder_key_is_refused(config_problems: ProblemsFn) -> None:
    stack = make_stack(
        ["flow"], backup={"repository": B2, "keyId": {"secure": "x"}, "applicationKey": {"secure": "y"}}
    )
    stack.values["versatilehub:backup"] = json.dumps(
        {"repository": B2, "keyId": "changeme", "applicationKey": "K003 with space"}
    )
    from components.config import ConfigError

    with pytest.raises(ConfigError) as info:
        harness.run(stack)
    assert info.value.problems == [
        "versatilehub:backup.keyId: is a placeholder, not a real credential; "
        "fix: pulumi config set --secret --path 'versatilehub:backup.keyId' 003a1b2c3d4e5f60000000001",
        "versatilehub:backup.applicationKey: is not a key (8 or more printable characters, no spaces); "
        "fix: pulumi config set --secret --path 'versatilehub:backup.applicationKey' "
        "K003abcdefghijklmnopqrstuvwxyz12",
    ]


# -- the docker runtime's invocations (the host path; run for real with restic in test_backup_real) ----------


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vh_backup", ROOT / "scripts" / "vh_backup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["vh_backup"] = module
    spec.loader.exec_module(module)
    return module


def test_restic_runs_as_the_pinned_image_with_secrets_by_name_only(tmp_path: Path) -> None:
    vh = load_script()
    home = tmp_path / "home"
    home.mkdir()
    config = backup.BackupConfig.model_validate(
        {"repository": B2, "keyId": "003abcdef0123", "applicationKey": "K003abcdefgh"}
    )
    (home / "settings.json").write_text(
        json.dumps(backup.settings("clientea", config, "restic/restic:0.19.1"))
    )
    env = home / "restic.env"
    env.write_text(
        f"RESTIC_REPOSITORY={B2}\nRESTIC_PASSWORD=pw-0123456789\nAWS_ACCESS_KEY_ID=id\nAWS_SECRET_ACCESS_KEY=k\n"
    )
    env.chmod(0o600)
    m = vh.Manifest(str(home))
    argv = vh.Restic(m, str(env)).argv(["backup", "/srv/data"], [("/srv/data", False)])
    assert argv[:3] == ["docker", "run", "--rm"]
    # The image's entrypoint (it applies NICE and IONICE_*), not restic directly.
    assert "--entrypoint" not in argv
    assert argv[-3:] == ["restic/restic:0.19.1", "backup", "/srv/data"]
    assert " ".join(argv).count("--cap-add") == 1 and "--cap-drop ALL --cap-add DAC_READ_SEARCH" in " ".join(
        argv
    )
    assert f"--volume {home}/cache:{home}/cache:rw" in " ".join(argv)
    assert "--volume /srv/data:/srv/data:ro" in " ".join(argv)
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    # Issue 14: the password and the S3 keys are read-only files (restic v0.19.1: RESTIC_PASSWORD_FILE,
    # internal/global/global.go LoadPasswordFromFile; AWS_SHARED_CREDENTIALS_FILE, internal/backend/s3/s3.go
    # FileAWSCredentials), not values in the container's environment.
    assert names == sorted(
        [
            "AWS_SHARED_CREDENTIALS_FILE",
            "IONICE_CLASS",
            "IONICE_PRIORITY",
            "NICE",
            "RESTIC_CACHE_DIR",
            "RESTIC_PASSWORD_FILE",
            "RESTIC_REPOSITORY",
        ]
    )
    assert f"--volume {home}/secrets:{home}/secrets:ro" in " ".join(argv)
    assert (home / "secrets" / "restic-password").read_text() == "pw-0123456789\n"
    credentials = (home / "secrets" / "aws-credentials").read_text()
    assert credentials == "[default]\naws_access_key_id = id\naws_secret_access_key = k\n"
    assert oct((home / "secrets" / "aws-credentials").stat().st_mode & 0o777) == "0o400"
    assert oct((home / "secrets").stat().st_mode & 0o777) == "0o700"
    assert "pw-0123456789" not in " ".join(argv)


def test_b2_keys_reach_the_restic_container_in_a_file_only(tmp_path: Path) -> None:
    """restic's native B2 backend reads B2_ACCOUNT_ID/B2_ACCOUNT_KEY from the environment only
    (internal/backend/b2/config.go ApplyEnvironment, v0.19.1). Before: `--env B2_ACCOUNT_KEY`, so `docker
    inspect` showed the key. Now a 0400 env file a /bin/sh wrapper exports, then it execs the image's
    ENTRYPOINT /entrypoint.sh (docker/Dockerfile.release at v0.19.1; alpine, busybox /bin/sh)."""
    vh = load_script()
    home = tmp_path / "home"
    home.mkdir()
    repository = "b2:acme-backups:clientea"
    config = backup.BackupConfig.model_validate(
        {"repository": repository, "keyId": "003abcdef0123", "applicationKey": "K003ab'c$d"}
    )
    settings = backup.settings("clientea", config, "restic/restic:0.19.1")
    (home / "settings.json").write_text(json.dumps(settings))
    env = home / "restic.env"
    env.write_text(
        f"RESTIC_REPOSITORY={repository}\nRESTIC_PASSWORD=pw-0123456789\n"
        "B2_ACCOUNT_ID=003abcdef0123\nB2_ACCOUNT_KEY=K003ab'c$d\n"
    )
    env.chmod(0o600)
    restic = vh.Restic(vh.Manifest(str(home)), str(env))
    argv = restic.argv(["snapshots", "--json"])
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert not [n for n in names if n.startswith("B2_")] and "B2_ACCOUNT_KEY" not in restic.env
    assert not any("003abcdef0123" in a or "K003ab" in a for a in argv)
    assert {"NICE", "IONICE_CLASS", "IONICE_PRIORITY", "RESTIC_PASSWORD_FILE"} <= set(names)
    b2_env = home / "secrets" / "b2.env"
    image_at = argv.index("restic/restic:0.19.1")
    assert argv[image_at - 2 : image_at] == ["--entrypoint", "/bin/sh"]
    assert argv[image_at + 1 :] == [
        "-c", 'set -a && . "$0" && set +a && exec /entrypoint.sh "$@"', str(b2_env), "snapshots", "--json"
    ]  # fmt: skip
    assert f"--volume {home}/secrets:{home}/secrets:ro" in " ".join(argv)
    assert b2_env.read_text() == "B2_ACCOUNT_ID='003abcdef0123'\nB2_ACCOUNT_KEY='K003ab'\\''c$d'\n"
    assert oct(b2_env.stat().st_mode & 0o777) == "0o400"
    # What the wrapper's sh makes of the file: the keys, exactly.
    seen = subprocess.run(
        ["sh", "-c", argv[image_at + 2].replace("exec /entrypoint.sh", "exec env"), str(b2_env)],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    ).stdout.splitlines()  # fmt: skip
    assert {"B2_ACCOUNT_ID=003abcdef0123", "B2_ACCOUNT_KEY=K003ab'c$d"} <= set(seen)

    # Another repository later: no B2 keys are left behind, and restic runs through the image's entrypoint.
    env.write_text(f"RESTIC_REPOSITORY={B2}\nRESTIC_PASSWORD=pw-0123456789\n")
    again = vh.Restic(vh.Manifest(str(home)), str(env)).argv(["snapshots"])
    assert not b2_env.exists() and "--entrypoint" not in again


def test_dumps_run_inside_the_database_containers(tmp_path: Path) -> None:
    vh = load_script()
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.json").write_text(
        json.dumps(
            backup.settings(
                "clientea",
                backup.BackupConfig.model_validate({"repository": "/srv/b"}),
                "restic/restic:0.19.1",
            )
        )
    )
    m = vh.Manifest(str(home))
    from components.core.deployment import DatabaseDump

    pg, maria = backup.sources_manifest(
        [
            DatabaseDump(
                "chat", "postgres", "clientea-chat-postgres", "chatwoot", "postgres", "/run/secrets/pg-pw"
            ),
            DatabaseDump(
                "hub", "mariadb", "clientea-hub-mariadb", "_1a2b", "root", "/run/secrets/mariadb-root"
            ),
        ]
    )["sources"]
    token = m.run_token  # tags what the run starts in a container: its clean-up finds it by that
    assert re.fullmatch(r"clientea-\d+-\d+", token) and vh.Manifest(str(home)).run_token != token
    assert vh.dump_argv(m, pg) == [
        "docker", "exec", "--env", f"VH_BACKUP_RUN={token}", "clientea-chat-postgres",
        "env", "NICE=10", "IONICE_CLASS=2", "IONICE_PRIORITY=7", "sh", "-c", vh.LOW_PRIORITY_SCRIPT, "sh",
        "sh", "-c", 'f=$1; shift; PGPASSWORD="$(cat "$f")" exec "$@"', "sh", "/run/secrets/pg-pw",
        "pg_dump", "--format=custom", "--compress=0", "--no-owner", "--no-acl",
        "--username=postgres", "--dbname=chatwoot",
    ]  # fmt: skip
    maria_argv = vh.dump_argv(m, maria)
    priority = ["env", "NICE=10", "IONICE_CLASS=2", "IONICE_PRIORITY=7"]
    priority += ["sh", "-c", vh.LOW_PRIORITY_SCRIPT, "sh"]
    assert maria_argv[5:13] == priority  # the dump lowers its own priority first
    del maria_argv[5:13]
    assert maria_argv[:10] == [
        "docker",
        "exec",
        "--env",
        f"VH_BACKUP_RUN={token}",
        "clientea-hub-mariadb",
        "sh",
        "-c",
        'f=$1; shift; MYSQL_PWD="$(cat "$f")" exec "$@"',
        "sh",
        "/run/secrets/mariadb-root",  # the password is read from its secret file inside the container
    ]
    assert maria_argv[10:13] == ["mariadb-dump", "--single-transaction", "--quick"]
    assert maria_argv[-2:] == ["--databases", "_1a2b"]


def test_a_run_waits_a_bounded_time_for_the_lock_and_says_why_it_failed(tmp_path: Path) -> None:
    """A hung run used to block every later run forever (an unbounded flock); now a later run gives up
    after the wait and names the lock, and systemd bounds the oneshot units themselves."""
    import fcntl

    vh = load_script()
    home = tmp_path / "home"
    home.mkdir()
    config = backup.BackupConfig.model_validate({"repository": str(tmp_path / "repo")})
    (home / "settings.json").write_text(
        json.dumps(backup.settings("clientea", config, "restic/restic:0.19.1"))
    )
    m = vh.Manifest(str(home))
    with open(home / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with (
            pytest.raises(vh.Failure, match=r"clientea has held .*lock for over 1 s"),
            vh.exclusive(m, wait_seconds=1),
        ):
            pass
    with vh.exclusive(m, wait_seconds=1):  # free again: taken at once
        pass
    for unit in ("vh-backup.service", "vh-backup-check.service"):
        assert "\nTimeoutStartSec=4h\n" in (ROOT / "scripts" / "systemd" / unit).read_text()


def test_a_move_across_filesystems_keeps_owners_and_modes(tmp_path: Path) -> None:
    """Volume-mode restore moves the restored tree from the work dir into the volume; across two
    filesystems (a tmpfs and the disk here) shutil.move copied and every file ended up owned by root."""
    import os
    import subprocess

    vh = load_script()
    scratch = tmp_path / "tmpfs"
    scratch.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(scratch)], check=True)
    try:
        tree = scratch / "restored"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "data").write_text("x")
        (tree / "sub" / "link").symlink_to("data")
        (tree / "sub" / "data").chmod(0o640)
        for path in (tree, tree / "sub", tree / "sub" / "data"):
            os.chown(path, 1000, 1001)
        os.lchown(tree / "sub" / "link", 1002, 1003)
        target = tmp_path / "volume" / "_data"
        assert os.stat(scratch).st_dev != os.stat(tmp_path).st_dev
        vh._move(str(tree), str(target))
        assert not tree.exists()
        for path in (target, target / "sub", target / "sub" / "data"):
            assert (os.stat(path).st_uid, os.stat(path).st_gid) == (1000, 1001), path
        assert os.stat(target / "sub" / "data").st_mode & 0o7777 == 0o640
        link = os.lstat(target / "sub" / "link")
        assert (link.st_uid, link.st_gid) == (1002, 1003) and os.readlink(target / "sub" / "link") == "data"
    finally:
        subprocess.run(["umount", str(scratch)], check=True)


def test_the_units_are_hardened_and_still_write_where_a_run_writes(
    full: harness.Plan, tmp_path: Path
) -> None:
    """Issue 17 item 10: a read-only system, private /tmp, no new privileges, files for root only; writable
    only the backup home and the folder of the collector's status file (settings.json's status_file)."""
    script = create(full, "backup-schedule-timers")
    units = "/etc/systemd/system/vh-backup"
    settings = json.loads(
        heredoc(create(full, "backup-tool"), "/srv/versatilehub/clientea/backup/settings.json")
    )
    assert settings["status_file"], "the full stack has monitoring on"
    home = "/srv/versatilehub/clientea/backup"
    # The monthly restore drill: the first Sunday of each month, in the client's time zone.
    drill_timer = heredoc(script, f"{units}-drill-clientea.timer")
    assert "OnCalendar=Sun *-*-01..07 06:00:00 America/Argentina/Buenos_Aires" in drill_timer
    assert "ExecStart=/srv/versatilehub/clientea/backup/vh-backup drill" in heredoc(
        script, f"{units}-drill-clientea.service"
    )
    assert (
        "enable --now vh-backup-clientea.timer vh-backup-check-clientea.timer vh-backup-drill-clientea"
        in script
    )
    for name in ("clientea", "check-clientea", "drill-clientea"):
        service = heredoc(script, f"{units}-{name}.service")
        for line in ("UMask=0077", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict"):
            assert f"\n{line}\n" in service, (name, line)
        [writable] = re.findall(r"^ReadWritePaths=(.*)$", service, re.M)
        assert writable.split() == [home, f"-{os.path.dirname(settings['status_file'])}"]
        # systemd's own parser, on the units as installed (ExecStart pointed at a file that exists here).
        tool = tmp_path / "vh-backup"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        (tmp_path / f"vh-backup-{name}.service").write_text(service.replace(f"{home}/vh-backup", str(tool)))
        (tmp_path / f"vh-backup-{name}.timer").write_text(heredoc(script, f"{units}-{name}.timer"))
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / f"vh-backup-{name}.service")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
