"""Backups: restic to Backblaze B2 (or a lab's local path), app-consistent, scheduled, verified.

Two components, because the pre-update snapshots must be ready before the services exist, and the schedule
needs what the services registered:

- BackupRepository (before the services): the repository password (pulumi-random, a secret output),
  vh-backup and its settings on the host, `restic init` (format 2, idempotent), and `d.pre_update_hook`:
  one step per service that snapshots it whenever its image versions change, before its containers are
  replaced and its migrations run.
- BackupSchedule (after the services): sources.json (what each service registered in d.backup_sources),
  the systemd timers (the daily run, which also applies retention, and the weekly check), and the initial
  backup right after the first deployment (and again whenever the set of services changes).

On the host everything lives in <dataRoot>/<client>/backup, readable by root only: vh-backup (the script
scripts/vh_backup.py), settings.json, sources.json, restic.env (mode 0600: the repository's address and
secrets), stage/ (the dumps of the run in progress) and cache/. restic itself runs as the pinned
restic/restic image. Operating it: docs/backup-restore.md.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_random as random

from components.backup.config import BackupConfig
from components.core.deployment import AppBackupCommand, BackupSource, DatabaseDump, Deployment, FileSet
from components.core.host import AS_ROOT, AS_ROOT_TOLERANT, write_file
from components.core.host import HOST_SCRIPTS as SCRIPTS
from components.core.model import secret
from components.core.storage import DataLocation
from components.monitoring import component as monitoring

if TYPE_CHECKING:
    from components.config import SuiteConfig

FORMAT = 1  # of settings.json and sources.json, as scripts/vh_backup.py reads them
# A host step's script travels as one argument (`bash -c`), which Linux caps at 128 KiB.
MAX_SCRIPT = 100_000

# The files and units live in root-only places: a deploy user that is not root needs passwordless sudo.


def backup_home(config: SuiteConfig) -> str:
    return f"{config.storage.data_root}/{config.client}/backup"


def drill_unit(config: SuiteConfig) -> str:
    return f"vh-backup-drill-{config.client}"


def unit_name(config: SuiteConfig, check: bool = False) -> str:
    return f"vh-backup{'-check' if check else ''}-{config.client}"


def settings(client: str, b: BackupConfig, image: str, status: tuple[str, str] = ("", "")) -> dict[str, Any]:
    """The repository's side of vh-backup: how restic runs, retention, the check and the freshness limit;
    where it records its last run and its last restore drill for the collector (components/monitoring/)."""
    return {
        "status_file": status[0],
        "drill_status_file": status[1],
        "format": FORMAT,
        "client": client,
        "runtime": "docker",
        "image": image,
        "forget": b.forget_args(),
        "check_subset": b.check_subset,
        "max_age_hours": b.max_age_hours,
    }


def _location(location: DataLocation) -> dict[str, str]:
    return {"kind": location.kind, "source": location.source, "name": location.name}


def _entry(source: BackupSource) -> dict[str, Any]:
    if isinstance(source, DatabaseDump):
        return {
            "id": f"{source.service}/{source.engine}-{source.database}",
            "kind": "database",
            "service": source.service,
            "engine": source.engine,
            "container": source.container,
            "database": source.database,
            "user": source.user,
            "password_file": source.password_file,
        }
    if isinstance(source, FileSet):
        return {
            "id": f"{source.service}/files-{source.location.name}",
            "kind": "files",
            "service": source.service,
            "location": _location(source.location),
            "exclude": list(source.exclude),
        }
    if isinstance(source, AppBackupCommand):
        return {
            "id": f"{source.service}/app-{source.output.name}",
            "kind": "app",
            "service": source.service,
            "container": source.container,
            "command": list(source.command),
            "user": source.user,
            "output": _location(source.output),
            "output_subpath": source.output_subpath,
            "restore": list(source.restore),
        }
    raise TypeError(f"not a backup source: {source!r}")


def sources_manifest(sources: Sequence[BackupSource]) -> dict[str, Any]:
    """What a backup run dumps and copies, in the order the services registered it."""
    entries = [_entry(s) for s in sources]
    ids = [e["id"] for e in entries]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"backup sources registered twice: {', '.join(repeated)}")
    return {"format": FORMAT, "sources": entries}


def _checked(name: str, script: str) -> str:
    if len(script.encode()) > MAX_SCRIPT:
        raise ValueError(f"{name}: the host step is {len(script.encode())} bytes, over {MAX_SCRIPT}")
    return script


def _remote_prefix(config: SuiteConfig) -> str:
    """How an operator reaches the host's vh-backup from their machine."""
    host = config.host
    sudo = "sudo "
    if not host.is_ssh:
        return sudo
    if host.ssh_user == "root":
        sudo = ""
    port = f"-p {host.ssh_port} " if host.ssh_port != 22 else ""
    return f"ssh {port}{host.ssh_user}@{host.ssh_address} {sudo}"


