"""Deeper post-deploy checks a service adds to the verification step (components/edge/verify.py).

An endpoint probe shows that a service's health path answers; a check shows that a user could work: log in
with the generated password, open a realtime connection, find the company. A service lists them in its
component's `checks` attribute. Each is a bash script in the service's `scripts/` folder, run on the host
after every endpoint answered, and retried every 5 s until the step's deadline (`verify.waitSeconds`). It
runs under `set -euo pipefail` and gets:

- `$1` (also `VH_BASE_URL`): the service's public base URL, no trailing slash (`https://<host>`, or
  `http://127.0.0.1:<port>` in standalone mode);
- `vh_curl URL [curl args...]`: curl with `-sS --max-time 20`, pinned to this host (`--resolve` to
  127.0.0.1, so it works before DNS points here; the certificate is not checked again, the endpoint probe
  already recorded its trust);
- its `env` and `secret_env` in the environment (secret values never go on a command line).

It prints nothing secret. On failure it exits non-zero, and its last stderr line says what failed; that
line becomes `verify: <check name>: <line>` in the update's error and the `verification` output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi


@dataclass(frozen=True)
class Check:
    name: str  # lowercase words and dashes, starting with the service: "hub-login"
    script: str  # the bash body (core.scripts.script(__name__, "probe-....sh"))
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", self.name):
            raise ValueError(f"check name {self.name!r}: lowercase words joined by dashes")
        for key in (*self.env, *self.secret_env):
            if not re.fullmatch(r"VH_[A-Z0-9_]+", key) or key == "VH_BASE_URL":
                raise ValueError(f"check {self.name}: environment name {key!r} must be VH_<NAME>")
