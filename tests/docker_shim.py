"""A stand-in for the docker CLI, for running vh-backup's docker runtime where there is no Docker daemon.

It does what vh-backup asks of Docker with local means and records every call:
- `docker run ... --volume SRC:DST:MODE ... IMAGE ARGS`: runs Debian's restic through what the image's
  entrypoint does (restic's docker/entrypoint.sh at v0.19.1: nice -n $NICE, ionice -c $IONICE_CLASS -n
  $IONICE_PRIORITY when the class is set), with ARGS (the invariant that lets it: every volume is mounted
  at its own path, SRC == DST) as a container
  runs it: PID 1 of a PID namespace of its own, under the --hostname given, in a UTS namespace of its own
  (restic's locks record both). The one --entrypoint accepted is vh-backup's B2 wrapper
  (`--entrypoint /bin/sh IMAGE -c SCRIPT FILE ARGS`, SCRIPT ending in `exec /entrypoint.sh "$@"`): SCRIPT
  runs there with /entrypoint.sh standing for the stand-in's own entrypoint (the same nice/ionice/restic);
- `docker exec [-i] [--user U] [--env NAME=VALUE]... NAME ARGV...`: runs ARGV here, with the container's
  environment from the state file (e.g. POSTGRES_PASSWORD, and PGHOST/PGPORT pointing at the test server)
  and the --env entries; --user is recorded, not applied. With DOCKER_SHIM_DETACHED_EXEC=1 it behaves like
  dockerd instead of exec'ing: ARGV runs in a session of its own (a signal to the CLI does not reach it), the
  shim waits for it and exits with its status (ARGV writes to the shim's stdout itself), and a killed shim
  leaves ARGV running, as a killed `docker exec` leaves its process running in the container;
- `docker run --detach ... IMAGE` of a postgres or mariadb image: a real server (tests/realservers.py) that
  `docker exec` reaches through the container's environment; `docker rm --force` stops it;
- `docker ps`, `container inspect`, `volume inspect`, `inspect --format {{.Config.Image}}`, `stop`,
  `start`, `restart`: from and to the state.

State: $DOCKER_SHIM_STATE/state.json {"containers": {name: {"labels": {}, "env": {}, "running": true}},
"volumes": {name: path}}; calls are appended to $DOCKER_SHIM_STATE/calls.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    state_dir = Path(os.environ["DOCKER_SHIM_STATE"])
    state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    with open(state_dir / "calls.jsonl", "a") as log:
        log.write(json.dumps(argv) + "\n")
    containers: dict[str, Any] = state["containers"]
    command = argv[0]
    if command == "run":
        with_value = {
            "--name",
            "--hostname",
            "--security-opt",
            "--cap-drop",
            "--cap-add",
            "--env",
            "--volume",
            "--network",
            "--entrypoint",
        }
        image_at = 1
        while argv[image_at].startswith("-"):
            if argv[image_at] not in with_value | {"--rm", "--detach"}:
                print(f"shim: unsupported docker run option {argv[image_at]}", file=sys.stderr)
                return 125
            image_at += 2 if argv[image_at] in with_value else 1
        if "--detach" in argv[:image_at]:
            return _server(state_dir, state, argv, image_at)
        for i, arg in enumerate(argv[:image_at]):
            if arg == "--volume":
                source, target, _ = argv[i + 1].split(":")
                if source != target:
                    print(f"shim: volume {argv[i + 1]} is not mounted at its own path", file=sys.stderr)
                    return 125
        hostname = argv[argv.index("--hostname") + 1] if "--hostname" in argv[:image_at] else "container"
        entrypoint = state_dir / "entrypoint.sh"  # restic's docker/entrypoint.sh at v0.19.1, restic from PATH
        written = entrypoint.with_name(f"entrypoint.{os.getpid()}")  # whole, for runs side by side
        written.write_text(
            '#!/bin/sh -e\nset -- restic "$@"\n'
            'if [ -n "${IONICE_CLASS}" ]; then\n'
            '\tset -- ionice -c "${IONICE_CLASS}" -n "${IONICE_PRIORITY:-4}" "$@"\nfi\n'
            'exec nice -n "${NICE:-0}" "$@"\n'
        )
        written.chmod(0o755)
        written.replace(entrypoint)
        command = [str(entrypoint), *argv[image_at + 1 :]]
        if "--entrypoint" in argv[:image_at]:
            given, rest = argv[argv.index("--entrypoint") + 1], argv[image_at + 1 :]
            tail = 'exec /entrypoint.sh "$@"'
            if given != "/bin/sh" or rest[:1] != ["-c"] or len(rest) < 3 or not rest[1].endswith(tail):
                print(f"shim: unsupported entrypoint {given} {' '.join(rest[:2])}", file=sys.stderr)
                return 125
            script = rest[1].removesuffix(tail) + f'exec {entrypoint} "$@"'
            command = ["sh", "-c", script, *rest[2:]]
        namespaces = ["unshare", "--pid", "--uts", "--fork", "--kill-child"]
        inside = 'hostname "$1" && shift && exec "$@"'
        os.execvp("unshare", [*namespaces, "sh", "-c", inside, "sh", hostname, *command])
    if command == "exec":
        i, extra = 1, {}
        while argv[i].startswith("-"):
            if argv[i] in ("--env", "-e"):
                key, value = argv[i + 1].split("=", 1)
                extra[key] = value
            i += 2 if argv[i] in ("--user", "-u", "--env", "-e") else 1
        name = argv[i]
        if name not in containers or not containers[name]["running"]:
            print(f"Error response from daemon: container {name} is not running", file=sys.stderr)
            return 1
        env = {**os.environ, **containers[name]["env"], **extra}
        if os.environ.get("DOCKER_SHIM_DETACHED_EXEC") == "1":
            env.pop("DOCKER_SHIM_DETACHED_EXEC")
            try:
                child = subprocess.Popen(argv[i + 1 :], env=env, start_new_session=True)
            except FileNotFoundError:
                print(f"OCI runtime exec failed: {argv[i + 1]}: not found", file=sys.stderr)
                return 127
            return child.wait()
        os.execvpe(argv[i + 1], argv[i + 1 :], env)
    if command == "ps":
        filters = [
            argv[i + 1].removeprefix("label=").split("=", 1) for i, a in enumerate(argv) if a == "--filter"
        ]
        for name, c in sorted(containers.items()):
            if all(c["labels"].get(key) == value for key, value in filters):
                print(name)
        return 0
    if command == "inspect" and argv[1] == "--format" and argv[2] == "{{.Config.Image}}":
        if argv[3] not in containers:
            print(f"Error: No such object: {argv[3]}", file=sys.stderr)
            return 1
        print(containers[argv[3]]["image"])
        return 0
    if command == "rm" and argv[1] == "--force":
        gone = containers.pop(argv[2], None)
        if gone and gone.get("server"):
            _stop_server(gone["server"])
        (state_dir / "state.json").write_text(json.dumps(state))
        return 0
    if command == "container" and argv[1] == "inspect":
        return 0 if argv[2] in containers else 1
    if command == "volume" and argv[1] == "inspect":
        print(state["volumes"][argv[-1]])
        return 0
    if command in ("stop", "start", "restart"):
        containers[argv[-1]]["running"] = command != "stop"
        (state_dir / "state.json").write_text(json.dumps(state))
        return 0
    print(f"shim: unsupported docker {' '.join(argv)}", file=sys.stderr)
    return 2


def _server(state_dir: Path, state: dict[str, Any], argv: list[str], image_at: int) -> int:
    """`docker run --detach --network none --env ... IMAGE` of a database image (the restore drill's
    throwaway server): a real server from tests/realservers.py, which `docker exec` then reaches over TCP
    (its port and password in the container's environment), stopped by `docker rm --force`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.realservers import PASSWORD, MariaDB, Postgres

    name, image = argv[argv.index("--name") + 1], argv[image_at]
    env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv[:image_at]) if a == "--env")
    if "postgres" in image:
        pg = Postgres(user=env.get("POSTGRES_USER", "postgres")).start()
        server = {"engine": "postgres", "directory": pg.directory, "port": pg.port, "user": pg.user}
        container_env = {"PGPORT": str(pg.port), "PGPASSWORD": PASSWORD}
    elif "mariadb" in image:
        maria = MariaDB().start()
        assert maria.process is not None
        server = {"engine": "mariadb", "directory": maria.directory, "pid": maria.process.pid}
        container_env = {"MYSQL_TCP_PORT": str(maria.port), "MYSQL_PWD": PASSWORD}
    else:
        print(f"shim: no server for image {image}", file=sys.stderr)
        return 125
    state["containers"][name] = {
        "labels": {}, "env": container_env, "running": True, "image": image, "server": server, "run": argv
    }  # fmt: skip
    (state_dir / "state.json").write_text(json.dumps(state))
    print(name)
    return 0


def _stop_server(server: dict[str, Any]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.realservers import Postgres

    if server["engine"] == "postgres":
        Postgres(user=server["user"], port=server["port"], directory=server["directory"]).stop()
        return
    try:
        os.kill(server["pid"], 15)
        for _ in range(300):  # until it is gone or a zombie (its parent, an earlier shim, is gone)
            os.kill(server["pid"], 0)
            if Path(f"/proc/{server['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.1)
    except (ProcessLookupError, FileNotFoundError):
        pass
    shutil.rmtree(server["directory"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
