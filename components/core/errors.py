"""Bad stack config as one line per problem: the stack key at its exact path and the command that fixes it.

The one place that turns a pydantic ValidationError into `pulumi config set` fix lines; the functions walk
the root model they are given (components/config.py's SuiteConfig), so they import no section.
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from typing import Any

import pulumi
from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from components.core.model import NAMESPACE


class ConfigError(pulumi.RunError):
    """Bad stack configuration. RunError: Pulumi prints the message without a traceback."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def stack_key(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-after", "function-", "literal[")):
            continue
        else:
            path += ("." if path else "") + str(part)
    return f"{NAMESPACE}:{path}"


def field_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo that a stack key path points at (None when the path leaves the models)."""
    current: Any = root
    info = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or n): f for n, f in current.model_fields.items()}
            info = fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif (
            typing.get_origin(current) is dict
        ):  # a free-form key (`resources.hub-backend`): step into the value
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return None
    return info


def fix_hint(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The `pulumi config set` command that fixes a key, with an example value."""
    info = field_at(root, loc)
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    example = str(extra.get("example", "<value>"))
    key = stack_key(loc)
    if example.startswith("--"):
        return f"fix: pulumi config set {example.replace('KEY', key)}"
    if key.endswith("]"):
        return f"fix: pulumi config set --path '{key}' {example.split(',')[0]}"
    if "." in key:
        return f"fix: pulumi config set --path '{key}' {example}"
    return f"fix: pulumi config set {key} {example}"


def problem_lines(root: type[BaseModel], error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":  # a dict key outside its allowed set (`hostnames.hubb`)
            lines.append(_bad_key_line(loc[:-1], err))
        elif err["type"] == "missing":
            lines.append(f"{stack_key(loc)} is required; {fix_hint(root, loc)}")
        elif err["type"] == "extra_forbidden":
            lines.append(
                f"{stack_key(loc)} is not a known key{_suggest(root, loc)}; "
                f"remove it: pulumi config rm --path '{stack_key(loc)}'"
            )
        elif (
            _is_mapping(root, loc)
            and isinstance(err.get("input"), dict)
            and msg.split(": ", 1)[0] in err["input"]
        ):
            # A check over a map's entries (`versions`, `resources`): each item names its entry's key.
            for item in msg.split(" | "):
                entry, _, text = item.partition(": ")
                fix = "" if "; fix: " in text else f"; {fix_hint(root, (*loc, entry))}"
                sep = " " if text.startswith("is not ") else ": "
                lines.append(f"{stack_key((*loc, entry))}{sep}{text}{fix}")
        elif "| " in msg or re.split(r"[.\[]", msg.split(": ", 1)[0])[0] in _field_names(root, loc):
            # A model's cross-field check: each item starts with the key it is about.
            for item in msg.split(" | "):
                field, _, text = item.partition(": ")
                sub = (*loc, *field.split("."))
                # A check that knows the exact fix says so itself ("...; fix: ..."); else the example's.
                fix = "" if "; fix: " in text else f"; {fix_hint(root, sub)}"
                lines.append(f"{stack_key(sub)}: {text}{fix}")
        else:
            secret = "secret" in err["type"] or _holds_secret(field_at(root, loc))
            shown = "" if secret else _short(err.get("input"))
            text, _, exact = msg.partition("; fix: ")  # a check that knows the exact fix says so itself
            fix = f"fix: {exact}" if exact else fix_hint(root, loc)
            lines.append(f"{stack_key(loc)}: {text}{'' if exact else shown}; {fix}")
    return lines


def _is_mapping(root: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    info = field_at(root, loc)
    return info is not None and typing.get_origin(info.annotation) is dict


def _bad_key_line(loc: tuple[Any, ...], err: Any) -> str:
    """`hostnames.hubb`: the key is not one of the allowed ones; the fix moves its value to the closest."""
    bad = str(loc[-1])
    choices = re.findall(r"'([^']+)'", str(err.get("ctx", {}).get("expected", "")))
    hint = difflib.get_close_matches(bad, choices, n=1)
    parent = stack_key(loc[:-1])
    target = f"{parent}.{hint[0] if hint else '<' + '|'.join(choices) + '>'}"
    return (
        f"{stack_key(loc)} is not a known key"
        + (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(choices)}")
        + f"; fix: pulumi config rm --path '{stack_key(loc)}', "
        f"then pulumi config set --path '{target}' <value>"
    )


def _field_names(root: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    info = field_at(root, loc)
    model = root if not loc else (info.annotation if info is not None else None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {f.alias or n for n, f in model.model_fields.items()}
    return set()


def _holds_secret(info: Any) -> bool:
    """Whether a field (FieldInfo, or a type) holds a credential: its value is never echoed."""
    annotation = info.annotation if hasattr(info, "annotation") else info
    return annotation is SecretStr or any(_holds_secret(arg) for arg in typing.get_args(annotation))


@functools.cache  # the models never change: walk them once per process
def credential_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    """Stack key paths of every credential inside a structured key (`agent.providerKeys.anthropic`)."""
    paths = []
    for name, info in model.model_fields.items():
        path = (*prefix, info.alias or name)
        if _holds_secret(info):
            paths.append(path)
            continue
        if typing.get_origin(info.annotation) in (dict, list):
            continue  # free-form keys and lists: their stack paths are not field names
        for candidate in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths.extend(credential_paths(candidate, path))
    return tuple(paths)


def plain_credentials(root: type[BaseModel], key: str, value: Any) -> list[str]:
    """A structured key that holds credentials but was not stored with --secret: one line per credential.

    Pulumi marks a whole structured key secret when any of its leaves is `secure:`, so a plain-text leaf
    beside an encrypted one cannot be seen from here; a key whose credentials are all plain always is.
    """
    problems = []
    for path in credential_paths(root):
        if len(path) < 2 or path[0] != key:
            continue  # top-level secrets are SECRET_KEYS' business
        leaf: Any = value
        for part in path[1:]:
            leaf = leaf.get(part) if isinstance(leaf, dict) else None
        if leaf not in (None, ""):
            stack_key = f"{NAMESPACE}:{'.'.join(path)}"
            problems.append(
                f"{stack_key} is stored in plain text; store it encrypted: "
                f"pulumi config set --secret --path '{stack_key}' <value>"
            )
    return problems


def _short(value: Any) -> str:
    """The offending value, when it is short and not structured (secrets never get here)."""
    if value is None or isinstance(value, (dict, list)) or len(str(value)) > 60:
        return ""
    return f" (got {value!r})"


def _suggest(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    match = difflib.get_close_matches(str(loc[-1]), sorted(_field_names(root, loc[:-1])), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
