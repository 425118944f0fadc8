"""Hub: ERPNext on Frappe (backend, frontend, websocket, workers, scheduler), MariaDB and two Redis.

scripts/: configure.py (frappe_docker's configurator), new_site.py (`bench new-site`), company.py (the
setup wizard's company), step.sh (the shell helpers of the host steps that run them)."""
