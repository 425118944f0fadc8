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
