"""tools/deploy.sh, the README's deploy command, run against recording stand-ins for pulumi, docker and uv.

The stand-ins answer as the real CLIs do where the script depends on it: `pulumi version` prints `v3.x.y`,
`pulumi stack select` of a missing stack fails with `error: no stack named '<name>' found`
(pulumi/pulumi pkg/backend/backenderr/backenderr.go), any other failure with its own error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "deploy.sh"
MINIMUM = re.search(r'^requiredPulumiVersion: ">=(\d+\.\d+\.\d+)"$', (ROOT / "Pulumi.yaml").read_text(), re.M)

FAKE_PULUMI = """#!/bin/sh
echo "pulumi $*" >> {log}
case "$1" in
  version) echo "${{FAKE_PULUMI_VERSION:-v3.272.0}}" ;;
  stack)
    if [ "$2" = select ]; then
      if [ -n "${{FAKE_SELECT_ERROR:-}}" ]; then echo "$FAKE_SELECT_ERROR" >&2; exit 255; fi
      [ -n "${{FAKE_STACK_EXISTS:-}}" ] && exit 0
      echo "error: no stack named '$3' found" >&2; exit 255
    fi ;;
  up) echo "uv=$(command -v uv) passphrase_file=$PULUMI_CONFIG_PASSPHRASE_FILE" > {env_log}
    [ -n "${{FAKE_UP_FAILS:-}}" ] && exit 255 ;;
esac
case "$*" in
  # A stack without outputs prints {{}} (pkg/cmd/pulumi/stack/stack_output.go: FprintJSON of the map).
  "stack output --stack "*" --json") cat "${{FAKE_OUTPUTS:-{empty}}}" ;;
  *--show-secrets*) echo "LEAKED-SECRET" ;;
esac
exit 0
"""

# python3 -m venv DIR makes DIR/bin/python, whose `-m pip install uv==X` makes a recording DIR/bin/uv.
FAKE_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> {log}
[ -n "${{FAKE_NO_VENV:-}}" ] && {{ echo "ensurepip is not available" >&2; exit 1; }}
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'EOS'
#!/bin/sh
echo "venv-python $*" >> {log}
dir=$(dirname "$0")
printf '#!/bin/sh\\necho "uv $*" >> {log}\\n' > "$dir/uv"
chmod 755 "$dir/uv"
EOS
chmod 755 "$3/bin/python"
"""


