"""A private, throwaway Docker engine for tests and the lab, and small images built from Debian packages.

No registry is reachable from these machines, so every image a real-engine test runs is built here:
`debootstrap` makes a Debian rootfs (cached by suite and package list under `~/.cache/versatilehub-lab`),
and `docker import` turns it into an image. The engine is Debian's `docker.io` dockerd, started as root
with everything under one temporary folder, so several engines (several test runs) can coexist:

- its own `--data-root`, `--exec-root`, socket and pid file;
- `--bridge none`: no default `docker0` bridge to fight over; tests create their own networks;
- `--iptables=false`: two daemons would otherwise rewrite each other's DOCKER chains. Consequence:
  `internal: true` networks are not isolated by firewall rules here; published ports still work through
  docker-proxy. Tests must not rely on iptables isolation;
- a default address pool chosen per engine (10.<a>.<b>.0/24 networks out of a /16 picked from the pid).

Used as a context manager (`with Engine() as engine: engine.docker("ps")`) or through the pytest fixture
`docker_engine` (session-scoped; tests/conftest.py exposes it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
# Debian's client matches Debian's daemon (20.10, API 1.41); a newer client on PATH may not.
DOCKER_CLI = "/usr/bin/docker"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("VH_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("VH_LAB_CACHE", Path.home() / ".cache" / "versatilehub-lab"))
# What the small test images carry: an init for PID 1, a shell and wget for health checks, certificates.
BASE_PACKAGES = ("ca-certificates", "tini", "wget", "procps")


class EngineError(RuntimeError):
    pass


def available() -> str | None:
    """None when a private engine can start here; otherwise the reason (what to install or how to run)."""
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    for binary in (DOCKERD, DOCKER_CLI, "/usr/sbin/debootstrap"):
        if not Path(binary).exists():
            return f"{binary} is missing (apt-get install docker.io debootstrap)"
    return None


class Engine:
    """One dockerd under a temporary folder. `stop()` ends it and removes everything it made."""

    def __init__(
        self, root: Path | None = None, start_timeout: float = 60.0, daemon_args: Sequence[str] = ()
    ):
        self.root = Path(root or tempfile.mkdtemp(prefix="vh-engine-"))
        # Extra dockerd options (`--config-file=...` for a daemon.json a test writes), after the defaults.
        self.daemon_args = tuple(daemon_args)
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Engine:
        reason = available()
        if reason:
            raise EngineError(reason)
        pool = 16 + os.getpid() % 200  # 10.16.0.0/16 .. 10.215.0.0/16: unlikely to clash between runs
        log = (self.root / "dockerd.log").open("wb")
        self._process = subprocess.Popen(
            [
                DOCKERD,
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'exec'}",
                f"--host={self.host}",
                f"--pidfile={self.root / 'docker.pid'}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--default-address-pool=base=10.{pool}.0.0/16,size=24",
                "--storage-driver=overlay2",
                "--log-level=warn",
                *self.daemon_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EngineError(f"dockerd exited with {self._process.returncode}: {self.log_tail()}")
            if (
                self.socket.exists()
                and self.run("version", "--format", "{{.Server.Version}}").returncode == 0
            ):
                return self
            time.sleep(0.2)
        self.stop()
        raise EngineError(f"dockerd did not answer within {self.start_timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.run("ps", "-aq").stdout.split()
                if ids:
                    self.run("rm", "-f", *ids)
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        # overlay and shm mounts left under the data/exec roots would make rmtree fail.
        with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if str(self.root) in line.split()[1]]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the CLI ---------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for any docker client (CLI, http over the socket) to talk to this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER_CLI, *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def docker(self, *args: str, timeout: float = 300) -> str:
        """Run a docker CLI command against this engine; its stdout, or EngineError with its stderr."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise EngineError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref).returncode == 0

    def import_rootfs(self, tarball: Path, ref: str, changes: Sequence[str] = ()) -> str:
        """`docker import` a rootfs tarball as `ref` (with Dockerfile-style `changes`: CMD, ENV, USER...)."""
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        return self.docker(*args, str(tarball), ref).strip()


# -- images from Debian packages -----------------------------------------------------------------------
def debian_rootfs(packages: Sequence[str] = BASE_PACKAGES, suite: str = DEBIAN_SUITE) -> Path:
    """A tarball of a minimal Debian rootfs with `packages`, built once and cached by suite + packages."""
    wanted = sorted(set(packages))
    key = hashlib.sha256(f"{suite} {' '.join(wanted)}".encode()).hexdigest()[:16]
    tarball = CACHE / f"rootfs-{suite}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vh-rootfs-", dir=CACHE) as work:
        target = Path(work) / "root"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(wanted)}",
                suite,
                str(target),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(f"debootstrap failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        # Package lists and caches only make the image bigger.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(target / leftover, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(target), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


def base_image(
    engine: Engine,
    ref: str = "versatilehub-lab/debian:bookworm",
    packages: Sequence[str] = BASE_PACKAGES,
    changes: Sequence[str] = ('CMD ["/bin/sh"]',),
) -> str:
    """Make sure `engine` has a small Debian image `ref` with `packages` (built from cache when possible)."""
    if not engine.has_image(ref):
        engine.import_rootfs(debian_rootfs(packages), ref, changes)
    return ref


@contextlib.contextmanager
def engine_session() -> Iterator[Engine]:
    with Engine() as engine:
        yield engine
