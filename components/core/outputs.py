"""Stack-output helpers: the exact command that reads each secret output.

`pulumi stack output` shows secrets as "[secret]" unless asked, and it addresses only top-level keys; a
nested secret (hub.adminPassword) is picked out of the JSON with jq. Which outputs are secret is read
from the Outputs themselves, so a service that adds a secret output gets its command without a list to
maintain here.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi


def _jq_path(path: list[str]) -> str:
    return "".join(f".{p}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) else f'."{p}"' for p in path)


def read_command(stack: str, key: str, path: list[str]) -> str:
    base = f"pulumi stack output --stack {stack} --show-secrets"
    return f"{base} {key}" if not path else f"{base} --json {key} | jq -r '{_jq_path(path)}'"


def secret_commands(outputs: dict[str, Any]) -> pulumi.Output[dict[str, str]]:
    """{"hub.adminPassword": "pulumi stack output ... | jq ...", ...} for every secret leaf of `outputs`."""
    stack = pulumi.get_stack()
    leaves: list[tuple[str, list[str], pulumi.Output[Any]]] = []

    def walk(key: str, path: list[str], value: Any) -> None:
        if isinstance(value, pulumi.Output):
            leaves.append((key, path, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(key, [*path, str(k)], v)

    for key, value in outputs.items():
        walk(key, [], value)

    async def collect() -> dict[str, str]:
        return {
            ".".join([key, *path]): read_command(stack, key, path)
            for key, path, value in leaves
            if await value.is_secret()
        }

    return pulumi.Output.from_input(collect())