# The only real programs on the script's PATH: no real docker, pulumi, uv or python3 can answer instead.
SYSTEM_TOOLS = ("sh", "cat", "chmod", "dirname", "head", "ln", "mkdir", "sed", "sort", "stat", "tr")


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """`pulumi`, `docker` and `uv` that record how they were called; a private passphrase file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    system = tmp_path / "system"
    system.mkdir()
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (system / tool).symlink_to(found)
    log = tmp_path / "calls.log"
    scripts = {
        "pulumi": FAKE_PULUMI.format(
            log=log, env_log=tmp_path / "up-env.log", empty=tmp_path / "no-outputs.json"
        ),
        # `docker info` as tools/preflight.py asks it: a host that keeps what the stacks write.
        "docker": f'#!/bin/sh\necho "docker $*" >> {log}\n[ "$1" = info ] && echo '
        '"{\\"ServerVersion\\":\\"28.5.1\\",\\"SwapLimit\\":${FAKE_SWAP_LIMIT:-true}}"\nexit 0\n',
        # `uv run --frozen --no-sync python ARGS` runs ARGS with this interpreter, as uv would with .venv's.
        "uv": f'#!/bin/sh\necho "uv $*" >> {log}\n'
        f'[ "$1" = run ] && {{ shift 4; exec {sys.executable} "$@"; }}\nexit 0\n',
    }
    for tool, text in scripts.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "no-outputs.json").write_text("{}\n")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    return bin_dir


def run(
    fake_bin: Path, *args: str, cwd: Path = ROOT, passphrase: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{fake_bin}:{fake_bin.parent / 'system'}", "HOME": str(fake_bin.parent)}
    if passphrase:
        base["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(fake_bin.parent / "passphrase")
    return subprocess.run(
        [shutil.which("bash") or "bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=False,
        cwd=cwd,
    )


def calls(fake_bin: Path) -> list[str]:
    log = fake_bin.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def up_env(fake_bin: Path) -> str:
    return (fake_bin.parent / "up-env.log").read_text().strip()


def test_first_deploy_creates_the_stack_on_the_local_backend_then_runs_up_with_the_policy_pack(
    fake_bin: Path,
) -> None:
    result = run(fake_bin, "clienteA", "--yes")
    assert result.returncode == 0, result.stderr
    backend = f"file://{fake_bin.parent}/.pulumi-versatilehub"
    assert calls(fake_bin) == [
        "pulumi version",
        "uv sync --locked --quiet --compile-bytecode",
        "uv run --frozen --no-sync python -m tools.preflight clienteA",
        "docker info --format {{json .}}",
        f"pulumi login {backend}",
        "pulumi stack select clienteA",
        "pulumi stack init clienteA --secrets-provider passphrase",
        "pulumi up --diff --stack clienteA --policy-pack policies --yes",
        "uv run --frozen --no-sync python -m tools.credentials clienteA",
        "pulumi stack output --stack clienteA --json",
    ]
    assert (fake_bin.parent / ".pulumi-versatilehub").is_dir()
    assert not (ROOT / "~").exists()


def test_an_existing_stack_is_selected_not_created(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA", FAKE_STACK_EXISTS="1")
    assert result.returncode == 0, result.stderr
    assert not any(call.startswith("pulumi stack init") for call in calls(fake_bin))


def test_a_select_that_fails_for_another_reason_is_reported_and_nothing_is_created(fake_bin: Path) -> None:
    error = "error: could not read the state: open /srv/state/.pulumi/stacks/versatilehub: permission denied"
    result = run(fake_bin, "clienteA", FAKE_SELECT_ERROR=error)
    assert result.returncode == 2
    assert error in result.stderr
    assert "pulumi stack select clienteA failed" in result.stderr
    assert "not because the stack is missing" in result.stderr
    assert not any(c.startswith(("pulumi stack init", "pulumi up")) for c in calls(fake_bin))


def test_the_minimum_pulumi_version_is_stated_once_in_pulumi_yaml_and_in_the_readme() -> None:
    assert MINIMUM, 'Pulumi.yaml: requiredPulumiVersion: ">=X.Y.Z"'
    readme = (ROOT / "README.md").read_text()
    assert f"v{MINIMUM[1]}" in readme
    # The script reads it from Pulumi.yaml, it does not restate it.
    assert MINIMUM[1] not in SCRIPT.read_text()


@pytest.mark.parametrize("version", ["v3.100.0", "v3.218.9", "v2.25.2"])
def test_an_old_pulumi_cli_is_refused_with_the_install_command(fake_bin: Path, version: str) -> None:
    result = run(fake_bin, "clienteA", FAKE_PULUMI_VERSION=version)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"the Pulumi CLI is {version}; this project needs v{MINIMUM[1] if MINIMUM else ''} or newer "
        "(Pulumi.yaml requiredPulumiVersion): upgrade it: curl -fsSL https://get.pulumi.com | sh   "
        "(https://www.pulumi.com/docs/install/)"
    )
    assert calls(fake_bin) == ["pulumi version"]


@pytest.mark.parametrize("version", ["v3.219.0", "v3.272.0", "v3.300.1-dev.0", "v4.0.0"])
def test_the_minimum_and_newer_clis_are_accepted(fake_bin: Path, version: str) -> None:
    result = run(fake_bin, "clienteA", FAKE_PULUMI_VERSION=version)
    assert result.returncode == 0, result.stderr


def test_a_missing_cli_gets_the_install_command(fake_bin: Path) -> None:
    os.remove(fake_bin / "pulumi")
    result = run(fake_bin, "clienteA")
    assert result.returncode == 2
    assert "pulumi is not installed on this machine: curl -fsSL https://get.pulumi.com | sh" in result.stderr
    os.remove(fake_bin / "docker")
    (fake_bin / "pulumi").write_text("#!/bin/sh\necho v3.272.0\n")
    (fake_bin / "pulumi").chmod(0o755)
    result = run(fake_bin, "clienteA")
    assert result.returncode == 2 and "docker (the CLI) is not installed" in result.stderr


def test_a_host_precondition_that_fails_stops_before_pulumi_up(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA", "--yes", FAKE_SWAP_LIMIT="false")
    assert result.returncode == 1 and "swap accounting is off" in result.stderr
    assert not any(call.startswith("pulumi up") for call in calls(fake_bin))


def test_refuses_without_a_passphrase(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA", passphrase=False)
    assert result.returncode == 2 and "set PULUMI_CONFIG_PASSPHRASE_FILE" in result.stderr
    assert calls(fake_bin) == ["pulumi version"]


def test_a_missing_passphrase_file_says_how_to_make_one(fake_bin: Path) -> None:
    missing = fake_bin.parent / "nothere"
    result = run(fake_bin, "clienteA", PULUMI_CONFIG_PASSPHRASE_FILE=str(missing))
    assert result.returncode == 2
    assert f"no passphrase file at {missing}: create it once (install -d -m 700" in result.stderr
    assert "umask 077" in result.stderr
    assert "uv sync" not in "\n".join(calls(fake_bin))


def test_a_passphrase_file_others_can_read_is_refused(fake_bin: Path) -> None:
    passphrase = fake_bin.parent / "passphrase"
    for mode in (0o644, 0o640, 0o604):
        passphrase.chmod(mode)
        result = run(fake_bin, "clienteA")
        assert result.returncode == 2
        assert f"readable by others (mode {mode:o}): chmod 600 {passphrase}" in result.stderr
    passphrase.chmod(0o400)
    assert run(fake_bin, "clienteA").returncode == 0


def test_an_empty_passphrase_file_or_variable_is_refused(fake_bin: Path) -> None:
    passphrase = fake_bin.parent / "passphrase"
    passphrase.write_text(" \n")
    result = run(fake_bin, "clienteA")
    assert result.returncode == 2 and f"the passphrase file {passphrase} is empty" in result.stderr
    # Pulumi prefers PULUMI_CONFIG_PASSPHRASE whenever it is set, even empty (pkg/secrets/passphrase).
    passphrase.write_text("a real passphrase\n")
    result = run(fake_bin, "clienteA", PULUMI_CONFIG_PASSPHRASE="")
    assert result.returncode == 2 and "PULUMI_CONFIG_PASSPHRASE is set but empty" in result.stderr
    assert run(fake_bin, "clienteA", PULUMI_CONFIG_PASSPHRASE="x", passphrase=False).returncode == 0


def test_passphrase_paths_with_tilde_or_relative_to_the_callers_directory_reach_pulumi_absolute(
    fake_bin: Path,
) -> None:
    home = fake_bin.parent
    result = run(fake_bin, "clienteA", PULUMI_CONFIG_PASSPHRASE_FILE="~/passphrase")
    assert result.returncode == 0, result.stderr
    assert f"passphrase_file={home}/passphrase" in up_env(fake_bin)
    result = run(fake_bin, "clienteA", cwd=home, PULUMI_CONFIG_PASSPHRASE_FILE="passphrase")
    assert result.returncode == 0, result.stderr
    assert f"passphrase_file={home}/passphrase" in up_env(fake_bin)


@pytest.mark.parametrize(
    ("url", "folder", "expected"),
    [
        ("file://~/state", "state", "file://{home}/state"),
        ("file://~/state?no_tmp_dir=false", "state", "file://{home}/state?no_tmp_dir=false"),
        ("file://{home}/abs", "abs", "file://{home}/abs"),
    ],
)
def test_file_backends_are_expanded_and_never_make_a_tilde_folder(
    fake_bin: Path, url: str, folder: str, expected: str
) -> None:
    home = fake_bin.parent
    result = run(fake_bin, "clienteA", PULUMI_BACKEND_URL=url.format(home=home))
    assert result.returncode == 0, result.stderr
    assert f"pulumi login {expected.format(home=home)}" in calls(fake_bin)
    assert (home / folder).is_dir()
    assert not (ROOT / "~").exists()
    assert not list(home.glob("*\\?*"))


def test_uv_is_installed_into_a_private_virtualenv_never_with_pip_user_and_is_on_path_for_pulumi(
    fake_bin: Path,
) -> None:
    os.remove(fake_bin / "uv")
    (fake_bin / "python3").write_text(FAKE_PYTHON3.format(log=fake_bin.parent / "calls.log"))
    (fake_bin / "python3").chmod(0o755)
    result = run(fake_bin, "clienteA")
    assert result.returncode == 0, result.stderr
    tools = fake_bin.parent / ".local" / "share" / "versatilehub"
    recorded = calls(fake_bin)
    assert recorded[1:4] == [
        f"python3 -m venv {tools}/uv-venv",
        "venv-python -m pip install --quiet --disable-pip-version-check uv==0.13.8",
        "uv sync --locked --quiet --compile-bytecode",
    ]
    assert not any("--user" in call for call in recorded)
    # The Pulumi language host (toolchain: uv) finds the same uv; only uv, not the venv's python.
    assert f"uv={tools}/bin/uv " in up_env(fake_bin)
    assert sorted(p.name for p in (tools / "bin").iterdir()) == ["uv"]


def test_uv_from_the_standalone_installer_is_found_in_local_bin(fake_bin: Path) -> None:
    os.remove(fake_bin / "uv")
    local_bin = fake_bin.parent / ".local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "uv").write_text(f'#!/bin/sh\necho "local-uv $*" >> {fake_bin.parent / "calls.log"}\n')
    (local_bin / "uv").chmod(0o755)
    result = run(fake_bin, "clienteA")
    assert result.returncode == 0, result.stderr
    assert "local-uv sync --locked --quiet --compile-bytecode" in calls(fake_bin)
    assert f"uv={local_bin}/uv " in up_env(fake_bin)


def test_uv_missing_without_venv_support_says_what_to_install(fake_bin: Path) -> None:
    os.remove(fake_bin / "uv")
    (fake_bin / "python3").write_text(FAKE_PYTHON3.format(log=fake_bin.parent / "calls.log"))
    (fake_bin / "python3").chmod(0o755)
    result = run(fake_bin, "clienteA", FAKE_NO_VENV="1")
    assert result.returncode == 2
    assert "sudo apt-get install python3-venv" in result.stderr
    assert "https://astral.sh/uv/0.13.8/install.sh" in result.stderr


def test_refuses_an_unknown_stack(fake_bin: Path) -> None:
    result = run(fake_bin, "nosuchclient")
    assert result.returncode == 2 and "python -m tools.new_client" in result.stderr
    assert calls(fake_bin) == []


def test_usage_without_a_stack(fake_bin: Path) -> None:
    result = run(fake_bin)
    assert result.returncode == 2 and "usage: bash tools/deploy.sh <stack>" in result.stderr


def test_the_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_a_successful_up_ends_with_the_credentials_sheet_without_secrets(
    fake_bin: Path, tmp_path: Path
) -> None:
    from tests.test_credentials import outputs_of

    secrets = outputs_of("clienteA", tmp_path)
    result = run(fake_bin, "clienteA", FAKE_OUTPUTS=str(tmp_path / "blinded.json"), FAKE_STACK_EXISTS="1")
    assert result.returncode == 0, result.stderr
    assert "hub      https://hub.clientea.com" in result.stdout
    assert "login     Administrator" in result.stdout
    assert "password  [secret]  (--show-secrets)" in result.stdout
    assert not any("--show-secrets" in call for call in calls(fake_bin))
    assert not {s for s in secrets if s in result.stdout + result.stderr}


def test_a_failed_up_prints_no_sheet(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA", FAKE_UP_FAILS="1")
    assert result.returncode != 0
    assert not any("tools.credentials" in call or "stack output" in call for call in calls(fake_bin))


def test_an_unreadable_sheet_does_not_fail_a_successful_up(fake_bin: Path) -> None:
    result = run(fake_bin, "clienteA")  # the stand-in has no outputs to give
    assert result.returncode == 0
    assert "credentials: stack clienteA has no outputs yet" in result.stderr
    assert "pulumi up succeeded; the credentials sheet could not be read" in result.stderr
