# shellcheck shell=bash
# Progress for long host steps. A step that receives secrets does not stream its output (it may echo
# one), so a 5-minute site creation or migration would look hung: these lines go to stderr instead, and
# they carry nothing but the step's own label and the time (components/core/host.py streams only stderr
# for such steps when asked).
#   progress_start WHAT   "WHAT: started", then "WHAT: still running after N s" every
#                         $VH_PROGRESS_SECONDS (default 30)
#   progress_stop STATUS  "WHAT: done in N s" or "WHAT: failed after N s"
progress_what=""
progress_ticker=""
progress_began=0

# shellcheck disable=SC2317  # a helper: a step calls those it needs
progress_start() {
  progress_what=$1
  progress_began=$SECONDS
  echo "$progress_what: started" >&2
  local every=${VH_PROGRESS_SECONDS:-30}
  (
    elapsed=0
    # sleep's own descriptors point nowhere: once this ticker is stopped, no orphaned sleep keeps the
    # step's output pipes open (the step would end only when it does).
    while sleep "$every" >/dev/null 2>&1; do
      elapsed=$((elapsed + every))
      echo "$progress_what: still running after ${elapsed} s" >&2
    done
  ) &
  progress_ticker=$!
}

# shellcheck disable=SC2317  # a helper: a step calls those it needs
progress_stop() {
  local status=$1
  if [ -n "$progress_ticker" ]; then
    kill "$progress_ticker" 2>/dev/null || true
    wait "$progress_ticker" 2>/dev/null || true
    progress_ticker=""
  fi
  if [ "$status" -eq 0 ]; then
    echo "$progress_what: done in $((SECONDS - progress_began)) s" >&2
  else
    echo "$progress_what: failed after $((SECONDS - progress_began)) s" >&2
  fi
}

# progress_run WHAT COMMAND...: COMMAND with its output in a private log on the host (core/scripts/
# steplog.sh: 0600 under /var/log/versatilehub as root, else ~/.local/state/versatilehub), the value of
# every variable named in $VH_SECRET_NAMES masked there, the progress lines meanwhile. On failure one line
# to stderr: "WHAT failed (exit status N); its output: LOG on HOST (mode 0600)", so nothing the command
# prints reaches Pulumi. The status is COMMAND's. Needs steplog.sh (components/core/scripts.py PROGRESS).
# shellcheck disable=SC2317  # a helper: a step calls those it needs
progress_run() {
  local what=$1 status=0 log
  shift
  log=$(steplog_open "$what")
  progress_start "$what"
  # shellcheck disable=SC2086  # VH_SECRET_NAMES: variable names, one word each
  if "$@" 2>&1 | steplog_mask ${VH_SECRET_NAMES:-} >"$log"; then status=0; else status=${PIPESTATUS[0]}; fi
  progress_stop "$status"
  if [ "$status" -ne 0 ]; then
    echo "$what failed (exit status $status); its output: $log on $(hostname) (mode 0600)" >&2
  fi
  return "$status"
}
