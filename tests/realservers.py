"""Throwaway PostgreSQL and MariaDB servers from Debian's packages, on loopback, for the backup tests and
the benchmark. Each runs as an unprivileged user (both refuse root) in its own temporary directory, with
password authentication, and is stopped (and its directory removed) by `stop()`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
PASSWORD = "loopback-only-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(user: str, argv: Sequence[str]) -> list[str]:
    """Run as `user` when we are root (the servers refuse root); as ourselves otherwise. setpriv execs, so
    the process we start is the server itself (a signal to it reaches the server)."""
    if os.geteuid() != 0:
        return list(argv)
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


def _owned_dir(prefix: str, user: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o700)
    return path


def _checked(proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def _wait(check: Sequence[str], env: dict[str, str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


@dataclass
class Postgres:
    """A PostgreSQL cluster on 127.0.0.1 whose superuser `user` logs in with PASSWORD."""

    user: str = "vh"
    port: int = field(default_factory=free_port)
    directory: str = ""
    system_user: str = "postgres"

    @property
    def bin(self) -> str:
        if not PG_BIN:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        return PG_BIN[-1]

    @property
    def connect(self) -> list[str]:
        return ["--host=127.0.0.1", f"--port={self.port}"]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": PASSWORD}

    def start(self) -> Postgres:
        self.directory = _owned_dir("vh-pg-", self.system_user)
        data, pwfile = f"{self.directory}/data", f"{self.directory}/pw"
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(pwfile, self.system_user)
        initdb = [
            f"{self.bin}/initdb",
            "-D",
            data,
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
        ]
        subprocess.run(_as_user(self.system_user, [*initdb, "--no-sync"]), check=True, capture_output=True)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        subprocess.run(
            _as_user(
                self.system_user,
                [f"{self.bin}/pg_ctl", "-D", data, "-o", options, "-l", f"{data}.log", "-w", "start"],
            ),
            check=True,
            capture_output=True,
        )
        _wait([f"{self.bin}/pg_isready", *self.connect], self.env, "PostgreSQL")
        return self

    def stop(self) -> None:
        if self.directory:
            subprocess.run(
                _as_user(
                    self.system_user,
                    [f"{self.bin}/pg_ctl", "-D", f"{self.directory}/data", "-m", "fast", "stop"],
                ),
                capture_output=True,
                check=False,
            )
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def sql(self, database: str, statement: str) -> str:
        proc = subprocess.run(
            [f"{self.bin}/psql", *self.connect, f"--username={self.user}", f"--dbname={database}",
             "--no-psqlrc", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1", "--command", statement],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return _checked(proc)

    def create_database(self, name: str) -> None:
        self.sql("postgres", f'CREATE DATABASE "{name}"')

    def tool_path(self) -> str:
        """A PATH on which pg_dump, pg_restore, dropdb and createdb are this server's own version."""
        return f"{self.bin}:{os.environ.get('PATH', '')}"


@dataclass
class MariaDB:
    """A MariaDB server on 127.0.0.1 whose `root` logs in with PASSWORD over TCP."""

    port: int = field(default_factory=free_port)
    directory: str = ""
    system_user: str = "mysql"
    process: subprocess.Popen[bytes] | None = None

    @property
    def connect(self) -> list[str]:
        return ["--host=127.0.0.1", f"--port={self.port}", "--protocol=TCP"]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MYSQL_PWD": PASSWORD}

    def start(self) -> MariaDB:
        self.directory = _owned_dir("vh-maria-", self.system_user)
        data, sock = f"{self.directory}/data", f"{self.directory}/mysqld.sock"
        install = ["mariadb-install-db", f"--datadir={data}", "--auth-root-authentication-method=normal"]
        install += ["--skip-test-db", "--skip-name-resolve"]
        subprocess.run(_as_user(self.system_user, install), check=True, capture_output=True)
        server = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={self.port}"]
        server += [
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            f"--pid-file={self.directory}/mysqld.pid",
        ]
        server += ["--innodb-flush-log-at-trx-commit=0", f"--log-error={self.directory}/error.log"]
        self.process = subprocess.Popen(
            _as_user(self.system_user, server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        root = ["mariadb", "--no-defaults", f"--socket={sock}", "--user=root"]
        _wait([*root, "-e", "SELECT 1"], dict(os.environ), "MariaDB")
        grant = (
            f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
            "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
        )
        subprocess.run([*root, "-e", grant], check=True, capture_output=True)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def sql(self, statement: str, database: str | None = None) -> str:
        proc = subprocess.run(
            ["mariadb", "--no-defaults", *self.connect, "--user=root", "--batch", "--skip-column-names",
             *([database] if database else []), "-e", statement],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return _checked(proc)
