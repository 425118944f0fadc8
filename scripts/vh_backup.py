#!/usr/bin/env python3
"""vh-backup: one client's backups on its Docker host (installed there by the VersatileHub program).

A run dumps every service in an app-consistent way (pg_dump, mariadb-dump --single-transaction, the app's
own backup command), then records ONE restic snapshot of those dumps and the data files, tagged with the
client and the reason. A failing step fails the run before restic is called: a snapshot exists only for a
complete run. Also here: retention, the integrity check, the age of the last good snapshot, and restore
(one service or the whole client).

What to back up comes from manifest.json, written by the program beside this file; the repository and
its secrets from restic.env beside it (mode 0600). restic runs as the pinned official image through
Docker (runtime "docker"), or as a binary on this machine (runtime "local": tests and labs); either way
it gets the same arguments, because every path is mounted at the same place inside the container.

Python 3.9 or newer, standard library only. `vh-backup --help` lists the commands.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import errno
import fcntl
import fnmatch
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, Any

FORMAT = 1
REASONS = ("daily", "initial", "pre-update", "manual")
ENV_KEYS = frozenset(
    {
        "RESTIC_REPOSITORY",
        "RESTIC_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "B2_ACCOUNT_ID",
        "B2_ACCOUNT_KEY",
    }
)
# Paths handed to `docker run --volume` (no ':' or ','), and names handed to a shell.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
SECRET_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
SNAPSHOT_SAVED = re.compile(r"^snapshot ([0-9a-f]{8,64}) saved$", re.MULTILINE)
RESTIC_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")
# The restic container may read everything for a backup, and set owners and modes for a restore; no more.
READ_CAPS = ("DAC_READ_SEARCH",)
WRITE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID")
# The image's own entrypoint runs restic at these priorities (docker/entrypoint.sh at restic v0.19.1:
# `exec nice -n $NICE [ionice -c $IONICE_CLASS -n $IONICE_PRIORITY] /usr/bin/restic "$@"`). The units' Nice=
# and IOScheduling*= never reach it: dockerd starts the container, not the unit. Lowering one's own
# priority needs no capability, so they apply with --cap-drop ALL.
PRIORITY = {"NICE": "10", "IONICE_CLASS": "2", "IONICE_PRIORITY": "7"}  # best-effort, lowest level
# A B2 repository's keys reach restic through a wrapper: the image's ENTRYPOINT is /entrypoint.sh on alpine,
# whose busybox is /bin/sh (docker/Dockerfile.release at restic v0.19.1); `sh -c WRAPPER FILE ARGS` exports
# the env file's KEY='value' lines, then execs that entrypoint with ARGS, so PRIORITY still applies.
IMAGE_ENTRYPOINT = "/entrypoint.sh"
B2_WRAPPER = f'set -a && . "$0" && set +a && exec {IMAGE_ENTRYPOINT} "$@"'
B2_KEYS = ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY")
# How long a command waits for another host's live lock before it fails (restic >= 0.16: --retry-lock).
RETRY_LOCK = "10m"
DUMP_SUFFIX = {"postgres": "pgdump", "mariadb": "sql"}
# Docker neither forwards a signal to a `docker exec`'d process nor ends it with its client: a pg_dump left
# running keeps its share locks and blocks the migrations of the `pulumi up` that follows. Every command of
# a run goes in tagged (VH_BACKUP_RUN=<the run's token> in its environment, which its children inherit);
# this ends what carries the token ($1): SIGTERM, SIGKILL after 5 s. POSIX sh, tr and grep only (no procps
# in some images); one environment entry per line, newlines inside values made harmless; prints the PIDs.
LEFTOVERS_SCRIPT = r"""t="VH_BACKUP_RUN=$1"
scan() {
  pids=""
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    tr '\n\000' '\001\n' 2>/dev/null <"$d/environ" | grep -qxF -e "$t" && pids="$pids ${d#/proc/}"
  done
}
scan
[ -n "$pids" ] || exit 0
echo $pids
kill -TERM $pids 2>/dev/null
end=$(($(date +%s) + 5))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 0.2
  scan
  [ -n "$pids" ] || exit 0
done
kill -KILL $pids 2>/dev/null
exit 0
"""


class Failure(Exception):
    """A step failed; the message tells the operator what and why. Exit status 1."""


class Locked(Failure):
    """The repository is locked by another restic process."""


class Partial(Failure):
    """A snapshot was saved, but restic could not read some files (its exit 3), twice: the snapshot is kept,
    tagged partial; the run reports it as result "partial" and exits 1."""


def say(message: str) -> None:
    print(message, flush=True)


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " / ".join(kept) or "(no output)"


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


# ---------------------------------------------------------------------------------------------------
# The manifest: what this client's backups contain
# ---------------------------------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as exc:
        raise Failure(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise Failure(f"{path} is not in format {FORMAT}: run pulumi up to install matching versions")
    return data


class Manifest:
    """settings.json (the repository's side: runtime, retention, check) and sources.json (what the services
    registered), both written by the program into this client's backup home."""

    def __init__(self, home: str):
        self.home = os.path.abspath(home)
        self.stage = os.path.join(self.home, "stage")
        self.cache = os.path.join(self.home, "cache")
        for path in (self.home, self.stage, self.cache):
            _safe(path)
        try:
            self.settings = _read_json(os.path.join(self.home, "settings.json"))
        except FileNotFoundError:
            raise Failure(f"no settings.json in {self.home} (pulumi up installs it)") from None
        data = self.settings
        self.client: str = data["client"]
        # This run's tag on whatever it starts inside a container (LEFTOVERS_SCRIPT).
        self.run_token = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.client)}-{os.getpid()}-{time.monotonic_ns()}"
        self.runtime: str = data["runtime"]
        if self.runtime not in ("docker", "local"):
            raise Failure(f"settings.json: runtime must be docker or local, not {self.runtime!r}")
        self.image: str = data.get("image", "")
        self.restic: str = data.get("restic", "restic")
        self.forget: list[str] = list(data["forget"])
        self.check_subset: str = data["check_subset"]
        self.max_age_hours: float = float(data["max_age_hours"])
        try:
            self.sources: list[dict[str, Any]] = list(
                _read_json(os.path.join(self.home, "sources.json"))["sources"]
            )
            self.deployed = True
        except FileNotFoundError:  # the services are not deployed yet
            self.sources, self.deployed = [], False
        ids = [s["id"] for s in self.sources]
        if len(ids) != len(set(ids)):
            raise Failure(f"sources.json: source ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")

    def services(self) -> list[str]:
        return sorted({s["service"] for s in self.sources})

    def select(self, services: Sequence[str]) -> list[dict[str, Any]]:
        unknown = sorted(set(services) - set(self.services()))
        if unknown:
            raise Failure(
                f"no backup sources for {', '.join(unknown)}; this client has {', '.join(self.services())}"
            )
        return [s for s in self.sources if not services or s["service"] in services]


def _safe(path: str) -> str:
    if not SAFE_PATH.match(path) or "/../" in f"{path}/":
        raise Failure(
            f"refusing the path {path!r}: only absolute paths of letters, digits and ._/@+- are used"
        )
    return path


# ---------------------------------------------------------------------------------------------------
# Secrets: restic.env (KEY=VALUE lines, only restic's and the storage's variables)
# ---------------------------------------------------------------------------------------------------


def load_env(path: str) -> dict[str, str]:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise Failure(f"no {path}: pulumi up writes the repository's address and secrets there") from None
    except PermissionError:
        raise Failure(f"cannot read {path}: run vh-backup as root (sudo)") from None
    if st.st_mode & 0o077:
        raise Failure(f"{path} holds the repository password but others may read it: chmod 600 {path}")
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in ENV_KEYS:
            raise Failure(f"{path}:{number}: expected one of {', '.join(sorted(ENV_KEYS))} as KEY=VALUE")
        env[key] = value
    for key in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD"):
        if not env.get(key):
            raise Failure(f"{path} has no {key}")
    return env


def _sh_quoted(value: str) -> str:
    """One word for sh, whatever it holds: single quotes keep all literal but a quote, written '\\''."""
    return "'" + value.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------------------------------
