"""The Hub's host steps after its containers: the site, its company, its public URL and its migrations.

Each runs through pulumi-command on the Docker host, inside the backend container (`docker exec`), and is
idempotent and triggered on purpose (see component.py's docstring for the order).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.core.deployment import Deployment
from components.core.scripts import PROGRESS, script

BENCH_DIR = "/home/frappe/frappe-bench"
SITES = f"{BENCH_DIR}/sites"
PYTHON = f"{BENCH_DIR}/env/bin/python"
# `bench <frappe command>` is this, run from sites/ (frappe/bench bench/cli.py frappe_cmd, v5.22.3); the
# bench CLI itself would stop at is_bench_directory() (bench/utils/__init__.py paths_in_bench includes
# config/pids, under the containers' empty config/ tmpfs).
BENCH = ("env", "-C", SITES, PYTHON, "-m", "frappe.utils.bench_helper", "frappe")


# Shell functions for the host steps: `frappe_run WHAT COMMAND...` shows Frappe's last lines on failure.
STEP_HELPERS = script(__name__, "step.sh")
# What every Hub host step starts with: the progress lines, then the Frappe helpers that use them.
STEP_PRELUDE = PROGRESS + STEP_HELPERS

# `bench new-site ...` inside the backend. Both passwords reach this process through `docker exec -e` from
# the step's environment; the command line is built in memory (sys.argv), so neither appears on any
# process's command line on the host or in the container, and they are removed from the environment
# before Frappe starts the database clients it runs.
NEW_SITE = script(__name__, "new_site.py")

# The setup wizard's own server call, with the answers from the stack. Names are resolved in the site
# (Frappe's Country by ISO code, its Language by code) and the fiscal year is the current one.
COMPANY = script(__name__, "company.py")
# `bench migrate` in maintenance mode with the scheduler paused (__BENCH_IN_BACKEND__: the backend's bench).
MIGRATE = script(__name__, "migrate.sh")


def site_steps(
    d: Deployment,
    *,
    parent: pulumi.Resource,
    name: str,
    site: str,
    backend: str,
    company: Mapping[str, Any],
    passwords: Mapping[str, pulumi.Input[str]],
    public_url: pulumi.Input[str],
    erpnext_ref: str,
    site_after: Sequence[pulumi.Resource],
    company_after: Sequence[pulumi.Resource],
    migrate_after: Sequence[pulumi.Resource],
) -> pulumi.Resource:
    """hub-site, hub-company, hub-url and hub-migrate (returned) for `site` in the container `backend`."""
    bench_in_backend = f"docker exec {shlex.quote(backend)} {shlex.join(BENCH)}"
    site_env = {"SITE_NAME": site}
    new_site = d.run(
        f"{name}-site",
        STEP_PRELUDE
        + f"""\
backend={shlex.quote(backend)}
if docker exec "$backend" test -f {SITES}/"$SITE_NAME"/site_config.json; then
  apps=$({bench_in_backend} --site "$SITE_NAME" list-apps 2>/dev/null || true)
  if grep -qw erpnext <<<"$apps"; then
    echo "site $SITE_NAME exists with ERPNext installed: left as it is"
    exit 0
  fi
  echo "site $SITE_NAME exists without ERPNext (an earlier creation failed?). Look at it, remove it with" >&2
  echo "bench drop-site if it holds nothing, then run pulumi up again." >&2
  exit 1
fi
frappe_run "bench new-site $SITE_NAME" \\
  docker exec -i -e SITE_NAME -e DB_ROOT_PASSWORD -e ADMIN_PASSWORD -w {SITES} "$backend" {PYTHON} - <<'PY'
{NEW_SITE}PY
""",
        parent=parent,
        env=site_env,
        secret_env=dict(passwords),
        # Minutes of bench new-site: its stderr streams (only progress lines and the masked failure tail).
        progress=True,
        # Once per site name. Another name creates that site; the old one stays, data and all.
        triggers=[site],
        depends_on=list(site_after),
    )

    company_setup = d.run(
        f"{name}-company",
        STEP_PRELUDE
        + f"""\
frappe_run "ERPNext's setup wizard" \\
  docker exec -i -e HUB_COMPANY -w {SITES} {shlex.quote(backend)} {PYTHON} - <<'PY'
{COMPANY}PY
frappe_run enable-scheduler {bench_in_backend} --site "$SITE_NAME" enable-scheduler
frappe_run "scheduler resume" {bench_in_backend} --site "$SITE_NAME" scheduler resume
""",
        parent=parent,
        env={**site_env, "HUB_COMPANY": json.dumps(company, sort_keys=True)},
        # With the site: the wizard seeds a new site once; later company changes are made in ERPNext.
        triggers=[site],
        depends_on=[new_site, *company_after],
    )

    d.run(
        f"{name}-url",
        f'{bench_in_backend} --site "$SITE_NAME" set-config host_name "$PUBLIC_URL"\n',
        parent=parent,
        env={**site_env, "PUBLIC_URL": public_url},
        triggers=[site, public_url],
        depends_on=[new_site],
    )

    return d.run(
        f"{name}-migrate",
        STEP_PRELUDE + MIGRATE.replace("__BENCH_IN_BACKEND__", bench_in_backend),
        parent=parent,
        env=site_env,
        # Exactly once per ERPNext image: a version change replaces this step (and runs it) after the
        # pre-update backup and the new containers; an unchanged version never runs it again.
        triggers=[erpnext_ref],
        depends_on=[company_setup, *migrate_after],
    )
