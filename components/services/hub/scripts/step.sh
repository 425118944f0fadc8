# shellcheck shell=bash
# Prepended to the Hub's host steps (components/hub.py, after the host's `set -euo pipefail`): Frappe
# commands whose failure ends the step with Frappe's own last lines, not an empty message.
step_log=$(mktemp)
trap 'rm -f "$step_log"' EXIT

# The step's secrets never reach its output, even when Frappe echoes one in an error.
mask_secrets() {
  local line secret
  while IFS= read -r line || [ -n "$line" ]; do
    for secret in "${DB_ROOT_PASSWORD:-}" "${ADMIN_PASSWORD:-}"; do
      if [ -n "$secret" ]; then
        line=${line//"$secret"/[secret]}
      fi
    done
    printf '%s\n' "$line"
  done
}

# frappe_run WHAT COMMAND...: runs COMMAND with its output kept, progress lines on stderr meanwhile; on
# failure WHAT and the last 40 lines go to stderr, and the status is COMMAND's.
frappe_run() {
  local what=$1 status=0
  shift
  progress_start "$what" # secret-free lines while it runs (components/core/scripts/progress.sh)
  "$@" >"$step_log" 2>&1 || status=$?
  progress_stop "$status"
  if [ "$status" -eq 0 ]; then
    mask_secrets <"$step_log"
    return 0
  fi
  echo "$what failed (exit status $status); Frappe's last lines:" >&2
  tail -n 40 "$step_log" | mask_secrets >&2
  return "$status"
}
