"""The collector (scripts/vh_collect.py) against a real Docker engine (tools/engine.py: Debian's dockerd,
private data root and socket): containers that are healthy, unhealthy, restarting, CPU-bound, over their
memory threshold and logging errors; the status it writes, the alerts a loopback webhook receives (once
per incident, once when it clears), and `fleet --live` reading the status over ssh from an sshd in a
network namespace with its host key pinned.

Docker API fields read (API 1.41, moby v20.10 api/swagger.yaml): ContainerSummary (GET /containers/json),
ContainerInspect State.Status / State.Health.Status / RestartCount / HostConfig.NanoCpus, the stats
object's cpu_stats / precpu_stats / memory_stats (GET /containers/{id}/stats?stream=false) and the
multiplexed log stream (GET /containers/{id}/logs, 8-byte frame headers) for non-TTY containers.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.collector_lab import https_edge, netns_sshd, run_collector, webhook_receiver
from tools import engine, fleet

CLIENT = "labclient"
BURNER_CPUS = 0.1


def _run(docker: engine.Engine, image: str, service: str, role: str, *args: str, client: str = CLIENT) -> str:
    labels = [f"io.versatilehub.client={client}", f"io.versatilehub.service={service}"]
    labels.append(f"io.versatilehub.role={role}")
    flags = [x for label in labels for x in ("--label", label)]
    return docker.docker(
        "run", "-d", "--network", "none", "--name", f"{client}-{service}-{role}", *flags, *args
    ).strip()


def _wait(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _inspect(docker: engine.Engine, name: str, template: str) -> str:
    return docker.run("inspect", "-f", template, name).stdout.strip()


@pytest.fixture(scope="module")
def lab(docker_engine: engine.Engine) -> Any:
    image = engine.base_image(docker_engine)
    limits = ["--memory", "64m", "--memory-swap", "64m", "--cpus", "0.5"]
    sleep = [image, "tini", "--", "sleep", "600"]
    _run(
        docker_engine,
        image,
        "hub",
        "backend",
        *limits,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        *sleep,
    )
    _run(
        docker_engine,
        image,
        "flow",
        "n8n",
        *limits,
        *("--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"),
        *sleep,
    )
    _run(
        docker_engine,
        image,
        "agent",
        "gateway",
        *limits,
        "--restart",
        "always",
        image,
        "sh",
        "-c",
        "sleep 1; exit 3",
    )
    # The CPU burner: two busy loops capped at a tenth of a core (CFS quota 10 ms per 100 ms period) with
    # ten times the default CPU weight. The collector reports CPU as a % of the limit, so it must read
    # near 100 % whenever the loops get that tenth, which they do on a busy machine: the weight wins it
    # from other containers (this engine's and other test runs'), two loops take it from either CPU.
    # With 0.5 cpus and one loop it read ~45 % when the machine was busy (#19).
    burner = ["--memory", "64m", "--memory-swap", "64m", "--cpus", str(BURNER_CPUS), "--cpu-shares", "10240"]
    loops = "while :; do :; done & while :; do :; done"
    _run(docker_engine, image, "hub", "queue-short", *burner, image, "sh", "-c", loops)
    # /dev/shm pages count in the container's memory (not page cache, which docker stats leaves out).
    _run(
        docker_engine,
        image,
        "hub",
        "redis-cache",
        *("--memory", "40m", "--memory-swap", "40m", "--shm-size", "64m"),
        image,
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=35 2>/dev/null; exec sleep 600",
    )
    rails_error = "E, [2026-12-02T20:00:00.000000 #1] ERROR -- : ActiveRecord::ConnectionNotEstablished boom"
    _run(
        docker_engine,
        image,
        "chat",
        "rails",
        *limits,
        image,
        "sh",
        "-c",
        f"echo '{rails_error}'; echo 'I, [2026-12-02T20:00:00.1 #1]  INFO -- : Completed 200 OK'; "
        "exec sleep 600",
    )
    _run(docker_engine, image, "hub", "backend", *limits, *sleep, client="otherclient")
    # A one-shot job (restart "no", as Hub's configurator) that ended well.
    _run(docker_engine, image, "hub", "configurator", *limits, image, "true")
    _wait(
        lambda: _inspect(docker_engine, f"{CLIENT}-hub-backend", "{{.State.Health.Status}}") == "healthy",
        "healthy",
    )
    _wait(
        lambda: _inspect(docker_engine, f"{CLIENT}-flow-n8n", "{{.State.Health.Status}}") == "unhealthy",
        "unhealthy",
    )
    _wait(
        lambda: int(_inspect(docker_engine, f"{CLIENT}-agent-gateway", "{{.RestartCount}}") or 0) >= 1,
        "a restart",
    )
    yield docker_engine


def _settings(tmp: Path, socket: Path, edge: str, routes_ok: bool = True) -> Path:
    data_root = tmp / "data"
    status_dir = data_root / CLIENT / "monitor"
    status_dir.mkdir(parents=True)
    # A backup 30 h ago (older than the 26 h default), recorded as vh-backup's `recorded()` writes it.
    finished = int(time.time()) - 30 * 3600
    (status_dir / "backup.json").write_text(
        json.dumps(
            {"format": 1, "result": "ok", "finished": finished, "last_ok": finished, "reason": "daily"}
        )
    )
    settings = {
        "format": 1,
        "client": CLIENT,
        "docker_socket": str(socket),
        "data_root": str(data_root),
        "status_dir": str(status_dir),
        "edge": edge,
        "interval_minutes": 5,
        "first_log_window": 600,
        "endpoints": [
            {"name": "hub", "url": "https://hub.lab.test/api/method/ping", "expect": "2??", "body": "pong"},
            {"name": "flow", "url": "https://flow.lab.test/healthz", "expect": "2??", "body": ""},
        ],
        "thresholds": {"cpu_percent": 70, "memory_percent": 80, "cert_days": 14, "backup_hours": 26},
        "backup_status": str(status_dir / "backup.json"),
        "drill_status": str(status_dir / "drill.json"),
    }
    path = tmp / "collect.json"
    path.write_text(json.dumps(settings))
    return path


def test_status_alerts_and_dedup_against_real_containers(lab: engine.Engine, tmp_path: Path) -> None:
    routes = {"hub.lab.test": (200, '{"message":"pong"}'), "flow.lab.test": (503, "down")}
    with webhook_receiver() as hook, https_edge(tmp_path, routes, days=5) as edge:
        settings = _settings(tmp_path, lab.socket, edge)
        secrets = tmp_path / "secrets.json"
        secrets.write_text(json.dumps({"webhook_url": hook.url}))
        os.chmod(secrets, 0o400)

        first = run_collector(settings, secrets)
        containers = {c["name"]: c for c in first["containers"]}
        # Only this stack's containers (by its client label).
        assert set(containers) == {
            f"{CLIENT}-{n}"
            for n in (
                "hub-backend",
                "flow-n8n",
                "agent-gateway",
                "hub-queue-short",
                "hub-redis-cache",
                "chat-rails",
                "hub-configurator",
            )
        }
        assert containers[f"{CLIENT}-hub-backend"]["health"] == "healthy"
        assert containers[f"{CLIENT}-hub-backend"]["state"] == "running"
        assert containers[f"{CLIENT}-flow-n8n"]["health"] == "unhealthy"
        assert containers[f"{CLIENT}-hub-configurator"]["state"] == "exited"
        # Near 100 % of its limit, never the share of the host's CPUs (0.1 / 2 = 5 %) nor of one core
        # (10 %), nor more than the quota allows (CFS throttling; a little over 100 from sampling jitter).
        burning = containers[f"{CLIENT}-hub-queue-short"]
        assert 70 < burning["cpu_percent"] <= 130, (burning, "loadavg", os.getloadavg())
        assert containers[f"{CLIENT}-hub-backend"]["cpu_percent"] < 20
        assert containers[f"{CLIENT}-hub-redis-cache"]["memory_percent"] > 80, containers[
            f"{CLIENT}-hub-redis-cache"
        ]
        assert containers[f"{CLIENT}-hub-backend"]["memory_percent"] < 20
        chat = containers[f"{CLIENT}-chat-rails"]
        assert chat["errors"] == 1 and "ConnectionNotEstablished boom" in chat["error_lines"][0]
        endpoints = {e["name"]: e for e in first["endpoints"]}
        assert endpoints["hub"]["ok"] and endpoints["hub"]["status"] == 200
        assert endpoints["hub"]["tls"] == "untrusted"  # self-signed: measured anyway, as verify does
        assert 4 < endpoints["hub"]["cert_days"] <= 5
        assert not endpoints["flow"]["ok"] and endpoints["flow"]["status"] == 503
        assert first["backup"]["result"] == "ok" and 29.9 < first["backup"]["age_hours"] < 30.1
        assert first["drill"] == {"result": "never run"}
        assert first["host"]["disk_percent"] is not None and len(first["host"]["load"]) == 3
        expected = {
            f"container:{CLIENT}-flow-n8n:unhealthy",
            f"container:{CLIENT}-hub-queue-short:cpu",
            f"container:{CLIENT}-hub-redis-cache:memory",
            "endpoint:https://flow.lab.test/healthz:down",
            "cert:hub.lab.test",
            "cert:flow.lab.test",
            "backup:stale",
        }
        assert expected <= set(first["incidents"])
        assert not [k for k in first["incidents"] if "configurator" in k]
        assert first["overall"] == "alert"
        assert sorted(hook.opened()) == sorted(first["incidents"])  # one message per incident

        time.sleep(2.5)  # the restarting container restarts at least once more
        second = run_collector(settings, secrets)
        containers = {c["name"]: c for c in second["containers"]}
        assert f"container:{CLIENT}-agent-gateway:restarting" in second["incidents"]
        assert containers[f"{CLIENT}-chat-rails"]["errors"] == 0  # only lines since the last run
        # Nothing re-sent while an incident persists.
        assert all(n == 1 for n in collections.Counter(hook.opened()).values()), hook.opened()
        assert hook.cleared() == []

        # Fixed: the unhealthy container is gone and the endpoint answers.
        lab.docker("rm", "-f", f"{CLIENT}-flow-n8n")
        routes["flow.lab.test"] = (200, "ok")
        third = run_collector(settings, secrets)
        assert f"container:{CLIENT}-flow-n8n:unhealthy" not in third["incidents"]
        assert sorted(hook.cleared()) == sorted(
            [f"container:{CLIENT}-flow-n8n:unhealthy", "endpoint:https://flow.lab.test/healthz:down"]
        )
        run_collector(settings, secrets)
        assert len(hook.cleared()) == 2  # cleared once
        assert all(n == 1 for n in collections.Counter(hook.opened()).values())
        history = (Path(third["host"]["disk_path"]) / CLIENT / "monitor" / "history.jsonl").read_text()
        assert len(history.splitlines()) == 4
        assert third["errors_last_hour"] == 1


def _stack(folder: Path, name: str, data_root: Path, docker: str, host_key: str | None) -> Path:
    host: dict[str, Any] = {"docker": docker, "memoryMb": 16384, "cpus": 8}
    if host_key:
        host["sshHostKey"] = host_key
    doc = {
        "config": {
            "versatilehub:client": name.lower(),
            "versatilehub:company": "Lab S.A.",
            "versatilehub:domain": "labclient.com",
            "versatilehub:timezone": "UTC",
            "versatilehub:acmeEmail": "ops@labclient.com",
            "versatilehub:services": "hub",
            "versatilehub:hub": {"country": "AR"},
            "versatilehub:host": host,
            "versatilehub:storage": {"dataRoot": str(data_root)},
            "versatilehub:backup": {"repository": "/srv/backups/lab"},
        }
    }
    path = folder / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_fleet_live_reads_status_over_ssh_with_the_pinned_key(
    lab: engine.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = {"hub.lab.test": (200, "pong"), "flow.lab.test": (200, "ok")}
    with https_edge(tmp_path, routes, days=90) as edge:
        settings = _settings(tmp_path, lab.socket, edge)
        run_collector(settings)
    data_root = tmp_path / "data"
    with netns_sshd() as ssh:
        docker = f"ssh://root@{ssh.address}"
        good = _stack(tmp_path, CLIENT, data_root, docker, ssh.host_key)
        # The same server, but the stack pins another key: never trusted, one row saying so.
        wrong_key = " ".join((Path(str(ssh.identity) + ".pub")).read_text().split()[:2])
        impostor = _stack(tmp_path, "Impostor", data_root, docker, wrong_key)
        # A local stack whose collector has not run yet.
        fresh = _stack(tmp_path, "Fresh", tmp_path / "nothing", "unix:///var/run/docker.sock", None)
        code = fleet.main(
            ["--live", "--json", "--identity", str(ssh.identity), str(good), str(impostor), str(fresh)]
        )
    rows = {r["stack"]: r for r in json.loads(capsys.readouterr().out)["live"]}
    assert code == 1
    assert rows[CLIENT]["overall"] == "alert" and rows[CLIENT]["problem"] == "", rows[CLIENT]["problem"]
    assert rows[CLIENT]["cpu"].startswith(tuple("123456789")) and rows[CLIENT]["cpu"].endswith("/70%")
    # The worst container is one with an incident, named with what is wrong with it.
    worst, why = rows[CLIENT]["worst"].split()
    assert f"container:{worst}:{why.strip('()')}" in rows[CLIENT]["incidents"]
    assert rows[CLIENT]["backup"] == "30 h (ok)" and rows[CLIENT]["cert"] in ("89 d", "90 d")
    assert (
        rows["Impostor"]["overall"] == "unreachable"
        and "Host key verification failed" in rows["Impostor"]["problem"]
    )
    assert rows["Fresh"]["overall"] == "unreachable" and "no status.json" in rows["Fresh"]["problem"]
