"""tools.pin_digests and the policy report's digest advisory.

The registry side is skopeo: the real one (Debian's package, tools/run-tests.sh installs it) for the
failures, pointed at a proxy that refuses, so "no registry reachable" holds on any network; a stand-in
that answers as `skopeo inspect --format {{.Digest}}` does (the top-level manifest's digest,
containers/skopeo cmd/skopeo/inspect.go) for the digests themselves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.core import versions
from tools import harness, pin_digests, policy

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "components" / "core" / "versions.py"

# Answers `skopeo inspect --no-tags --format {{.Digest}} docker://REF` with a digest derived from REF;
# fails like skopeo for a reference in $FAKE_FAIL.
FAKE_SKOPEO = r"""#!/bin/sh
echo "skopeo $*" >> "$FAKE_LOG"
ref="$5"
if [ -n "${FAKE_FAIL:-}" ] && [ "$ref" = "$FAKE_FAIL" ]; then
  msg="Error parsing image name \\\"$ref\\\": reading manifest: manifest unknown"
  echo "time=\"2026-12-04T10:00:00Z\" level=fatal msg=\"$msg\"" >&2
  exit 1
fi
printf 'sha256:%s\n' "$(printf '%s' "$ref" | sha256sum | cut -c1-64)"
"""


def digest_of(reference: str) -> str:
    return "sha256:" + hashlib.sha256(f"docker://{pin_digests._qualified(reference)}".encode()).hexdigest()


@pytest.fixture
def fake_skopeo(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "skopeo").write_text(FAKE_SKOPEO)
    (bin_dir / "skopeo").chmod(0o755)
    for tool in ("sh", "sha256sum", "cut", "printf"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return bin_dir


def run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.pin_digests", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": str(bin_dir), "FAKE_LOG": str(bin_dir.parent / "calls.log"), **env},
    )


def test_every_image_gets_its_digest_written_into_the_pins(fake_skopeo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "versions.py"
    copy.write_text(SOURCE.read_text())
    result = run(fake_skopeo, "--write", "--source", str(copy))
    assert result.returncode == 0, result.stderr
    # Each repository:tag asked once, fully qualified for skopeo's docker:// transport.
    asked = (tmp_path / "calls.log").read_text().splitlines()
    unique = {f"{p.repository}:{p.tag}" for p in versions.IMAGES.values()}
    assert len(asked) == len(unique)
    assert "skopeo inspect --no-tags --format {{.Digest}} docker://docker.io/library/traefik:v3.6.25" in asked
    assert any(a.endswith("docker://ghcr.io/openclaw/openclaw:2026.10.1") for a in asked)
    # The rewritten pins load, and every reference now carries its digest.
    namespace: dict[str, object] = {}
    exec(compile(copy.read_text(), str(copy), "exec"), namespace)
    pinned = namespace["IMAGES"]
    assert isinstance(pinned, dict) and set(pinned) == set(versions.IMAGES)
    for key, pin in pinned.items():
        assert pin.digest == digest_of(f"{pin.repository}:{pin.tag}"), key
        assert pin.reference() == f"{pin.repository}:{pin.tag}@{pin.digest}"
    # Run again: the digests are replaced in place, not added twice.
    assert run(fake_skopeo, "--write", "--source", str(copy)).returncode == 0
    assert copy.read_text().count("digest=") == len(versions.IMAGES) + SOURCE.read_text().count("digest=")


def test_one_image_that_does_not_resolve_writes_nothing(fake_skopeo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "versions.py"
    copy.write_text(SOURCE.read_text())
    result = run(
        fake_skopeo, "--write", "--source", str(copy), FAKE_FAIL="docker://docker.io/library/mariadb:11.8.9"
    )
    assert result.returncode == 1
    assert (
        'pin_digests: mariadb:11.8.9: Error parsing image name "docker://docker.io/library/mariadb:11.8.9": '
        "reading manifest: manifest unknown\n"
    ) in result.stderr
    total = len(versions.IMAGES)
    assert result.stderr.endswith(
        f"pin_digests: 1 of {total} images did not resolve (with skopeo); nothing was written\n"
    )
    assert copy.read_text() == SOURCE.read_text()


def test_real_skopeo_without_a_reachable_registry_fails_clearly(tmp_path: Path) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo, "tools/run-tests.sh installs skopeo (Debian's package)"
    copy = tmp_path / "versions.py"
    copy.write_text(SOURCE.read_text())
    env = {
        "PATH": os.path.dirname(skopeo),
        "HOME": str(tmp_path),
        # Every registry request goes to a port nobody listens on: unreachable on any network.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tools.pin_digests", "--write", "--source", str(copy), "--timeout", "30"],
        capture_output=True, text=True, check=False, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.endswith(
        "pin_digests: no registry answered: run it where docker.io and ghcr.io are reachable (with skopeo); "
        "nothing was written\n"
    )
    assert (
        'pin_digests: traefik:v3.6.25: Error parsing image name "docker://docker.io/library/traefik:v3.6.25"'
        in (result.stderr)
    )
    assert "level=fatal" not in result.stderr and "Traceback" not in result.stderr
    assert copy.read_text() == SOURCE.read_text()


def test_no_skopeo_and_no_buildx(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run(empty)
    assert result.returncode == 1
    assert result.stderr == (
        "pin_digests: neither skopeo nor docker buildx is available on this machine: install skopeo "
        "(Debian/Ubuntu: sudo apt-get install skopeo) or Docker's buildx plugin (docker-buildx-plugin), then "
        "run this where the registries are reachable; nothing was written\n"
    )


def test_buildx_reads_the_index_digest(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `--format '{{json .Manifest}}'` prints the index's descriptor (mediaType, digest, size).
    (bin_dir / "docker").write_text(
        '#!/bin/sh\n[ "$1 $2" = "buildx version" ] && { echo "github.com/docker/buildx v0.30.1"; exit 0; }\n'
        'echo "docker $*" >> "$FAKE_LOG"\n'
        'echo \'{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:'
        + "a" * 64
        + '","size":1609}\'\n'
    )
    (bin_dir / "docker").chmod(0o755)
    (bin_dir / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    result = run(bin_dir, "--tool", "buildx")
    assert result.returncode == 0, result.stderr
    assert f"traefik       traefik:v3.6.25@sha256:{'a' * 64}" in result.stdout
    asked = (tmp_path / "calls.log").read_text().splitlines()
    assert "docker buildx imagetools inspect --format {{json .Manifest}} traefik:v3.6.25" in asked


def test_the_report_states_the_digest_advisory_once_with_its_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert policy.main(["clienteA"]) == 0
    out = capsys.readouterr().out.splitlines()
    digest_lines = [line for line in out if "image-digest" in line]
    assert len(digest_lines) == 1
    at = out.index(digest_lines[0])
    assert digest_lines[0].startswith(
        "[advisory] image-digest, 14 resources (image-chatRedis, image-chatwoot,"
    )
    assert out[at + 1] == (
        "  fix: get each image's digest from its registry and write it into the pins: python -m "
        "tools.pin_digests --write (skopeo, or docker buildx imagetools; components/core/versions.py). "
        "A stack's own pin takes it in its tag: pulumi config set --path 'versatilehub:versions.<image>' "
        "'<tag>@sha256:<digest>'"
    )
    assert out[-1] == "stack clienteA: 0 mandatory, 14 advisory violation(s) from 29 policies"
    # --each: every violation on its own line, as the engine lists them.
    assert policy.main(["clienteA", "--each"]) == 0
    each = capsys.readouterr().out.splitlines()
    assert sum("image-digest" in line for line in each) == 14 and not any("fix:" in line for line in each)


def test_pinned_digests_clear_the_advisory(
    fake_skopeo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "versions.py"
    copy.write_text(SOURCE.read_text())
    assert run(fake_skopeo, "--write", "--source", str(copy)).returncode == 0
    namespace: dict[str, object] = {}
    exec(compile(copy.read_text(), str(copy), "exec"), namespace)
    pinned = namespace["IMAGES"]
    assert isinstance(pinned, dict)
    for key, pin in pinned.items():
        monkeypatch.setitem(versions.IMAGES, key, versions.Pin(**{**vars(pin)}))
    stack = harness.read_stack_file(ROOT / "Pulumi.clienteA.yaml")
    report = policy.check(policy.from_plan(harness.run(stack), stack))
    assert not [v for v in report.violations if v.policy == "image-digest"]
