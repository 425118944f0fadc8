"""A real SMTP server on loopback for the alert-mail tests: Debian's aiosmtpd (python3-aiosmtpd), run by
Debian's own python3 as a separate process, as a mail relay would be: STARTTLS required before AUTH, AUTH
required before MAIL, one user. Each accepted message is written to <maildir>/<n>.eml.

    /usr/bin/python3 tests/smtp_server.py PORT CERT KEY USER PASSWORD_FILE MAILDIR [--no-tls]

With --no-tls the server offers no STARTTLS and takes AUTH in the clear: a relay a client must refuse.
"""

from __future__ import annotations

import itertools
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Maildir:
    def __init__(self, folder: Path):
        self.folder = folder
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        path = self.folder / f"{next(self.numbers)}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        return "250 OK"


def main() -> None:
    port, cert, key, user, password_file, maildir = sys.argv[1:7]
    tls = "--no-tls" not in sys.argv[7:]
    password = Path(password_file).read_text().strip().encode()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password
        # handled=False: the server itself answers 535 to a failed login (True means we already did).
        return AuthResult(success=ok, handled=False)

    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    controller = Controller(
        Maildir(Path(maildir)),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=tls,
        auth_required=True,
        auth_require_tls=tls,
        authenticator=authenticate,
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
