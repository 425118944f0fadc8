#!/usr/bin/env bash
# Deploy one client's stack from a machine that has Docker (or SSH to the client's Docker host) and the
# Pulumi CLI:
#   PULUMI_CONFIG_PASSPHRASE_FILE=~/.config/versatilehub/passphrase bash tools/deploy.sh clienteA
#
# 1. checks the Pulumi CLI (at least Pulumi.yaml's requiredPulumiVersion), Docker and the passphrase file;
# 2. installs the locked Python dependencies (uv, .venv), uv itself first when missing (into a private
#    virtualenv: PEP 668 refuses `pip install --user` on Debian 12 and Ubuntu 24.04), then checks that
#    the Docker host keeps what the stack writes (tools/preflight.py: swap accounting, daemon.json
#    log-opts, the engine's port binding order), else stops with the fix;
# 3. logs in to the local file backend (no Pulumi Cloud account): $PULUMI_BACKEND_URL, default
#    file://~/.pulumi-versatilehub;
# 4. selects the stack, creating it with the passphrase secrets provider the first time;
# 5. `pulumi up --diff` with the policy pack: it shows the full diff and the policy verdicts, and applies
#    only after you confirm (a mandatory policy violation stops it before anything changes);
# Extra arguments go to `pulumi up` (e.g. --yes in a pipeline that already reviewed `pulumi preview`).
set -euo pipefail
caller_dir="$PWD"
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
PULUMI_INSTALL='curl -fsSL https://get.pulumi.com | sh   (https://www.pulumi.com/docs/install/)'

die() {
  echo "$*" >&2
  exit 2
}

