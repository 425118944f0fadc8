"""The operator's documents: what they tell to paste works as pasted.

The ERPNext restore block of docs/backup-restore.md runs here against a stand-in `docker` that answers the
backup listing as the backend container would (bench backup's file names: `<time>-<site with dots as
underscores>-database.sql.gz`, `-files.tar`, `-private-files.tar`); every bash block the guide and the
restore page show is shellcheck-clean; stack names in commands have the stack files' case.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "operator-guide.md", ROOT / "docs" / "backup-restore.md"]
STACKS = {p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")}


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"^ *```bash\n(.*?)^ *```", path.read_text(), flags=re.S | re.M)


def restore_block() -> str:
    (block,) = [b for b in bash_blocks(ROOT / "docs" / "backup-restore.md") if "bench --site" in b]
    return block


def test_the_erpnext_restore_block_runs_as_pasted(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    stamp = (
        "/home/frappe/frappe-bench/sites/hub.clientea.com/private/backups/20261204_030001-hub_clientea_com"
    )
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {log}\n'
        # `sh -c "ls -1t ... | head -n 1"` in the backend: the newest dump.
        f'case "$*" in *"ls -1t"*) echo "{stamp}-database.sql.gz";; esac\n'
    )
    docker.chmod(0o755)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", restore_block()],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    listing, restore = log.read_text().splitlines()
    assert listing == (
        "exec clientea-hub-backend sh -c ls -1t /home/frappe/frappe-bench/sites/hub.clientea.com/private/"
        "backups/*-database.sql.gz | head -n 1"
    )
    assert restore == (
        f"exec -it clientea-hub-backend bench --site hub.clientea.com restore {stamp}-database.sql.gz "
        f"--with-public-files {stamp}-files.tar --with-private-files {stamp}-private-files.tar "
        "--db-root-username root"
    )
    assert f"restoring {stamp}-database.sql.gz" in result.stdout


@pytest.mark.parametrize("doc", DOCS[1:], ids=lambda p: p.name)
def test_the_new_bash_blocks_are_shellcheck_clean(doc: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "tools/run-tests.sh installs shellcheck"
    blocks = [
        b for b in bash_blocks(doc) if "umask 077" in b or "bench --site" in b or "PULUMI_BACKEND_URL=" in b
    ]
    assert blocks
    for block in blocks:
        result = subprocess.run(
            [shellcheck, "-s", "bash", "-e", "SC2034", "-"],
            input=block,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout


def test_stack_names_in_commands_have_the_stack_files_case() -> None:
    # clienteF is the guide's new client (section 3); everything else names a stack file of this repo.
    allowed = STACKS | {"clienteF", "clienteG"}
    for doc in DOCS:
        for name in re.findall(r"(?:--stack|-s|urn:pulumi:|deploy\.sh) ([A-Za-z][\w.-]*)", doc.read_text()):
            assert name in allowed or name.startswith("<"), f"{doc.name}: --stack {name}"
        for name in re.findall(r"urn:pulumi:([A-Za-z][\w.-]*)::", doc.read_text()):
            assert name in allowed, f"{doc.name}: urn:pulumi:{name}"


def test_the_guide_states_what_the_operators_machine_needs() -> None:
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    minimum = re.search(r'^requiredPulumiVersion: ">=(\S+)"$', (ROOT / "Pulumi.yaml").read_text(), re.M)
    assert minimum and f"v{minimum[1]} or newer" in guide
    for needed in ("Docker CLI", "python3-venv", "uv", "umask 077", "pulumi stack export", "s3://"):
        assert needed in guide, needed
