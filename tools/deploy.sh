#!/usr/bin/env bash
# Deploy one client's stack from a machine that has Docker (or SSH to the client's Docker host) and the
# Pulumi CLI:
#   PULUMI_CONFIG_PASSPHRASE_FILE=~/.config/versatilehub/passphrase bash tools/deploy.sh clienteA
#
# 1. installs the locked Python dependencies (uv, .venv);
# 2. logs in to the local file backend (no Pulumi Cloud account): $PULUMI_BACKEND_URL, default
#    file://~/.pulumi-versatilehub;
# 3. selects the stack, creating it with the passphrase secrets provider the first time;
# 4. `pulumi up --diff` with the policy pack: it shows the full diff and the policy verdicts, and applies
#    only after you confirm (a mandatory policy violation stops it before anything changes).
# Extra arguments go to `pulumi up` (e.g. --yes in a pipeline that already reviewed `pulumi preview`).
set -euo pipefail
cd "$(dirname "$0")/.."

stack="${1:-}"
if [[ -z "$stack" || "$stack" == -* ]]; then
  echo "usage: bash tools/deploy.sh <stack> [pulumi up options]   (stacks: $(ls Pulumi.*.yaml | sed 's/Pulumi\.\(.*\)\.yaml/\1/' | tr '\n' ' '))" >&2
  exit 2
fi
shift
if [[ ! -f "Pulumi.$stack.yaml" ]]; then
  echo "no Pulumi.$stack.yaml: create it with python -m tools.new_client (see README)" >&2
  exit 2
fi
for tool in pulumi docker; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not installed on this machine (see README: preparing a server)" >&2; exit 2; }
done
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
  echo "set PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE): it encrypts this client's secrets" >&2
  exit 2
fi

export UV_PYTHON_DOWNLOADS=never
command -v uv >/dev/null 2>&1 || python3 -m pip install --user -q "uv==0.13.8"
uv sync --locked --quiet --compile-bytecode  # .pyc now: imports are most of a plan's time

export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$HOME/.pulumi-versatilehub}"
if [[ "$PULUMI_BACKEND_URL" == file://* ]]; then
  mkdir -p "${PULUMI_BACKEND_URL#file://}"
fi
pulumi login "$PULUMI_BACKEND_URL" >/dev/null
pulumi stack select "$stack" 2>/dev/null || pulumi stack init "$stack" --secrets-provider passphrase

pulumi up --diff --stack "$stack" --policy-pack policies "$@"