class BackupRepository(pulumi.ComponentResource):
    """The repository and the tool on the host; installs the pre-update hook for the services."""

    password: pulumi.Output[str]
    init: pulumi.Resource
    pre_update_steps: list[pulumi.Resource]

    def __init__(self, name: str, d: Deployment, opts: pulumi.ResourceOptions | None = None):
        super().__init__("versatilehub:backup:Repository", name, None, opts)
        cfg, b = d.config, d.config.backup
        assert b.repository is not None, "checked when the stack is parsed"
        self._d = d
        self.home = backup_home(cfg)
        if b.repository_kind == "local":
            pulumi.log.warn(
                f"backup.repository {b.repository} is on the server itself: a lab setup, not a backup that "
                "survives the server (use Backblaze B2 for a client)",
                resource=self,
            )
        if b.password is not None:  # adopting an existing repository (a new stack, the old state lost)
            self.password = secret(b.password)
        else:
            # The one key to keep outside the server: without it no snapshot can be read. Protected, so that
            # no change to the stack can throw it away; alphanumeric, so it survives any env file.
            generated = random.RandomPassword(
                f"{name}-password",
                length=40,
                special=False,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            self.password = generated.result
        image = d.images.get("restic")  # pulled by Pulumi, so the first scheduled run finds it
        home = shlex.quote(self.home)
        secrets: dict[str, pulumi.Input[str]] = {"VH_RESTIC_PASSWORD": self.password}
        env_lines = [
            f"printf 'RESTIC_REPOSITORY=%s\\n' {shlex.quote(b.repository)}",
            "printf 'RESTIC_PASSWORD=%s\\n' \"$VH_RESTIC_PASSWORD\"",
        ]
        key_env = b.key_env()
        if key_env is not None:
            assert b.key_id is not None and b.application_key is not None, "checked when the stack is parsed"
            secrets |= {"VH_KEY_ID": secret(b.key_id), "VH_APPLICATION_KEY": secret(b.application_key)}
            env_lines += [
                f"printf '{key_env[0]}=%s\\n' \"$VH_KEY_ID\"",
                f"printf '{key_env[1]}=%s\\n' \"$VH_APPLICATION_KEY\"",
            ]
        script = (
            AS_ROOT
            + "for tool in docker systemctl python3; do\n"
            + '  command -v "$tool" >/dev/null || { echo "backup: this host has no $tool" >&2; exit 1; }\n'
            + "done\n"
            + "python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' "
            + '|| { echo "backup: vh-backup needs python3 3.9 or newer on the host" >&2; exit 1; }\n'
            + f"as_root install -d -m 0700 {home}\n"
            + write_file(f"{self.home}/vh-backup", (SCRIPTS / "vh_backup.py").read_text(), "0700")
            + write_file(
                f"{self.home}/settings.json",
                json.dumps(
                    settings(cfg.client, b, d.images.reference("restic"), monitoring.status_files(cfg)),
                    indent=2,
                    sort_keys=True,
                ),
                "0600",
            )
            # Secrets reach the file through printf (a shell builtin): never a command line, never this text.
            + "{\n"
            + "".join(f"  {line}\n" for line in env_lines)
            + '} | as_root sh -c \'umask 077 && cat > "$1.new" && mv "$1.new" "$1"\' sh '
            + f"{home}/restic.env\n"
        )
        self.tool = d.run(
            f"{name}-tool",
            _checked(f"{name}-tool", script),
            parent=self,
            secret_env=secrets,
            depends_on=[image],
            delete=AS_ROOT_TOLERANT
            + f"as_root rm -rf {home}/cache {home}/stage || true\n"
            + f"as_root rm -f {home}/vh-backup {home}/settings.json {home}/restic.env {home}/lock || true\n"
            + f"as_root rmdir {home} 2>/dev/null || true\n",
        )
        # Creates the repository unless it exists; re-run when the repository changes.
        self.init = d.run(
            f"{name}-init",
            AS_ROOT + f"as_root {home}/vh-backup init\n",
            parent=self,
            triggers=[b.repository],
            depends_on=[self.tool],
        )
        self.pre_update_steps = []
        d.pre_update_hook = self.pre_update
        self.register_outputs({"repository": b.repository})

    def pre_update(
        self, parent: pulumi.Resource, service: str, versions: list[pulumi.Input[str]]
    ) -> pulumi.Resource:
        """The snapshot of `service` taken whenever one of its image versions changes (and on its first
        deployment, when there is nothing to take yet: vh-backup says so and succeeds)."""
        step = self._d.run(
            f"{service}-pre-update-backup",
            AS_ROOT
            + f"as_root {shlex.quote(self.home)}/vh-backup run --reason pre-update "
            + f"--service {shlex.quote(service)} --if-deployed\n",
            parent=parent,
            triggers=list(versions),
            depends_on=[self.init],
        )
        self.pre_update_steps.append(step)
        return step


class BackupSchedule(pulumi.ComponentResource):
    """What the services registered, the timers, and the initial backup."""

    outputs: dict[str, Any]

    def __init__(
        self,
        name: str,
        d: Deployment,
        repository: BackupRepository,
        deployed: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("versatilehub:backup:Schedule", name, None, opts)
        cfg, b = d.config, d.config.backup
        home = repository.home
        daily = b.on_calendar(b.schedule, cfg.timezone)
        weekly = b.on_calendar(b.check_schedule, cfg.timezone)
        monthly = f"Sun *-*-01..07 06:00:00 {cfg.timezone}"
        # What the hardened units may write (ReadWritePaths; "-": may not exist yet).
        status = [f"-{s.rsplit('/', 1)[0]}" for s in monitoring.status_files(cfg) if s]
        local = [f"-{b.repository}"] if b.repository_kind == "local" and b.repository else []
        writable = " ".join(dict.fromkeys([home, *status, *local]))
        units = {
            f"{unit_name(cfg)}.service": _unit("vh-backup.service", cfg.client, home, writable=writable),
            f"{unit_name(cfg)}.timer": _unit("vh-backup.timer", cfg.client, home, daily),
            f"{unit_name(cfg, check=True)}.service": _unit(
                "vh-backup-check.service", cfg.client, home, writable=writable
            ),
            f"{unit_name(cfg, check=True)}.timer": _unit("vh-backup-check.timer", cfg.client, home, weekly),
            # The restore drill (vh-backup drill): the first Sunday of each month, after the weekly check.
            f"{drill_unit(cfg)}.service": _unit(
                "vh-backup-drill.service", cfg.client, home, writable=writable
            ),
            f"{drill_unit(cfg)}.timer": _unit("vh-backup-drill.timer", cfg.client, home, monthly),
        }
        timers = f"{unit_name(cfg)}.timer {unit_name(cfg, check=True)}.timer {drill_unit(cfg)}.timer"
        sources = json.dumps(sources_manifest(d.backup_sources), indent=2)
        script = (
            AS_ROOT
            # systemd's own parser judges the schedules before anything is installed.
            + f"systemd-analyze calendar {shlex.quote(daily)} {shlex.quote(weekly)} {shlex.quote(monthly)}"
            + " >/dev/null\n"
            + write_file(f"{home}/sources.json", sources, "0600")
            + "".join(write_file(f"/etc/systemd/system/{unit}", text, "0644") for unit, text in units.items())
            + "as_root systemctl daemon-reload\n"
            + f"as_root systemctl enable --now {timers}\n"
        )
        # After every pre-update snapshot: those run with the sources of the version still deployed.
        self.install = d.run(
            f"{name}-timers",
            _checked(f"{name}-timers", script),
            parent=self,
            depends_on=[repository.init, *repository.pre_update_steps],
            delete=AS_ROOT_TOLERANT
            + f"as_root systemctl disable --now {timers} 2>/dev/null || true\n"
            + "".join(f"as_root rm -f /etc/systemd/system/{unit} || true\n" for unit in units)
            + "as_root systemctl daemon-reload || true\n"
            + f"as_root rm -f {shlex.quote(home)}/sources.json || true\n",
        )
        services = sorted({s.service for s in d.backup_sources})
        # Right after the first deployment, and again whenever a service is added or removed.
        self.initial = d.run(
            f"{name}-initial",
            AS_ROOT + f"as_root {shlex.quote(home)}/vh-backup run --reason initial\n",
            parent=self,
            triggers=[",".join(services)],
            depends_on=[self.install, *deployed],
        )
        command = f"{_remote_prefix(cfg)}{home}/vh-backup"
        self.outputs = {
            "repository": b.repository,
            # restic encrypts every snapshot with it: keep a copy outside the server (a password manager).
            "repositoryPassword": repository.password,
            "schedule": daily,
            "retention": " ".join(b.forget_args()),
            "check": {"schedule": weekly, "readDataSubset": b.check_subset},
            "services": services,
            # Exit 0 only when the newest complete snapshot in the repository is younger than maxAgeHours.
            "freshnessCommand": f"{command} freshness",
            "maxAgeHours": b.max_age_hours,
            "snapshotsCommand": f"{command} snapshots",
            "restoreCommand": f"{command} restore <snapshot> [--service <service>] --yes",
        }
        self.register_outputs({"repository": b.repository, "schedule": daily})


def _unit(template: str, client: str, home: str, schedule: str = "", writable: str = "") -> str:
    text = (SCRIPTS / "systemd" / template).read_text()
    text = text.replace("@CLIENT@", client).replace("@HOME@", home).replace("@SCHEDULE@", schedule)
    return text.replace("@WRITABLE@", writable)
