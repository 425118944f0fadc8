"""Hub configurator: the bench-wide settings in sites/common_site_config.json, sites/apps.txt, sites/.build.

Run by the erpnext image's own Python in the one-shot `hub-configurator` container. It writes the keys
frappe_docker's configurator sets with `bench set-config -g` (compose.yaml), plus chromium_path, in one
call without importing Frappe. A bind-mounted sites/ starts empty, unlike the image's (its Containerfile
writes `{}` to common_site_config.json and bench writes apps.txt), and `bench set-config` fails on a
missing file: here a missing or empty file counts as `{}`, and keys set by hand are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/home/frappe/frappe-bench"))


def main() -> None:
    sites = BENCH_DIR / "sites"
    config_path = sites / "common_site_config.json"
    text = config_path.read_text() if config_path.exists() else ""
    config = json.loads(text) if text.strip() else {}
    queue = f"redis://{os.environ['REDIS_QUEUE']}"
    config.update(
        {
            "db_host": os.environ["DB_HOST"],
            "db_port": int(os.environ["DB_PORT"]),  # `set-config -p`: a number, not a string
            "redis_cache": f"redis://{os.environ['REDIS_CACHE']}",
            "redis_queue": queue,
            "redis_socketio": queue,  # frappe_docker keeps it for older socket.io code
            "socketio_port": int(os.environ["SOCKETIO_PORT"]),
            "chromium_path": "/usr/bin/chromium-headless-shell",
        }
    )
    # Replaced in one rename: a Frappe process reading it never sees half a file.
    partial = config_path.with_name(f".{config_path.name}.partial")
    partial.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    os.replace(partial, config_path)

    # frappe_docker's `ls -1 apps > sites/apps.txt`, with frappe first as `bench init` writes it.
    apps = sorted(entry.name for entry in (BENCH_DIR / "apps").iterdir() if entry.is_dir())
    ordered = [app for app in ("frappe",) if app in apps] + [app for app in apps if app != "frappe"]
    (sites / "apps.txt").write_text("".join(f"{app}\n" for app in ordered))
    # Frappe's build version is the mtime of sites/.build (frappe/utils/__init__.py get_build_version, a
    # random string per call when it is missing, so assets' ?v= changes on every page and nothing is
    # cached). A new image brings new assets: a new configurator runs with it and moves the mtime on, which
    # a named volume's copy of the first image's sites/ never would.
    (sites / ".build").touch()
    print(f"wrote {config_path} ({', '.join(sorted(config))}), apps.txt ({', '.join(ordered)}) and .build")


if __name__ == "__main__":
    main()
