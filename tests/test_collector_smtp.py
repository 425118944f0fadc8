"""Alert mail through a real SMTP server (tests/smtp_server.py: Debian's aiosmtpd in its own process,
STARTTLS and AUTH required), sent by the real collector script with the email settings the program plans.

What an operator relies on: each incident is mailed once when it opens and once when it clears; a wrong
SMTP password loses no alert (it is sent on the next run once the password is right) and never shows up in
the collector's output; a relay without STARTTLS never receives the password in the clear.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.collector_lab import COLLECTOR, self_signed
from tests.conftest import PlanFn
from tools import harness

SERVER = Path(__file__).with_name("smtp_server.py")
PASSWORD = "s3cret-Smtp-pass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smtp_server(folder: Path, user: str, tls: bool = True) -> Iterator[tuple[int, Path, Path]]:
    """(port, maildir, CA file the collector must trust) of a running server; stopped afterwards."""
    key, cert = self_signed(folder, ["localhost"], days=30)
    maildir = folder / "maildir"
    maildir.mkdir()
    password_file = folder / "smtp-password"
    password_file.write_text(PASSWORD)
    port = _free_port()
    argv = ["/usr/bin/python3", str(SERVER), str(port), str(cert), str(key), user, str(password_file)]
    server = subprocess.Popen(
        [*argv, str(maildir), *([] if tls else ["--no-tls"])], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield port, maildir, cert
    finally:
        server.terminate()
        server.wait(timeout=10)


def _planned_email(plan: PlanFn) -> dict[str, Any]:
    """collect.json's email section exactly as the monitoring step writes it (Chat's SMTP account)."""
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
        monitoring={"email": "ops@clientea.com"},
    )
    script = harness.plain(p.named("monitoring").inputs["create"])
    marker = "/monitor/collect.json <<'VH_BACKUP_EOF'\n"
    start = script.index(marker) + len(marker)
    return dict(json.loads(script[start : script.index("\nVH_BACKUP_EOF", start)])["email"])


class Host:
    """The collector's folder on a server: collect.json, secrets.json (0400) and what it writes."""

    def __init__(self, folder: Path, mail: dict[str, Any], ca: Path):
        self.folder, self.ca = folder, ca
        self.status = folder / "monitor"
        self.status.mkdir()
        self.backup_finished(hours_ago=30)  # older than the 26 h threshold: one incident
        settings = {
            "format": 1,
            "client": "clientea",
            "docker_socket": str(folder / "no-docker.sock"),  # a second incident: the engine is down
            "data_root": str(folder),
            "status_dir": str(self.status),
            "edge": "127.0.0.1:1",
            "interval_minutes": 5,
            "endpoints": [],
            "thresholds": {"backup_hours": 26},
            "backup_status": str(self.status / "backup.json"),
            "email": mail,
        }
        (folder / "collect.json").write_text(json.dumps(settings))

    def backup_finished(self, hours_ago: float) -> None:
        finished = int(time.time() - hours_ago * 3600)
        record = {"format": 1, "result": "ok", "finished": finished, "last_ok": finished, "reason": "daily"}
        (self.status / "backup.json").write_text(json.dumps(record))

    def password(self, value: str) -> None:
        secrets = self.folder / "secrets.json"
        secrets.unlink(missing_ok=True)
        secrets.write_text(json.dumps({"smtp_password": value}))
        secrets.chmod(0o400)

    def collect(self) -> subprocess.CompletedProcess[str]:
        argv = ["/usr/bin/python3", str(COLLECTOR), "--settings", str(self.folder / "collect.json")]
        # The relay's certificate is trusted through OpenSSL's SSL_CERT_FILE, as a host's CA store would.
        env = {"PATH": os.environ["PATH"], "SSL_CERT_FILE": str(self.ca)}
        argv += ["--secrets", str(self.folder / "secrets.json")]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done


def _mails(maildir: Path) -> list[email.message.EmailMessage]:
    found = sorted(maildir.glob("*.eml"), key=lambda p: int(p.stem))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in found]


def _subjects(maildir: Path) -> list[str]:
    return [" ".join(str(m["Subject"]).split()) for m in _mails(maildir)]  # unfolded


def test_each_incident_is_mailed_once_when_it_opens_and_once_when_it_clears(
    plan: PlanFn, tmp_path: Path
) -> None:
    mail = _planned_email(plan)
    with smtp_server(tmp_path, user=mail["username"]) as (port, maildir, ca):
        host = Host(tmp_path, {**mail, "host": "localhost", "port": port}, ca)
        host.password(PASSWORD)
        host.collect()
        engine_down = f"the Docker engine does not answer: {tmp_path}/no-docker.sock: [Errno 2] No such file"
        assert sorted(_subjects(maildir)) == [
            "[clientea] OPEN: no complete backup in the last 26 h (the last one 30 h ago)",
            # The collector keeps subjects short; a header loses a trailing space (where the cut falls
            # depends on the temporary folder's length).
            f"[clientea] OPEN: {engine_down} or directory"[:150].rstrip(),
        ]
        first = _mails(maildir)[0]
        assert (first["From"], first["To"]) == ("chat@clientea.com", "ops@clientea.com")
        assert "incident: " in first.get_content()

        host.collect()  # nothing changed: nothing new is sent
        assert len(_mails(maildir)) == 2

        host.backup_finished(hours_ago=1)
        host.collect()
        assert _subjects(maildir)[2:] == [
            "[clientea] CLEARED: cleared: no complete backup in the last 26 h (the last one 30 h ago)"
        ]


def test_a_wrong_smtp_password_loses_no_alert_and_never_shows(plan: PlanFn, tmp_path: Path) -> None:
    mail = _planned_email(plan)
    with smtp_server(tmp_path, user=mail["username"]) as (port, maildir, ca):
        host = Host(tmp_path, {**mail, "host": "localhost", "port": port}, ca)
        host.password("not-the-password")
        done = host.collect()
        assert _mails(maildir) == []
        assert "mail to ops@clientea.com: (535" in done.stderr, done.stderr
        assert "not-the-password" not in done.stdout + done.stderr

        host.password(PASSWORD)  # the operator fixes it: the open incidents are sent now, once
        host.collect()
        assert len(_mails(maildir)) == 2
        host.collect()
        assert len(_mails(maildir)) == 2


def test_a_relay_without_starttls_never_gets_the_password(plan: PlanFn, tmp_path: Path) -> None:
    mail = _planned_email(plan)
    with smtp_server(tmp_path, user=mail["username"], tls=False) as (port, maildir, ca):
        host = Host(tmp_path, {**mail, "host": "localhost", "port": port}, ca)
        host.password(PASSWORD)
        done = host.collect()
        assert _mails(maildir) == []
        assert "STARTTLS extension not supported by server" in done.stderr, done.stderr
