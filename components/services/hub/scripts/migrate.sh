# Maintenance mode (web requests get 503) and a paused scheduler while the schema changes, undone on
# success and on failure (frappe/commands/scheduler.py: set-maintenance-mode, scheduler pause|resume).
# shellcheck disable=SC2317  # called through frappe_run
site_bench() { __BENCH_IN_BACKEND__ --site "$SITE_NAME" "$@"; }
status=0
frappe_run "set-maintenance-mode on" site_bench set-maintenance-mode on || status=$?
if [ "$status" -eq 0 ]; then
  frappe_run "scheduler pause" site_bench scheduler pause || status=$?
fi
if [ "$status" -eq 0 ]; then
  frappe_run "bench migrate" site_bench migrate || status=$?
fi
undone=0
frappe_run "scheduler resume" site_bench scheduler resume || undone=$?
frappe_run "set-maintenance-mode off" site_bench set-maintenance-mode off || undone=$?
if [ "$status" -eq 0 ]; then
  status=$undone
fi
exit "$status"
