"""A new client: write its stack file, validated by the program's own config model, and say what comes next.

    python -m tools.new_client clienteF --domain clientef.com --company "Cliente F S.A." \\
        --timezone America/Argentina/Buenos_Aires --services hub,chat --acme-email ops@clientef.com \\
        --memory-mb 16384 --cpus 8 --set hub.country=AR \\
        --backup-repository s3:https://s3.us-east-005.backblazeb2.com/versatilehub-backups/clientef

Writes `Pulumi.<stack>.yaml` (never over an existing one) only when the config model accepts it with
nothing missing but the secrets, then prints the exact commands that create the stack, set each secret
the model asks for (the CLI prompts for the value, so it stays out of the shell history), check the plan
offline, show the real diff and deploy. Bad input: one line per problem naming the option, exit 2.

It also: proposes a host size when the services do not fit the default one (8192 MB, 4 cores) and no
size was given; derives `hub.language` from `hub.country` when not given (Frappe's own language list);
refuses options that do nothing in the chosen mode (`--standalone-port` outside standalone, the ACME
options where this stack runs no Traefik, `--host-key` without an ssh:// host); and says that the Hub's
site name is permanent.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

import pycountry
import yaml

from components import config as config_model
from components.config import (
    CPU_BUDGET_SHARE,
    MEMORY_BUDGET_SHARE,
    NAMESPACE,
    SERVICES,
    ConfigError,
    SuiteConfig,
)
from components.core import errors as config_errors
from tools import harness

# Stack keys new_client has an option for (the rest go through --set).
OPTIONS = {
    "client": "--client",
    "domain": "--domain",
    "company": "--company",
    "timezone": "--timezone",
    "acmeEmail": "--acme-email",
    "services": "--services",
    "mode": "--mode",
    "standalonePort": "--standalone-port",
    "host.docker": "--host",
    "host.sshHostKey": "--host-key",
    "host.memoryMb": "--memory-mb",
    "host.cpus": "--cpus",
    "traefik.acmeStaging": "--acme-staging",
    "backup.repository": "--backup-repository",
}
_SECRET_FIX = re.compile(
    r"pulumi config set --secret (--path )?'?(?P<key>versatilehub:[^' ]+)'?(?P<rest>.*)$"
)
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


# Common server sizes, to round a host proposal up to a machine one can rent.
HOST_MEMORY_MB = (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)
HOST_CPUS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)

# The country's language in Frappe's language list (frappe/frappe frappe/geo/languages.csv, commit
# 0e573fc7: regional Spanish for ten countries, no pt-BR). Countries not listed keep hub.language en.
_REGIONAL = {c: f"es-{c}" for c in ("AR", "BO", "CL", "CO", "DO", "EC", "GT", "MX", "NI", "PE")}
_BY_LANGUAGE = {
    "es": ("ES", "UY", "PY", "VE", "CR", "PA", "SV", "HN", "CU", "PR", "GQ"),
    "pt": ("BR", "PT", "AO", "MZ", "CV", "GW", "ST", "TL"),
    "fr": ("FR", "BE", "LU", "MC", "SN", "CI", "CM", "ML", "BF", "NE", "TG", "BJ", "GA", "CG", "CD", "HT"),
    "de": ("DE", "AT", "LI"),
    "it": ("IT", "SM", "VA"),
    "nl": ("NL", "SR"),
    "en-US": ("US",),
    "en-GB": ("GB",),
    "en": ("CA", "AU", "NZ", "IE", "IN", "ZA", "SG", "NG", "KE", "JM", "TT", "BZ", "BS", "BB", "GH", "PH"),
}
COUNTRY_LANGUAGE = {**{c: lang for lang, cs in _BY_LANGUAGE.items() for c in cs}, **_REGIONAL}


def language_for(country: str) -> str | None:
    """Frappe's language code for a country (code or English name, as hub.country accepts)."""
    try:
        code = str(pycountry.countries.lookup(country).alpha_2)
    except LookupError:
        return None
    return COUNTRY_LANGUAGE.get(code)


class FlowList(list[Any]):
    """A list YAML writes inline (`[hub, chat]`), as the other stack files do."""


