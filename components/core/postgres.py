"""The one way to run a service's own PostgreSQL (Chat and Flow): hardened, healthy before use, dumped.

Each service gets its own server on its internal network (alias `postgres`), its data directory owned by
the image's `postgres` user, a TCP readiness check (the image's first-start server listens on the socket
only, so this waits for the real one), and a `pg_dump` registered for every backup run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_docker as docker

from components.core.container import Attach, Healthcheck
from components.core.deployment import DatabaseDump, Deployment
from components.core.storage import ServiceData

ALIAS = "postgres"
# Explicit, so that an image whose default moved (Postgres 18 does) still finds this data, or fails loudly.
PGDATA = "/var/lib/postgresql/data"
# The server's socket and lock file: world-writable with the sticky bit, as the images make them.
TMPFS = {
    "/var/run/postgresql": "rw,noexec,nosuid,nodev,mode=1777,size=8m",
    "/tmp": "rw,noexec,nosuid,nodev,size=64m",
}


def postgres(
    d: Deployment,
    *,
    parent: pulumi.Resource,
    service: str,
    image: str,
    user: str,
    data: ServiceData,
    data_dir: str,
    database: str,
    password: pulumi.Input[str],
    network: pulumi.Input[str],
    depends_on: Sequence[pulumi.Resource] = (),
) -> docker.Container:
    """`<client>-<service>-postgres`: one database `database` owned by the role of the same name.

    The password is a secret file read through POSTGRES_PASSWORD_FILE: the image's entrypoint reads it on
    every start, as the container's user, with `$(< file)` (docker-library/postgres docker-entrypoint.sh,
    file_env, 16/alpine3.23 and 16/bookworm at 6edb0a8), so the file is owned by `user` (70 on Alpine, 999
    on Debian images such as pgvector's)."""
    name = f"{d.config.client}-{service}-postgres"
    password_file = d.secret_file(
        parent=parent, service=service, name="postgres-password", value=password, owner=user
    )
    d.backup_sources.append(DatabaseDump(service, "postgres", name, database, database, password_file.path))
    return d.container(
        parent=parent,
        service=service,
        role="postgres",
        image=image,
        user=user,
        envs={
            "POSTGRES_USER": database,
            "POSTGRES_DB": database,
            "POSTGRES_PASSWORD_FILE": password_file.path,
            "PGDATA": PGDATA,
        },
        mounts=[data.mount(data_dir, PGDATA)],
        secret_files=[password_file],
        tmpfs=TMPFS,
        networks=[Attach(network, aliases=(ALIAS,))],
        healthcheck=Healthcheck(
            ["pg_isready", "-h", "127.0.0.1", "-U", database, "-d", database], interval="10s"
        ),
        wait_healthy=True,
        depends_on=list(depends_on),
    )
