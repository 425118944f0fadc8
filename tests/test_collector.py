"""The collector's logic without an engine (scripts/vh_collect.py), the `monitoring:` section and its host
step (components/monitoring/component.py), and what vh-backup records for it. The real-container runs are in
tests/test_collector_real.py.

The CPU and memory figures follow docker/cli's `docker stats` (cli/command/container/stats_helpers.go:
calculateCPUPercentUnix, calculateMemUsageUnixNoCache, which leaves out total_inactive_file on cgroup v1
and inactive_file on cgroup v2).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.collector_lab import self_signed, webhook_receiver
from tests.conftest import PlanFn
from tools import harness

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


vc = _load("vh_collect", ROOT / "scripts" / "vh_collect.py")
vb = _load("vh_backup_for_collector", ROOT / "scripts" / "vh_backup.py")


def test_log_frames_are_split_into_lines_and_tty_logs_kept_whole() -> None:
    def frame(stream: int, text: str) -> bytes:
        data = text.encode()
        return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data

    raw = frame(1, "one\ntw") + frame(2, "o\nthree\n") + frame(1, "four")
    assert list(vc.demux([raw])) == ["one", "two", "three", "four"]
    # Read in pieces that cut through headers and payloads alike.
    assert list(vc.demux([raw[i : i + 5] for i in range(0, len(raw), 5)])) == ["one", "two", "three", "four"]
    assert list(vc.demux([b"plain tty\nli", b"ne\nlast"])) == ["plain tty", "line", "last"]


@pytest.mark.parametrize(
    ("app", "line", "counted"),
    [
        ("rails", "E, [2026-12-02T20:00:00.1 #1] ERROR -- : PG::ConnectionBad", True),
        ("rails", "I, [2026-12-02T20:00:00.1 #1]  INFO -- : Completed 500 in 3ms", False),
        ("frappe", "Traceback (most recent call last):", True),
        ("frappe", "frappe.exceptions.ValidationError: bad", True),
        ("frappe", "[2026-12-02 20:00:00 +0000] [7] [INFO] Booting worker", False),
        ("node", '{"level":"error","message":"Workflow failed"}', True),
        ("node", "TypeError: Cannot read properties of undefined", True),
        ("node", '{"level":"info","message":"0 errors"}', False),
        ("generic", "2026-12-02 20:00:00 UTC [1] FATAL:  password authentication failed", True),
        ("generic", 'level=error msg="no route"', True),
        ("generic", "ready to accept connections", False),
    ],
)
def test_error_patterns_per_app(app: str, line: str, counted: bool) -> None:
    count, last = vc.error_lines(iter([line]), vc._patterns()[app])
    assert count == (1 if counted else 0) and last == ([line] if counted else [])


def test_only_the_last_few_error_lines_are_kept_but_all_are_counted() -> None:
    lines = [f"ERROR {i}" for i in range(20)]
    count, last = vc.error_lines(iter(lines), vc._patterns()["generic"])
    assert count == 20 and last == lines[-vc.KEEP_ERROR_LINES :]


def test_certificate_expiry_is_read_from_the_der_certificate(tmp_path: Path) -> None:
    _, cert = self_signed(tmp_path, ["hub.example.com"], days=10)
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    end = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-enddate", "-dateopt", "iso_8601"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = time.mktime(time.strptime(end.split("=", 1)[1], "%Y-%m-%d %H:%M:%SZ")) - time.timezone
    assert vc.not_after(der) == expected
    assert 9.9 < (vc.not_after(der) - time.time()) / 86400 <= 10


def test_cpu_is_a_share_of_the_limit_and_memory_leaves_out_the_page_cache() -> None:
    stats = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000},
            "system_cpu_usage": 20_000_000,
            "online_cpus": 4,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
        "memory_stats": {"usage": 100 << 20, "limit": 200 << 20, "stats": {"total_inactive_file": 20 << 20}},
    }
    # 2e6 of 1e7 system ns on 4 CPUs = 0.8 cores (docker stats' 80%): 20% of the host's four CPUs
    # without a limit, 40% of a 2-core limit.
    assert vc.cpu_percent(stats, 0) == 20.0
    assert vc.cpu_percent(stats, 2.0) == 40.0
    assert vc.memory_percent(stats) == (40.0, 80 << 20)
    v2 = {"memory_stats": {"usage": 100 << 20, "limit": 200 << 20, "stats": {"inactive_file": 50 << 20}}}
    assert vc.memory_percent(v2) == (25.0, 50 << 20)
    assert vc.cpu_percent({"cpu_stats": stats["cpu_stats"], "precpu_stats": {}}, 1) is None  # no sample


def _status(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "thresholds": dict(vc.DEFAULT_THRESHOLDS),
        "containers": [
            {"name": "c-hub-web", "state": "running", "health": "healthy", "restarts": 0, "cpu_percent": 80.0}
        ],
        "host": {"disk_path": "/srv", "disk_percent": 40.0, "memory_percent": 50.0},
        "endpoints": [],
        "backup": {"result": "ok", "age_hours": 2.0},
        "drill": {"result": "never run"},
    }
    status.update(changes)
    return status


def test_thresholds_decide_incidents_and_a_stack_may_raise_them() -> None:
    assert set(vc.incidents(_status(), True)) == {"container:c-hub-web:cpu"}
    raised = _status(thresholds={**vc.DEFAULT_THRESHOLDS, "cpu_percent": 85.0})
    assert vc.incidents(raised, True) == {}
    stale = _status(backup={"result": "ok", "age_hours": 27.0}, drill={"result": "failed", "message": "x"})
    assert {"backup:stale", "drill:failed"} <= set(vc.incidents(stale, True))
    assert "backup:stale" not in vc.incidents(stale, False)  # backups off: nothing to be stale
    job = {"name": "c-hub-configurator", "state": "exited", "health": "none", "restarts": 0, "exit_code": 0}
    assert vc.incidents(_status(containers=[{**job, "restart_policy": "no"}]), True) == {}
    failed = {**job, "restart_policy": "no", "exit_code": 1}
    assert set(vc.incidents(_status(containers=[failed]), True)) == {"container:c-hub-configurator:down"}
    stopped = {**job, "restart_policy": "unless-stopped"}
    assert set(vc.incidents(_status(containers=[stopped]), True)) == {"container:c-hub-configurator:down"}


def test_an_alert_not_delivered_is_tried_again_and_a_delivered_one_never_repeats(tmp_path: Path) -> None:
    with webhook_receiver() as hook:
        alerts = vc.Alerts({"client": "c", "status_dir": str(tmp_path)}, {"webhook_url": hook.url})
        hook.refuse = True
        assert alerts.update(1000, {"host:disk": "full"}) == []
        hook.refuse = False
        assert [e["state"] for e in alerts.update(1300, {"host:disk": "full"})] == ["open"]
        assert alerts.update(1600, {"host:disk": "full"}) == []
        assert hook.opened() == ["host:disk"]
        assert hook.received[0]["since"] == 1000  # since it was first seen, not since it was delivered
        assert [e["state"] for e in alerts.update(1900, {})] == ["cleared"]
        assert alerts.update(2200, {}) == []
        assert hook.cleared() == ["host:disk"]
        assert hook.received[1]["text"] == "[c] CLEARED: cleared: full"


def test_the_secrets_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"webhook_url": "http://127.0.0.1:9/x"}))
    os.chmod(path, 0o644)
    with pytest.raises(vc.Failure, match="must be 0400"):
        vc.read_secrets(str(path))
    os.chmod(path, 0o400)
    assert vc.read_secrets(str(path)) == {"webhook_url": "http://127.0.0.1:9/x"}


class _CrashLoop:
    """A Docker API stand-in for one container in a crash loop, as dockerd reports it (moby v20.10.24
    daemon/monitor.go: `RestartCount++` when it exits, then "restarting" for the back-off delay)."""

    def __init__(self) -> None:
        self.state = {"Status": "restarting", "Running": True, "StartedAt": "2026-12-06T20:00:00Z"}
        self.count = 6

    def json(self, path: str) -> Any:
        if path.startswith("/containers/json"):
            return [{"Id": "abc"}]
        if path.endswith("/stats?stream=false"):
            return {}
        return {"Name": "/c-agent-gateway", "State": self.state, "RestartCount": self.count}

    def stream(self, path: str, limit: int) -> Any:
        return iter(())


def test_a_crash_loop_caught_running_after_its_back_off_is_still_restarting(tmp_path: Path) -> None:
    settings = {"client": "c", "status_dir": str(tmp_path), "docker_socket": "/nonexistent"}
    docker = _CrashLoop()

    def run(now: float) -> dict[str, Any]:
        collector = vc.Collector(settings, now=now)
        collector.docker = docker  # type: ignore[assignment]
        return collector.run()

    assert "container:c-agent-gateway:restarting" in run(2_000_000_000.0)["incidents"]
    # Up again after its delay, the restart already counted at the exit the last run saw (#19's flake).
    docker.state = {"Status": "running", "Running": True, "StartedAt": "2026-12-06T20:00:13Z"}
    second = run(2_000_000_300.0)
    assert second["containers"][0]["restarts"] == 1
    assert "container:c-agent-gateway:restarting" in second["incidents"]
    # Still up at the next run: recovered.
    assert "container:c-agent-gateway:restarting" not in run(2_000_000_600.0)["incidents"]


def test_history_keeps_24_hours(tmp_path: Path) -> None:
    settings = {"client": "c", "status_dir": str(tmp_path), "docker_socket": "/nonexistent"}
    now = 2_000_000_000.0
    old = {"time": now - 25 * 3600, "errors": 9}
    recent = {"time": now - 3000, "errors": 2}
    (tmp_path / "history.jsonl").write_text(f"{json.dumps(old)}\n{json.dumps(recent)}\nnot json\n")
    status = vc.Collector(settings, now=now).run()
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [x["time"] for x in lines] == [recent["time"], now]
    assert status["errors_last_hour"] == 2
    assert "docker" in status["incidents"]  # no engine: one incident saying so, the rest still recorded


def test_vh_backup_records_each_whole_client_run_for_the_collector(tmp_path: Path) -> None:
    path = tmp_path / "monitor" / "backup.json"

    class Manifest:
        settings = {"status_file": str(path)}

    with vb.recorded(Manifest(), "daily", []):  # type: ignore[arg-type]
        pass
    ok = json.loads(path.read_text())
    assert ok["result"] == "ok" and ok["last_ok"] == ok["finished"]
    with pytest.raises(vb.Failure), vb.recorded(Manifest(), "daily", []):  # type: ignore[arg-type]
        raise vb.Failure("pg_dump failed")
    failed = json.loads(path.read_text())
    assert failed["result"] == "failed" and failed["message"] == "pg_dump failed"
    assert failed["last_ok"] == ok["finished"]  # the last good one is still known
    status = vc.read_result(str(path), failed["finished"] + 3600)
    assert status["result"] == "failed" and status["age_hours"] == pytest.approx(1, abs=0.01)
    assert vc.read_result(str(tmp_path / "drill.json"), 0) == {"result": "never run"}


# -- the stack side ------------------------------------------------------------------------------------
def _collect_json(p: harness.Plan) -> tuple[str, dict[str, Any]]:
    script = harness.plain(p.named("monitoring").inputs["create"])
    start = script.index("/monitor/collect.json <<'VH_BACKUP_EOF'\n") + len(
        "/monitor/collect.json <<'VH_BACKUP_EOF'\n"
    )
    return script, json.loads(script[start : script.index("VH_BACKUP_EOF", start)])


def test_the_collector_is_installed_with_the_seeds_thresholds_and_a_timer(plan: PlanFn) -> None:
    p = plan(["hub", "chat"])
    script, settings = _collect_json(p)
    assert (ROOT / "scripts" / "vh_collect.py").read_text() in script
    assert settings["thresholds"] == {
        "cpu_percent": 70,
        "memory_percent": 80,
        "host_memory_percent": 80,
        "disk_percent": 85,
        "endpoint_ms": 2000,
        "cert_days": 14,
        "backup_hours": 26,
    }
    assert [e["url"] for e in settings["endpoints"]] == [
        "https://hub.clientea.com/api/method/ping",
        "https://chat.clientea.com/api",
        "https://clientea.com/",
    ]
    assert settings["backup_status"] == "/srv/versatilehub/clientea/monitor/backup.json"
    assert "OnUnitActiveSec=5min" in script and "systemctl enable --now vh-collect-clientea.timer" in script
    assert "User=root" in script and "ExecStart=/srv/versatilehub/clientea/monitor/vh-collect" in script


def test_thresholds_are_overridable_per_stack(plan: PlanFn) -> None:
    p = plan(
        ["hub"],
        monitoring={"cpuPercent": 90, "certDays": 21, "intervalMinutes": 10},
        backup={"repository": "/srv/backups/clientea", "maxAgeHours": 50},
    )
    script, settings = _collect_json(p)
    t = settings["thresholds"]
    assert (t["cpu_percent"], t["cert_days"], t["backup_hours"], t["memory_percent"]) == (90, 21, 50, 80)
    assert "OnUnitActiveSec=10min" in script


def test_the_webhook_and_the_smtp_password_reach_the_host_only_as_secrets(plan: PlanFn) -> None:
    p = plan(
        ["hub", "chat"],
        chat={
            "adminEmail": "soporte@clientea.com",
            "smtp": {
                "address": "smtp.clientea.com",
                "username": "chat@clientea.com",
                "password": {"secure": "v1:smtp"},
                "sender": "chat@clientea.com",
            },
        },
        monitoring={"webhookUrl": {"secure": "v1:hook"}, "email": "ops@clientea.com"},
    )
    step = p.named("monitoring")
    env = step.inputs["environment"]
    assert harness.is_secret(env["VH_WEBHOOK_URL"]) and harness.is_secret(env["VH_SMTP_PASSWORD"])
    script, settings = _collect_json(p)
    for value in (harness.plain(env["VH_WEBHOOK_URL"]), harness.plain(env["VH_SMTP_PASSWORD"])):
        assert value not in script
    # Chat's SMTP server, user and sender; the password only in secrets.json.
    assert settings["email"] == {
        "to": "ops@clientea.com",
        "host": "smtp.clientea.com",
        "port": 587,
        "username": "chat@clientea.com",
        "sender": "chat@clientea.com",
        "starttls": True,
    }
    assert 'chmod 0400 "$1.new"' in script and "/monitor/secrets.json" in script


def test_alert_mail_without_an_smtp_server_is_one_line(config_problems: Any) -> None:
    problems = config_problems(["hub"], monitoring={"email": "ops@clientea.com"})
    assert problems == [
        "versatilehub:monitoring.smtp: alert mail to monitoring.email needs an SMTP server; fix: pulumi "
        "config set --path 'versatilehub:monitoring.smtp.address' smtp.cliente.com and pulumi config set "
        "--path 'versatilehub:monitoring.smtp.sender' alerts@cliente.com (or give Chat's chat.smtp)"
    ]


def test_a_plain_text_webhook_is_refused(config_problems: Any) -> None:
    problems = config_problems(["hub"], monitoring={"webhookUrl": "https://hooks.example.com/x"})
    assert any("monitoring.webhookUrl is stored in plain text" in p for p in problems), problems


def test_monitoring_can_be_turned_off(plan: PlanFn) -> None:
    p = plan(["hub"], monitoring={"enabled": False})
    assert "monitoring" not in {r.name for r in p.resources}