yaml.SafeDumper.add_representer(
    FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _scalar(text: str) -> Any:
    """A --set value as a stack file would hold it: YAML scalars (true, 8, 1.5, text)."""
    value = yaml.safe_load(text) if text else ""
    return value if isinstance(value, (str, int, float, bool)) else text


def _put(doc: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
        if not isinstance(doc, dict):
            raise ValueError(f"{'.'.join(path)}: {part} is not a structured key")
    doc[path[-1]] = value


def stack_document(args: argparse.Namespace) -> dict[str, Any]:
    """The `config:` mapping (keys without the namespace) the options describe."""
    doc: dict[str, Any] = {
        "client": args.client or args.stack.lower(),
        "company": args.company,
        "domain": args.domain,
        "timezone": args.timezone,
    }
    if args.acme_email:
        doc["acmeEmail"] = args.acme_email
    doc["services"] = FlowList(s.strip() for s in args.services.split(",") if s.strip())
    if args.mode != "suite":
        doc["mode"] = args.mode
    if args.standalone_port:
        doc["standalonePort"] = args.standalone_port
    host: dict[str, Any] = {}
    if args.host:
        host["docker"] = args.host
    if args.host_key:
        host["sshHostKey"] = args.host_key
    if args.memory_mb is not None:
        host["memoryMb"] = args.memory_mb
    if args.cpus is not None:
        host["cpus"] = int(args.cpus) if float(args.cpus).is_integer() else args.cpus
    if host:
        doc["host"] = host
    if args.mode == "attach":  # the server's `web` network and its Traefik already exist
        doc["webNetwork"] = {"create": False}
    if args.acme_staging:
        doc["traefik"] = {"acmeStaging": True}
    if args.backup_repository:
        doc["backup"] = {"repository": args.backup_repository}
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.removeprefix(f"{NAMESPACE}:")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9_-]+)*", key):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with a stack key such as hub.country=AR")
        _put(doc, key.split("."), _scalar(value))
    hub = doc.get("hub")
    if "hub" in doc["services"] and isinstance(hub, dict) and "language" not in hub and hub.get("country"):
        language = language_for(str(hub["country"]))
        if language:
            hub["language"] = language
    return doc


def _set_keys(args: argparse.Namespace) -> list[str]:
    return [item.partition("=")[0].removeprefix(f"{NAMESPACE}:") for item in args.set]


def mode_problems(args: argparse.Namespace) -> list[str]:
    """Options that would do nothing in the chosen mode: refused, so nobody believes they took effect."""
    problems = []
    mode = args.mode
    if args.standalone_port and mode != "standalone":
        problems.append(
            f"--standalone-port does nothing in mode {mode}: only a standalone stack publishes on "
            "127.0.0.1:<port>; drop it, or add --mode standalone"
        )
    if mode != "suite":
        why = (
            "the suite stack's Traefik on that server holds the ACME account and its settings"
            if mode == "attach"
            else "a standalone stack runs no Traefik and gets no certificate"
        )
        if args.acme_email:
            problems.append(f"--acme-email does nothing in mode {mode}: {why}; drop it")
        if args.acme_staging:
            problems.append(f"--acme-staging does nothing in mode {mode}: {why}; drop it")
        for key in _set_keys(args):
            used_in_attach = mode == "attach" and key == "traefik.certResolver"
            if key.split(".")[0] in ("traefik", "portal", "acmeEmail") and not used_in_attach:
                problems.append(
                    f"--set {key} does nothing in mode {mode}: only a suite stack runs Traefik and the "
                    "portal; drop it"
                )
    if mode == "attach" and any(k.startswith("webNetwork.create") for k in _set_keys(args)):
        problems.append(
            "--set webNetwork.create: mode attach joins the server's existing web network "
            "(new_client writes webNetwork.create false); drop it"
        )
    if args.host_key and not (args.host or "").startswith("ssh://"):
        problems.append(
            "--host-key does nothing without --host ssh://user@host: the local socket needs no host key; "
            "drop it, or add --host"
        )
    return problems