# ~ and relative paths as the operator meant them: relative to where they ran the script, not the repo.
expand_path() {
  local path="$1"
  local tilde="~"
  if [[ "$path" == "$tilde" ]]; then
    path="$HOME"
  elif [[ "$path" == "$tilde/"* ]]; then
    path="$HOME/${path#"$tilde/"}"
  fi
  [[ "$path" == /* ]] || path="$caller_dir/$path"
  printf '%s\n' "$path"
}

stack="${1:-}"
if [[ -z "$stack" || "$stack" == -* ]]; then
  die "usage: bash tools/deploy.sh <stack> [pulumi up options]   (stacks: $(printf '%s\n' Pulumi.*.yaml | sed 's/Pulumi\.\(.*\)\.yaml/\1/' | tr '\n' ' '))"
fi
shift
if [[ ! -f "Pulumi.$stack.yaml" ]]; then
  die "no Pulumi.$stack.yaml: create it with python -m tools.new_client (see README)"
fi

# The Pulumi CLI, at least the version Pulumi.yaml requires (the one place it is stated).
command -v pulumi >/dev/null 2>&1 || die "pulumi is not installed on this machine: $PULUMI_INSTALL"
minimum="$(sed -n 's/^requiredPulumiVersion: *"*>=\([0-9.]*\)"*.*/\1/p' Pulumi.yaml)"
[[ -n "$minimum" ]] || die "Pulumi.yaml has no requiredPulumiVersion \">=X.Y.Z\" line"
installed="$(pulumi version 2>/dev/null | head -n 1 | sed 's/^v//; s/[-+].*//')"
if [[ ! "$installed" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  die "could not read the Pulumi CLI's version from \`pulumi version\` (got '$installed'): reinstall it: $PULUMI_INSTALL"
fi
if [[ "$(printf '%s\n%s\n' "$minimum" "$installed" | sort -V | head -n 1)" != "$minimum" ]]; then
  die "the Pulumi CLI is v$installed; this project needs v$minimum or newer (Pulumi.yaml requiredPulumiVersion): upgrade it: $PULUMI_INSTALL"
fi
command -v docker >/dev/null 2>&1 || die "docker (the CLI) is not installed on this machine (see README: what your machine needs)"

# The passphrase. Pulumi uses PULUMI_CONFIG_PASSPHRASE whenever it is set, even empty, over the file.
if [[ -n "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE}" ]]; then
  die "PULUMI_CONFIG_PASSPHRASE is set but empty: Pulumi would encrypt with an empty passphrase; unset it and use PULUMI_CONFIG_PASSPHRASE_FILE"
fi
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ]]; then
  [[ -n "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]] || die "set PULUMI_CONFIG_PASSPHRASE_FILE: the file with the passphrase that encrypts this client's secrets (README: the passphrase file)"
  passfile="$(expand_path "$PULUMI_CONFIG_PASSPHRASE_FILE")"
  make_it="install -d -m 700 ~/.config/versatilehub && (umask 077 && openssl rand -base64 32 > ~/.config/versatilehub/passphrase)"
  [[ -e "$passfile" ]] || die "no passphrase file at $passfile: create it once ($make_it) and keep a copy off this machine"
  [[ -f "$passfile" && -r "$passfile" ]] || die "the passphrase file $passfile is not a readable regular file"
  mode="$(stat -c %a "$passfile" 2>/dev/null || stat -f %Lp "$passfile")"
  if (((8#$mode & 8#077) != 0)); then
    die "the passphrase file $passfile is readable by others (mode $mode): chmod 600 $passfile"
  fi
  [[ -n "$(tr -d '[:space:]' <"$passfile")" ]] || die "the passphrase file $passfile is empty: put the passphrase in it ($make_it)"
  # Pulumi reads the file relative to its own directory (the repository): give it the absolute path.
  export PULUMI_CONFIG_PASSPHRASE_FILE="$passfile"
fi

# uv, on PATH for this script and for the Pulumi language host it starts (Pulumi.yaml: toolchain uv).
if ! command -v uv >/dev/null 2>&1; then
  for dir in "${UV_INSTALL_DIR:-}" "${XDG_BIN_HOME:-}" "$HOME/.local/bin" "$HOME/.cargo/bin"; do
    if [[ -n "$dir" && -x "$dir/uv" ]]; then
      PATH="$dir:$PATH"
      break
    fi
  done
fi
if ! command -v uv >/dev/null 2>&1; then
  tools_dir="${XDG_DATA_HOME:-$HOME/.local/share}/versatilehub"
  echo "installing uv $UV_VERSION into $tools_dir/uv-venv (a private virtualenv)" >&2
  if python3 -m venv "$tools_dir/uv-venv" >/dev/null &&
    "$tools_dir/uv-venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"; then
    # Only uv goes on PATH, not the virtualenv's python.
    mkdir -p "$tools_dir/bin"
    ln -sf "$tools_dir/uv-venv/bin/uv" "$tools_dir/bin/uv"
    PATH="$tools_dir/bin:$PATH"
  else
    die "uv is missing and could not be installed in a virtualenv (Debian/Ubuntu: sudo apt-get install python3-venv; or curl -LsSf https://astral.sh/uv/$UV_VERSION/install.sh | sh), then run this again"
  fi
fi
export PATH
export UV_PYTHON_DOWNLOADS=never
uv sync --locked --quiet --compile-bytecode # .pyc now: imports are most of a plan's time
uv run --frozen --no-sync python -m tools.preflight "$stack" # host preconditions (operator guide, section 1)

# The backend. Pulumi expands file://~ itself, but the mkdir below would not (a literal ~ folder).
backend="${PULUMI_BACKEND_URL:-file://~/.pulumi-versatilehub}"
if [[ "$backend" == file://* ]]; then
  path="${backend#file://}"
  query=""
  if [[ "$path" == *"?"* ]]; then
    query="?${path#*\?}"
    path="${path%%\?*}"
  fi
  path="$(expand_path "$path")"
  mkdir -p "$path"
  backend="file://$path$query"
fi
export PULUMI_BACKEND_URL="$backend"
pulumi login "$PULUMI_BACKEND_URL" >/dev/null

# A missing stack is created; any other failure (unreadable backend, lock, permissions) is reported.
if ! select_err="$(pulumi stack select "$stack" 2>&1 >/dev/null)"; then
  if [[ "$select_err" == *"no stack named '"*"' found"* ]]; then
    pulumi stack init "$stack" --secrets-provider passphrase
  else
    printf '%s\n' "$select_err" >&2
    die "pulumi stack select $stack failed on $PULUMI_BACKEND_URL, and not because the stack is missing: fix the error above, then run this again"
  fi
fi

pulumi up --diff --stack "$stack" --policy-pack policies "$@"


# The credentials sheet without its secrets (URLs, logins); tools.credentials --show-secrets prints those.
uv run --frozen --no-sync python -m tools.credentials "$stack" ||
  echo "(pulumi up succeeded; the credentials sheet could not be read: python -m tools.credentials $stack)" >&2
