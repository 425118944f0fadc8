"""Pin every image by digest: ask the registry for each pin's digest and (with --write) put it in the pins.

    python -m tools.pin_digests            # each image's digest, from its registry
    python -m tools.pin_digests --write    # the same, written into components/core/versions.py
    python -m tools.pin_digests --tool buildx

The digest is the one `repository:tag` resolves to at the registry: for a multi-platform image, its index
(manifest list), so the pin holds on every platform. skopeo reports it as `.Digest` of `skopeo inspect`,
the digest of the top-level manifest it fetched (containers/skopeo cmd/skopeo/inspect.go); `docker buildx
imagetools inspect` as `.Manifest.digest`. A stack that pins its own tag takes a digest the same way:
`pulumi config set --path 'versatilehub:versions.<image>' '<tag>@sha256:...'`.

Nothing is written unless every image resolved: one line per image that did not, and exit 1. It needs a
registry: run it on a machine that reaches docker.io and ghcr.io (an operator's, not CI's).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from components.core import versions

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class PinError(Exception):
    """One line for the operator."""


def _qualified(reference: str) -> str:
    """`traefik:v3` -> `docker.io/library/traefik:v3` (what skopeo's docker:// transport expects)."""
    first = reference.split("/", 1)[0]
    if "/" in reference and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"docker.io/{reference}" if "/" in reference else f"docker.io/library/{reference}"


def _run(command: list[str], timeout: float) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PinError(f"no answer in {timeout:g} s (is a registry reachable from here?)") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"{command[0]} exited with status {result.returncode}"
        # skopeo logs through logrus: time="..." level=fatal msg="...": keep the message.
        m = re.search(r'level=fatal msg="((?:[^"\\]|\\.)*)"', last)
        raise PinError(m[1].replace('\\"', '"') if m else last)
    return result.stdout


def skopeo_digest(reference: str, timeout: float) -> str:
    out = _run(
        ["skopeo", "inspect", "--no-tags", "--format", "{{.Digest}}", f"docker://{_qualified(reference)}"],
        timeout,
    )
    return out.strip()


def buildx_digest(reference: str, timeout: float) -> str:
    out = _run(
        ["docker", "buildx", "imagetools", "inspect", "--format", "{{json .Manifest}}", reference], timeout
    )
    try:
        return str(json.loads(out)["digest"])
    except (ValueError, KeyError, TypeError):
        raise PinError(
            f"docker buildx imagetools inspect printed no manifest digest: {out.strip()[:200]}"
        ) from None


def _buildx_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, check=False)
    return result.returncode == 0


def pick_tool(choice: str) -> tuple[str, Callable[[str, float], str]]:
    if choice in ("auto", "skopeo") and shutil.which("skopeo"):
        return "skopeo", skopeo_digest
    if choice in ("auto", "buildx") and _buildx_available():
        return "docker buildx imagetools", buildx_digest
    wanted = {
        "auto": "neither skopeo nor docker buildx is",
        "skopeo": "skopeo is not",
        "buildx": "docker buildx is not",
    }[choice]
    raise PinError(
        f"{wanted} available on this machine: install skopeo (Debian/Ubuntu: sudo apt-get install skopeo) "
        "or Docker's buildx plugin (docker-buildx-plugin), then run this where the registries are reachable"
    )


def resolve(
    pins: dict[str, versions.Pin], lookup: Callable[[str, float], str], timeout: float
) -> tuple[dict[str, str], dict[str, str]]:
    """({image key: digest}, {image key: why it failed}); each repository:tag is asked once."""
    references = {key: f"{pin.repository}:{pin.tag.split('@', 1)[0]}" for key, pin in pins.items()}
    unique = sorted(set(references.values()))

    def one(reference: str) -> tuple[str, str | None, str | None]:
        try:
            digest = lookup(reference, timeout)
        except PinError as exc:
            return reference, None, str(exc)
        if not _DIGEST.fullmatch(digest):
            return reference, None, f"the registry answered {digest[:80]!r}, not a sha256 digest"
        return reference, digest, None

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = {ref: (digest, error) for ref, digest, error in pool.map(one, unique)}
    found, failed = {}, {}
    for key, reference in references.items():
        digest, error = answers[reference]
        if digest:
            found[key] = digest
        else:
            failed[key] = f"{reference}: {error}"
    return found, failed


def rewrite(text: str, pins: dict[str, versions.Pin], digests: dict[str, str]) -> str:
    """The pins' source with `digest="sha256:..."` set on each pin (replaced where one was there)."""
    for key, digest in digests.items():
        pin = pins[key]
        pattern = re.compile(
            rf'("{re.escape(key)}": Pin\("{re.escape(pin.repository)}", "{re.escape(pin.tag)}")'
            r'(, digest="sha256:[0-9a-f]{64}")?'
        )
        text, count = pattern.subn(lambda m: f'{m[1]}, digest="{digest}"', text)  # noqa: B023 (used at once)
        if count != 1:
            raise PinError(
                f'{key}: its pin is not written as "{key}": Pin("repository", "tag", ...) in the source'
            )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pin_digests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the digests into the pins' source file")
    parser.add_argument("--tool", choices=("auto", "skopeo", "buildx"), default="auto")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per image")
    parser.add_argument(
        "--source", type=Path, default=Path(inspect.getfile(versions)), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    source = args.source
    try:
        name, lookup = pick_tool(args.tool)
        digests, failed = resolve(versions.IMAGES, lookup, args.timeout)
    except PinError as exc:
        print(f"pin_digests: {exc}; nothing was written", file=sys.stderr)
        return 1
    for key, digest in sorted(digests.items()):
        pin = versions.IMAGES[key]
        print(f"{key:<14}{pin.repository}:{pin.tag.split('@', 1)[0]}@{digest}")
    if failed:
        for line in sorted(set(failed.values())):
            print(f"pin_digests: {line}", file=sys.stderr)
        why = (
            "no registry answered: run it where docker.io and ghcr.io are reachable"
            if not digests
            else f"{len(failed)} of {len(versions.IMAGES)} images did not resolve"
        )
        print(f"pin_digests: {why} (with {name}); nothing was written", file=sys.stderr)
        return 1
    if args.write:
        try:
            source.write_text(rewrite(source.read_text(), versions.IMAGES, digests))
        except PinError as exc:
            print(f"pin_digests: {exc}; nothing was written", file=sys.stderr)
            return 1
        print(f"wrote {len(digests)} digests into {source} (with {name}): review the diff, plan, commit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