def _round_up(value: float, sizes: tuple[int, ...]) -> int:
    return next((s for s in sizes if s >= value), math.ceil(value))


def host_proposal(stack: str, doc: dict[str, Any]) -> str | None:
    """When no host size was given and the default is too small: the size the services need."""
    big = {**doc, "host": {**doc.get("host", {}), "memoryMb": 10**7, "cpus": 10**4}}
    cfg, _, _ = required_secrets(stack, big)
    if cfg is None:
        return None
    memory, cpus = cfg.memory_budget_mb(), cfg.cpu_budget()
    need_mb, need_cpus = (
        math.ceil(memory / MEMORY_BUDGET_SHARE),
        math.ceil(100 * cpus / CPU_BUDGET_SHARE) / 100,
    )
    mb, cores = _round_up(need_mb, HOST_MEMORY_MB), _round_up(need_cpus, HOST_CPUS)
    default = config_model.HostConfig.model_validate({})
    return (
        f"{','.join(cfg.services)} in mode {cfg.mode} do not fit the default host "
        f"({default.memory_mb} MB, {default.cpus:g} cores): their limits add up to {memory} MB and "
        f"{cpus:.2f} cores, so the server needs at least {need_mb} MB and {need_cpus:g} cores (budgets "
        f"{MEMORY_BUDGET_SHARE:.0%} of the RAM, {CPU_BUDGET_SHARE:.0%} of the cores); a server of "
        f"{mb} MB and {cores} cores fits: pass the real size, e.g. --memory-mb {mb} --cpus {cores}"
    )


def _validate(stack: str, doc: dict[str, Any], secrets: list[str]) -> SuiteConfig:
    """The config model's verdict, with a placeholder standing for each secret still to be set."""
    full: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))  # a deep copy in stack-file types
    for key in secrets:
        _put(full, key.split("."), {"secure": "v1:new-client"})
    stack_cfg = harness.stack_config(stack, full)
    raw = {k.split(":", 1)[1]: v for k, v in stack_cfg.values.items()}
    top_level_secrets = frozenset(k.split(":", 1)[1] for k in stack_cfg.secret_keys)
    return config_model.parse(raw, top_level_secrets)


def required_secrets(stack: str, doc: dict[str, Any]) -> tuple[SuiteConfig | None, list[str], list[str]]:
    """(config, secret keys the model asks for, other problems). The model names each missing secret with
    a `pulumi config set --secret` fix; stand a placeholder in for it and ask again until it is satisfied."""
    secrets: list[str] = []
    for _ in range(len(config_errors.credential_paths(SuiteConfig)) + 1):
        try:
            cfg = _validate(stack, doc, secrets)
        except ConfigError as exc:
            asked = [m["key"].split(":", 1)[1] for m in map(_SECRET_FIX.search, exc.problems) if m]
            others = [p for p in exc.problems if not _SECRET_FIX.search(p)]
            if others or not asked or set(asked) <= set(secrets):
                return None, secrets, others or exc.problems
            secrets += [k for k in asked if k not in secrets]
            continue
        # A fix suggests one key of several that would do (any provider key, then the model's own):
        # keep only those the model cannot do without.
        for key in list(secrets):
            try:
                _validate(stack, doc, [k for k in secrets if k != key])
                secrets.remove(key)
            except ConfigError:
                pass
        return cfg, secrets, []
    raise AssertionError("unreachable: every credential path was tried")


def optional_secrets(cfg: SuiteConfig, required: list[str]) -> list[str]:
    """Credentials the model accepts for this stack but does not insist on (other providers, SSH key...)."""
    found = []
    for path in config_errors.credential_paths(SuiteConfig):
        key = ".".join(path)
        if key in required or (path[0] in SERVICES and not cfg.enabled(path[0])):
            continue
        if path[0] == "backup" and not cfg.backup.enabled:
            continue
        if path == ("sshPrivateKey",) and not cfg.host.is_ssh:
            continue
        found.append(key)
    return found