# restic, the same invocation everywhere: a local binary, or the pinned image with every path at its place
# ---------------------------------------------------------------------------------------------------


class Restic:
    def __init__(self, manifest: Manifest, env_file: str):
        self.m = manifest
        self.env_file = env_file
        self.env = load_env(env_file)
        self.env["RESTIC_CACHE_DIR"] = manifest.cache
        self.secrets_dir: str | None = None
        self.b2_env: str | None = None  # the docker runtime's B2 keys file, sourced by B2_WRAPPER
        if manifest.runtime == "docker":
            self.env |= PRIORITY
            self._secrets_as_files()
        self.repository = self.env["RESTIC_REPOSITORY"]
        self.local_repository = self.repository if self.repository.startswith("/") else None
        if self.local_repository:
            _safe(self.local_repository)
        # The hostname restic runs under in its container (docker runtime; "" for a local binary).
        self.lock_host = f"vh-backup-{manifest.client}" if manifest.runtime == "docker" else ""
        self._features: frozenset[str] | None = None

    def _secrets_as_files(self) -> None:
        """Docker runtime: the password and the storage keys reach the restic container as read-only files
        in a 0700 folder, never in its environment or argv, which `docker inspect` shows (issue 14). restic
        reads RESTIC_PASSWORD_FILE with TrimSpace (internal/global/global.go LoadPasswordFromFile, v0.19.1)
        and an S3 repository's keys from AWS_SHARED_CREDENTIALS_FILE (internal/backend/s3/s3.go:
        FileAWSCredentials in its credentials chain). B2 keys are read from the environment only
        (internal/backend/b2/config.go, ApplyEnvironment): they go to b2.env (KEY='value' lines), which
        B2_WRAPPER exports inside the container just before the image's entrypoint runs restic."""
        directory = os.path.join(self.m.home, "secrets")
        _safe(directory)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        files: list[tuple[str | None, str, str]] = [
            ("RESTIC_PASSWORD_FILE", "restic-password", self.env.pop("RESTIC_PASSWORD") + "\n")
        ]
        if "AWS_ACCESS_KEY_ID" in self.env and "AWS_SECRET_ACCESS_KEY" in self.env:
            ident, key = self.env.pop("AWS_ACCESS_KEY_ID"), self.env.pop("AWS_SECRET_ACCESS_KEY")
            text = f"[default]\naws_access_key_id = {ident}\naws_secret_access_key = {key}\n"
            files.append(("AWS_SHARED_CREDENTIALS_FILE", "aws-credentials", text))
        b2 = {key: self.env.pop(key) for key in B2_KEYS if key in self.env}
        if b2:
            text = "".join(f"{key}={_sh_quoted(value)}\n" for key, value in b2.items())
            files.append((None, "b2.env", text))
        else:  # no B2 repository (any more): no keys left behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, "b2.env"))
        for variable, name, text in files:
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + ".new")
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(path + ".new", path)
            if variable:
                self.env[variable] = path
            else:
                self.b2_env = path
        self.secrets_dir = directory

    def features(self) -> frozenset[str]:
        """The options of the restic in use that vh-backup relies on when present: `--retry-lock` (a global
        option since restic 0.16.0, cmd/restic/global.go) and `backup --no-scan` (0.15.0,
        cmd/restic/cmd_backup.go). Read from `restic backup --help` once per run: Debian's 0.14 has
        neither, the pinned image both."""
        if self._features is None:
            proc = self.run(["backup", "--help"], accept=(0, 1))
            found = set(re.findall(r"--(retry-lock|no-scan)\b", proc.stdout))
            self._features = frozenset(found)
        return self._features

    def argv(
        self, args: Sequence[str], mounts: Sequence[tuple[str, bool]] = (), caps: Sequence[str] = READ_CAPS
    ) -> list[str]:
        if self.m.runtime == "local":
            return [self.m.restic, *args]
        argv = [
            "docker", "run", "--rm",
            "--name", f"vh-backup-{self.m.client}-{os.getpid()}",
            # restic records this name in its locks (the snapshots' host is set with --host): a fixed one
            # marks every lock of this machine's vh-backup for this client (locking() relies on it).
            "--hostname", self.lock_host,
            "--security-opt", "no-new-privileges:true",
            "--cap-drop", "ALL",
        ]  # fmt: skip
        for cap in caps:
            argv += ["--cap-add", cap]
        for name in sorted(self.env):  # the values come from this process's environment, never argv
            argv += ["--env", name]
        volumes = [(self.m.cache, True), *mounts]
        if self.secrets_dir:
            volumes.append((self.secrets_dir, False))
        if self.local_repository:
            volumes.append((self.local_repository, True))
        for path, writable in volumes:
            argv += ["--volume", f"{_safe(path)}:{path}:{'rw' if writable else 'ro'}"]
        if self.b2_env:  # the wrapper exports the B2 keys, then runs the image's entrypoint
            return [*argv, "--entrypoint", "/bin/sh", self.m.image, "-c", B2_WRAPPER, self.b2_env, *args]
        return [*argv, self.m.image, *args]  # the image's entrypoint: restic at PRIORITY

    def run(
        self,
        args: Sequence[str],
        *,
        mounts: Sequence[tuple[str, bool]] = (),
        caps: Sequence[str] = READ_CAPS,
        accept: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        os.makedirs(self.m.cache, mode=0o700, exist_ok=True)
        if self.local_repository and self.m.runtime == "docker":
            os.makedirs(self.local_repository, mode=0o700, exist_ok=True)
        argv = self.argv(args, mounts, caps)
        try:
            child = subprocess.Popen(
                argv,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
            )
        except FileNotFoundError:
            raise Failure(f"{argv[0]} is not installed on this machine") from None
        with child:
            try:
                stdout, stderr = child.communicate()
            except BaseException:
                self._stop(child, argv)
                raise
        proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
        if proc.returncode not in accept:
            raise self.error(next(a for a in args if not a.startswith("-")), proc)
        return proc

    def _stop(self, child: subprocess.Popen[str], argv: Sequence[str]) -> None:
        """Interrupted: let restic end cleanly (it removes its lock), then make sure it is gone."""
        if self.m.runtime == "docker":  # the container outlives a killed docker CLI: stop it by name
            name = argv[argv.index("--name") + 1]
            subprocess.run(["docker", "stop", "--time", "20", name], capture_output=True, check=False)
        else:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=25)
        except subprocess.TimeoutExpired:
            child.kill()

    def error(self, command: str, proc: subprocess.CompletedProcess[str]) -> Failure:
        err = proc.stderr
        if "wrong password" in err:
            return Failure(
                f"the password in {self.env_file} does not open the repository {self.repository} "
                "(wrong password, or another repository at that address); the right one is the stack "
                "output backup.repositoryPassword, kept outside the server"
            )
        if "repository is already locked" in err or "failed to lock repository" in err:
            return Locked(f"restic {command}: the repository is locked by another process: {_tail(err, 3)}")
        if "Is there a repository at the following location?" in err or "repository does not exist" in err:
            return Failure(
                f"no restic repository at {self.repository} yet: pulumi up creates it (vh-backup init)"
            )
        return Failure(f"restic {command} failed (exit {proc.returncode}): {_tail(err)}")

    def locking(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """run() inside exclusive(), and when a lock is in the way: remove the locks of dead runs and try
        once more, waiting for a live lock (--retry-lock) where restic can.

        restic's own test (internal/restic/lock.go, Lock.Stale at v0.19.1) calls a lock stale when it is
        30 minutes old, or when it comes from this hostname and its PID answers no signal. In a container
        restic is PID 1 under the fixed hostname: every dead run's lock names PID 1, which always answers,
        so `restic unlock` keeps it for 30 minutes, and restic never skips a stale lock when it locks
        (checkForOtherLocks). What restic cannot tell, this script can: it holds the client's flock, so
        no other vh-backup of this client runs on this machine, and a lock under this machine's vh-backup
        hostname is a dead run's. When every lock left is one of those, they all go (unlock --remove-all);
        a lock of any other host stays (its owner may be alive) and is waited for or reported."""
        try:
            return self.run(args, **kwargs)
        except Locked:
            self.run(["unlock"])  # what restic itself knows to be stale (dead PIDs of a local binary)
            left = self.locks()
            dead = [lock for lock in left if self.lock_host and lock.get("hostname") == self.lock_host]
            if left and len(dead) == len(left):
                self.run(["unlock", "--remove-all"])
                say(f"removed {len(dead)} lock(s) left by a vh-backup run that died on this machine")
            wait = ["--retry-lock", RETRY_LOCK] if "retry-lock" in self.features() else []
            try:
                return self.run([args[0], *wait, *args[1:]], **kwargs)
            except Locked as locked:
                holders = ", ".join(
                    f"{'exclusive ' if lock.get('exclusive') else ''}lock of PID {lock.get('pid')} on "
                    f"{lock.get('hostname')} since {str(lock.get('time'))[:19]}"
                    for lock in self.locks()
                )
                raise Locked(
                    f"{locked}; held by {holders or 'a lock gone since'}; vh-backup removes only the locks "
                    "of its own dead runs: once that host runs no restic, `restic unlock --remove-all`"
                ) from None

    def locks(self) -> list[dict[str, Any]]:
        """The repository's locks as restic stores them ({"time", "exclusive", "hostname", "pid", ...})."""
        found = []
        for lock_id in self.run(["--no-lock", "list", "locks"]).stdout.split():
            proc = self.run(["--no-lock", "cat", "lock", lock_id], accept=(0, 1))
            if proc.returncode == 0:  # gone meanwhile: its owner ended
                found.append(json.loads(proc.stdout))
        return found

    def snapshots(self) -> list[dict[str, Any]]:
        # --no-lock: reading the list is safe during a prune, and freshness must answer then too.
        proc = self.run(
            ["--no-lock", "snapshots", "--json", "--host", self.m.client, "--tag", f"client={self.m.client}"]
        )
        found = json.loads(proc.stdout or "[]") or []
        return sorted(found, key=lambda s: snapshot_epoch(s["time"]))


def snapshot_epoch(value: str) -> float:
    """restic's RFC 3339 time (nanoseconds, any offset) as seconds since the epoch."""
    m = RESTIC_TIME.match(value)
    if not m:
        raise Failure(f"unexpected snapshot time {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    epoch = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(7)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return float(epoch)


def _tags(snapshot: dict[str, Any], key: str) -> list[str]:
    prefix = f"{key}="
    return [t[len(prefix) :] for t in snapshot.get("tags") or [] if t.startswith(prefix)]


def is_partial(snapshot: dict[str, Any]) -> bool:
    """restic could not read some files for it (exit 3; Partial)."""
    return "partial" in (snapshot.get("tags") or [])


def is_complete(snapshot: dict[str, Any]) -> bool:
    """A snapshot of the whole client (not one service's pre-update snapshot) with every file in it."""
    return not _tags(snapshot, "service") and not is_partial(snapshot)


def _describe(snapshot: dict[str, Any]) -> str:
    reason = ",".join(_tags(snapshot, "reason")) or "?"
    scope = ",".join(_tags(snapshot, "service")) or "all services"
    partial = ", partial" if is_partial(snapshot) else ""
    return f"{snapshot['short_id']} {snapshot['time'][:19].replace('T', ' ')} {reason} ({scope}{partial})"


# ---------------------------------------------------------------------------------------------------
# Sources: where a location is on this machine, and commands inside the app's containers
# ---------------------------------------------------------------------------------------------------


def locate(m: Manifest, location: dict[str, str]) -> str:
    """A data location's path on this machine: the bind directory, or the named volume's mount point."""
    if location["kind"] == "bind":
        return _safe(location["source"])
    if m.runtime != "docker":
        raise Failure(f"volume {location['source']} can only be reached through Docker (runtime docker)")
    proc = subprocess.run(
        ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", location["source"]],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Failure(f"docker volume {location['source']}: {_tail(proc.stderr, 2)}")
    return _safe(proc.stdout.strip())


def in_container(
    m: Manifest, source: dict[str, Any], argv: Sequence[str], *, stdin: bool = False, user: str | None = None
) -> list[str]:
    container = source.get("container")
    if m.runtime == "local":
        if container:
            raise Failure(
                f"{source['id']} runs in container {container}, but this manifest's runtime is local"
            )
        return list(argv)
    if not container:
        raise Failure(f"{source['id']} names no container")
    return [
        "docker",
        "exec",
        "--env",
        f"VH_BACKUP_RUN={m.run_token}",
        *(["-i"] if stdin else []),
        *(["--user", user] if user else []),
        container,
        *argv,
    ]


def _with_password(source: dict[str, Any], variable: str, argv: list[str]) -> list[str]:
    """Hand the password over from its secret file inside the container (read there: never on a command
    line, never in the container's or the exec's environment as Docker records it)."""
    path = source.get("password_file")
    if not path:
        return argv
    if not SECRET_PATH.match(path):
        raise Failure(f"{source['id']}: {path!r} is not an absolute file path")
    return ["sh", "-c", f'f=$1; shift; {variable}="$(cat "$f")" exec "$@"', "sh", path, *argv]


# The dumps at restic's priorities (PRIORITY, issue 17 item 6): a `docker exec` starts at the database
# container's own priority, whatever the unit's Nice= says, so the dump lowers its own first. Lowering
# one's own CPU and I/O priority needs no capability (nice(2), ioprio_set(2) for IOPRIO_CLASS_BE), so it
# applies under --cap-drop ALL; an image without ionice (or a kernel refusing it) keeps just the nice.
LOW_PRIORITY_SCRIPT = (
    'if ionice -c "$IONICE_CLASS" -n "$IONICE_PRIORITY" true 2>/dev/null; then'
    ' exec nice -n "$NICE" ionice -c "$IONICE_CLASS" -n "$IONICE_PRIORITY" "$@"; fi;'
    ' exec nice -n "$NICE" "$@"'
)


def _low_priority(argv: list[str]) -> list[str]:
    assignments = [f"{name}={value}" for name, value in PRIORITY.items()]
    return ["env", *assignments, "sh", "-c", LOW_PRIORITY_SCRIPT, "sh", *argv]


def dump_argv(m: Manifest, source: dict[str, Any]) -> list[str]:
    user, database = source["user"], source["database"]
    connect = list(source.get("connect", []))  # e.g. --host/--port where the database is reached directly
    if source["engine"] == "postgres":
        # Custom format (pg_restore), uncompressed so that restic deduplicates and compresses it.
        tool = ["pg_dump", "--format=custom", "--compress=0", "--no-owner", "--no-acl", *connect]
        tool += [f"--username={user}", f"--dbname={database}"]
        return in_container(m, source, _low_priority(_with_password(source, "PGPASSWORD", tool)))
    if source["engine"] == "mariadb":
        # One consistent InnoDB snapshot without locking the tables; no dump date, so an unchanged
        # database gives an identical file.
        tool = ["mariadb-dump", "--single-transaction", "--quick", "--routines", "--triggers", "--hex-blob"]
        tool += [
            "--skip-dump-date",
            "--add-drop-database",
            *connect,
            f"--user={user}",
            "--databases",
            database,
        ]
        return in_container(m, source, _low_priority(_with_password(source, "MYSQL_PWD", tool)))
    raise Failure(f"{source['id']}: unknown engine {source['engine']!r}")


def dump_file(m: Manifest, source: dict[str, Any], stage: str | None = None) -> str:
    name = f"{source['engine']}-{source['database']}.{DUMP_SUFFIX[source['engine']]}"
    return os.path.join(stage or m.stage, source["service"], name)


def _complete_dump(engine: str, path: str) -> bool:
    """The dump is whole: pg_dump's custom header, or mariadb-dump's closing line."""
    with open(path, "rb") as f:
        if engine == "postgres":
            return f.read(5) == b"PGDMP"
        f.seek(max(0, os.path.getsize(path) - 4096))
        return b"-- Dump completed" in f.read()


class _Dump:
    """One database dump under way: the child writes <dump>.partial, its stderr goes to a temporary file (a
    file, not a pipe: nobody reads while the dumps run, and a full pipe would stall its dump)."""

    def __init__(self, m: Manifest, source: dict[str, Any], errors: IO[bytes]):
        self.source = source
        self.target = dump_file(m, source)
        self.partial = self.target + ".partial"
        self.child: subprocess.Popen[bytes] | None = None
        self.errors = errors
        self.started = self.ended = time.monotonic()

    def start(self, argv: Sequence[str]) -> None:
        os.makedirs(os.path.dirname(self.target), mode=0o700, exist_ok=True)
        self.started = time.monotonic()
        try:
            with open(self.partial, "wb") as out:
                self.child = subprocess.Popen(argv, stdout=out, stderr=self.errors, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise Failure(f"{self.source['id']}: {argv[0]} is not installed on this machine") from None

    def running(self) -> bool:
        """Still running; the first time it is found ended (and reaped), notes when."""
        assert self.child is not None
        if self.child.returncode is not None:
            return False
        if self.child.poll() is None:
            return True
        self.ended = time.monotonic()
        return False

    def problem(self) -> str | None:
        """Why this dump is no good (exit status, then completeness), or None."""
        assert self.child is not None
        source = self.source
        if self.child.returncode != 0:
            self.errors.seek(max(0, self.errors.seek(0, os.SEEK_END) - 65536))
            where = f"in {source['container']}" if source.get("container") else "directly"
            return (
                f"{source['id']}: dumping {source['engine']} database {source['database']} {where} failed "
                f"(exit {self.child.returncode}): {_tail(self.errors.read().decode(errors='replace'))}"
            )
        if not _complete_dump(source["engine"], self.partial):
            return f"{source['id']}: the dump of {source['database']} is truncated or empty"
        return None


def dump_databases(m: Manifest, sources: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Every database dump of a run at once (other servers, or other databases of one), each checked and
    moved to its final name only when all are whole; the dumps' paths by source id."""
    if not sources:
        return {}
    planned = [(source, dump_argv(m, source)) for source in sources]  # a bad source fails before any starts
    clock = time.monotonic()
    dumps: list[_Dump] = []
    with ExitStack() as files:
        try:
            for source, argv in planned:
                dumps.append(_Dump(m, source, files.enter_context(tempfile.TemporaryFile())))
                dumps[-1].start(argv)
            # No threads: poll the children, so that each one's end (and duration) is its own.
            while [d for d in dumps if d.running()]:
                time.sleep(0.02)
            problems = [p for p in (d.problem() for d in dumps) if p]
            if len(problems) > 1:
                raise Failure(f"{len(problems)} database dumps failed: {'; '.join(problems)}")
            if problems:
                raise Failure(problems[0])
            for d in dumps:
                os.replace(d.partial, d.target)
        except BaseException:
            _abandon(m, dumps)
            raise
    for d in dumps:
        say(f"dumped {d.source['id']}: {_mib(os.path.getsize(d.target))} in {d.ended - d.started:.1f} s")
    together = " (concurrently)" if len(dumps) > 1 else ""
    say(f"dumps done: {len(dumps)} in {time.monotonic() - clock:.1f} s{together}")
    return {d.source["id"]: d.target for d in dumps}


@contextmanager
def _signals_held() -> Iterator[None]:
    """A second signal (systemd's SIGTERM after a Ctrl-C) must not cut a clean-up short: it waits until the
    clean-up is done, then interrupts as usual."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _end_leftovers(m: Manifest, places: Sequence[tuple[str, str | None]]) -> None:
    """After a failed or interrupted step: end what this run started in these (container, user) places and
    left running there (LEFTOVERS_SCRIPT). A clean-up that cannot run is one warning, never the error."""
    if m.runtime != "docker":
        return
    with _signals_held():
        for container, user in sorted(set(places), key=lambda p: (p[0], p[1] or "")):
            argv = ["docker", "exec", *(["--user", user] if user else []), container]
            argv += ["sh", "-c", LEFTOVERS_SCRIPT, "sh", m.run_token]  # the token as $1, never in the text
            try:
                proc = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                problem = str(error)
            else:
                if proc.returncode == 0:
                    if proc.stdout.split():
                        say(f"stopped {len(proc.stdout.split())} process(es) of this run left in {container}")
                    continue
                problem = f"exit {proc.returncode}: {_tail(proc.stderr, 2)}"
            print(
                f"vh-backup: warning: could not stop what this run left running in {container}: {problem}",
                file=sys.stderr,
                flush=True,
            )


def _abandon(m: Manifest, dumps: Sequence[_Dump]) -> None:
    """A dump failed, or the run was interrupted: no dump child outlives the run, inside its container
    neither, no part of a dump stays where a later run could pick it up."""
    with _signals_held():
        live = [d.child for d in dumps if d.child is not None and d.child.poll() is None]
        for child in live:
            child.terminate()
        deadline = time.monotonic() + 5
        for child in live:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        # The docker CLI is gone, not necessarily the dump it started in its container.
        _end_leftovers(
            m, [(d.source["container"], None) for d in dumps if d.child and d.source.get("container")]
        )
        for d in dumps:
            for path in (d.partial, d.target):
                if os.path.exists(path):
                    os.unlink(path)


def _newest_mtime(paths: Sequence[str]) -> float:
    newest = 0.0
    for path in paths:
        newest = max(newest, os.lstat(path).st_mtime)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def app_backup(m: Manifest, source: dict[str, Any]) -> tuple[str, list[str]]:
    """Run the app's own backup command; the files it wrote, which must be new."""
    root = locate(m, source["output"])
    started, clock = time.time(), time.monotonic()
    argv = in_container(m, source, source["command"], user=source.get("user"))
    places = [(source["container"], source.get("user"))] if source.get("container") else []
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
        )
    except BaseException:  # interrupted: the command may go on in its container
        _end_leftovers(m, places)
        raise
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        _end_leftovers(m, places)  # what the failed command started may still run (bench's dump tools)
        raise Failure(
            f"{source['id']}: the app's backup command failed (exit {proc.returncode}): {_tail(output)}"
        )
    pattern = source.get("output_subpath") or ""
    paths = sorted(glob.glob(os.path.join(root, pattern))) if pattern else [root]
    if not paths:
        raise Failure(
            f"{source['id']}: the app's backup command wrote nothing matching {os.path.join(root, pattern)}"
        )
    # A command that "succeeds" without writing would leave yesterday's copy to be snapshotted as today's.
    if _newest_mtime(paths) < started - 2:
        raise Failure(f"{source['id']}: the app's backup command left no new file in {', '.join(paths)}")
    say(f"ran {source['id']}: {len(paths)} path(s) in {time.monotonic() - clock:.1f} s")
    return root, [_safe(p) for p in paths]


def file_set(m: Manifest, source: dict[str, Any]) -> str:
    path = locate(m, source["location"])
    if not os.path.isdir(path):
        raise Failure(f"{source['id']}: {path} does not exist")
    return path


def _containers_exist(m: Manifest, sources: Sequence[dict[str, Any]]) -> bool:
    names = sorted({s["container"] for s in sources if s.get("container")})
    if m.runtime != "docker" or not names:
        return True
    for name in names:
        proc = subprocess.run(["docker", "container", "inspect", name], capture_output=True, check=False)
        if proc.returncode == 0:
            return True
    return False


# ---------------------------------------------------------------------------------------------------
# One run: dumps, then one snapshot
# ---------------------------------------------------------------------------------------------------


# How long a run waits for another run of the same client; the units' TimeoutStartSec (4 h) bounds a
# run itself, so a hung upload costs later runs this long at most, never forever.
LOCK_WAIT_SECONDS = 2 * 3600


@contextmanager
def exclusive(m: Manifest, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One vh-backup run, check or restore at a time for this client on this machine."""
    os.makedirs(m.home, mode=0o700, exist_ok=True)
    path = os.path.join(m.home, "lock")
    with open(path, "w") as lock:
        deadline = time.monotonic() + wait_seconds
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Failure(
                        f"another vh-backup run of {m.client} has held {path} for over {wait_seconds:.0f} s;"
                        " if it is hung, stop it (systemctl stop the vh-backup units) and run again"
                    ) from None
                if not waiting:
                    say("waiting for another vh-backup run of this client to finish")
                    waiting = True
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        yield


def run(m: Manifest, env_file: str, reason: str, services: Sequence[str]) -> str:
    restic = Restic(m, env_file)  # a bad restic.env fails the run before anything is dumped
    if not m.deployed:
        raise Failure(f"no sources.json in {m.home} yet: pulumi up writes it once the services are deployed")
    sources = m.select(services)
    started = time.monotonic()
    scope = sorted(services) or m.services()
    # The stage holds this run's dumps only: what a killed run left is dropped, never snapshotted.
    os.makedirs(m.stage, mode=0o700, exist_ok=True)
    for service in scope:
        shutil.rmtree(os.path.join(m.stage, service), ignore_errors=True)
    if not services:
        for name in os.listdir(m.stage):
            if name != "manifest.json":
                shutil.rmtree(os.path.join(m.stage, name), ignore_errors=True)

    partial: Partial | None = None
    try:
        snapshot = _snapshot(m, restic, reason, services, sources, scope)
    except Partial as kept:
        partial, snapshot = kept, ""
    finally:
        # Whatever happened, no database copy stays on disk: the dumps are in the repository, or worthless.
        for service in scope:
            shutil.rmtree(os.path.join(m.stage, service), ignore_errors=True)
    if reason == "daily" and not services:
        retention(m, restic)  # partial snapshots are a group of their own (tag partial): kept by the policy
    if partial:
        raise partial
    say(f"backup of {m.client} done in {time.monotonic() - started:.1f} s")
    return snapshot


def _snapshot(
    m: Manifest,
    restic: Restic,
    reason: str,
    services: Sequence[str],
    sources: Sequence[dict[str, Any]],
    scope: Sequence[str],
) -> str:
    """Dump and copy every source, then one `restic backup`; the snapshot's id."""
    paths: list[str] = []
    excludes: list[str] = []
    resolved: dict[str, Any] = {}
    # The database dumps first, all at once; then the apps' own backups and the file sets, in order.
    dumps = dump_databases(m, [s for s in sources if s["kind"] == "database"])
    for source in sources:
        if source["kind"] == "database":
            resolved[source["id"]] = {"dump": dumps[source["id"]]}
        elif source["kind"] == "app":
            root, found = app_backup(m, source)
            resolved[source["id"]] = {"root": root, "paths": found}
            paths += found
        elif source["kind"] == "files":
            path = file_set(m, source)
            resolved[source["id"]] = {"root": path}
            paths.append(path)
            excludes += [f"--exclude={path}/{pattern}" for pattern in source.get("exclude", [])]
        else:
            raise Failure(f"{source['id']}: unknown kind {source['kind']!r}")
    if excludes:
        # An app's output may lie where a file set excludes (hub: sites/*/private/backups under sites, which
        # leaves out */private): a later `!` pattern takes it back (restic 0.13+).
        for found in resolved.values():
            excludes += [f"--exclude=!{path}" for path in found.get("paths", [])]

    # The snapshot carries the manifest it was made with, and where each source was found: restore reads it.
    record = {**m.settings, "sources": m.sources, "resolved": resolved, "stage": m.stage}
    record_path = os.path.join(m.stage, "manifest.json")
    with open(record_path + ".new", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(record_path + ".new", record_path)
    if services:
        staged = [record_path] + [d for d in (os.path.join(m.stage, s) for s in scope) if os.path.isdir(d)]
    else:
        staged = [m.stage]
    paths = staged + sorted(set(paths))

    tags = [f"client={m.client}", f"reason={reason}"] + [f"service={s}" for s in sorted(services)]
    # --no-scan: restic's size estimate reads every directory a second time, for a progress bar nobody sees.
    scan = ["--no-scan"] if "no-scan" in restic.features() else []
    args = (
        ["backup", *scan, "--host", m.client]
        + [a for t in tags for a in ("--tag", t)]
        + excludes
        + ["--", *paths]
    )
    clock = time.monotonic()
    mounts = [(p, False) for p in paths]
    proc = restic.locking(args, mounts=mounts, accept=(0, 3))
    snapshot = _saved(proc)
    if proc.returncode == 3:
        # restic's exit 3: the snapshot is saved, but some files could not be read (a log rotated away
        # mid-run, a file without read access). Most of the day is in it: keep it, and try once more, as
        # the cause is often gone seconds later. The newer of the two stays; a partial one is tagged so.
        first, unread = snapshot, _tail(proc.stderr, 4)
        say(f"snapshot {first} is partial (restic could not read some files: {unread}); trying once more")
        try:
            proc = restic.locking(args, mounts=mounts, accept=(0, 3))
        except Failure as retry:
            restic.locking(["tag", "--add", "partial", first])
            raise Partial(
                f"snapshot {first} kept, tagged partial: restic could not read some files ({unread}), "
                f"and the retry failed: {retry}"
            ) from None
        snapshot = _saved(proc)
        restic.locking(["forget", first])
        if proc.returncode == 3:
            restic.locking(["tag", "--add", "partial", snapshot])
            raise Partial(
                f"snapshot {snapshot} kept, tagged partial: restic could not read some files twice: "
                f"{_tail(proc.stderr, 4)}"
            )
        say(f"the retry read every file: snapshot {snapshot} replaces the partial {first}")
    say(f"snapshot {snapshot} saved ({reason}, {', '.join(scope)}) in {time.monotonic() - clock:.1f} s")
    return snapshot


def _saved(proc: subprocess.CompletedProcess[str]) -> str:
    saved = SNAPSHOT_SAVED.search(proc.stdout)
    if not saved:
        raise Failure(f"restic backup reported no snapshot: {_tail(proc.stdout)} {_tail(proc.stderr, 3)}")
    return saved.group(1)


def retention(m: Manifest, restic: Restic) -> None:
    """The policy per group of host and tags: daily runs, initial, manual and each service's pre-update
    snapshots are kept by the same numbers, each in its own group."""
    args = [
        "forget",
        "--host",
        m.client,
        "--tag",
        f"client={m.client}",
        "--group-by",
        "host,tags",
        *m.forget,
        "--prune",
    ]
    try:
        restic.locking(args)
    except Locked as locked:
        # Held by a live process (or one killed less than 30 minutes ago, which restic then treats as
        # stale): the snapshot is safe, the next daily run applies the policy.
        say(f"retention postponed: {locked}")
        return
    say(f"retention applied: {' '.join(m.forget)}")


def check_subset(subset: str, now: float) -> str:
    """`1/N` rotates through N slices, one per week, so all data is read every N weeks."""
    m = re.fullmatch(r"1/(\d+)", subset)
    if not m:
        return subset
    slices = int(m.group(1))
    return f"{int(now // 604800) % slices + 1}/{slices}"


# ---------------------------------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------------------------------


def _pick(snapshots: Sequence[dict[str, Any]], wanted: str, services: Sequence[str]) -> dict[str, Any]:
    def holds(s: dict[str, Any]) -> bool:
        scope = _tags(s, "service")
        return not scope or (bool(services) and set(services) <= set(scope))

    if wanted == "latest":  # a partial snapshot only by its id
        usable = [s for s in snapshots if holds(s) and not is_partial(s)]
        if not usable:
            raise Failure("no snapshot holds " + (", ".join(services) or "the whole client"))
        return usable[-1]
    found = [s for s in snapshots if s["id"].startswith(wanted)]
    if len(found) != 1:
        raise Failure(
            f"{len(found)} snapshots of this client match {wanted!r} (vh-backup snapshots lists them)"
        )
    if not holds(found[0]):
        raise Failure(f"snapshot {wanted} holds only {', '.join(_tags(found[0], 'service'))}: add --service")
    return found[0]


def _record_path(snapshot: dict[str, Any]) -> str:
    for path in snapshot.get("paths") or []:
        if path.endswith("/stage/manifest.json"):
            return str(path)
        if path.endswith("/stage"):
            return f"{path}/manifest.json"
    raise Failure(f"snapshot {snapshot['short_id']} was not made by vh-backup (no stage/manifest.json)")


def _matches(parts: tuple[str, ...], pattern: str, below: bool) -> bool:
    """restic's --exclude, for a pattern relative to a file set: `*` stays within one path component, and
    an excluded directory excludes what is below it. below=True: could the pattern match under `parts`?"""
    pattern_parts = pattern.strip("/").split("/")
    if (len(pattern_parts) > len(parts)) != below:
        return False
    return all(
        fnmatch.fnmatchcase(parts[i], pattern_parts[i]) for i in range(min(len(parts), len(pattern_parts)))
    )


def _excluded(parts: tuple[str, ...], patterns: Sequence[str]) -> bool:
    return any(_matches(parts, pattern, below=False) for pattern in patterns)


def _excludes_below(parts: tuple[str, ...], patterns: Sequence[str]) -> bool:
    return any(_matches(parts, pattern, below=True) for pattern in patterns)


def _move(source: str, destination: str) -> None:
    """Rename where it can; across filesystems (restore work dir on another disk than the volume) copy and
    set each entry's owner again, which shutil.move's copy fallback drops (n8n and Traefik then could no
    longer read their data)."""
    os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
    try:
        os.rename(source, destination)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, destination, symlinks=True)
        pairs = [(source, destination)]
        for folder, dirs, files in os.walk(source):
            for name in dirs + files:
                here = os.path.join(folder, name)
                pairs.append((here, os.path.join(destination, os.path.relpath(here, source))))
    else:
        shutil.copy2(source, destination, follow_symlinks=False)
        pairs = [(source, destination)]
    for original, copy in pairs:
        info = os.lstat(original)
        os.lchown(copy, info.st_uid, info.st_gid)
        if not os.path.islink(copy):  # chown clears set-id bits: put the mode back
            os.chmod(copy, info.st_mode & 0o7777)
    if os.path.isdir(source) and not os.path.islink(source):
        shutil.rmtree(source)
    else:
        os.unlink(source)


def _swap(
    restored: str, target: str, aside: str, patterns: Sequence[str] = (), parts: tuple[str, ...] = ()
) -> None:
    """Make `target` hold what `restored` holds. What was there moves under `aside` (kept for the operator
    to delete); what the file set excludes stays untouched. A directory keeps its inode (containers
    bind-mount it): its entries are exchanged, not the directory itself."""
    if not os.path.isdir(target) or os.path.islink(target) or not os.path.isdir(restored):
        if os.path.lexists(target):
            _move(target, aside)
        _move(restored, target)
        return
    _set_aside(restored, target, aside, patterns, parts)
    for name in sorted(os.listdir(restored)):
        if not os.path.lexists(os.path.join(target, name)) and not _excluded((*parts, name), patterns):
            _move(os.path.join(restored, name), os.path.join(target, name))
    shutil.copystat(restored, target, follow_symlinks=False)
    if os.geteuid() == 0:
        st = os.lstat(restored)
        os.chown(target, st.st_uid, st.st_gid)


def _set_aside(
    restored: str, target: str, aside: str, patterns: Sequence[str], parts: tuple[str, ...]
) -> None:
    """Move what `target` holds into `aside`, except excluded paths; a directory with exclusions merges."""
    for name in sorted(os.listdir(target)):
        here, below = os.path.join(target, name), (*parts, name)
        if _excluded(below, patterns):
            continue
        if os.path.isdir(here) and not os.path.islink(here) and _excludes_below(below, patterns):
            _merge(os.path.join(restored, name), here, os.path.join(aside, name), patterns, below)
        else:
            _move(here, os.path.join(aside, name))


def _merge(restored: str, target: str, aside: str, patterns: Sequence[str], parts: tuple[str, ...]) -> None:
    """A directory holding excluded paths: swap its other entries one by one."""
    if os.path.isdir(restored) and not os.path.islink(restored):
        _swap(restored, target, aside, patterns, parts)
        return
    _set_aside(restored, target, aside, patterns, parts)  # not in the snapshot: excluded paths stay


def _import_database(m: Manifest, source: dict[str, Any], dump: str) -> None:
    user, database = source["user"], source["database"]
    connect = list(source.get("connect", []))
    steps: list[list[str]] = []
    if source["engine"] == "postgres":
        # A fresh database, so nothing of the current one survives (tables added since, for one).
        common = [*connect, f"--username={user}"]
        steps.append(["dropdb", "--if-exists", "--force", *common, database])
        steps.append(["createdb", *common, f"--owner={user}", database])
        steps.append(
            [
                "pg_restore",
                "--no-owner",
                "--no-acl",
                "--exit-on-error",
                "--single-transaction",
                *common,
                f"--dbname={database}",
            ]
        )
        variable = "PGPASSWORD"
    else:  # the dump drops and recreates its database itself (--add-drop-database)
        steps.append(["mariadb", *connect, f"--user={user}"])
        variable = "MYSQL_PWD"
    started = time.monotonic()
    for number, step in enumerate(steps, 1):
        argv = in_container(m, source, _with_password(source, variable, step), stdin=number == len(steps))
        with open(dump, "rb") as data:
            stdin = data if number == len(steps) else subprocess.DEVNULL
            proc = subprocess.run(
                argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
            )
        if proc.returncode != 0:
            output = _tail(proc.stdout.decode(errors="replace"))
            raise Failure(f"{source['id']}: {step[0]} failed (exit {proc.returncode}): {output}")
    say(f"imported {source['id']} in {time.monotonic() - started:.1f} s")


def _service_containers(m: Manifest, service: str) -> list[str]:
    proc = subprocess.run(
        ["docker", "ps", "--all", "--format", "{{.Names}}",
         "--filter", f"label=io.versatilehub.client={m.client}",
         "--filter", f"label=io.versatilehub.service={service}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise Failure(f"docker ps: {_tail(proc.stderr, 2)}")
    return sorted(proc.stdout.split())


def _docker_status(*args: str) -> int:
    return subprocess.run(["docker", *args], capture_output=True, check=False).returncode


def _docker(*args: str) -> None:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Failure(f"docker {' '.join(args)}: {_tail(proc.stderr, 2)}")


def restore(m: Manifest, env_file: str, wanted: str, services: Sequence[str], confirmed: bool) -> None:
    restic = Restic(m, env_file)
    snapshot = _pick(restic.snapshots(), wanted, services)
    record_path = _record_path(snapshot)
    # --no-lock: outside the flock no lock of this machine's hostname may be live (locking() relies on it).
    old = json.loads(restic.run(["--no-lock", "dump", snapshot["id"], record_path]).stdout)
    old_sources = {s["id"]: s for s in old["sources"]}
    old_services = sorted({s["service"] for s in old["sources"]})
    if services:
        missing = sorted(set(services) - set(old_services))
        if missing:
            raise Failure(f"snapshot {snapshot['short_id']} holds no {', '.join(missing)}")
        scope = sorted(services)
    else:
        scope = [s for s in old_services if s in m.services()]
        for gone in sorted(set(old_services) - set(m.services())):
            say(f"skipped {gone}: in the snapshot, not deployed here")
    say(f"restore {m.client} from snapshot {_describe(snapshot)}: {', '.join(scope)}")

    # What goes where: each source of the snapshot, by id, onto the same source of this deployment.
    files: list[tuple[str, str, list[str]]] = []  # (path in the snapshot, path here, excluded patterns)
    databases: list[tuple[dict[str, Any], str]] = []  # (source here, dump path in the snapshot)
    apps: list[dict[str, Any]] = []
    for source in m.select(scope):
        before = old_sources.get(source["id"])
        if before is None:
            say(f"  {source['id']}: not in this snapshot, left as it is")
            continue
        found = old["resolved"].get(source["id"], {})
        if source["kind"] == "database":
            databases.append((source, found.get("dump") or dump_file(m, before, old["stage"])))
        elif source["kind"] == "files":
            files.append((found["root"], locate(m, source["location"]), list(source.get("exclude", []))))
        else:
            root = locate(m, source["output"])
            files += [(p, os.path.join(root, os.path.relpath(p, found["root"])), []) for p in found["paths"]]
            apps.append(source)
    for path, target, _ in files:
        say(f"  files {path} -> {target}")
    for source, dump in databases:
        say(f"  database {source['id']} <- {dump}")
    for source in apps:
        where = source.get("container") or "this machine"
        command = (
            " ".join(source.get("restore") or []) or "nothing (no restore command: docs/backup-restore.md)"
        )
        say(f"  then inside {where}: {command}")
    if not confirmed:
        say("nothing changed: add --yes to restore")
        return

    with exclusive(m):
        work = tempfile.mkdtemp(prefix="restore-", dir=m.home)
        tree, aside = os.path.join(work, "snapshot"), os.path.join(work, "previous")
        os.makedirs(tree, mode=0o700)
        includes = [p for p, _, _ in files] + [dump for _, dump in databases]
        clock = time.monotonic()
        restic.locking(
            ["restore", snapshot["id"], "--target", tree, *[f"--include={p}" for p in includes]],
            mounts=[(work, True)],
            caps=WRITE_CAPS,
        )
        size = sum(os.lstat(os.path.join(r, n)).st_size for r, _, names in os.walk(tree) for n in names)
        say(f"restored {_mib(size)} from the repository in {time.monotonic() - clock:.1f} s")
        for path in includes:
            if not os.path.lexists(tree + path):
                raise Failure(f"snapshot {snapshot['short_id']} has no {path}: nothing was changed")

        # The apps stop while their data changes; their databases, and the containers that run the apps'
        # own restore commands, keep running for the import and restart afterwards.
        workers = {
            s["container"] for s in m.select(scope) if s["kind"] in ("database", "app") and s.get("container")
        }
        apps_in = sorted({s["container"] for s in apps if s.get("container")})
        stopped: list[str] = []
        if m.runtime == "docker":
            for service in scope:
                for name in _service_containers(m, service):
                    if name not in workers:
                        _docker("stop", name)
                        stopped.append(name)
        try:
            for path, target, patterns in files:
                _swap(tree + path, target, aside + target, patterns)
            for source, dump in databases:
                _import_database(m, source, tree + dump)
            for source in apps:
                if source.get("restore"):
                    argv = in_container(m, source, source["restore"], user=source.get("user"))
                    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
                    if proc.returncode != 0:
                        output = _tail(proc.stdout.decode(errors="replace"))
                        raise Failure(f"{source['id']}: the app's restore command failed: {output}")
                    say(f"ran the restore command of {source['id']}")
        finally:
            for name in stopped:
                _docker("start", name)
            if m.runtime == "docker":
                for name in apps_in:
                    _docker("restart", name)
        shutil.rmtree(tree, ignore_errors=True)
    kept = f"; what was there before is in {aside}" if os.path.isdir(aside) else ""
    say(f"restored {', '.join(scope)} from {snapshot['short_id']}{kept}")


# ---------------------------------------------------------------------------------------------------
# Restore drill: prove the newest complete snapshot restores (monthly timer; docs/backup-restore.md)
# ---------------------------------------------------------------------------------------------------

# A throwaway database server of the source's own image: no network, no password (nothing can reach it).
DRILL_SERVER = {
    "postgres": ["POSTGRES_HOST_AUTH_METHOD=trust"],
    "mariadb": ["MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1"],
}


def _compare_with_snapshot(restic: Restic, snapshot_id: str, tree: str) -> tuple[int, int]:
    """Every file, directory and link `restic ls` lists for the snapshot is there, of its type and size;
    the number of files and their bytes."""
    proc = restic.run(["--no-lock", "ls", "--json", snapshot_id])
    files = size = 0
    problems: list[str] = []
    for line in proc.stdout.splitlines():
        node = json.loads(line)
        if node.get("struct_type", "node") != "node" or "path" not in node:
            continue
        path = tree + node["path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{node['path']} is missing")
            continue
        kind = node["type"]
        if kind == "file":
            if not os.path.isfile(path) or os.path.islink(path) or st.st_size != node.get("size", 0):
                problems.append(f"{node['path']}: {st.st_size} bytes, the snapshot says {node.get('size')}")
            files, size = files + 1, size + st.st_size
        elif kind == "dir" and not (os.path.isdir(path) and not os.path.islink(path)):
            problems.append(f"{node['path']} is not a directory")
        elif kind == "symlink" and not os.path.islink(path):
            problems.append(f"{node['path']} is not a symbolic link")
    if problems:
        raise Failure(f"{len(problems)} restored entries differ from the snapshot: {'; '.join(problems[:5])}")
    return files, size


def _drill_database(m: Manifest, source: dict[str, Any], dump: str, number: int) -> str:
    """Load one dump into a throwaway container of the source container's image, run a trivial query."""
    engine, database = source["engine"], source["database"]
    if m.runtime != "docker" or not source.get("container"):
        raise Failure(f"{source['id']}: the drill loads dumps into containers (runtime docker)")
    proc = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", source["container"]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise Failure(
            f"{source['id']}: cannot find the image of {source['container']}: {_tail(proc.stderr, 2)}"
        )
    image, name = proc.stdout.strip(), f"vh-drill-{m.client}-{os.getpid()}-{number}"
    user = source["user"] if engine == "postgres" else "root"
    env = [*DRILL_SERVER[engine], *([f"POSTGRES_USER={user}"] if engine == "postgres" else [])]
    run = ["docker", "run", "--detach", "--rm", "--name", name, "--network", "none"]
    run += [a for e in env for a in ("--env", e)] + [image]
    _docker(*run[1:])
    try:
        if engine == "postgres":
            tcp = ["--host=127.0.0.1", f"--username={user}"]  # TCP: the image's init server has none
            ready = ["pg_isready", *tcp]
            load = [["createdb", *tcp, database], ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error",
                    *tcp, f"--dbname={database}"]]  # fmt: skip
            query = ["psql", *tcp, f"--dbname={database}", "--no-psqlrc", "--tuples-only", "--no-align",
                     "--command", "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                     "('pg_catalog', 'information_schema')"]  # fmt: skip
        else:
            tcp = ["--host=127.0.0.1", "--protocol=TCP", "--user=root"]  # not the image's init server
            ready = ["mariadb", *tcp, "-e", "SELECT 1"]
            load = [["mariadb", *tcp]]
            count = f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{database}'"
            query = ["mariadb", *tcp, "--batch", "--skip-column-names", "-e", count]
        deadline = time.monotonic() + DRILL_START_SECONDS
        while _docker_status("exec", name, *ready):
            if time.monotonic() > deadline:
                raise Failure(
                    f"{source['id']}: the throwaway {image} did not start in {DRILL_START_SECONDS} s"
                )
            time.sleep(1)
        for step, argv in enumerate(load, 1):
            last = step == len(load)
            with open(dump, "rb") as data:
                proc_load = subprocess.run(
                    ["docker", "exec", *(["-i"] if last else []), name, *argv],
                    stdin=data if last else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
                )  # fmt: skip
            if proc_load.returncode != 0:
                output = _tail(proc_load.stdout.decode(errors="replace"))
                raise Failure(f"{source['id']}: {argv[0]} into a throwaway {image} failed: {output}")
        answer = subprocess.run(["docker", "exec", name, *query], capture_output=True, text=True, check=False)
        tables = answer.stdout.strip()
        if answer.returncode != 0 or not tables.isdigit() or int(tables) == 0:
            raise Failure(
                f"{source['id']}: the loaded dump answers no tables: {_tail(answer.stdout + answer.stderr)}"
            )
        return f"{source['id']}: {tables} table(s) in {image}"
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


DRILL_START_SECONDS = 180


def drill(m: Manifest, env_file: str) -> dict[str, Any]:
    """Restore the newest complete snapshot into a scratch folder of the backup home, check every file
    against the snapshot, load each database dump into a throwaway server; remove it all. The report."""
    restic = Restic(m, env_file)
    complete = [s for s in restic.snapshots() if is_complete(s)]
    if not complete:
        raise Failure(f"no complete snapshot of {m.client} to drill in {restic.repository}")
    snapshot = complete[-1]
    started = time.monotonic()
    with exclusive(m):
        scratch = tempfile.mkdtemp(prefix="drill-", dir=m.home)
        try:
            tree = os.path.join(scratch, "snapshot")
            os.makedirs(tree, mode=0o700)
            # --verify: restic reads every restored file back and checks it against its blobs.
            restic.locking(
                ["restore", snapshot["id"], "--target", tree, "--verify"],
                mounts=[(scratch, True)],
                caps=WRITE_CAPS,
            )
            files, size = _compare_with_snapshot(restic, snapshot["id"], tree)
            say(f"restored {files} files ({_mib(size)}) of {_describe(snapshot)}: all match the snapshot")
            with open(tree + _record_path(snapshot), encoding="utf-8") as f:
                record = json.load(f)
            databases = []
            for number, source in enumerate(s for s in record["sources"] if s["kind"] == "database"):
                found = record["resolved"].get(source["id"], {})
                dump = tree + (found.get("dump") or dump_file(m, source, record["stage"]))
                databases.append(_drill_database(m, source, dump, number))
                say(f"loaded {databases[-1]}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {
        "snapshot": snapshot["short_id"],
        "snapshot_time": snapshot["time"],
        "files": files,
        "bytes": size,
        "databases": databases,
        "seconds": round(time.monotonic() - started, 1),
    }


def _write_status(path: str, record: dict[str, Any]) -> None:
    """A status file for the collector (scripts/vh_collect.py read_result): world-readable, no secrets."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.new", "w") as f:
        json.dump(record, f, sort_keys=True)
    os.chmod(f"{path}.new", 0o644)
    os.replace(f"{path}.new", path)


def cmd_drill(m: Manifest, env_file: str) -> int:
    """The drill, recorded in settings.json's drill_status_file as {"format", "finished", "result",
    "message", "last_ok", ...the report}: what the collector reads (read_result, incident drill:failed)."""
    path = m.settings.get("drill_status_file")
    before = _read_status(path) if path else {}
    record: dict[str, Any] = {"format": FORMAT, "last_ok": before.get("last_ok"), "result": "failed"}
    try:
        record.update(drill(m, env_file), result="ok", message="")
        say(f"restore drill passed: {record['snapshot']}, {record['files']} files, "
            f"{len(record['databases'])} database(s), in {record['seconds']} s")  # fmt: skip
    except BaseException as exc:
        record["message"] = str(exc) or type(exc).__name__
        raise
    finally:
        record["finished"] = int(time.time())
        if record["result"] == "ok":
            record["last_ok"] = record["finished"]
        if path:
            _write_status(path, record)
    return 0


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


@contextmanager
def recorded(m: Manifest, reason: str, services: Sequence[str]) -> Iterator[None]:
    """The outcome of a whole-client run, for the collector (scripts/vh_collect.py): settings.json's
    status_file (world-readable, no secrets) gets {"finished", "result", "message", "last_ok"}."""
    path = m.settings.get("status_file")
    if not path or services:
        yield
        return
    before = _read_status(path)
    record: dict[str, Any] = {"format": FORMAT, "reason": reason, "last_ok": before.get("last_ok")}
    try:
        yield
        record.update(result="ok", message="")
    except BaseException as exc:
        result = "partial" if isinstance(exc, Partial) else "failed"
        record.update(result=result, message=str(exc) or type(exc).__name__)
        raise
    finally:
        record["finished"] = int(time.time())
        if record["result"] == "ok":
            record["last_ok"] = record["finished"]
        _write_status(path, record)


def _read_status(path: str) -> dict[str, Any]:
    try:
        return _read_json(path)
    except (OSError, Failure):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(prog="vh-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", default=here, help="settings.json, sources.json, restic.env (default: where vh-backup is)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the repository (format 2) unless it exists; harmless to repeat")
    p = commands.add_parser("run", help="dump every service, then one snapshot")
    p.add_argument("--reason", choices=REASONS, default="manual")
    p.add_argument("--service", action="append", default=[], help="only this service (repeatable)")
    p.add_argument(
        "--if-deployed", action="store_true", help="do nothing when the service is not deployed yet"
    )
    commands.add_parser("forget", help="apply the retention policy and prune")
    p = commands.add_parser("check", help="verify the repository, reading a slice of the data")
    p.add_argument("--subset", help="override the manifest's read-data subset (1/N, N%%, or a size)")
    commands.add_parser("snapshots", help="list this client's snapshots")
    p = commands.add_parser("freshness", help="exit 0 when the newest complete snapshot is recent enough")
    p.add_argument("--max-age-hours", type=float)
    p = commands.add_parser("restore", help="put a snapshot back (one service or the whole client)")
    p.add_argument("snapshot", help="a snapshot id (or a prefix of one), or latest")
    p.add_argument("--service", action="append", default=[], help="only this service (repeatable)")
    p.add_argument("--yes", action="store_true", help="really do it (without: show what would happen)")
    commands.add_parser(
        "drill", help="restore the newest complete snapshot to a scratch folder and throwaway databases"
    )
    args = parser.parse_args(argv)
    # systemd stops a run with SIGTERM: end like Ctrl-C, so partial dumps are removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    try:
        m = Manifest(args.home)
        env_file = os.path.join(m.home, "restic.env")
        if args.command == "init":
            return cmd_init(m, env_file)
        if args.command == "run":
            if args.reason == "daily" and args.service:
                raise Failure("a daily run covers the whole client: drop --service")
            if args.if_deployed:
                present = set(args.service) & set(m.services())
                if (
                    not m.deployed
                    or (args.service and not present)
                    or not _containers_exist(m, m.select(sorted(present)))
                ):
                    say(f"nothing deployed yet for {', '.join(args.service) or m.client}: nothing to back up")
                    return 0
            with exclusive(m), recorded(m, args.reason, args.service):
                run(m, env_file, args.reason, args.service)
            return 0
        if args.command == "forget":
            with exclusive(m):
                retention(m, Restic(m, env_file))
            return 0
        if args.command == "check":
            restic = Restic(m, env_file)
            subset = check_subset(args.subset or m.check_subset, time.time())
            with exclusive(m):
                restic.locking(["check", f"--read-data-subset={subset}"])
            say(f"check passed: structure and data slice {subset} of {restic.repository}")
            return 0
        if args.command == "snapshots":
            for snapshot in Restic(m, env_file).snapshots():
                say(_describe(snapshot))
            return 0
        if args.command == "freshness":
            return cmd_freshness(m, env_file, args.max_age_hours)
        if args.command == "drill":
            return cmd_drill(m, env_file)
        if args.command == "restore":
            restore(m, env_file, args.snapshot, args.service, args.yes)
            return 0
    except Failure as failure:
        print(f"vh-backup: {failure}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("vh-backup: interrupted; no snapshot was recorded by this run", file=sys.stderr, flush=True)
        return 130
    raise AssertionError(args.command)


def cmd_init(m: Manifest, env_file: str) -> int:
    restic = Restic(m, env_file)
    try:
        config = json.loads(restic.run(["--no-lock", "cat", "config"]).stdout)
    except Failure as opening:
        try:
            restic.run(["init", "--repository-version", "2"])
        except Failure as creating:
            if "already" in str(creating):  # exists, but would not open: the first error says why
                raise opening from None
            raise
        say(f"created repository {restic.repository} (format 2: compressed, AES-256 encrypted)")
        return 0
    version = config.get("version")
    note = "" if version == 2 else "; format 1 cannot compress: restic migrate upgrade_repo_v2"
    say(f"repository {restic.repository} exists (format {version}){note}")
    return 0


def cmd_freshness(m: Manifest, env_file: str, max_age_hours: float | None) -> int:
    limit = max_age_hours if max_age_hours is not None else m.max_age_hours
    try:
        restic = Restic(m, env_file)
        complete = [s for s in restic.snapshots() if is_complete(s)]
    except Failure as failure:
        say(f"UNKNOWN: {failure}")
        return 2
    if not complete:
        say(f"STALE: {m.client} has no complete snapshot in {restic.repository}")
        return 1
    newest = complete[-1]
    age = (time.time() - snapshot_epoch(newest["time"])) / 3600
    verdict = "OK" if age <= limit else "STALE"
    say(f"{verdict}: newest complete snapshot {_describe(newest)} is {age:.1f} h old (limit {limit:g} h)")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
