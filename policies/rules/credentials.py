"""The seed's credential items: unique credentials, strong generated passwords, no defaults or placeholders.

Secrets are read where a process receives them: container environments, host commands' environment and
the `NAME=value` lines a remote command reads from stdin. Under the engine they arrive decrypted; no
message ever repeats a value.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterator

from .base import (
    COMMANDS,
    CONTAINER,
    RANDOM_BYTES,
    RANDOM_PASSWORD,
    Anchor,
    Finding,
    Resource,
    Settings,
    Stack,
    list_of,
    resource_rule,
    service_of,
    stack_rule,
)
from .model import credentials

# Values that come from examples and vendor docs, never real credentials (compared case-insensitively).
_PLACEHOLDER = re.compile(
    r"^(changeme|change[-_ ]?me|change[-_ ]?this|password\d*|passw0rd|p@ssw0rd|secret|admin|administrator|"
    r"root|"
    r"postgres|mysql|mariadb|redis|n8n|chatwoot|frappe|test|testing|example|sample|default|demo|guest|"
    r"123456\d*|12345678|qwerty|letmein|x{3,}|sk-x+|sk-\.+|\*+|\.\.\.|<[^>]*>|\$\{[^}]*\}|your[-_ ]?.*|"
    r"replace[-_ ]?(me|with).*|insert[-_ ]?.*|todo|tbd|none|null|nil|empty|dummy|placeholder|fixme)$",
    re.IGNORECASE,
)

# Credentials issued by someone else (LLM providers, bots, mail and storage providers) keep the issuer's
# format; their placeholders are still refused by no-default-credentials.
ISSUED_ELSEWHERE = [
    "*_API_KEY",
    "*_BOT_TOKEN",
    "*_APP_TOKEN",
    "SMTP_PASSWORD",
    "*_SMTP_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "B2_ACCOUNT_KEY",
    "B2_APPLICATION_KEY",
]


@resource_rule(
    "no-default-credentials",
    "Credentials are set and are not defaults or placeholders (changeme, admin, sk-xxx, the user name).",
    anchor=Anchor(seed="unique credentials, no defaults; valid API keys"),
    level="mandatory",
    types=(CONTAINER, *COMMANDS),
    remediation="Generate the value with pulumi-random (RandomPassword/RandomBytes) or store the real one "
    "with `pulumi config set --secret ...`.",
)
def no_default_credentials(r: Resource, _: Settings) -> Iterator[str]:
    for cred in credentials(r):
        value = cred.value.strip()
        if not value:
            yield f"{cred.key} is empty"
        elif _PLACEHOLDER.match(value):
            yield f"{cred.key} is a default or placeholder value"
        elif cred.user and value == cred.user:
            yield f"{cred.key} equals the user name it goes with"


def _entropy_bits(value: str) -> float:
    """An upper bound from the character classes present: length x log2(alphabet)."""
    alphabet = 0
    alphabet += 10 if re.search(r"[0-9]", value) else 0
    alphabet += 26 if re.search(r"[a-z]", value) else 0
    alphabet += 26 if re.search(r"[A-Z]", value) else 0
    alphabet += 32 if re.search(r"[^0-9A-Za-z]", value) else 0
    return len(value) * math.log2(alphabet) if alphabet else 0.0


@resource_rule(
    "secret-strength",
    "Generated secrets have at least 32 characters (32 random bytes = 256 bits) and are not repetitive.",
    anchor=Anchor(seed="strong generated passwords (openssl rand -base64 32)"),
    level="mandatory",
    types=(CONTAINER, *COMMANDS, RANDOM_PASSWORD, RANDOM_BYTES),
    remediation="RandomPassword(length=32+) or RandomBytes(length=32+); never a hand-typed secret.",
    config={
        "minLength": {"type": "integer", "default": 32, "description": "Minimum characters (and bytes)."},
        "minDistinct": {"type": "integer", "default": 10, "description": "Minimum distinct characters."},
        "issuedElsewhere": list_of(
            ISSUED_ELSEWHERE, "Variable names (globs) whose values a third party issues in its own format."
        ),
    },
)
def secret_strength(r: Resource, s: Settings) -> Iterator[str]:
    minimum = int(s["minLength"])
    if r.type in (RANDOM_PASSWORD, RANDOM_BYTES):
        length = r.props.get("length")
        unit = "characters" if r.type == RANDOM_PASSWORD else "bytes"
        if isinstance(length, (int, float)) and length < minimum:
            yield f"generates {int(length)} {unit}; use at least {minimum}"
        return
    for cred in credentials(r):
        base = cred.key.split(" ", 1)[0]
        if any(fnmatch.fnmatchcase(base, p) for p in s["issuedElsewhere"]) or not cred.value:
            continue
        if cred.value.startswith(("$2a$", "$2b$", "$2y$", "$argon2")):
            continue  # a password hash: its strength is the password's, checked where that is generated
        if len(cred.value) < minimum:
            yield f"{cred.key} has {len(cred.value)} characters; use at least {minimum}"
        elif len(set(cred.value)) < int(s["minDistinct"]) or _entropy_bits(cred.value) < 128:
            yield f"{cred.key} is repetitive or drawn from too few characters"


@stack_rule(
    "secrets-not-reused",
    "No secret value is shared between services (a service's app and its database may share theirs).",
    anchor=Anchor(seed="unique credentials"),
    level="mandatory",
    remediation="Give each service its own RandomPassword/RandomBytes; pass one service's secret to another "
    "only through the service that owns it.",
)
def secrets_not_reused(stack: Stack, _: Settings) -> Iterator[Finding]:
    seen: dict[str, dict[str, Resource]] = {}
    for r in stack.of_type(CONTAINER, *COMMANDS):
        checks = ":verify:Verify::" in (r.parent or "")
        for cred in credentials(r):
            if checks and cred.key.startswith("VH_"):
                # The post-deploy checks (components/core/probe.py) sign in with a service's own secret, as
                # its user would: used there on the service's behalf, not shared with another service.
                continue
            if len(cred.value) >= 8:  # shorter ones are already refused; never compare trivia
                seen.setdefault(cred.value, {}).setdefault(service_of(r), r)
    for owners in seen.values():
        if len(owners) > 1:
            holders = sorted(owners.values(), key=lambda x: x.display)
            others = ", ".join(h.display for h in holders[1:])
            yield Finding(f"holds the same secret value as {others} (another service)", holders[0])