def secret_command(stack: str, key: str) -> str:
    info = config_errors.field_at(SuiteConfig, tuple(key.split(".")))
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    # A file redirect keeps the example (`< ~/.ssh/id_ed25519`); otherwise the CLI prompts for the value.
    redirect = re.search(r"(<\s*[~./$]\S*)\s*$", str(extra.get("example", "")))
    path = " --path" if "." in key else ""
    command = f"pulumi config set --stack {stack} --secret{path} '{NAMESPACE}:{key}'"
    return f"{command} {redirect.group(1)}" if redirect else command


def public_hostnames(cfg: SuiteConfig) -> list[str]:
    if not cfg.routed:
        return []
    names = [cfg.hostname(s) for s in cfg.services]
    if cfg.runs_traefik:
        names += cfg.portal_hostnames
        if cfg.traefik.dashboard:
            names.append(f"traefik.{cfg.domain}")
    return names


def _with_option(problem: str) -> str:
    """A model problem line, plus the new_client option that sets that key."""
    m = re.match(rf"{NAMESPACE}:([A-Za-z0-9_.\[\]-]+)", problem)
    key = re.sub(r"\[\d+\]$", "", m.group(1)) if m else ""
    option = OPTIONS.get(key) or (f"--set {key}=<value>" if key and "." in key else "")
    return f"{problem} [new_client: {option}]" if option else problem


def next_steps(stack: str, path: Path, cfg: SuiteConfig, required: list[str], optional: list[str]) -> str:
    lines: list[str] = [
        f"Wrote {path.name} for {cfg.company} ({', '.join(cfg.services)}; mode {cfg.mode}).",
        "",
    ]
    if cfg.enabled("hub"):
        site = cfg.hub.site(cfg.hostname("hub"))
        lines += [
            f"The Hub's site is named {site} for good: it names ERPNext's site folder and database, and no "
            "later change of versatilehub:hub.siteName renames it (a new hostname is served through it). "
            f"If that name is not the one to keep, remove {path.name} and run again with "
            "--set hub.siteName=<name>.",
            f"hub.language is {cfg.hub.language}"
            + (f" (from hub.country {cfg.hub.country})" if cfg.hub.language != "en" else "")
            + "; --set hub.language=<code> chooses another.",
            "",
        ]
    if cfg.enabled("chat") and cfg.chat.smtp.address is None:
        lines += [
            "Chat has no mail server (chat.smtp.address): Chatwoot cannot invite agents or reset passwords, "
            "and its mail jobs fail and retry. Until one is set, the super admin creates each agent with a "
            "password in the Super Admin console (https://" + cfg.hostname("chat") + "/super_admin, Users), "
            "then adds them to the account there. Set it with --set chat.smtp.address=<host> "
            "--set chat.smtp.sender=<from> (see docs/chat.md; port 465 uses implicit TLS).",
            "",
        ]
    lines += [
        "Next, from the project directory, with PULUMI_CONFIG_PASSPHRASE_FILE set (it encrypts this "
        "client's secrets):",
        "",
        "1. Create the stack on the local backend:",
        '   pulumi login "${PULUMI_BACKEND_URL:-file://$HOME/.pulumi-versatilehub}"',
        f"   pulumi stack init {stack} --secrets-provider passphrase",
        "",
    ]
    if required:
        lines.append(
            "2. Set its secrets (each command prompts for the value; nothing lands in your history):"
        )
        lines += [f"   {secret_command(stack, key)}" for key in required]
    else:
        lines.append("2. No secret to set: the suite generates its passwords and keys.")
    if optional:
        lines.append("   Optional, when this client uses them:")
        lines += [f"   {secret_command(stack, key)}" for key in optional]
    lines += [
        "   Generated secrets are read afterwards with `pulumi stack output secretCommands`.",
        "",
        "3. Check it offline, then see the real diff and the policy verdicts:",
        f"   .venv/bin/python -m tools.plan {stack}",
        f"   pulumi preview --diff --stack {stack} --policy-pack policies",
        "",
        "4. Deploy; `pulumi up` ends by probing every endpoint from the host (the verification output):",
        f"   bash tools/deploy.sh {stack}",
    ]
    hostnames = public_hostnames(cfg)
    if hostnames:
        lines += [
            "",
            "5. Point DNS at the server (A/AAAA records), then require trusted certificates:",
            f"   {', '.join(hostnames)}",
            f"   pulumi config set --stack {stack} --path '{NAMESPACE}:verify.trustedTls' true && "
            f"bash tools/deploy.sh {stack}",
        ]
    return "\n".join(lines)


