"""The private engine the real-container tests share: it starts, runs an image built from Debian
packages, isolates nothing it should not, and leaves no mounts or folders behind."""

from __future__ import annotations

import time
from pathlib import Path

from tools import engine


def test_an_imported_debian_image_runs_and_reports_healthy(docker_engine: engine.Engine) -> None:
    image = engine.base_image(docker_engine)
    docker_engine.docker("network", "create", "vh-engine-selftest")
    try:
        cid = docker_engine.docker(
            "run",
            "-d",
            "--network",
            "vh-engine-selftest",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--health-cmd",
            "test -e /etc/debian_version",
            "--health-interval",
            "1s",
            image,
            "tini",
            "--",
            "sleep",
            "60",
        ).strip()
        state = ""
        for _ in range(100):
            state = docker_engine.docker("inspect", "-f", "{{.State.Health.Status}}", cid).strip()
            if state == "healthy":
                break
            time.sleep(0.1)
        assert state == "healthy"
        assert docker_engine.docker("exec", cid, "cat", "/etc/debian_version").strip().startswith("12")
        # The read-only root holds for the real runtime, not just in the plan.
        assert docker_engine.run("exec", cid, "touch", "/x").returncode != 0
    finally:
        docker_engine.run("rm", "-f", cid)
        docker_engine.run("network", "rm", "vh-engine-selftest")


def test_stopping_an_engine_removes_its_folder_and_mounts() -> None:
    with engine.Engine() as running:
        root = running.root
        running.docker("run", "--rm", engine.base_image(running), "true")
    assert not root.exists()
    assert str(root) not in Path("/proc/self/mounts").read_text()
