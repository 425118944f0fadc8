"""Operations: automatic backups with the seed's retention, consistent database dumps, pinned SSH host keys.

Backups are recognised by what runs, however the backup component writes it: host commands (their
scripts, triggers and the files they install, including a backup tool and its settings), job containers
(command, uploaded files, environment) and files copied to the host; restic may be called from a shell
line (`restic ... backup`) or as an argument list (`["backup", ...]` next to restic). A schedule is a
systemd timer (`OnCalendar=`), `systemd-run --on-calendar` or a cron entry; retention is every
`--keep-*` flag the backup passes to `restic forget`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pulumi

from .base import (
    COPY_TO_REMOTE,
    DOCKER_PROVIDER,
    REMOTE_COMMAND,
    UNKNOWN,
    Anchor,
    Finding,
    NotApplicable,
    Resource,
    Settings,
    Stack,
    known,
    resource_rule,
    service_of,
    stack_rule,
)
from .edge import DATA_STORE_CONFIG
from .model import Script, containers, data_store, scripts, ssh_options

_RESTIC = re.compile(r"\brestic\b", re.IGNORECASE)
_BACKUP_CALL = re.compile(
    r"^[^#\n]*\brestic\b(?!/)[^\n|;&]*\sbackup(\s|$)"  # shell: restic [options] backup ...
    r"|[\[(,]\s*[\"']backup[\"']",  # an argument list: ["backup", ...]
    re.IGNORECASE | re.MULTILINE,
)
_SCHEDULE = re.compile(
    r"OnCalendar\s*=|--on-calendar|_CRON=|/etc/cron\.|crontab|"
    r"^\s*(@(hourly|daily|weekly|monthly)|([0-9*/,-]+\s+){4}[0-9A-Za-z*/,-]+)\s+\S",
    re.MULTILINE,
)
_FORGET = re.compile(r"\bforget\b")
# `--keep-daily 7`, `--keep-daily=7`, `"--keep-daily", "7"`, `--keep-daily "$KEEP_DAILY"`.
_KEEP = re.compile(
    r"--keep-(?P<kind>within-daily|within-weekly|within-monthly|within|daily|weekly|monthly)\b"
    r"[=\s\"',]+(?P<value>[^\s\"',\])]+)"
)
_PRUNE = re.compile(r"--prune\b|[\[(,]\s*[\"']prune[\"']|^[^#\n]*\brestic\b[^\n]*\sprune(\s|$)", re.MULTILINE)
# A dump tool where it runs: at the start of a shell command, after `docker exec ... <container>`, or as
# the first element of an argument list.
_MARIADB_DUMP = re.compile(
    r"(?:^|[;&|(]|\bexec\b[^\n;&|]*?)\s*(mysqldump|mariadb-dump)\b[^\n]*|[\[(]\s*[\"'](mysqldump|mariadb-dump)[\"'][^\]]*",
    re.MULTILINE,
)
_STDIN_PIPE = re.compile(r"\|[^\n]*\brestic\b[^\n]*--stdin(?!-)\b", re.IGNORECASE)
_DUMP_TOOLS = {"postgres": r"\bpg_dump(all)?\b", "mariadb": r"\b(mysqldump|mariadb-dump)\b"}


def _settle(complete: bool) -> None:
    """Before concluding something is missing: defer when a script is only partly known (preview)."""
    if not complete:
        known(UNKNOWN, "scripts")


def _restic_scripts(found: list[Script]) -> list[Script]:
    return [sc for sc in found if _RESTIC.search(sc.text)]


def _backup_jobs(found: list[Script]) -> list[Script]:
    return [sc for sc in _restic_scripts(found) if _BACKUP_CALL.search(sc.text)]


@stack_rule(
    "backups-scheduled",
    "A restic backup job exists and runs on a schedule (systemd timer or cron) on the host.",
    anchor=Anchor(seed="automatic backups (restic, daily)", checkers=("restic docs",)),
    level="mandatory",
    remediation="Keep the backup component on (it installs the daily timer); only a lab stack turns it off "
    "(versatilehub:backup.enabled=false), which this rule reports as not applicable.",
    config={
        "backupConfigKey": {
            "type": "string",
            "default": "versatilehub:backup",
            "description": "Stack config object whose `enabled: false` records a stack without backups.",
        }
    },
)
def backups_scheduled(stack: Stack, s: Settings) -> Iterator[Finding]:
    if not containers(stack):
        return  # nothing runs, nothing to back up
    found, complete = scripts(stack)
    jobs = _backup_jobs(found)
    if not jobs:
        namespace, _, key = str(s["backupConfigKey"]).partition(":")
        backup = pulumi.Config(namespace).get_object(key)
        if isinstance(backup, dict) and backup.get("enabled") is False:
            raise NotApplicable(
                f"backups are turned off in the stack ({s['backupConfigKey']}.enabled=false: a lab)"
            )
        _settle(complete)
        yield Finding("no restic backup job: nothing backs this stack's data up")
    elif not any(_SCHEDULE.search(sc.text) for sc in found):
        _settle(complete)
        yield Finding(
            "the restic backup is never scheduled (no systemd timer or cron entry)", jobs[0].resource
        )


def _days(duration: str) -> float | None:
    """restic durations: 7d, 1m, 1y, 1y6m, 12h (no weeks)."""
    parts = re.findall(r"(\d+)([ymdh])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        return None
    scale = {"y": 365.0, "m": 30.0, "d": 1.0, "h": 1 / 24}
    return sum(int(n) * scale[u] for n, u in parts)


def _resolve(value: str, corpus: str) -> str:
    """`$KEEP_DAILY` / `${KEEP_DAILY}` -> the literal it is assigned in the same stack's scripts."""
    m = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}?", value)
    if not m:
        return value
    assigned = re.search(rf"\b{m[1]}=[\"']?([^\s\"';]+)", corpus)
    return assigned[1] if assigned else (m[3] or value)


