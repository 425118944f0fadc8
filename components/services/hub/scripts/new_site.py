import os
import runpy
import sys

sys.argv = [
    "bench", "frappe", "new-site", os.environ["SITE_NAME"],
    "--db-root-username", "root",
    "--db-root-password", os.environ.pop("DB_ROOT_PASSWORD"),
    "--mariadb-user-host-login-scope", "%",
    "--admin-password", os.environ.pop("ADMIN_PASSWORD"),
    "--install-app", "erpnext",
    "--set-default",
]
runpy.run_module("frappe.utils.bench_helper", run_name="__main__", alter_sys=True)
