"""Live operations: the collector on each client's server, its thresholds and its alerts.

`monitoring:` in the stack (MonitoringConfig) sets the thresholds (the seed's by default: CPU 70% and memory
80% of each container's limits, endpoints under 2 s, certificates 14 days from expiry, a backup at most
`backup.maxAgeHours` old) and where alerts go (a webhook and/or an email address; SMTP settings are
Chat's unless `monitoring.smtp` gives others).

The Monitoring component installs, in <dataRoot>/<client>/monitor (owned by the user the collector runs
as): vh-collect (scripts/vh_collect.py), collect.json (what to watch, no secrets), secrets.json (the
webhook address and the SMTP password, mode 0400, written through printf from the step's secret
environment: never a command line, never the unit), and a systemd timer that runs it every
`intervalMinutes`. It writes status.json (the latest run), history.jsonl (24 h) and alerts.json (open
incidents) there; `python -m tools.fleet --live` reads status.json.

The model here depends on pydantic only (components/config.py imports it); the component's imports of
the other components happen when it is built.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from components.core.host import AS_ROOT, AS_ROOT_TOLERANT, write_file
from components.core.host import HOST_SCRIPTS as SCRIPTS
from components.core.model import secret

if TYPE_CHECKING:
    import pulumi

    from components.config import SuiteConfig
    from components.core.deployment import Deployment
    from components.edge.verify import Probe

FORMAT = 1  # of collect.json, as scripts/vh_collect.py reads it


def monitor_home(config: SuiteConfig) -> str:
    return f"{config.storage.data_root}/{config.client}/monitor"


def backup_status_file(config: SuiteConfig) -> str:
    """Where vh-backup records its last whole-client run (settings.json's status_file) for the collector."""
    return f"{monitor_home(config)}/backup.json"


def drill_status_file(config: SuiteConfig) -> str:
    """Where a restore drill records its last result (settings.json's drill_status_file); may never exist."""
    return f"{monitor_home(config)}/drill.json"


def status_files(config: SuiteConfig) -> tuple[str, str]:
    """settings.json's status_file and drill_status_file ("" when monitoring is off: nothing reads them)."""
    if not config.monitoring.enabled:
        return "", ""
    return backup_status_file(config), drill_status_file(config)


def unit_name(config: SuiteConfig) -> str:
    return f"vh-collect-{config.client}"


def run_user(config: SuiteConfig) -> str:
    m = config.monitoring
    if m.user:
        return m.user
    return config.host.ssh_user if config.host.is_ssh else "root"


def docker_socket(config: SuiteConfig) -> str:
    """The engine's socket on the host itself (an ssh:// host's engine listens on the default one)."""
    docker = config.host.docker
    return docker.removeprefix("unix://") if docker.startswith("unix://") else "/var/run/docker.sock"


def mail_settings(config: SuiteConfig) -> tuple[dict[str, Any], SecretStr | None]:
    """(collect.json's email section, the SMTP password) from monitoring.smtp, else Chat's SMTP."""
    m = config.monitoring
    if not m.email:
        return {}, None
    if m.smtp is not None:
        s: Any = m.smtp
    else:
        s = config.chat.smtp
    return {
        "to": m.email,
        "host": s.address,
        "port": s.port,
        "username": s.username,
        "sender": s.sender,
        "starttls": True,
    }, s.password


def settings(config: SuiteConfig, probes: list[Probe]) -> dict[str, Any]:
    """collect.json: what the collector watches and its thresholds. Nothing secret."""
    m = config.monitoring
    email, _ = mail_settings(config)
    return {
        "format": FORMAT,
        "client": config.client,
        "docker_socket": docker_socket(config),
        "data_root": config.storage.data_root,
        "status_dir": monitor_home(config),
        "edge": "127.0.0.1:443",
        "interval_minutes": m.interval_minutes,
        "first_log_window": m.interval_minutes * 60,
        "endpoints": [
            {
                "name": p.name,
                "url": p.url,
                "expect": p.expect,
                "body": p.body,
                "budget_ms": m.endpoint_ms or p.budget_ms,
            }
            for p in probes
        ],
        "thresholds": {
            "cpu_percent": m.cpu_percent,
            "memory_percent": m.memory_percent,
            "host_memory_percent": m.host_memory_percent,
            "disk_percent": m.disk_percent,
            "endpoint_ms": m.endpoint_ms or config.verify.budget_ms,
            "cert_days": m.cert_days,
            "backup_hours": m.backup_hours or config.backup.max_age_hours,
        },
        "backup_status": backup_status_file(config) if config.backup.enabled else None,
        "drill_status": drill_status_file(config) if config.backup.enabled else None,
        "email": email,
    }


def _unit(template: str, **values: str) -> str:
    text = (SCRIPTS / "systemd" / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def units(config: SuiteConfig) -> dict[str, str]:
    user = run_user(config)
    home = monitor_home(config)
    # A user other than root reads the socket as a member of group docker (Debian's docker.io makes it).
    groups = "" if user == "root" else "SupplementaryGroups=docker"
    return {
        f"{unit_name(config)}.service": _unit(
            "vh-collect.service", CLIENT=config.client, HOME=home, USER=user, GROUPS=groups
        ),
        f"{unit_name(config)}.timer": _unit(
            "vh-collect.timer", CLIENT=config.client, INTERVAL=str(config.monitoring.interval_minutes)
        ),
    }


def monitoring(
    name: str,
    d: Deployment,
    probes: list[Probe],
    deployed: list[pulumi.Resource],
    parent: pulumi.Resource,
) -> pulumi.Resource:
    """The host step that installs (and on destroy removes) the collector, its settings and its timer."""

    cfg = d.config
    home = monitor_home(cfg)
    q = shlex.quote
    user = run_user(cfg)
    _, smtp_password = mail_settings(cfg)
    secret_env = {}
    lines = []
    if cfg.monitoring.webhook_url is not None:
        secret_env["VH_WEBHOOK_URL"] = secret(cfg.monitoring.webhook_url)
        lines.append('"webhook_url": os.environ["VH_WEBHOOK_URL"]')
    if smtp_password is not None:
        secret_env["VH_SMTP_PASSWORD"] = secret(smtp_password)
        lines.append('"smtp_password": os.environ["VH_SMTP_PASSWORD"]')
    # secrets.json from the step's environment (python3 reads it; no value is ever an argument).
    dump = f"import json, os; print(json.dumps({{{', '.join(lines)}}}))"
    installed = units(cfg)
    timer = f"{unit_name(cfg)}.timer"
    script = (
        AS_ROOT
        + f"as_root install -d -m 0755 -o {q(user)} {q(home)}\n"
        + write_file(f"{home}/vh-collect", (SCRIPTS / "vh_collect.py").read_text(), "0755")
        + write_file(
            f"{home}/collect.json", json.dumps(settings(cfg, probes), indent=2, sort_keys=True), "0644"
        )
        + f'python3 -c {q(dump)} | as_root sh -c \'umask 077 && cat > "$1.new" && chmod 0400 "$1.new" '
        + f'&& chown "$2" "$1.new" && mv "$1.new" "$1"\' sh {q(home + "/secrets.json")} {q(user)}\n'
        + "".join(write_file(f"/etc/systemd/system/{unit}", text, "0644") for unit, text in installed.items())
        + "as_root systemctl daemon-reload\n"
        + f"as_root systemctl enable --now {timer}\n"
    )
    return d.run(
        name,
        script,
        parent=parent,
        secret_env=secret_env,
        depends_on=deployed,
        delete=AS_ROOT_TOLERANT
        + f"as_root systemctl disable --now {timer} 2>/dev/null || true\n"
        + "".join(f"as_root rm -f /etc/systemd/system/{unit} || true\n" for unit in installed)
        + "as_root systemctl daemon-reload || true\n"
        + f"as_root rm -rf {q(home)} || true\n",
    )