@stack_rule(
    "backup-retention",
    "Every restic forget keeps at least 7 daily, 5 weekly and 12 monthly snapshots (or 7d/1m/1y) and prunes.",
    anchor=Anchor(seed="retention 7 days / 30 days / 12 months", checkers=("restic docs 060",)),
    level="mandatory",
    remediation="restic forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --prune (the backup "
    "component's default; versatilehub:backup.keep* must not go below it).",
    config={
        "keepDaily": {"type": "integer", "default": 7},
        "keepWeekly": {"type": "integer", "default": 5},
        "keepMonthly": {"type": "integer", "default": 12},
        "withinDaily": {"type": "string", "default": "7d"},
        "withinWeekly": {"type": "string", "default": "1m"},
        "withinMonthly": {"type": "string", "default": "1y"},
    },
)
def backup_retention(stack: Stack, s: Settings) -> Iterator[Finding]:
    found, complete = scripts(stack)
    if not _backup_jobs(found):
        return  # backups-scheduled reports the missing job
    restic = _restic_scripts(found)
    corpus = "\n".join(sc.text for sc in found)
    flags = [(sc, m["kind"], _resolve(m["value"], corpus)) for sc in restic for m in _KEEP.finditer(sc.text)]
    if not flags or not any(_FORGET.search(sc.text) for sc in restic):
        _settle(complete)
        yield Finding(
            "restic forget never runs with a retention policy: the repository only grows", restic[0].resource
        )
        return
    where = flags[0][0].resource
    longest: dict[str, float] = {}
    for _sc, kind, value in flags:
        amount = _days(value) if kind.startswith("within") else (float(value) if value.isdigit() else None)
        if amount is not None:  # a value computed at run time is not judged here
            longest[kind] = max(longest.get(kind, 0.0), amount)
    short = []
    for unit in ("daily", "weekly", "monthly"):
        count, span = int(s[f"keep{unit.title()}"]), _days(str(s[f"within{unit.title()}"])) or 0.0
        if (
            longest.get(unit, 0.0) < count
            and max(longest.get(f"within-{unit}", 0.0), longest.get("within", 0.0)) < span
        ):
            short.append(f"{unit} < {count}")
    low = sorted(
        {
            f"--keep-{k} {v}"
            for _sc, k, v in flags
            if not k.startswith("within") and v.isdigit() and int(v) < int(s[f"keep{k.title()}"])
        }
    )
    if short:
        yield Finding(f"restic forget keeps too little ({', '.join(short)})", where)
    elif low:
        yield Finding(f"a restic forget keeps less than the minimum ({', '.join(low)})", where)
    if not any(_PRUNE.search(sc.text) for sc in restic):
        yield Finding(
            "restic forget without --prune and no restic prune: forgotten data is never freed", where
        )