def _header(cfg: SuiteConfig) -> str:
    return (
        f"# {cfg.company}: {', '.join(cfg.services)} (mode {cfg.mode}). Written by tools/new_client.\n"
        "# Secrets never go in this file by hand: `pulumi config set --secret` stores them encrypted.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.new_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="the stack name, e.g. clienteE (writes Pulumi.<stack>.yaml)")
    parser.add_argument("--domain", required=True, help="the client's base domain, e.g. clientee.com")
    parser.add_argument("--company", required=True, help='the client\'s name, e.g. "Cliente E S.A."')
    parser.add_argument(
        "--timezone", required=True, help="IANA time zone, e.g. America/Argentina/Buenos_Aires"
    )
    parser.add_argument("--services", required=True, help="comma list of agent, chat, hub, flow")
    parser.add_argument("--client", help="slug naming the containers (default: the stack name in lower case)")
    parser.add_argument("--acme-email", help="Let's Encrypt contact (required when this stack runs Traefik)")
    parser.add_argument("--mode", choices=("suite", "attach", "standalone"), default="suite")
    parser.add_argument("--standalone-port", type=int, help="loopback port in mode standalone")
    parser.add_argument("--host", help="ssh://user@host[:port] of the client's Docker host (default: local)")
    parser.add_argument("--host-key", help="the host's public key line (ssh-keyscan -t ed25519 HOST)")
    parser.add_argument("--memory-mb", type=int, help="the host's RAM in MB (budget: 80%% for limits)")
    parser.add_argument("--cpus", type=float, help="the host's cores (budget: 70%% for CPU caps)")
    parser.add_argument("--acme-staging", action="store_true", help="Let's Encrypt's staging CA (tests)")
    parser.add_argument(
        "--backup-repository",
        help="restic repository, e.g. s3:https://s3.<region>.backblazeb2.com/<bucket>/<client>",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other stack key, e.g. hub.country=AR",
    )
    parser.add_argument("--dir", type=Path, default=harness.ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if not _STACK_NAME.fullmatch(args.stack):
        print(f"{args.stack!r} is not a stack name: letters, digits, '-', '_' and '.'", file=sys.stderr)
        return 2
    path = args.dir / f"Pulumi.{args.stack}.yaml"
    if path.exists():
        print(
            f"{path.name} exists; a new client gets a new stack name (edit or remove that file instead)",
            file=sys.stderr,
        )
        return 2
    refused = mode_problems(args)
    if refused:
        for line in refused:
            print(line, file=sys.stderr)
        return 2
    try:
        doc = stack_document(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    cfg, required, problems = required_secrets(args.stack, doc)
    if cfg is None:
        budget = [
            p for p in problems if p.startswith((f"{NAMESPACE}:host.memoryMb:", f"{NAMESPACE}:host.cpus:"))
        ]
        proposal = (
            host_proposal(args.stack, doc)
            if budget and args.memory_mb is None and args.cpus is None
            else None
        )
        for line in problems:
            if proposal and line in budget:
                continue
            print(_with_option(line), file=sys.stderr)
        if proposal:
            print(proposal, file=sys.stderr)
        return 2
    text = _header(cfg) + yaml.safe_dump(
        {"config": {f"{NAMESPACE}:{k}": v for k, v in doc.items()}},
        sort_keys=False,
        allow_unicode=True,
        width=1000,
    )
    try:
        with path.open("x", encoding="utf-8") as out:  # "x": never replace a file that appeared meanwhile
            out.write(text)
    except FileExistsError:
        print(f"{path.name} exists; not overwritten", file=sys.stderr)
        return 2
    print(next_steps(args.stack, path, cfg, required, optional_secrets(cfg, required)))
    return 0


if __name__ == "__main__":
    harness.exit_after_plans(main())
