"""Shared by the post-deploy check tests: a stand-in app on loopback, and the real verification script
(components/edge/verify.py) run over a service's checks, as the host step runs it."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from components.core.host import PREAMBLE
from components.edge import verify


class StandIn(http.server.BaseHTTPRequestHandler):
    """A stand-in app: subclasses answer by path; `mode` picks the way it fails, `seen` records requests."""

    mode = "ok"
    seen: list[str] = []

    def _send(self, code: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


H = TypeVar("H", bound=StandIn)


@contextmanager
def serving(handler: type[H]) -> Iterator[tuple[str, type[H]]]:
    """`handler` on a loopback port: its base URL, and a fresh subclass (set its `mode`, read its `seen`)."""
    fresh = type("Handler", (handler,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), fresh)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fresh
    finally:
        server.shutdown()


def run_checks(
    checks: Sequence[verify.ServiceCheck], env: dict[str, str], *, wait: int = 1, path: str = "/usr/bin:/bin"
) -> tuple[int, dict[str, Any], str]:
    """The verification script over `checks` alone, with `env` as the step's environment: its exit status,
    report and stderr. Retries sleep 5 s in production; here a failing check gives up after a short wait."""
    text = PREAMBLE + verify.script([], wait_seconds=wait, trusted_tls=False, checks=checks)
    text = text.replace("sleep 5", "sleep 0.2")
    done = subprocess.run(
        ["/bin/bash", "-c", text], capture_output=True, text=True, timeout=60, env={**env, "PATH": path}
    )
    return done.returncode, verify.parse_report(done.stdout), done.stderr
