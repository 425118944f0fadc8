"""Backup benchmark: the real vh-backup (scripts/vh_backup.py) with Debian's restic on a generated data set
of more than 1 GiB (mixed files plus PostgreSQL and MariaDB dumps from real servers on loopback).

Measures the first backup, an unchanged re-run (target: at most 10% of the first), a re-run after a 1%
change, a full restore against `cp -a` of the same tree in the same run (target: at least 50% of cp's
throughput), and the repository's size against the data's. Prints a table and writes JSON to
bench/results/ (gitignored).

    .venv/bin/python -m bench.backup_bench [--scale 1.0] [--keep]
        [--restic BIN] [--weed BIN --limit-upload KiB/s]

Needs restic, postgresql and mariadb-server (Debian packages) and about 4x the data set free under /tmp.
--restic: another restic binary (bench/build-tools.sh builds the pinned version). --weed: the repository is
an S3 bucket on a SeaweedFS server that the benchmark starts on loopback (bench/build-tools.sh builds it),
the stand-in for Backblaze B2; --limit-upload passes restic's own --limit-upload (6250 KiB/s = 50 Mbit/s,
a client's uplink). Not a CI test: a benchmark, run and reported by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.backup import component as backup  # noqa: E402
from components.config import BackupConfig  # noqa: E402
from components.core.deployment import DatabaseDump, FileSet  # noqa: E402
from components.core.storage import DataLocation  # noqa: E402
from tests.realservers import PASSWORD, MariaDB, Postgres, free_port  # noqa: E402

SCRIPT = ROOT / "scripts" / "vh_backup.py"
PYTHON = shutil.which("python3") or sys.executable
MiB = 1024 * 1024
# Spanish and English business words: text that compresses like real documents do.
WORDS = re.findall(
    r"\w+",
    "factura cliente pedido entrega pago saldo cuenta stock almacén proveedor contrato servicio soporte "
    "ticket mensaje conversación agente flujo tarea automatización informe total impuesto descuento "
    "the invoice customer order delivery payment balance account warehouse supplier contract",
)


def tree_digest(path: Path) -> str:
    """sha256 over every file's relative path, mode and content (and every symlink's target), sorted."""
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        digest.update(f"{p.relative_to(path)}\0{st.st_mode:o}\0".encode())
        if p.is_symlink():
            digest.update(os.readlink(p).encode())
        elif p.is_file():
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def generate_files(root: Path, scale: float, rng: random.Random) -> dict[str, int]:
    """Attachments (incompressible), documents (text, many small files) and logs (large text files)."""
    pool = " ".join(rng.choice(WORDS) for _ in range(400_000)).encode()  # ~3 MiB of text to cut from
    attachments, documents, logs = root / "attachments", root / "documents", root / "logs"
    for d in (attachments, documents, logs):
        d.mkdir(parents=True)
    counts = {"attachments": int(120 * scale), "documents": int(40_000 * scale), "logs": int(8 * scale)}
    for i in range(counts["attachments"]):
        (attachments / f"scan-{i:05d}.pdf").write_bytes(os.urandom(2 * MiB))
    for i in range(counts["documents"]):
        sub = documents / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir()
        start, length = rng.randrange(len(pool) - 30_000), rng.randrange(4_000, 24_000)
        (sub / f"doc-{i:06d}.txt").write_bytes(f"documento {i}\n".encode() + pool[start : start + length])
    for i in range(counts["logs"]):
        with open(logs / f"app-{i}.log", "wb") as f:
            for _ in range(16):
                start = rng.randrange(len(pool) - MiB)
                f.write(pool[start : start + MiB])
    return counts


def fill_databases(pg: Postgres, maria: MariaDB, scale: float) -> None:
    rows = int(1_000_000 * scale)
    pg.create_database("chatwoot")
    pg.sql(
        "chatwoot",
        f"""
        CREATE TABLE messages (id bigserial PRIMARY KEY, conversation int, content text, created timestamptz);
        INSERT INTO messages (conversation, content, created)
          SELECT g % 5000, 'mensaje ' || g || ' ' || md5(g::text) || ' ' || repeat(md5((g * 7)::text), 2),
                 '2026-01-01'::timestamptz + g * interval '1 second'
          FROM generate_series(1, {rows}) g;
        """,
    )
    maria.sql(
        f"""
        CREATE DATABASE erp CHARACTER SET utf8mb4;
        CREATE TABLE erp.items (id INT PRIMARY KEY, title VARCHAR(200), body TEXT, price DECIMAL(12, 2))
          ENGINE=InnoDB;
        INSERT INTO erp.items SELECT seq, CONCAT('Artículo ', seq), REPEAT(MD5(seq), 3), seq * 0.25
          FROM erp.seq_1_to_{rows};
        """
    )


def change_one_percent(storage: Path, pg: Postgres, maria: MariaDB, rng: random.Random, target: int) -> int:
    """Rewrite 1% of the documents and attachments (at least `target` bytes in all), append to a log,
    update 1% of the rows; the bytes of files touched."""
    documents = sorted((storage / "documents").rglob("*.txt"))
    touched = 0
    for path in rng.sample(documents, max(1, len(documents) // 100)):
        data = os.urandom(8) + path.read_bytes()[8:]
        path.write_bytes(data)
        touched += len(data)
    attachments = sorted((storage / "attachments").iterdir())
    rng.shuffle(attachments)
    for path in attachments:
        if touched >= target:
            break
        path.write_bytes(os.urandom(2 * MiB))
        touched += 2 * MiB
    with open(sorted((storage / "logs").iterdir())[0], "ab") as f:
        f.write(b"nueva linea de log\n" * 50_000)
    pg.sql("chatwoot", "UPDATE messages SET content = content || ' editado' WHERE id % 100 = 0")
    maria.sql("UPDATE erp.items SET price = price + 1 WHERE id % 100 = 0")
    return touched


def vh(home: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [PYTHON, str(SCRIPT), "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"vh-backup {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def seconds(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"no {pattern!r} in:\n{text}")
    return float(m.group(1))


S3_KEYS = ("bench-access-key", "bench-secret-key-0123456789")


def start_seaweedfs(weed: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """One SeaweedFS process (master, volume, filer and S3 gateway) bound to 127.0.0.1; the S3 endpoint."""
    data = root / "seaweedfs"
    data.mkdir()
    config = root / "s3.json"
    identity = {"name": "bench", "credentials": [{"accessKey": S3_KEYS[0], "secretKey": S3_KEYS[1]}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    ports = [free_port() for _ in range(4)]
    argv = [
        weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports[0]}", f"-volume.port={ports[1]}", "-filer", f"-filer.port={ports[2]}",
        "-s3", f"-s3.port={ports[3]}", f"-s3.config={config}", "-volume.max=0",
    ]  # fmt: skip
    with open(root / "seaweedfs.log", "wb") as log:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports[3]}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/", timeout=2):
                break
        except urllib.error.HTTPError:  # any answer (403 without a signature): the gateway is up
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log_tail = (root / "seaweedfs.log").read_text()[-2000:]
                raise SystemExit(f"SeaweedFS did not start: {log_tail}") from None
            time.sleep(0.5)
    return server, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="data set size factor (1.0: about 1.2 GiB)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--restic", default="restic", help="the restic binary (default: Debian's)")
    parser.add_argument("--weed", help="SeaweedFS binary: the repository is S3 on it, on loopback")
    parser.add_argument("--limit-upload", type=int, help="restic --limit-upload, KiB/s (6250 = 50 Mbit/s)")
    args = parser.parse_args()
    weed: subprocess.Popen[bytes] | None = None
    rng = random.Random(6)
    work = Path(tempfile.mkdtemp(prefix="vh-backup-bench-", dir="/tmp"))
    pg, maria = Postgres(), MariaDB()
    try:
        pg.start()
        maria.start()
        home, repo, storage = work / "home", work / "repo", work / "data" / "chat" / "storage"
        # restic as vh-backup runs it, with the upload limit as restic's own global option.
        restic_bin = shutil.which(args.restic) or args.restic
        wrapper = work / "restic"
        limit = f" --limit-upload {args.limit_upload}" if args.limit_upload else ""
        wrapper.write_text(f'#!/bin/sh\nexec {restic_bin}{limit} "$@"\n')
        wrapper.chmod(0o755)
        keys = ""
        location_of = {"main": str(repo), "files": str(work / "repo-files")}
        if args.weed:
            weed, endpoint = start_seaweedfs(args.weed, work)
            location_of = {k: f"s3:{endpoint}/bench-{k}" for k in location_of}
            keys = f"AWS_ACCESS_KEY_ID={S3_KEYS[0]}\nAWS_SECRET_ACCESS_KEY={S3_KEYS[1]}\n"
        home.mkdir(mode=0o700)
        storage.mkdir(parents=True)
        t = time.monotonic()
        counts = generate_files(storage, args.scale, rng)
        fill_databases(pg, maria, args.scale)
        generated = time.monotonic() - t
        location = DataLocation("chat", "storage", str(storage), "bind")
        sources = backup.sources_manifest(
            [
                DatabaseDump("chat", "postgres", "-", "chatwoot", pg.user, "BENCH_DB_PASSWORD"),
                FileSet("chat", location),
                DatabaseDump("hub", "mariadb", "-", "erp", "root", "BENCH_DB_PASSWORD"),
            ]
        )
        for entry in sources["sources"]:
            entry.pop("container", None)
            if entry["kind"] == "database":
                entry["connect"] = (pg if entry["engine"] == "postgres" else maria).connect
        config = BackupConfig.model_validate({"repository": str(repo)})
        settings = backup.settings("bench", config, "restic/restic:0.19.1") | {
            "runtime": "local",
            "restic": str(wrapper),
        }
        (home / "settings.json").write_text(json.dumps(settings))
        (home / "sources.json").write_text(json.dumps(sources))
        (home / "restic.env").write_text(
            f"RESTIC_REPOSITORY={location_of['main']}\nRESTIC_PASSWORD=bench-repository-password\n{keys}"
        )
        (home / "restic.env").chmod(0o600)
        env = {**os.environ, "PATH": pg.tool_path(), "BENCH_DB_PASSWORD": PASSWORD}

        vh(home, env, "init")
        first, out1 = vh(home, env, "run", "--reason", "manual")
        dumps = seconds(r"dumps done: \d+ in ([\d.]+) s", out1)  # they run together: their wall time
        dump_mib = sum(float(x) for x in re.findall(r"dumped \S+: ([\d.]+) MiB", out1))
        files_bytes = size_of(storage)
        data_bytes = files_bytes + int(dump_mib * MiB)
        unchanged, out2 = vh(home, env, "run", "--reason", "manual")
        # restic's fixed cost per invocation (opening the repository: the key's scrypt derivation, which
        # `restic init` calibrates to about half a second, and the index), the floor of any run.
        opened = []
        for _ in range(3):
            t = time.monotonic()
            subprocess.run(
                [restic_bin, "--no-lock", "cat", "config"],
                env={
                    **env,
                    "RESTIC_REPOSITORY": location_of["main"],
                    "RESTIC_PASSWORD": "bench-repository-password",
                    "AWS_ACCESS_KEY_ID": S3_KEYS[0],
                    "AWS_SECRET_ACCESS_KEY": S3_KEYS[1],
                },
                capture_output=True,
                check=True,
            )
            opened.append(time.monotonic() - t)
        restic_open = min(opened)
        unchanged_dumps = seconds(r"dumps done: \d+ in ([\d.]+) s", out2)
        # The same file tree alone, in a repository of its own: restic's incremental run without the dumps
        # (which every run must take afresh, and which restic then reads afresh).
        files_home = work / "home-files"
        files_home.mkdir(mode=0o700)
        for name in ("settings.json", "restic.env"):
            shutil.copy2(home / name, files_home / name)
        (files_home / "restic.env").write_text(
            f"RESTIC_REPOSITORY={location_of['files']}\nRESTIC_PASSWORD=bench-repository-password\n{keys}"
        )
        only_files = {"format": 1, "sources": [s for s in sources["sources"] if s["kind"] == "files"]}
        (files_home / "sources.json").write_text(json.dumps(only_files))
        vh(files_home, env, "init")
        files_first, _ = vh(files_home, env, "run", "--reason", "manual")
        files_unchanged, _ = vh(files_home, env, "run", "--reason", "manual")
        touched = change_one_percent(storage, pg, maria, rng, data_bytes // 100)
        changed, out3 = vh(home, env, "run", "--reason", "manual")

        copy = work / "cp-copy"
        t = time.monotonic()
        subprocess.run(["cp", "-a", str(storage), str(copy)], check=True)
        cp_seconds = time.monotonic() - t
        shutil.rmtree(copy)
        before_restore = tree_digest(storage)  # what the latest snapshot holds (taken after the change)
        restore_total, out4 = vh(home, env, "restore", "latest", "--yes")
        identical = tree_digest(storage) == before_restore
        restored_mib = seconds(r"restored ([\d.]+) MiB from the repository", out4)
        restic_restore = seconds(r"restored [\d.]+ MiB from the repository in ([\d.]+) s", out4)
        repo_bytes = size_of(work / "seaweedfs") if args.weed else size_of(repo)  # S3: the store's files

        snap = [seconds(r"snapshot \w+ saved \([^)]*\) in ([\d.]+) s", o) for o in (out1, out2, out3)]
        cp_rate = files_bytes / MiB / cp_seconds
        restore_rate = restored_mib / restic_restore
        results: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "restic": subprocess.run([restic_bin, "version"], capture_output=True, text=True).stdout.strip(),
            "repository": "S3 on SeaweedFS (loopback)" if args.weed else "local directory",
            "limit_upload_kib_s": args.limit_upload,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "scale": args.scale,
            "files": counts,
            "generated_seconds": round(generated, 1),
            "data_mib": round(data_bytes / MiB, 1),
            "files_mib": round(files_bytes / MiB, 1),
            "dumps_mib": round(dump_mib, 1),
            "first_backup_s": round(first, 1),
            "first_dumps_s": round(dumps, 1),
            "first_snapshot_s": snap[0],
            "unchanged_rerun_s": round(unchanged, 1),
            "unchanged_snapshot_s": snap[1],
            "unchanged_ratio": round(unchanged / first, 3),
            "unchanged_snapshot_ratio": round(snap[1] / snap[0], 3),
            "unchanged_dumps_s": unchanged_dumps,
            "restic_open_s": round(restic_open, 2),
            "files_only_first_s": round(files_first, 1),
            "files_only_unchanged_s": round(files_unchanged, 1),
            "files_only_unchanged_ratio": round(files_unchanged / files_first, 3),
            "changed_mib": round(touched / MiB, 1),
            "changed_rerun_s": round(changed, 1),
            "changed_snapshot_s": snap[2],
            "restore_total_s": round(restore_total, 1),
            "restore_restic_s": restic_restore,
            "restore_mib": restored_mib,
            "restore_mib_per_s": round(restore_rate, 1),
            "restore_byte_identical": identical,
            "cp_s": round(cp_seconds, 1),
            "cp_mib_per_s": round(cp_rate, 1),
            "restore_vs_cp": round(restore_rate / cp_rate, 3),
            "repository_mib": round(repo_bytes / MiB, 1),
            "repository_vs_data": round(repo_bytes / data_bytes, 3),
        }
        r = results
        rows = [
            (
                "data set",
                f"{r['data_mib']:.0f} MiB ({r['files_mib']:.0f} files + {r['dumps_mib']:.0f} dumps)",
            ),
            ("first backup", f"{first:.1f} s (dumps {dumps:.1f} s, snapshot {snap[0]:.1f} s)"),
            (
                "unchanged re-run",
                f"{unchanged:.1f} s = {r['unchanged_ratio']:.0%} of the first; target <= 10%",
            ),
            ("  its dumps", f"{unchanged_dumps:.1f} s = {unchanged_dumps / first:.0%} of the first"),
            ("  its snapshot alone", f"{snap[1]:.1f} s = {r['unchanged_snapshot_ratio']:.0%} of the first"),
            ("  restic opening the repo", f"{restic_open:.2f} s = {restic_open / first:.0%} of the first"),
            (
                "  the file tree alone",
                f"{files_unchanged:.1f} s = {r['files_only_unchanged_ratio']:.0%} of its first"
                f" ({files_first:.1f} s)",
            ),
            (
                "re-run after 1% change",
                f"{changed:.1f} s (snapshot {snap[2]:.1f} s), {r['changed_mib']:.0f} MiB",
            ),
            (
                "restore (restic)",
                f"{restored_mib:.0f} MiB in {restic_restore:.1f} s = {restore_rate:.0f} MiB/s",
            ),
            ("cp -a of the tree", f"{r['files_mib']:.0f} MiB in {cp_seconds:.1f} s = {cp_rate:.0f} MiB/s"),
            ("restore vs cp", f"{r['restore_vs_cp']:.0%}; target >= 50%"),
            ("full restore with imports", f"{restore_total:.1f} s"),
            ("restored tree byte-identical", "yes" if identical else "NO"),
            (
                "repository / data",
                f"{r['repository_mib']:.0f} / {r['data_mib']:.0f} MiB = {r['repository_vs_data']:.0%}",
            ),
        ]
        rows.insert(
            0, ("restic, repository", f"{r['restic']}; {r['repository']}, upload limit {limit or 'none'}")
        )
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"backup-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    finally:
        pg.stop()
        maria.stop()
        if weed is not None:
            weed.terminate()
            weed.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
