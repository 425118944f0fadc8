# shellcheck shell=bash
# Prepended by components/core/host.py to a host step that receives secrets and streams nothing: all its
# output goes to a private log on the host, never into Pulumi's error (pulumi-command puts a failing
# command's whole output there, logging "none" or not), with the value of each secret variable the step
# was given masked, and a failure prints one line: the step, its exit status and where the log is.
# The log: /var/log/versatilehub/<step>.log when the step runs as root, else the deploy user's
# ${XDG_STATE_HOME:-~/.local/state}/versatilehub/<step>.log; directory 0700, file 0600, rewritten by
# each run ($VH_STEP_LOG_DIR overrides the directory).
#   steplog_begin STEP SECRET_VARIABLE_NAME...

# shellcheck disable=SC2317  # a helper: a step calls those it needs
steplog_dir() {
  if [ -n "${VH_STEP_LOG_DIR:-}" ]; then
    echo "$VH_STEP_LOG_DIR"
  elif [ "$(id -u)" -eq 0 ]; then
    echo /var/log/versatilehub
  else
    echo "${XDG_STATE_HOME:-$HOME/.local/state}/versatilehub"
  fi
}

# steplog_open NAME: a fresh private log file for NAME; prints its path.
# shellcheck disable=SC2317  # a helper: a step calls those it needs
steplog_open() {
  local dir file
  dir=$(steplog_dir)
  (umask 077 && mkdir -p "$dir")
  chmod 700 "$dir"
  file=$dir/${1//[^A-Za-z0-9_.-]/_}.log
  (umask 077 && : >"$file")
  chmod 600 "$file"
  echo "$file"
}

# steplog_mask NAME...: stdin to stdout with the value of each variable NAME replaced by [secret].
# shellcheck disable=SC2317  # a helper: a step calls those it needs
steplog_mask() {
  local line name value
  while IFS= read -r line || [ -n "$line" ]; do
    for name in "$@"; do
      value=${!name:-}
      if [ -n "$value" ]; then
        line=${line//"$value"/[secret]}
      fi
    done
    printf '%s\n' "$line"
  done
}

# shellcheck disable=SC2317  # called through the EXIT trap
steplog_end() {
  local status=$1
  exec >&- 2>&-
  wait "$steplog_masker" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "$steplog_step failed (exit status $status); its output: $steplog_file on $(hostname) (mode 0600)" >&3
  fi
}

# shellcheck disable=SC2317  # a helper: a step calls those it needs
steplog_begin() {
  steplog_step=$1
  shift
  steplog_file=$(steplog_open "$steplog_step")
  exec 3>&2
  exec > >(steplog_mask "$@" >"$steplog_file") 2>&1
  steplog_masker=$!
  trap 'steplog_end $?' EXIT
}