@stack_rule(
    "consistent-db-dumps",
    "Databases are backed up as consistent dumps, and a failed dump fails the backup run.",
    anchor=Anchor(
        seed="automatic backups",
        checkers=("MariaDB docs: --single-transaction", "PostgreSQL docs: pg_dump", "restic docs: --stdin"),
    ),
    level="mandatory",
    remediation="Register each database with d.backup_sources (DatabaseDump, or the app's own backup "
    "command) so the backup dumps it; never rely on copying a live data directory.",
    config=DATA_STORE_CONFIG,
)
def consistent_db_dumps(stack: Stack, s: Settings) -> Iterator[Finding]:
    found, complete = scripts(stack)
    if not _backup_jobs(found):
        return  # backups-scheduled reports the missing job
    for sc in found:
        for m in _MARIADB_DUMP.finditer(sc.text):
            if "--single-transaction" not in m[0]:
                tool = m[1] or m[2]
                yield Finding(
                    f"{tool} without --single-transaction: the dump is not a consistent snapshot", sc.resource
                )
        if _STDIN_PIPE.search(sc.text) and not re.search(r"\bpipefail\b", sc.text):
            yield Finding(
                "pipes a dump into restic --stdin without pipefail: a failed dump becomes a good snapshot",
                sc.resource,
            )
    backup = [sc for sc in found if re.search(r"backup", sc.text, re.IGNORECASE)]
    everything = "\n".join(sc.text for sc in backup)
    cs = containers(stack)
    for c in cs:
        kind = data_store(c, stack, s["dataStoreImages"])
        if kind not in _DUMP_TOOLS:
            continue
        # Dumped in its own container (its engine's dump tool), or by its service's app in a sibling
        # container (Frappe's `bench backup`, which runs mariadb-dump --single-transaction itself).
        service = [
            str(x.props.get("name") or x.name) for x in cs if service_of(x.resource) == service_of(c.resource)
        ]
        own = str(c.props.get("name") or c.name)
        mentioned = [
            n for n in service if any(n in sc.text for sc in backup if sc.resource is not c.resource)
        ]
        if (own in mentioned and re.search(_DUMP_TOOLS[kind], everything)) or (
            mentioned and own not in mentioned
        ):
            continue
        _settle(complete)
        yield Finding(
            f"the {kind} database is never dumped by the backup (a copy of its live files is not a "
            "consistent backup)",
            c.resource,
        )


def _plausible_host_key(value: object) -> bool:
    parts = str(value or "").split()
    return len(parts) >= 2 and parts[0].startswith(("ssh-", "ecdsa-sha2-", "sk-")) and len(parts[1]) >= 60


@resource_rule(
    "ssh-host-key-pinned",
    "Every SSH connection to a client host verifies a pinned host key (commands and the docker provider).",
    anchor=Anchor(checkers=("pulumi-command schema: hostKey unset = host key not checked",)),
    level="mandatory",
    types=(REMOTE_COMMAND, COPY_TO_REMOTE, DOCKER_PROVIDER),
    remediation="pulumi config set --path 'versatilehub:host.sshHostKey' \"$(ssh-keyscan -t ed25519 HOST | "
    "cut -d' ' -f2-)\" (check the fingerprint out of band).",
)
def ssh_host_key_pinned(r: Resource, _: Settings) -> Iterator[str]:
    if r.type == DOCKER_PROVIDER:
        host = known(r.props.get("host"), "host")
        if not (isinstance(host, str) and host.startswith("ssh://")):
            return
        opts = " ".join(ssh_options(known(r.props.get("sshOpts"), "sshOpts"))).lower().replace(" =", "=")
        flat = re.sub(r"\s*=\s*", "=", opts)
        if (
            re.search(r"stricthostkeychecking=(no|off|accept-new)", flat)
            or "userknownhostsfile=/dev/null" in flat
        ):
            yield "the docker provider's ssh connection accepts unknown host keys"
        elif "stricthostkeychecking=yes" not in flat:
            yield "the docker provider's ssh connection lacks StrictHostKeyChecking=yes"
        return
    connection = known(r.props.get("connection") or {}, "connection")
    for label, conn in (("connection", connection), ("proxy connection", connection.get("proxy"))):
        if conn is None:
            continue
        if not _plausible_host_key(conn.get("hostKey")):
            yield f"its {label} to {conn.get('host', '?')} has no pinned host key (any server is trusted)"
