"""Backups for real: scripts/vh_backup.py (the script the host runs) with restic from Debian (0.14.0, the
oldest version supported) and real PostgreSQL and MariaDB servers on loopback.

The host runs every dump inside the app's container (`docker exec`) and restic as the pinned image; here
the same script runs with the "local" runtime: the dump tools reach the test servers over TCP and restic
is the Debian binary. The settings and sources come from the program's own builders (components/backup.py)
with only the runtime plugged in, so what is tested is what the program installs.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from components.backup import component as backup
from components.config import BackupConfig
from components.core.deployment import AppBackupCommand, BackupSource, DatabaseDump, FileSet
from components.core.storage import DataLocation
from tests.realservers import PASSWORD, MariaDB, Postgres

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "vh_backup.py"
PYTHON = shutil.which("python3") or sys.executable
CLIENT = "clientea"
REPO_PASSWORD = "a-40-character-alphanumeric-test-password"


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaDB]:
    server = MariaDB().start()
    yield server
    server.stop()


_TEMPLATE: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def template_repository(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One repository initialised per session and copied into each test: `restic init` spends ~2 s
    calibrating its key derivation. The tests of init itself (and the docker runtime's) start empty."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    restic(repo, "init", "--repository-version", "2")
    _TEMPLATE.append(repo)


def restic(repo: Path, *args: str, password: str = REPO_PASSWORD, check: bool = True) -> str:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": password, "TZ": "UTC"}
    env["RESTIC_CACHE_DIR"] = str(repo.parent / "test-cache")
    proc = subprocess.run(["restic", *args], env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"restic {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def snapshots(repo: Path) -> list[dict[str, Any]]:
    return json.loads(restic(repo, "--no-lock", "snapshots", "--json")) or []


def snapshot_at(repo: Path, source: str, when: datetime | None, *tags: str) -> None:
    """A snapshot as vh-backup tags them, made at `when` (restic backup --time), for a synthetic history."""
    args = ["backup", "--host", CLIENT, "--quiet", source]
    args += [arg for tag in ("client=clientea", *tags) for arg in ("--tag", tag)]
    restic(repo, *args, *(["--time", when.strftime("%Y-%m-%d %H:%M:%S")] if when else []))


@dataclass
class World:
    """One client's backup home, repository and data directories under a test's tmp_path."""

    root: Path
    pg: Postgres | None = None
    maria: MariaDB | None = None
    keep: tuple[int, int, int] = (7, 5, 12)
    fresh: bool = False  # start without a repository (else: a copy of the session's template)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def data(self, service: str, name: str) -> Path:
        return self.root / "data" / service / name

    @property
    def db_password_file(self) -> str:
        """The databases' password as their secret file holds it (no trailing newline); the local runtime
        reads it where a container would read /run/secrets/<name> (issue 14)."""
        path = self.root / "db-password"
        if not path.exists():
            path.write_text(PASSWORD)
        return str(path)

    def location(self, service: str, name: str) -> DataLocation:
        path = self.data(service, name)
        path.mkdir(parents=True, exist_ok=True)
        return DataLocation(service, name, str(path), "bind")

    def install(
        self, sources: list[Any], *, repo_password: str = REPO_PASSWORD, with_sources: bool = True
    ) -> None:
        """What BackupRepository and BackupSchedule write on a host, with the runtime set to local."""
        self.home.mkdir(mode=0o700, exist_ok=True)
        if not self.fresh and not self.repo.exists():
            shutil.copytree(_TEMPLATE[0], self.repo)
        daily, weekly, monthly = self.keep
        keep = {"keepDaily": daily, "keepWeekly": weekly, "keepMonthly": monthly}
        config = BackupConfig.model_validate({"repository": str(self.repo), **keep})
        settings = backup.settings(CLIENT, config, "restic/restic:0.19.1") | {
            "runtime": "local",
            "restic": "restic",
        }
        (self.home / "settings.json").write_text(json.dumps(settings))
        if with_sources:
            manifest = backup.sources_manifest(sources)
            for entry in manifest["sources"]:
                entry.pop("container", None)  # local runtime: commands run here, databases over TCP
                if entry["kind"] == "database":
                    server = self.pg if entry["engine"] == "postgres" else self.maria
                    assert server is not None
                    entry["connect"] = server.connect
            (self.home / "sources.json").write_text(json.dumps(manifest))
        env = self.home / "restic.env"
        env.write_text(f"RESTIC_REPOSITORY={self.repo}\nRESTIC_PASSWORD={repo_password}\n")
        env.chmod(0o600)

    def vh(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [PYTHON, str(SCRIPT), "--home", str(self.home), *args],
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"vh-backup {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        if self.pg is not None:
            path = self.pg.tool_path()
        return {**os.environ, "PATH": path, "TZ": "UTC", **(extra or {})}


# -- data ----------------------------------------------------------------------------------------------------


def fill_files(root: Path, seed: int) -> None:
    """Nested directories, binary and text, empty and private files, a symlink, a non-ASCII name."""
    (root / "uploads" / "2026" / "11").mkdir(parents=True, exist_ok=True)
    (root / "uploads" / "2026" / "11" / "contrato.pdf").write_bytes(os.urandom(300_000))
    (root / "uploads" / "factura ñandú €.txt").write_text(f"factura {seed}\n" * 500, encoding="utf-8")
    (root / "empty").write_bytes(b"")
    private = root / ".secret-key"
    private.write_text(f"key-{seed}")
    private.chmod(0o600)
    (root / "latest").symlink_to("uploads/2026/11/contrato.pdf")


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under root: kind, mode and content hash (or link target)."""
    found: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        rel, st = str(path.relative_to(root)), path.lstat()
        if path.is_symlink():
            found[rel] = ("link", st.st_mode, os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", st.st_mode, "")
        else:
            found[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def fill_postgres(pg: Postgres, database: str) -> None:
    pg.create_database(database)
    pg.sql(
        database,
        """
        CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, balance numeric(12,2),
                                created timestamptz, meta jsonb, photo bytea);
        CREATE INDEX customers_name ON customers (name);
        INSERT INTO customers (name, balance, created, meta, photo)
          SELECT 'Cliente ' || g || ' ñandú', g * 1.25, '2026-01-01'::timestamptz + g * interval '1 hour',
                 jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b')), sha256(g::text::bytea)
          FROM generate_series(1, 3000) g;
        CREATE VIEW rich AS SELECT id, name FROM customers WHERE balance > 1000;
        """,
    )


def postgres_state(pg: Postgres, database: str) -> tuple[str, ...]:
    return (
        pg.sql(database, "COPY (SELECT * FROM customers ORDER BY id) TO STDOUT"),
        pg.sql(database, "SELECT last_value FROM customers_id_seq"),
        pg.sql(database, "SELECT count(*) FROM rich"),
        pg.sql(database, "SELECT indexname FROM pg_indexes WHERE tablename = 'customers' ORDER BY 1"),
    )


def fill_mariadb(maria: MariaDB, database: str) -> None:
    maria.sql(
        f"""
        CREATE DATABASE {database} CHARACTER SET utf8mb4;
        USE {database};
        CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200), price DECIMAL(10,2),
                            data BLOB, created DATETIME(6)) ENGINE=InnoDB;
        CREATE TABLE audit (item INT, at DATETIME(6)) ENGINE=InnoDB;
        CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW
          INSERT INTO audit VALUES (NEW.id, NEW.created);
        INSERT INTO items (title, price, data, created)
          SELECT CONCAT('Artículo ', seq, ' ñ'), seq * 0.5, UNHEX(SHA2(seq, 256)),
                 TIMESTAMP('2026-01-01') + INTERVAL seq MINUTE
          FROM seq_1_to_3000;
        """
    )


def mariadb_state(maria: MariaDB, database: str) -> tuple[str, ...]:
    return (
        maria.sql("SELECT id, title, price, HEX(data), created FROM items ORDER BY id", database),
        maria.sql("SELECT * FROM audit ORDER BY item", database),
        maria.sql("SHOW CREATE TABLE items", database),
        maria.sql(
            "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
            f"WHERE TRIGGER_SCHEMA = '{database}'"
        ),
    )


APP_BACKUP = (
    "sh",
    "-c",
    'set -e; d="$SITES/site1/private/backups"; mkdir -p "$d"; '
    'tar -C "$SITES/site1" -cf "$d/$(date +%s%N)-site1-files.tar" public-files',
)
APP_RESTORE = ("sh", "-c", 'ls -t "$SITES/site1/private/backups" | head -n 1 > "$SITES/restored-from"')


def full_world(tmp: Path, pg: Postgres, maria: MariaDB) -> tuple[World, list[Any]]:
    """Three services as the real ones register them: chat (Postgres + storage), hub (MariaDB, its
    sites with excludes and its own backup command), edge (acme.json)."""
    w = World(tmp, pg, maria)
    db = f"db_{uuid.uuid4().hex[:12]}"
    fill_postgres(pg, db)
    fill_mariadb(maria, db)
    storage, sites, acme = (
        w.location("chat", "storage"),
        w.location("hub", "sites"),
        w.location("edge", "letsencrypt"),
    )
    fill_files(Path(storage.source), 1)
    site = Path(sites.source) / "site1"
    (site / "public-files").mkdir(parents=True)
    (site / "public-files" / "logo.png").write_bytes(os.urandom(50_000))
    (site / "site_config.json").write_text('{"encryption_key": "k1"}')
    (Path(sites.source) / "assets").mkdir()
    (Path(sites.source) / "assets" / "app.css").write_text("body{}")
    Path(acme.source, "acme.json").write_text('{"le": {}}')
    sources = [
        FileSet("edge", acme),
        DatabaseDump("chat", "postgres", "unused", db, pg.user, w.db_password_file),
        FileSet("chat", storage),
        DatabaseDump("hub", "mariadb", "unused", db, "root", w.db_password_file),
        AppBackupCommand("hub", "unused", APP_BACKUP, sites, "*/private/backups", restore=APP_RESTORE),
        FileSet("hub", sites, exclude=("assets", "*/private")),
    ]
    w.install(sources)
    return w, sources


def _acme_only(w: World) -> DataLocation:
    """The smallest client to back up: Traefik's acme.json alone."""
    location = w.location("edge", "letsencrypt")
    Path(location.source, "acme.json").write_text("{}")
    w.install([FileSet("edge", location)])
    return location


def app_env(w: World) -> dict[str, str]:
    return {"SITES": str(w.data("hub", "sites"))}


# -- dump, back up, wipe, restore ----------------------------------------------------------------------------


def test_backup_wipe_restore_gives_back_identical_files_and_tables(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, sources = full_world(tmp_path, pg, maria)
    db = sources[1].database
    assert "exists (format 2)" in w.vh("init").stdout
    run = w.vh("run", "--reason", "manual", extra_env=app_env(w))
    assert "dumped chat/postgres-" in run.stdout and "dumped hub/mariadb-" in run.stdout
    [snap] = snapshots(w.repo)
    assert sorted(snap["tags"]) == ["client=clientea", "reason=manual"] and snap["hostname"] == CLIENT
    assert not list((w.home / "stage").glob("*/*")), "no dump stays on disk once it is in the repository"

    before = {
        name: tree(w.data(*name.split("/"))) for name in ("chat/storage", "hub/sites", "edge/letsencrypt")
    }
    pg_before, maria_before = postgres_state(pg, db), mariadb_state(maria, db)

    # Wipe: the databases go entirely, the files are emptied and a stray file appears; excluded
    # content (hub's assets) changes and must be left alone by the restore.
    pg.sql("postgres", f'DROP DATABASE "{db}"')
    maria.sql(f"DROP DATABASE {db}")
    for name in ("chat/storage", "edge/letsencrypt"):
        directory = w.data(*name.split("/"))
        shutil.rmtree(directory)
        directory.mkdir()
    (w.data("chat", "storage") / "stray.txt").write_text("not in the snapshot")
    shutil.rmtree(w.data("hub", "sites") / "site1" / "public-files")
    (w.data("hub", "sites") / "site1" / "site_config.json").write_text('{"encryption_key": "WRONG"}')
    (w.data("hub", "sites") / "assets" / "app.css").write_text("rebuilt since")

    plan = w.vh("restore", "latest", extra_env=app_env(w))
    assert "nothing changed: add --yes" in plan.stdout and not (w.data("chat", "storage") / "empty").exists()
    done = w.vh("restore", "latest", "--yes", extra_env=app_env(w))
    assert "imported chat/postgres-" in done.stdout and "imported hub/mariadb-" in done.stdout

    assert postgres_state(pg, db) == pg_before
    assert mariadb_state(maria, db) == maria_before
    assert tree(w.data("chat", "storage")) == before["chat/storage"]
    assert tree(w.data("edge", "letsencrypt")) == before["edge/letsencrypt"]
    after_sites = tree(w.data("hub", "sites"))
    restored_from = after_sites.pop("restored-from")  # written by the app's restore command
    assert after_sites.pop("assets/app.css") != before["hub/sites"].pop("assets/app.css")  # untouched
    assert after_sites == before["hub/sites"]
    newest = sorted((w.data("hub", "sites") / "site1" / "private" / "backups").iterdir())[-1]
    assert (w.data("hub", "sites") / "restored-from").read_text().strip() == newest.name and restored_from
    # What the restore replaced is kept aside, not deleted.
    [aside] = (w.home).glob("restore-*/previous")
    assert (
        aside / str(w.data("chat", "storage")).lstrip("/") / "stray.txt"
    ).read_text() == "not in the snapshot"


def test_one_service_restores_alone(tmp_path: Path, pg: Postgres, maria: MariaDB) -> None:
    w, sources = full_world(tmp_path, pg, maria)
    w.vh("init")
    w.vh("run", "--reason", "manual", extra_env=app_env(w))
    db = sources[1].database
    pg_before = postgres_state(pg, db)
    storage_before = tree(w.data("chat", "storage"))
    pg.sql(db, "DELETE FROM customers WHERE id % 2 = 0")
    (w.data("chat", "storage") / "empty").write_text("changed")
    maria.sql("DELETE FROM items WHERE id > 10", db)  # hub changes after the snapshot: they must stay
    (w.data("edge", "letsencrypt") / "acme.json").write_text('{"renewed": true}')

    w.vh("restore", "latest", "--service", "chat", "--yes")

    assert postgres_state(pg, db) == pg_before and tree(w.data("chat", "storage")) == storage_before
    assert maria.sql("SELECT count(*) FROM items", db).strip() == "10"
    assert (w.data("edge", "letsencrypt") / "acme.json").read_text() == '{"renewed": true}'


# -- a failing dump records nothing --------------------------------------------------------------------------


def _shim(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("failure", ["missing-database", "wrong-password", "app-command", "truncated-dump"])
def test_a_failing_dump_fails_the_run_and_records_no_snapshot(
    tmp_path: Path, pg: Postgres, maria: MariaDB, failure: str
) -> None:
    w, sources = full_world(tmp_path, pg, maria)
    db = sources[1].database
    w.vh("init")
    w.vh("run", extra_env=app_env(w))
    env = app_env(w)
    if failure == "missing-database":
        pg.sql("postgres", f'DROP DATABASE "{db}"')
        expected = "chat/postgres-"
    elif failure == "wrong-password":
        Path(w.db_password_file).write_text("not-the-password")
        expected = "chat/postgres-"
    elif failure == "app-command":
        shutil.rmtree(w.data("hub", "sites") / "site1" / "public-files")  # tar fails, as a broken app does
        expected = "hub/app-sites: the app's backup command failed"
    else:  # mariadb-dump stops half-way but exits 0: only the completeness check can notice
        shims = tmp_path / "shims"
        real = shutil.which("mariadb-dump")
        _shim(shims, "mariadb-dump", f'{real} "$@" | head -c 2000')
        env["PATH"] = f"{shims}:{w.env()['PATH']}"
        expected = "is truncated or empty"

    proc = w.vh("run", check=False, extra_env=env)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(snapshots(w.repo)) == 1, "the failed run recorded no snapshot"
    assert not list((w.home / "stage").rglob("*.partial")), "no partial dump is left behind"


# -- the dumps of a run, all at once -------------------------------------------------------------------------


def _databases_world(tmp: Path, pg: Postgres, maria: MariaDB) -> tuple[World, list[str]]:
    """Chat and Flow on one shared Postgres, Hub on MariaDB (three dumps), and one file set after them."""
    w = World(tmp, pg, maria)
    chat, flow, hub = (f"db_{uuid.uuid4().hex[:12]}" for _ in range(3))
    fill_postgres(pg, chat)
    fill_postgres(pg, flow)
    pg.sql(flow, "DELETE FROM customers WHERE id % 3 = 0")  # not a copy of chat's
    fill_mariadb(maria, hub)
    acme = w.location("edge", "letsencrypt")
    Path(acme.source, "acme.json").write_text('{"le": {}}')
    w.install(
        [
            DatabaseDump("chat", "postgres", "unused", chat, pg.user, w.db_password_file),
            FileSet("edge", acme),
            DatabaseDump("flow", "postgres", "unused", flow, pg.user, w.db_password_file),
            DatabaseDump("hub", "mariadb", "unused", hub, "root", w.db_password_file),
        ]
    )
    w.vh("init")
    return w, [chat, flow, hub]


def _timed_dump_tools(w: World, shims: Path, log: Path, pause: dict[str, float]) -> dict[str, str]:
    """pg_dump and mariadb-dump stand-ins, first on PATH: each notes when it starts and ends (with the
    database it dumps, its last argument), waits `pause` seconds, then runs the real tool."""
    real = {"pg_dump": f"{w.pg.bin}/pg_dump" if w.pg else "", "mariadb-dump": shutil.which("mariadb-dump")}
    for tool, path in real.items():
        _shim(
            shims,
            tool,
            f'for a in "$@"; do db="${{a#--dbname=}}"; done\n'
            f'echo "start $db $(date +%s.%N)" >> {log}\n'
            f"sleep {pause.get(tool, 0)}\n"
            f'{path} "$@"; rc=$?\n'
            f'echo "end $db $(date +%s.%N)" >> {log}\n'
            'exit "$rc"',
        )
    return {"PATH": f"{shims}:{w.env()['PATH']}"}


def _intervals(log: Path) -> dict[str, tuple[float, float]]:
    seen: dict[str, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        event, db, at = line.split()
        seen.setdefault(db, {})[event] = float(at)
    return {db: (times["start"], times["end"]) for db, times in seen.items()}


def _dump_leftovers(w: World) -> list[Path]:
    """Anything of a dump under the stage (the record of the last snapshot, manifest.json, may stay)."""
    return [p for p in (w.home / "stage").rglob("*") if p.is_file() and p.name != "manifest.json"]


def test_the_dumps_of_a_run_overlap_and_each_restores_identically(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, (chat, flow, hub) = _databases_world(tmp_path, pg, maria)
    log = tmp_path / "dumps.log"
    env = _timed_dump_tools(w, tmp_path / "shims", log, {"pg_dump": 0.5, "mariadb-dump": 0.5})

    run = w.vh("run", extra_env=env)

    # Each dump started before any of them ended: they ran at the same time (one after another, each
    # would start only once the previous one, 0.5 s long at least, had ended).
    spans = _intervals(log)
    assert sorted(spans) == sorted([chat, flow, hub])
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values()), spans
    # One line per dump, in the order of the sources, each with its own duration; then the wall time.
    dumped = re.findall(r"^dumped (\S+): [\d.]+ MiB in ([\d.]+) s$", run.stdout, re.MULTILINE)
    assert [name for name, _ in dumped] == [
        f"chat/postgres-{chat}",
        f"flow/postgres-{flow}",
        f"hub/mariadb-{hub}",
    ]
    assert all(float(seconds) >= 0.5 for _, seconds in dumped)
    assert re.search(r"^dumps done: 3 in [\d.]+ s \(concurrently\)$", run.stdout, re.MULTILINE), run.stdout
    [snap] = snapshots(w.repo)
    record = json.loads(restic(w.repo, "dump", snap["id"], str(w.home / "stage" / "manifest.json")))
    assert record["resolved"] == {
        f"chat/postgres-{chat}": {"dump": str(w.home / "stage" / "chat" / f"postgres-{chat}.pgdump")},
        "edge/files-letsencrypt": {"root": str(w.data("edge", "letsencrypt"))},
        f"flow/postgres-{flow}": {"dump": str(w.home / "stage" / "flow" / f"postgres-{flow}.pgdump")},
        f"hub/mariadb-{hub}": {"dump": str(w.home / "stage" / "hub" / f"mariadb-{hub}.sql")},
    }
    assert _dump_leftovers(w) == []

    before = (postgres_state(pg, chat), postgres_state(pg, flow), mariadb_state(maria, hub))
    assert before[0] != before[1]
    pg.sql("postgres", f'DROP DATABASE "{chat}"')
    pg.sql(flow, "DELETE FROM customers")
    maria.sql(f"DROP DATABASE {hub}")

    w.vh("restore", "latest", "--yes")

    assert (postgres_state(pg, chat), postgres_state(pg, flow), mariadb_state(maria, hub)) == before


def test_a_dump_failing_while_another_runs_fails_the_run_and_leaves_nothing(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, (chat, flow, hub) = _databases_world(tmp_path, pg, maria)
    w.vh("run")
    log = tmp_path / "dumps.log"
    env = _timed_dump_tools(w, tmp_path / "shims", log, {"pg_dump": 1.0})
    maria.sql(f"DROP DATABASE {hub}")  # mariadb-dump fails at once, while both pg_dumps are still waiting

    proc = w.vh("run", check=False, extra_env=env)

    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert (
        f"vh-backup: hub/mariadb-{hub}: dumping mariadb database {hub} directly failed (exit 2)"
        in proc.stderr
    )
    spans = _intervals(log)
    assert spans[hub][1] < min(spans[chat][1], spans[flow][1]), "the failure came while the others ran"
    assert "dumped " not in proc.stdout and len(snapshots(w.repo)) == 1, "no snapshot, no dump announced"
    assert _dump_leftovers(w) == [], "no partial and no finished dump of the failed run is left"

    # Two failures: the message names each.
    pg.sql("postgres", f'DROP DATABASE "{flow}"')
    proc = w.vh("run", check=False, extra_env=env)
    assert proc.returncode == 1 and "vh-backup: 2 database dumps failed: " in proc.stderr, proc.stderr
    assert f"flow/postgres-{flow}: dumping postgres database {flow} directly failed" in proc.stderr
    assert f"hub/mariadb-{hub}: dumping mariadb database {hub} directly failed" in proc.stderr
    assert f"chat/postgres-{chat}" not in proc.stderr
    assert len(snapshots(w.repo)) == 1 and _dump_leftovers(w) == []


def _alive(pid: int) -> bool:
    """The process exists, a zombie included (unlike _running): what its parent has not reaped yet."""
    return Path(f"/proc/{pid}").exists()


def _start_run(w: World, env: dict[str, str]) -> subprocess.Popen[str]:
    """`vh-backup run` in a session of its own (the test signals the run alone, and can kill all of it)."""
    return subprocess.Popen(
        [PYTHON, str(SCRIPT), "--home", str(w.home), "run"],
        env=w.env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_pids(proc: subprocess.Popen[str], pids: Path, count: int, never: str) -> list[int]:
    """The PIDs `count` stand-ins under the run wrote (each the very process the run started)."""
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < count:
        assert proc.poll() is None and time.monotonic() < deadline, never
        time.sleep(0.05)
    return [int(p.name) for p in pids.iterdir()]


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGTERM-ignored-by-the-dump"])
def test_a_run_interrupted_during_the_dumps_stops_them_and_the_next_run_succeeds(
    tmp_path: Path, pg: Postgres, maria: MariaDB, how: str
) -> None:
    w, _ = _databases_world(tmp_path, pg, maria)
    shims, pids = tmp_path / "shims", tmp_path / "pids"
    pids.mkdir()
    # Dump tools that hang (one that even ignores SIGTERM: it must be killed); each writes its PID first and
    # then becomes the sleep, so that PID is the very process vh-backup started.
    ignore = "trap '' TERM\n" if how == "SIGTERM-ignored-by-the-dump" else ""
    for tool in ("pg_dump", "mariadb-dump"):
        _shim(shims, tool, f"{ignore}echo $$ > {pids}/$$\nexec sleep 300")
    env = {"PATH": f"{shims}:{w.env()['PATH']}"}
    proc = _start_run(w, env)
    try:
        children = _wait_for_pids(proc, pids, 3, "the three dumps never ran together")
        assert all(_alive(pid) for pid in children)

        proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGTERM)  # to vh-backup only
        _, stderr = proc.communicate(timeout=20)  # a 5 s grace for a dump that ignores SIGTERM, then SIGKILL

        assert proc.returncode == 130 and "interrupted; no snapshot was recorded" in stderr, stderr
        assert not [pid for pid in children if _alive(pid)], "every dump child was ended and reaped"
        _wait_until_gone(proc.pid)  # nothing else of the run either
    finally:  # whatever failed above, nothing of this run outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert snapshots(w.repo) == [] and _dump_leftovers(w) == []
    w.vh("run")
    assert len(snapshots(w.repo)) == 1


# -- a run killed half-way -----------------------------------------------------------------------------------


def _big_world(tmp: Path) -> World:
    w = World(tmp)
    location = w.location("chat", "storage")
    for i in range(4):  # incompressible, so restic needs a few seconds
        Path(location.source, f"video-{i}.bin").write_bytes(os.urandom(48 * 1024 * 1024))
    w.install([FileSet("chat", location)])
    w.vh("init")
    return w


def _start_and_wait_for_packs(w: World) -> subprocess.Popen[bytes]:
    packs_before = len(list((w.repo / "data").rglob("*")))
    proc = subprocess.Popen(
        [PYTHON, str(SCRIPT), "--home", str(w.home), "run", "--reason", "daily"],
        env=w.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(list((w.repo / "data").rglob("*"))) <= packs_before + 2:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def _wait_until_gone(group: int) -> None:
    """Until the kernel has reaped every process of the killed run (restic's lock names its PID: while a
    zombie holds that PID, restic cannot tell the lock is stale)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                if (
                    entry.name.isdigit()
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == group
                ):
                    alive.append(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of the killed run are still there: {alive}")


def test_a_run_killed_mid_backup_leaves_a_sound_repository_and_the_next_run_succeeds(tmp_path: Path) -> None:
    w = _big_world(tmp_path)
    proc = _start_and_wait_for_packs(w)
    os.killpg(proc.pid, signal.SIGKILL)  # power loss: nothing gets to clean up
    proc.wait()
    _wait_until_gone(proc.pid)

    assert snapshots(w.repo) == [], "no snapshot from a run that never finished"
    checked = w.vh("check", "--subset", "100%")  # clears the dead run's stale lock, reads every pack
    assert "check passed" in checked.stdout
    w.vh("run", "--reason", "daily")
    assert [s["tags"] for s in snapshots(w.repo)] == [["client=clientea", "reason=daily"]]
    assert "no errors were found" in restic(w.repo, "check", "--read-data")


def test_a_run_stopped_by_systemd_ends_cleanly_without_a_stale_lock(tmp_path: Path) -> None:
    w = _big_world(tmp_path)
    proc = _start_and_wait_for_packs(w)
    proc.send_signal(signal.SIGTERM)  # to vh-backup only, as `systemctl stop` does first
    assert proc.wait(timeout=60) == 130
    assert snapshots(w.repo) == []
    assert list((w.repo / "locks").iterdir()) == [], "restic removed its lock on the way out"
    assert "no errors were found" in restic(w.repo, "check")


# -- the repository's password -------------------------------------------------------------------------------


def test_a_wrong_repository_password_is_a_clear_error(tmp_path: Path) -> None:
    w = World(tmp_path)
    location = _acme_only(w)
    w.vh("init")
    w.vh("run")
    w.install([FileSet("edge", location)], repo_password="not-the-repository-password")

    for args in (("run",), ("snapshots",), ("init",), ("restore", "latest")):
        proc = w.vh(*args, check=False)
        assert proc.returncode == 1, args
        assert f"the password in {w.home}/restic.env does not open the repository {w.repo}" in proc.stderr
        assert "backup.repositoryPassword" in proc.stderr and "Traceback" not in proc.stderr
    fresh = w.vh("freshness", check=False)
    assert fresh.returncode == 2 and fresh.stdout.startswith("UNKNOWN: the password in")
    assert len(snapshots(w.repo)) == 1


def test_init_twice_is_harmless(tmp_path: Path) -> None:
    w = World(tmp_path, fresh=True)
    w.install([], with_sources=False)
    first = w.vh("init")
    config = restic(w.repo, "cat", "config")
    assert json.loads(config)["version"] == 2, "format 2 (compression) even on restic 0.14"
    _acme_only(w)
    w.vh("run")
    second = w.vh("init")
    assert "created repository" in first.stdout and "exists (format 2)" in second.stdout
    assert restic(w.repo, "cat", "config") == config and len(snapshots(w.repo)) == 1


# -- retention -----------------------------------------------------------------------------------------------


def restic_policy(times: list[datetime], daily: int, weekly: int, monthly: int) -> set[datetime]:
    """restic's documented policy (doc 060): newest first, a snapshot is kept when it is the first one seen
    of a new day / ISO week / month and that rule still has count left; the rules are OR-ed."""
    kept: set[datetime] = set()
    rules = [
        (daily, lambda t: t.date()),
        (weekly, lambda t: t.isocalendar()[:2]),
        (monthly, lambda t: (t.year, t.month)),
    ]
    for count, bucket in rules:
        last = None
        for t in sorted(times, reverse=True):
            if count and bucket(t) != last:
                kept.add(t)
                last = bucket(t)
                count -= 1
    return kept


def test_retention_keeps_exactly_what_the_policy_says(tmp_path: Path) -> None:
    w = World(tmp_path, keep=(7, 5, 12))
    location = _acme_only(w)
    w.vh("init")
    # 15 months of runs, thinned out where the policy cannot tell the difference: daily for ten days,
    # every 6th day for the rest of two months, every 29th day before that; two runs on some days; and a
    # few pre-update snapshots of hub (a group of their own).
    newest = datetime(2026, 11, 20, 3, 0)
    daily = [newest - timedelta(days=d) for d in [*range(0, 10), *range(10, 60, 6), *range(60, 460, 29)]]
    daily += [newest - timedelta(days=1, hours=-9), newest - timedelta(days=30, hours=-12)]
    pre_update = [newest - timedelta(days=d, hours=-11) for d in (2, 3, 200)]
    for t in daily:
        snapshot_at(w.repo, location.source, t, "reason=daily")
    for t in pre_update:
        snapshot_at(w.repo, location.source, t, "reason=pre-update", "service=hub")

    out = w.vh("forget")

    assert "retention applied: --keep-daily=7 --keep-weekly=5 --keep-monthly=12" in out.stdout
    left = {
        (datetime.strptime(s["time"][:19], "%Y-%m-%dT%H:%M:%S"), "service=hub" in s["tags"])
        for s in snapshots(w.repo)
    }
    expected = {(t, False) for t in restic_policy(daily, 7, 5, 12)} | {
        (t, True) for t in restic_policy(pre_update, 7, 5, 12)
    }
    assert left == expected
    # The policy as the seed states it: the last 7 days, a month of weeks, a year of months.
    kept_daily = sorted(t for t, hub in left if not hub)
    last_week = [newest - timedelta(days=d) + timedelta(hours=9 if d == 1 else 0) for d in range(6, -1, -1)]
    assert kept_daily[-7:] == last_week and kept_daily[0] < newest - timedelta(days=300)


def test_retention_numbers_come_from_the_stack(tmp_path: Path) -> None:
    w = World(tmp_path, keep=(2, 0, 1))
    location = _acme_only(w)
    w.vh("init")
    newest = datetime(2026, 11, 20, 3, 0)
    times = [newest - timedelta(days=d) for d in (0, 1, 2, 40)]
    for t in times:
        snapshot_at(w.repo, location.source, t, "reason=daily")
    assert "--keep-daily=2 --keep-monthly=1" in w.vh("forget").stdout
    assert sorted(s["time"][:10] for s in snapshots(w.repo)) == ["2026-11-19", "2026-11-20"]


# -- freshness, pre-update, check ----------------------------------------------------------------------------


def test_freshness_reads_the_repository_not_the_job(tmp_path: Path) -> None:
    w = World(tmp_path)
    location = _acme_only(w)
    w.vh("init")
    none = w.vh("freshness", check=False)
    assert none.returncode == 1 and none.stdout.startswith("STALE: clientea has no complete snapshot")
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=30)
    snapshot_at(w.repo, location.source, old, "reason=daily")
    # A newer snapshot of one service alone does not make the client's backup fresh.
    snapshot_at(w.repo, location.source, None, "reason=pre-update", "service=edge")
    stale = w.vh("freshness", check=False)
    assert (
        stale.returncode == 1
        and "STALE: newest complete snapshot" in stale.stdout
        and "30.0 h old" in stale.stdout
    )
    assert w.vh("freshness", "--max-age-hours", "31").stdout.startswith("OK: ")
    w.vh("run", "--reason", "daily")
    fresh = w.vh("freshness")
    assert fresh.stdout.startswith("OK: newest complete snapshot") and "(limit 26 h)" in fresh.stdout


def test_pre_update_snapshot_of_one_service_and_first_deploy(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, _ = full_world(tmp_path, pg, maria)
    (w.home / "sources.json").rename(w.home / "sources.later")
    w.vh("init")
    first = w.vh("run", "--reason", "pre-update", "--service", "chat", "--if-deployed")
    assert "nothing deployed yet" in first.stdout and snapshots(w.repo) == []
    (w.home / "sources.later").rename(w.home / "sources.json")

    w.vh("run", "--reason", "pre-update", "--service", "chat", "--if-deployed")

    [snap] = snapshots(w.repo)
    assert sorted(snap["tags"]) == ["client=clientea", "reason=pre-update", "service=chat"]
    files = restic(w.repo, "ls", snap["id"])
    assert (
        "postgres-" in files and "/chat/storage/" in files and "mariadb-" not in files and "acme" not in files
    )
    # `restore latest --service chat` finds it; a whole-client restore needs a complete snapshot.
    assert "restore clientea from snapshot" in w.vh("restore", "latest", "--service", "chat").stdout
    whole = w.vh("restore", snap["id"][:8], check=False)
    assert whole.returncode == 1 and "holds only chat: add --service" in whole.stderr


def test_check_reads_data_and_finds_damage(tmp_path: Path) -> None:
    w = World(tmp_path)
    location = w.location("chat", "storage")
    fill_files(Path(location.source), 3)
    w.install([FileSet("chat", location)])
    w.vh("init")
    w.vh("run")
    assert "data slice 100%" in w.vh("check", "--subset", "100%").stdout
    pack = max((p for p in (w.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    damaged = bytearray(pack.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    pack.write_bytes(bytes(damaged))
    proc = w.vh("check", "--subset", "100%", check=False)
    assert proc.returncode == 1 and "restic check failed" in proc.stderr


# -- the docker runtime, as installed on a host ------------------------------------------------------------


def test_the_docker_runtime_dumps_in_containers_and_restores_around_them(
    tmp_path: Path, pg: Postgres
) -> None:
    """The settings exactly as the program writes them (runtime docker, the pinned image): vh-backup's
    docker calls go to a stand-in CLI (tests/docker_shim.py) that runs Debian's restic and the dumps here,
    checks that every volume is mounted at its own path, and records each call."""
    w = World(tmp_path, pg, fresh=True)
    db = f"db_{uuid.uuid4().hex[:12]}"
    fill_postgres(pg, db)
    password_file = tmp_path / "postgres-password"
    password_file.write_text(PASSWORD)  # as the secret-file step writes it: no trailing newline
    storage = w.location("chat", "storage")
    fill_files(Path(storage.source), 2)
    uploads_path = w.data("chat", "uploads-volume")
    uploads_path.mkdir(parents=True)
    (uploads_path / "avatar.png").write_bytes(os.urandom(10_000))
    uploads = DataLocation("chat", "uploads", "clientea-chat-uploads", "volume")
    sources: list[BackupSource] = [
        # The password file: the stand-in's `docker exec` runs here, so the file is here too.
        DatabaseDump("chat", "postgres", "clientea-chat-postgres", db, pg.user, str(password_file)),
        FileSet("chat", storage),
        FileSet("chat", uploads),
    ]
    w.install(sources)
    (w.home / "settings.json").write_text(
        json.dumps(backup.settings(CLIENT, _config(w), "restic/restic:0.19.1"))
    )
    (w.home / "sources.json").write_text(json.dumps(backup.sources_manifest(sources)))

    def labels(client: str) -> dict[str, str]:
        return {"io.versatilehub.client": client, "io.versatilehub.service": "chat"}

    database_env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port)}  # no password in it (issue 14)
    state = {
        "containers": {
            "clientea-chat-postgres": {"labels": labels(CLIENT), "env": database_env, "running": True},
            "clientea-chat-rails": {"labels": labels(CLIENT), "env": {}, "running": True},
            "clientea-chat-sidekiq": {"labels": labels(CLIENT), "env": {}, "running": True},
            "clienteb-chat-rails": {"labels": labels("clienteb"), "env": {}, "running": True},
        },
        "volumes": {"clientea-chat-uploads": str(uploads_path)},
    }
    shim, bin_dir = _docker_shim(tmp_path, state)
    env = {
        "PATH": f"{bin_dir}:{pg.tool_path()}",
        "DOCKER_SHIM_STATE": str(shim),
    }

    w.vh("init", extra_env=env)
    w.vh("run", "--reason", "pre-update", "--service", "chat", "--if-deployed", extra_env=env)
    w.vh("run", "--reason", "daily", extra_env=env)
    assert [sorted(s["tags"]) for s in snapshots(w.repo)] == [
        ["client=clientea", "reason=pre-update", "service=chat"],
        ["client=clientea", "reason=daily"],
    ]
    before = (postgres_state(pg, db), tree(Path(storage.source)), tree(uploads_path))
    pg.sql("postgres", f'DROP DATABASE "{db}"')
    shutil.rmtree(storage.source)
    (uploads_path / "avatar.png").write_text("overwritten")

    w.vh("restore", "latest", "--yes", extra_env=env)

    assert (postgres_state(pg, db), tree(Path(storage.source)), tree(uploads_path)) == before
    calls = [json.loads(line) for line in (shim / "calls.jsonl").read_text().splitlines()]
    # The app stops while its data changes, its database stays up for the import, other clients are untouched.
    lifecycle = [c for c in calls if c[0] in ("stop", "start", "restart")]
    assert lifecycle == [
        ["stop", "clientea-chat-rails"],
        ["stop", "clientea-chat-sidekiq"],
        ["start", "clientea-chat-rails"],
        ["start", "clientea-chat-sidekiq"],
    ]
    dumps = [c for c in calls if c[0] == "exec" and "pg_dump" in c]
    assert len(dumps) == 2 and all(c[3] == "clientea-chat-postgres" for c in dumps)
    runs = [c for c in calls if c[0] == "run"]
    assert all("--entrypoint" not in c and "restic/restic:0.19.1" in c for c in runs)
    backups = [c for c in runs if "backup" in c[c.index("restic/restic:0.19.1") + 1 :]]
    assert all(
        " ".join(c).count("--cap-add") == 1 and "--cap-add DAC_READ_SEARCH" in " ".join(c) for c in backups
    )
    assert any(f"{uploads_path}:{uploads_path}:ro" in c for c in backups), "the volume, by its mount point"
    [restore] = [c for c in runs if "restore" in c]
    assert [restore[i + 1] for i, a in enumerate(restore) if a == "--cap-add"] == [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
    ]
    for call in calls:
        assert REPO_PASSWORD not in json.dumps(call) and PASSWORD not in json.dumps(call)
        names = [call[i + 1] for i, a in enumerate(call) if a == "--env"]
        assert all(re.fullmatch(r"[A-Z_]+|VH_BACKUP_RUN=[A-Za-z0-9_.-]+", n) for n in names), names
        # Issue 14: the repository password is a read-only file in the container, not in its environment.
        assert "RESTIC_PASSWORD" not in names
    secrets = f"{w.home}/secrets"
    assert all("RESTIC_PASSWORD_FILE" in c and f"{secrets}:{secrets}:ro" in c for c in runs)
    assert oct(os.stat(f"{secrets}/restic-password").st_mode & 0o777) == "0o400"
    # Every command in a container carries its run's token: one per run (2 dumps, then 3 import steps).
    tokens = [_token(c) for c in _execs(shim)]
    assert [len(list(same)) for _, same in itertools.groupby(tokens)] == [1, 1, 3], tokens
    assert len(set(tokens)) == 3 and all(t and t.startswith(f"{CLIENT}-") for t in tokens), tokens

    # Before a service's first deployment (no container yet) the pre-update step has nothing to take.
    state["containers"] = {}
    (shim / "state.json").write_text(json.dumps(state))
    skipped = w.vh("run", "--reason", "pre-update", "--service", "chat", "--if-deployed", extra_env=env)
    assert "nothing deployed yet for chat" in skipped.stdout and len(snapshots(w.repo)) == 2


def _config(w: World) -> BackupConfig:
    return BackupConfig.model_validate({"repository": str(w.repo)})


def _docker_shim(tmp: Path, state: dict[str, Any]) -> tuple[Path, Path]:
    """The stand-in docker CLI with its state: its directory (state.json, calls.jsonl), its bin directory."""
    shim, bin_dir = tmp / "shim", tmp / "bin"
    shim.mkdir()
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\nexec {PYTHON} {ROOT / "tests" / "docker_shim.py"} "$@"\n')
    (bin_dir / "docker").chmod(0o755)
    (shim / "state.json").write_text(json.dumps(state))
    return shim, bin_dir


# -- the docker runtime: nothing of a run goes on in a container -------------------------------------------


def _in_containers(
    w: World, tmp: Path, path: str, apps: Sequence[BackupSource] = ()
) -> tuple[Path, dict[str, str]]:
    """A _databases_world on the docker runtime: each database dumped in a container of its own
    (clientea-<service>-<engine>, reaching the test servers over TCP), `apps` after them, through the
    stand-in docker CLI acting as dockerd does (DOCKER_SHIM_DETACHED_EXEC): a signal to `docker exec` does
    not reach the command, and a killed `docker exec` leaves it running. The shim's directory, and
    vh-backup's environment (`path` behind docker)."""
    manifest = json.loads((w.home / "sources.json").read_text())
    for entry in manifest["sources"]:
        if entry["kind"] == "database":
            entry["container"] = f"{CLIENT}-{entry['service']}-{entry['engine']}"
    manifest["sources"] += backup.sources_manifest(list(apps))["sources"]
    (w.home / "sources.json").write_text(json.dumps(manifest))
    settings = backup.settings(CLIENT, _config(w), "restic/restic:0.19.1")
    (w.home / "settings.json").write_text(json.dumps(settings))
    names = {e["container"] for e in manifest["sources"] if e.get("container")}
    state = {"containers": {n: {"labels": {}, "env": {}, "running": True} for n in names}, "volumes": {}}
    shim, bin_dir = _docker_shim(tmp, state)
    return shim, {
        "PATH": f"{bin_dir}:{path}",
        "DOCKER_SHIM_STATE": str(shim),
        "DOCKER_SHIM_DETACHED_EXEC": "1",
    }


def _execs(shim: Path) -> list[list[str]]:
    calls = shim / "calls.jsonl"
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [c for c in map(json.loads, lines) if c[0] == "exec"]


def _is_cleanup(call: list[str]) -> bool:
    """vh-backup's look for what its run left in a container (`sh -c <script> sh <token>`)."""
    return "-c" in call and "/proc/" in call[call.index("-c") + 1]


def _token(call: list[str]) -> str | None:
    """The run token a `docker exec` hands its command (--env VH_BACKUP_RUN=...); a clean-up's is $1."""
    if _is_cleanup(call):
        return call[-1]
    tagged = [call[i + 1] for i, a in enumerate(call) if a == "--env" and "=" in call[i + 1]]
    return next((v.split("=", 1)[1] for v in tagged if v.startswith("VH_BACKUP_RUN=")), None)


def _running(pid: int) -> bool:
    """Alive, zombies aside (an orphan's zombie waits for whoever reaps orphans on this machine)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _carriers(tokens: Iterable[str]) -> list[int]:
    """The running processes whose environment holds exactly VH_BACKUP_RUN=<one of tokens>."""
    wanted = {f"VH_BACKUP_RUN={t}".encode() for t in tokens}
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted & set((entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _running(pid)]


def _end_strays(shim: Path, pids: Path) -> None:
    """Whatever failed, nothing a test's run left in its "containers" outlives the test."""
    tokens = {t for t in map(_token, _execs(shim)) if t}
    for pid in {*_carriers(tokens), *(int(p.name) for p in pids.iterdir())}:
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _check_cleanups(shim: Path, token: str, containers: Sequence[str]) -> None:
    """One clean-up per container, as the user the commands ran as, handed the token as $1 only."""
    cleanups = [c for c in _execs(shim) if _is_cleanup(c)]
    assert sorted(c[c.index("-c") - 2] for c in cleanups) == sorted(containers), cleanups
    for call in cleanups:
        script = call[call.index("-c") + 1]
        assert call[-2:] == ["sh", token] and token not in script, call
        assert "VH_BACKUP_RUN" not in " ".join(call[: call.index("-c")]), "the clean-up itself is untagged"


def test_a_run_interrupted_during_the_dumps_leaves_nothing_running_in_the_containers(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, _ = _databases_world(tmp_path, pg, maria)
    shims, pids = tmp_path / "shims", tmp_path / "pids"
    pids.mkdir()
    for tool in ("pg_dump", "mariadb-dump"):  # hang in their containers; the PID is the very dump process
        _shim(shims, tool, f"echo $$ > {pids}/$$\nexec sleep 300")
    shim, env = _in_containers(w, tmp_path, f"{shims}:{w.env()['PATH']}")
    proc = _start_run(w, env)
    try:
        dumps = _wait_for_pids(proc, pids, 3, "the three dumps never ran together")
        [token] = {_token(c) for c in _execs(shim)}
        assert token and sorted(_carriers([token])) == sorted(dumps)

        proc.send_signal(signal.SIGTERM)  # to vh-backup only, as systemd's stop would reach the CLI at most
        stdout, stderr = proc.communicate(timeout=30)

        assert proc.returncode == 130 and "interrupted; no snapshot was recorded" in stderr, stdout + stderr
        assert "warning" not in stderr, stderr
        assert not [pid for pid in dumps if _running(pid)], "no dump goes on in its container"
        assert _carriers([token]) == [], "nothing that carries the run's token is left"
        # (The shim's "containers" share this machine's processes: the first clean-up finds all three.)
        stopped = re.findall(r"^stopped (\d+) process\(es\) of this run left in \S+$", stdout, re.MULTILINE)
        assert sum(map(int, stopped)) == 3, stdout
        _check_cleanups(
            shim, token, [f"{CLIENT}-chat-postgres", f"{CLIENT}-flow-postgres", f"{CLIENT}-hub-mariadb"]
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _end_strays(shim, pids)
    assert snapshots(w.repo) == [] and _dump_leftovers(w) == []

    for tool in ("pg_dump", "mariadb-dump"):
        (shims / tool).unlink()
    w.vh("run", extra_env=env)
    assert len(snapshots(w.repo)) == 1
    tokens = [_token(c) for c in _execs(shim) if not _is_cleanup(c)]
    assert tokens[:3] == [token] * 3 and len(tokens) == 6 and len(set(tokens[3:])) == 1, tokens
    assert tokens[3] != token, "the next run has a token of its own"


def test_a_dump_failing_while_another_goes_on_in_its_container_ends_that_one_too(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    """The run waits for every dump, then fails: a dump still under way then is one whose docker CLI ended
    while it went on in its container (the CLI lost, say): chat's, here, beside hub's failing dump."""
    w, (chat, _, hub) = _databases_world(tmp_path, pg, maria)
    shims, pids = tmp_path / "shims", tmp_path / "pids"
    pids.mkdir()
    _shim(
        shims,
        "pg_dump",
        f'case "$*" in *--dbname={chat}*) echo $$ > {pids}/$$; kill -KILL $PPID; exec sleep 300;; esac\n'
        f'exec {pg.bin}/pg_dump "$@"',
    )
    maria.sql(f"DROP DATABASE {hub}")  # mariadb-dump fails at once
    shim, env = _in_containers(w, tmp_path, f"{shims}:{w.env()['PATH']}")
    try:
        proc = w.vh("run", check=False, extra_env=env)

        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        assert (
            f"hub/mariadb-{hub}: dumping mariadb database {hub} in {CLIENT}-hub-mariadb failed" in proc.stderr
        )
        [dump] = [int(p.name) for p in pids.iterdir()]
        assert not _running(dump), "chat's dump does not go on in its container"
        [token] = {_token(c) for c in _execs(shim)}
        assert token and _carriers([token]) == []
        assert f"stopped 1 process(es) of this run left in {CLIENT}-chat-postgres" in proc.stdout
        _check_cleanups(
            shim, token, [f"{CLIENT}-chat-postgres", f"{CLIENT}-flow-postgres", f"{CLIENT}-hub-mariadb"]
        )
    finally:
        _end_strays(shim, pids)
    assert snapshots(w.repo) == [] and _dump_leftovers(w) == []


def test_an_interrupted_app_backup_leaves_nothing_running_in_its_container(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, _ = _databases_world(tmp_path, pg, maria)
    shims, pids = tmp_path / "shims", tmp_path / "pids"
    pids.mkdir()
    _shim(shims, "bench", f"echo $$ > {pids}/$$\nexec sleep 300")  # hangs in its container
    sites = w.location("hub", "sites")
    app = AppBackupCommand(
        "hub",
        f"{CLIENT}-hub-backend",
        ("bench", "--site", "all", "backup"),
        sites,
        "*/private/backups",
        "frappe",
    )
    shim, env = _in_containers(w, tmp_path, f"{shims}:{w.env()['PATH']}", [app])
    proc = _start_run(w, env)
    try:
        [bench] = _wait_for_pids(proc, pids, 1, "the app's backup never ran")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)

        assert proc.returncode == 130 and "interrupted; no snapshot was recorded" in stderr, stdout + stderr
        assert not _running(bench), "bench does not go on in its container"
        [token] = {_token(c) for c in _execs(shim)}
        assert token and _carriers([token]) == []
        _check_cleanups(shim, token, [f"{CLIENT}-hub-backend"])
        [cleanup] = [c for c in _execs(shim) if _is_cleanup(c)]
        assert cleanup[1:3] == ["--user", "frappe"], "as the user the command ran as"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _end_strays(shim, pids)
    assert snapshots(w.repo) == []


# -- stale locks (issue 17, item 8) -----------------------------------------------------------------------


def _docker_world(tmp: Path) -> tuple[World, dict[str, str]]:
    """A file set backed up through the docker runtime, as installed: restic runs in the stand-in's
    containers (PID 1 of a PID namespace, hostname vh-backup-<client>). vh-backup's environment."""
    w = World(tmp)
    location = _acme_only(w)
    w.install([FileSet("edge", location)])
    settings = backup.settings(CLIENT, _config(w), "restic/restic:0.19.1")
    (w.home / "settings.json").write_text(json.dumps(settings))
    shim, bin_dir = _docker_shim(tmp, {"containers": {}, "volumes": {}})
    return w, {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "DOCKER_SHIM_STATE": str(shim)}


def _lock_ids(repo: Path) -> list[str]:
    return restic(repo, "--no-lock", "list", "locks").split()


def _dead_lock(repo: Path, hostname: str) -> dict[str, Any]:
    """The exclusive lock a restic in a container leaves when it dies (a crashed or killed prune): restic
    is PID 1 in its PID namespace, under `hostname`. `key passwd` takes an exclusive lock, then waits for
    the new password on its standard input."""
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": REPO_PASSWORD}
    env["RESTIC_CACHE_DIR"] = str(repo.parent / "test-cache")
    holder = subprocess.Popen(
        ["unshare", "--pid", "--uts", "--fork", "--kill-child", "sh", "-c",
         'hostname "$1" && exec restic key passwd', "sh", hostname],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # until the lock is written whole (the file appears before its content)
        locks = [restic(repo, "--no-lock", "cat", "lock", i, check=False) for i in _lock_ids(repo)]
        if locks and all(locks):
            break
        assert holder.poll() is None and time.monotonic() < deadline, "restic took no lock"
        time.sleep(0.05)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    _wait_until_gone(holder.pid)
    [lock] = locks
    return dict(json.loads(lock))


def test_a_dead_runs_lock_in_a_container_is_removed_at_once(tmp_path: Path) -> None:
    """restic cannot tell it is stale (PID 1 under the same hostname always answers): before, every
    backup failed and retention was postponed for 30 minutes after a crashed prune."""
    w, env = _docker_world(tmp_path)
    lock = _dead_lock(w.repo, f"vh-backup-{CLIENT}")
    assert (lock["pid"], lock["exclusive"], lock["hostname"]) == (1, True, f"vh-backup-{CLIENT}")
    unlocked = subprocess.run(
        ["unshare", "--pid", "--uts", "--fork", "sh", "-c", 'hostname "$1" && exec restic unlock', "sh",
         f"vh-backup-{CLIENT}"],
        env={**os.environ, "RESTIC_REPOSITORY": str(w.repo), "RESTIC_PASSWORD": REPO_PASSWORD},
        capture_output=True, check=True,
    )  # fmt: skip
    assert unlocked.returncode == 0 and len(list((w.repo / "locks").iterdir())) == 1, "restic keeps it"

    proc = w.vh("run", "--reason", "daily", extra_env=env)
    assert "removed 1 lock(s) left by a vh-backup run that died on this machine" in proc.stdout
    assert "retention applied" in proc.stdout and "postponed" not in proc.stdout
    assert [s["tags"] for s in snapshots(w.repo)] == [["client=clientea", "reason=daily"]]
    assert list((w.repo / "locks").iterdir()) == []


def test_another_hosts_lock_is_never_removed(tmp_path: Path) -> None:
    """A lock from another machine (an operator restoring from a laptop) may be live: it stays, and the run
    fails naming the lock instead of breaking it."""
    w, env = _docker_world(tmp_path)
    _dead_lock(w.repo, "operator-laptop")
    proc = w.vh("run", "--reason", "daily", check=False, extra_env=env)
    assert proc.returncode == 1, proc.stdout
    assert "the repository is locked by another process" in proc.stderr
    assert "operator-laptop" in proc.stderr
    assert len(list((w.repo / "locks").iterdir())) == 1 and snapshots(w.repo) == []


# -- a snapshot restic could not read whole (issue 17, item 9) --------------------------------------------


def _unreadable_world(tmp: Path, heal_after_first: bool) -> tuple[World, Path, Path]:
    """restic as the container runs it, without the capabilities that let root read anything (the image
    gets DAC_READ_SEARCH only, and a file can still be unreadable: gone mid-run, a FUSE mount), so a file
    of mode 000 is one it cannot read: exit 3. With heal_after_first, the first backup's end gives the file
    its mode back, as a rotated log is gone by the retry. The world, the file, the status file."""
    w = World(tmp)
    location = _acme_only(w)
    (Path(location.source) / "logs").mkdir()
    unreadable = Path(location.source) / "logs" / "app.log"
    unreadable.write_text("a log line\n")
    unreadable.chmod(0)
    wrapper = tmp / "restic-without-dac"
    heal = f"chmod 644 {unreadable}; " if heal_after_first else ""
    wrapper.write_text(
        "#!/bin/sh\n"
        'setpriv --bounding-set -dac_override,-dac_read_search restic "$@"\n'
        "rc=$?\n"
        f'case "$1 $*" in "backup "*--help*) ;; "backup "*) {heal}: ;; esac\n'
        "exit $rc\n"
    )
    wrapper.chmod(0o755)
    status = tmp / "monitor" / "backup.json"
    settings = json.loads((w.home / "settings.json").read_text())
    (w.home / "settings.json").write_text(
        json.dumps({**settings, "restic": str(wrapper), "status_file": str(status)})
    )
    return w, unreadable, status


def test_a_partial_snapshot_is_kept_tagged_partial_and_reported(tmp_path: Path) -> None:
    """Before: restic's exit 3 threw the day's snapshot away, and the run failed."""
    w, unreadable, status = _unreadable_world(tmp_path, heal_after_first=False)
    proc = w.vh("run", "--reason", "daily", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "trying once more" in proc.stdout
    assert "kept, tagged partial: restic could not read some files twice" in proc.stderr
    assert str(unreadable) in proc.stderr, "the message names what could not be read"
    [kept] = snapshots(w.repo)
    assert sorted(kept["tags"]) == ["client=clientea", "partial", "reason=daily"]
    assert "acme.json" in restic(w.repo, "ls", kept["id"]), "what could be read is in it"
    recorded = json.loads(status.read_text())
    assert recorded["result"] == "partial" and recorded["last_ok"] is None
    assert "tagged partial" in recorded["message"]
    # A partial snapshot is not a good backup: freshness does not count it, `restore latest` skips it.
    assert w.vh("freshness", check=False).returncode == 1
    assert "partial" in w.vh("snapshots").stdout
    assert "no snapshot holds the whole client" in w.vh("restore", "latest", check=False).stderr


def test_a_partial_snapshot_is_replaced_when_the_retry_reads_everything(tmp_path: Path) -> None:
    w, _, status = _unreadable_world(tmp_path, heal_after_first=True)
    proc = w.vh("run", "--reason", "daily")
    assert "trying once more" in proc.stdout and "the retry read every file" in proc.stdout
    [kept] = snapshots(w.repo)
    assert sorted(kept["tags"]) == ["client=clientea", "reason=daily"]
    assert "logs/app.log" in restic(w.repo, "ls", kept["id"])
    assert json.loads(status.read_text())["result"] == "ok"
    assert w.vh("freshness").returncode == 0


# -- priorities that apply (issue 17, item 6) ----------------------------------------------------------------


def test_restic_in_its_container_runs_at_a_low_cpu_and_io_priority(tmp_path: Path) -> None:
    """Before: --entrypoint /usr/bin/restic skipped the image's entrypoint, and the units' Nice= never reached
    a process dockerd starts: restic ran at nice 0. Each restic records its own niceness and I/O class."""
    w, env = _docker_world(tmp_path)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    record = tmp_path / "priorities"
    real = shutil.which("restic")
    (probe_dir / "restic").write_text(
        f'#!/bin/sh\necho "$(cut -d" " -f19 /proc/self/stat) $(ionice)" >> {record}\nexec {real} "$@"\n'
    )
    (probe_dir / "restic").chmod(0o755)
    env["PATH"] = env["PATH"].replace(":", f":{probe_dir}:", 1)
    w.vh("run", "--reason", "daily", extra_env=env)
    seen = set(record.read_text().splitlines())
    # NICE=10 is relative (nice(1)): under a test run that is itself niced, restic ends 10 above it.
    assert seen == {f"{min(19, os.nice(0) + 10)} best-effort: prio 7"}, seen


def test_b2_keys_reach_restic_through_the_wrapper_not_the_docker_command(tmp_path: Path) -> None:
    """Issue 14 item 4: a b2: repository's keys (restic v0.19.1 internal/backend/b2/config.go reads them from
    the environment only) go in b2.env, which the --entrypoint /bin/sh wrapper exports before it execs the
    image's entrypoint. A stand-in restic records its environment, niceness and I/O class. Before: `--env
    B2_ACCOUNT_KEY` on the docker command, the key in the container's environment. About 2 s."""
    w, env = _docker_world(tmp_path)
    key = "K003 a'b$c"
    (w.home / "restic.env").write_text(
        f"RESTIC_REPOSITORY=b2:acme-backups:clientea\nRESTIC_PASSWORD={REPO_PASSWORD}\n"
        f"B2_ACCOUNT_ID=003abcdef0123\nB2_ACCOUNT_KEY={key}\n"
    )
    probe_dir, record = tmp_path / "probe", tmp_path / "seen"
    probe_dir.mkdir()
    (probe_dir / "restic").write_text(
        "#!/bin/sh\n"
        f'{{ echo "$(cut -d" " -f19 /proc/self/stat) $(ionice)"; env; }} > {record}\n'
        'case "$*" in *snapshots*) echo "[]";; esac\n'
    )
    (probe_dir / "restic").chmod(0o755)
    env["PATH"] = env["PATH"].replace(":", f":{probe_dir}:", 1)
    w.vh("snapshots", extra_env=env)
    [call] = [json.loads(line) for line in (tmp_path / "shim" / "calls.jsonl").read_text().splitlines()]
    assert not [a for a in call if "003abcdef0123" in a or "K003" in a or a.startswith("B2_")], call
    assert call[0] == "run" and call[call.index("--entrypoint") + 1] == "/bin/sh"
    priority, *environment = record.read_text().splitlines()
    assert {"B2_ACCOUNT_ID=003abcdef0123", f"B2_ACCOUNT_KEY={key}"} <= set(environment)
    assert f"RESTIC_PASSWORD_FILE={w.home}/secrets/restic-password" in environment
    assert not [e for e in environment if e.startswith("RESTIC_PASSWORD=")]
    assert priority == f"{min(19, os.nice(0) + 10)} best-effort: prio 7"  # the image's entrypoint ran
    # The stand-in stays strict: an entrypoint that would skip the image's own is refused.
    skip = [*call[: call.index("--entrypoint")], "--entrypoint", "/usr/bin/restic", "restic/restic:0.19.1"]
    shim = [PYTHON, str(ROOT / "tests" / "docker_shim.py")]
    refused = subprocess.run(
        [*shim, *skip, "snapshots"], env=env, capture_output=True, text=True, check=False
    )
    assert (refused.returncode, refused.stderr) == (
        125,
        "shim: unsupported entrypoint /usr/bin/restic snapshots\n",
    )


def test_the_dumps_lower_their_own_priority_with_or_without_ionice(tmp_path: Path) -> None:
    """Before: only restic ran low (through its image's entrypoint); pg_dump and mariadb-dump, started by
    `docker exec` in the database's container, ran at its priority. The wrapper dump_argv puts in front of
    each dump, run for real: the dump records its own niceness and I/O class; where the image has no
    ionice (a minimal one), the nice still applies and the dump still runs."""
    from tests.test_backup import load_script

    vh = load_script()
    record = tmp_path / "seen"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(
        f'#!/bin/sh\necho "$(cut -d" " -f19 /proc/self/stat) $(ionice) $*" >> {record}\n'
    )
    (bin_dir / "pg_dump").chmod(0o755)
    expected_nice = min(19, os.nice(0) + 10)
    argv = vh._low_priority(["pg_dump", "--dbname=chatwoot"])
    subprocess.run(argv, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=True, timeout=30)
    assert record.read_text().splitlines() == [f"{expected_nice} best-effort: prio 7 --dbname=chatwoot"]
    # No ionice in the image: a PATH holding only sh, env, nice and the dump.
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("sh", "env", "nice", "cut"):
        (bare / tool).symlink_to(shutil.which(tool) or tool)
    (bin_dir / "pg_dump").write_text(f'#!/bin/sh\necho "$(cut -d" " -f19 /proc/self/stat) $*" > {record}\n')
    subprocess.run(argv, env={"PATH": f"{bin_dir}:{bare}"}, check=True, timeout=30)
    assert record.read_text().splitlines() == [f"{expected_nice} --dbname=chatwoot"]


# -- the restore drill (issue 17, item 11) -------------------------------------------------------------------


def _load_collector() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("vh_collect", ROOT / "scripts" / "vh_collect.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drill_world(tmp: Path, pg: Postgres, maria: MariaDB) -> tuple[World, dict[str, str], Path, Path]:
    """Chat and Flow on PostgreSQL, Hub on MariaDB, each in its container, on the docker runtime; one daily
    snapshot. The world, vh-backup's environment, the shim's directory, drill.json."""
    w, _ = _databases_world(tmp, pg, maria)
    shim, env = _in_containers(w, tmp, pg.tool_path())
    state = json.loads((shim / "state.json").read_text())
    for name, container in state["containers"].items():
        container["image"] = "postgres:17.6-alpine" if name.endswith("-postgres") else "mariadb:11.8.3"
    (shim / "state.json").write_text(json.dumps(state))
    drill_file = tmp / "monitor" / "drill.json"
    settings = json.loads((w.home / "settings.json").read_text()) | {"drill_status_file": str(drill_file)}
    (w.home / "settings.json").write_text(json.dumps(settings))
    w.vh("run", "--reason", "daily", extra_env=env)
    return w, env, shim, drill_file


def test_the_restore_drill_restores_checks_loads_each_dump_and_cleans_up(
    tmp_path: Path, pg: Postgres, maria: MariaDB
) -> None:
    w, env, shim, drill_file = _drill_world(tmp_path, pg, maria)
    proc = w.vh("drill", extra_env=env)
    assert "all match the snapshot" in proc.stdout and "restore drill passed" in proc.stdout

    report = json.loads(drill_file.read_text())
    assert report["result"] == "ok" and report["last_ok"] == report["finished"] and report["files"] >= 4
    [latest] = snapshots(w.repo)
    assert report["snapshot"] == latest["short_id"]
    loaded = sorted(d.split("-")[0] for d in report["databases"])
    assert loaded == ["chat/postgres", "flow/postgres", "hub/mariadb"]
    assert [d.split(": ")[1] for d in sorted(report["databases"])] == [
        "1 table(s) in postgres:17.6-alpine",
        "1 table(s) in postgres:17.6-alpine",
        "2 table(s) in mariadb:11.8.3",
    ]
    # Everything removed: the scratch folder, each throwaway server (and its data directory).
    assert [p.name for p in w.home.iterdir() if p.name.startswith("drill-")] == []
    calls = [json.loads(line) for line in (shim / "calls.jsonl").read_text().splitlines()]
    runs = [c for c in calls if c[0] == "run" and "--detach" in c]
    removed = [c[2] for c in calls if c[:2] == ["rm", "--force"]]
    assert len(runs) == 3 and sorted(removed) == sorted(c[c.index("--name") + 1] for c in runs)
    assert all(c[c.index("--network") + 1] == "none" for c in runs), "a throwaway server is unreachable"
    assert not [n for n in json.loads((shim / "state.json").read_text())["containers"] if "drill" in n]
    for run in runs:
        assert REPO_PASSWORD not in json.dumps(run) and PASSWORD not in json.dumps(run)

    # The collector reads it as it reads the backup's status (scripts/vh_collect.py read_result).
    collect = _load_collector()
    read = collect.read_result(str(drill_file), time.time())
    assert read["result"] == "ok" and read["age_hours"] < 0.1


def test_a_failed_restore_drill_is_recorded_and_alerts(tmp_path: Path, pg: Postgres, maria: MariaDB) -> None:
    w, env, _, drill_file = _drill_world(tmp_path, pg, maria)
    largest = max((p for p in (w.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    largest.chmod(0o600)
    largest.write_bytes(bytes(data))

    proc = w.vh("drill", check=False, extra_env=env)
    assert proc.returncode == 1, proc.stdout
    report = json.loads(drill_file.read_text())
    assert report["result"] == "failed" and report["last_ok"] is None and report["message"]
    assert [p.name for p in w.home.iterdir() if p.name.startswith("drill-")] == []
    collect = _load_collector()
    status = {"drill": collect.read_result(str(drill_file), time.time())}
    assert collect.incidents({**_quiet_status(), **status}, backups_on=False)["drill:failed"].startswith(
        "the last restore drill failed: "
    )


def _quiet_status() -> dict[str, Any]:
    return {"thresholds": _load_collector().DEFAULT_THRESHOLDS, "containers": [], "host": {}, "endpoints": []}
