"""The client's credentials sheet: every URL and login, read from the stack's outputs.

    python -m tools.credentials clienteA                  # URLs and user names; secrets as [secret]
    python -m tools.credentials clienteA --show-secrets   # the passwords and tokens too

It runs `pulumi stack output --stack <stack> --json` (with `--show-secrets` only when you pass it), so it
needs the same backend and passphrase as `pulumi up` (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE_FILE;
tools/deploy.sh sets both and prints the sheet without secrets after a successful update). Secrets go to
standard output only: never to a file, a log or an error line. The CLI shows a secret output as the
string "[secret]" unless asked (pulumi/pulumi pkg/backend/display/json.go, massagePropertyValue).

What it reads is what the program exports (components/suite.py `_outputs`, each service's `outputs`):
`url`, the login (`adminUser`, `adminEmail`, `ownerEmail`, `user`) and its secret (`adminPassword`,
`ownerPassword`, `password`, `gatewayToken`), per service, the portal, Traefik's dashboard and the backup
repository. Encryption keys are not logins: `pulumi stack output secretCommands` lists how to read them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from typing import Any

SECRET = "[secret]"
LOGIN_KEYS = ("adminUser", "adminEmail", "ownerEmail", "user")
SECRET_KEYS = {
    "adminPassword": "password",
    "ownerPassword": "password",
    "password": "password",
    "gatewayToken": "token",
    "repositoryPassword": "password",
}
# The sections of the sheet, in order: (output key, label).
SECTIONS = (
    ("portal", "portal"),
    ("hub", "hub"),
    ("chat", "chat"),
    ("flow", "flow"),
    ("agent", "agent"),
    ("traefikDashboard", "traefik"),
)


class CredentialsError(Exception):
    """One line for the operator; never carries a secret."""


def read_outputs(stack: str, *, show_secrets: bool) -> dict[str, Any]:
    if shutil.which("pulumi") is None:
        raise CredentialsError(
            "pulumi is not installed on this machine: curl -fsSL https://get.pulumi.com | sh (see README)"
        )
    command = ["pulumi", "stack", "output", "--stack", stack, "--json"]
    if show_secrets:
        command.append("--show-secrets")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # The CLI's own error (no stack, wrong passphrase, backend not logged in): its last line.
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise CredentialsError(
            f"pulumi stack output --stack {stack} failed: {reason} (same PULUMI_BACKEND_URL and "
            "PULUMI_CONFIG_PASSPHRASE_FILE as tools/deploy.sh?)"
        )
    try:
        outputs = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise CredentialsError(
            f"pulumi stack output --stack {stack} --json did not print JSON: {exc}"
        ) from None
    if not isinstance(outputs, dict):
        raise CredentialsError(f"pulumi stack output --stack {stack} --json printed no outputs object")
    if not outputs:
        raise CredentialsError(
            f"stack {stack} has no outputs yet: deploy it first (bash tools/deploy.sh {stack})"
        )
    return outputs


def _value(value: Any, show_secrets: bool) -> str:
    if value == SECRET:
        return f"{SECRET}  (--show-secrets)" if not show_secrets else SECRET
    return str(value)


def sheet(stack: str, outputs: dict[str, Any], *, show_secrets: bool) -> str:
    """The sheet as text: one block per service, a line per URL, login and secret."""
    title = f"{stack}: {outputs.get('company', '?')} (client {outputs.get('client', '?')}"
    lines = [f"{title}, mode {outputs.get('mode', '?')})"]
    for key, label in SECTIONS:
        section = outputs.get(key)
        if not isinstance(section, dict):
            continue
        url = section.get("url")
        lines.append(f"{label:<9}{url or ''}")
        if isinstance(url, str) and "://127.0.0.1" in url:
            lines.append(f"{'':<9}on the server's loopback: reach it through an SSH tunnel (ssh -L)")
        for login in LOGIN_KEYS:
            if login in section:
                lines.append(f"{'':<9}{'login':<10}{section[login]}")
        for secret, name in SECRET_KEYS.items():
            if secret in section:
                lines.append(f"{'':<9}{name:<10}{_value(section[secret], show_secrets)}")
        pairing = section.get("pairing")
        if isinstance(pairing, dict) and pairing.get("list"):
            lines.append(f"{'':<9}{'pairing':<10}{pairing['list']}")
    backup = outputs.get("backup")
    if isinstance(backup, dict) and backup.get("repository"):
        lines.append(f"{'backup':<9}{backup['repository']}")
        if "repositoryPassword" in backup:
            password = _value(backup["repositoryPassword"], show_secrets)
            lines.append(f"{'':<9}{'password':<10}{password}  (escrow it off the server)")
        if backup.get("snapshotsCommand"):
            lines.append(f"{'':<9}{'snapshots':<10}{backup['snapshotsCommand']}")
    if not show_secrets:
        lines.append(
            f"secrets: python -m tools.credentials {stack} --show-secrets (printed here, stored nowhere)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.credentials", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="the stack name, e.g. clienteA")
    parser.add_argument(
        "--show-secrets", action="store_true", help="print passwords and tokens (to standard output only)"
    )
    parser.add_argument("--json", action="store_true", help="the sheet's fields as JSON")
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs(args.stack, show_secrets=args.show_secrets)
    except CredentialsError as exc:
        print(f"credentials: {exc}", file=sys.stderr)
        return 1
    if args.json:
        picked = {
            key: {k: v for k, v in outputs[key].items() if k == "url" or k in LOGIN_KEYS or k in SECRET_KEYS}
            for key, _ in (*SECTIONS, ("backup", "backup"))
            if isinstance(outputs.get(key), dict)
        }
        if "backup" in picked:
            picked["backup"]["repository"] = outputs["backup"].get("repository")
        print(json.dumps(picked, indent=2))
    else:
        print(sheet(args.stack, outputs, show_secrets=args.show_secrets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
