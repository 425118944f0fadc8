"""Updates are safe: bumping one pinned version changes exactly what runs that image, nothing else.

For every image of the version matrix, the full suite is planned twice, with the pinned tag and with the
next patch release, and the two plans are compared resource by resource. The engine replaces a resource
when its inputs change (a container's `image` is its RemoteImage's id, which the harness reports as the
pinned reference), so the set of resources whose inputs differ is what `pulumi up` would touch. Allowed:
the image's RemoteImage, the containers that run it (whose only differences are the image and the label
naming it), the host steps that run it (`docker run <image>`), and that service's own steps that follow
its version (the migration and the pre-update backup). Anything else changing is a failure.

(The verification step re-runs too, in reality: its triggers are the containers' ids, which change when
a container is replaced; the harness's ids are stable, so it must show no change here.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.core import versions
from tests.conftest import make_stack
from tools import harness

ALL = ["hub", "chat", "flow", "agent"]
IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"
COMMANDS = ("command:local:Command", "command:remote:Command")
LEADERS = [k for k, pin in versions.IMAGES.items() if not pin.follows]
FOLLOWERS = {k: pin.follows for k, pin in versions.IMAGES.items() if pin.follows}


def stack(**overrides: Any) -> harness.StackConfig:
    return make_stack(ALL, traefik={"dashboard": True}, **overrides)


@pytest.fixture(scope="module")
def baseline() -> harness.Plan:
    return harness.run(stack())


def next_patch(tag: str) -> str:
    """The next patch release: v16.32.3 -> v16.32.4, 0.8.1-pg16 -> 0.8.2-pg16, 16.15-alpine -> 16.16-..."""
    m = re.match(r"(v?(?:\d+\.)*)(\d+)", tag)
    assert m, tag
    return f"{m.group(1)}{int(m.group(2)) + 1}{tag[m.end() :]}"


def owner(r: harness.PlannedResource) -> str:
    """The area of the component a resource belongs to (`versatilehub:<area>:<Name>` nearest to it)."""
    chain = r.urn.split("::")[2].split("$")
    areas = [t.split(":")[1] for t in chain if t.startswith("versatilehub:")]
    return areas[-1] if areas else ""


def mentions(value: Any, needles: set[str]) -> bool:
    return any(n in text for n in needles for text in _strings(value))


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def labels(r: harness.PlannedResource) -> dict[str, str]:
    return {i["label"]: i["value"] for i in harness.plain(r.inputs.get("labels", []))}


def test_next_patch() -> None:
    assert next_patch("v16.32.3") == "v16.32.4"
    assert next_patch("0.8.1-pg16") == "0.8.2-pg16"
    assert next_patch("16.15-alpine") == "16.16-alpine"
    assert next_patch("1.30.6-alpine-slim") == "1.30.7-alpine-slim"


@pytest.mark.parametrize("key", LEADERS)
def test_bumping_one_version_changes_exactly_what_runs_it(baseline: harness.Plan, key: str) -> None:
    moved = [key, *(k for k, leader in FOLLOWERS.items() if leader == key)]
    new_tag = next_patch(versions.IMAGES[key].tag)
    versions.check_override(key, new_tag)  # a tag the stack accepts
    after = harness.run(stack(versions={key: new_tag}))
    before_by = {(r.type, r.name): r for r in baseline.resources}
    after_by = {(r.type, r.name): r for r in after.resources}
    new_refs = {versions.reference(k, new_tag) for k in moved}

    def name(k: tuple[str, str]) -> str:
        return str(harness.plain(after_by[k].inputs)["name"])

    assert not set(before_by) - set(after_by), "a version bump removes nothing"
    assert set(after_by) == set(before_by), "a version bump adds nothing: each image key has its own pull"
    changed = {
        k for k in before_by if harness.plain(before_by[k].inputs) != harness.plain(after_by[k].inputs)
    }

    pulls = {k for k in changed if k[0] == IMAGE}
    users = {
        k for k, r in after_by.items() if r.type == CONTAINER and harness.plain(r.inputs)["image"] in new_refs
    }
    services = {labels(after_by[k])["io.versatilehub.service"] for k in users}
    # Host steps that run the image (`docker run <ref>`), and the users' own steps that follow their
    # version (the migration, the pre-update backup): both carry the new version.
    steps = {
        k
        for k in changed
        if k[0] in COMMANDS
        and (
            mentions(after_by[k].plain_inputs, new_refs)
            or (
                (owner(after_by[k]) in services or any(s in k[1] for s in services))
                and mentions(after_by[k].plain_inputs, {new_tag})
            )
        )
    }
    assert any(name(k) in new_refs for k in pulls) or steps, f"{key} is run by nothing in the full suite"
    assert pulls == {(IMAGE, f"image-{k}") for k in moved}, pulls
    unexpected = sorted(
        f"{t} {n}: {sorted(_diff(before_by[(t, n)].plain_inputs, after_by[(t, n)].plain_inputs))}"
        for t, n in changed - pulls - users - steps
    )
    assert not unexpected, f"bumping {key} would also change {unexpected}"
    for k in users:  # a replaced container differs only in its image (and the label naming it)
        assert _diff(before_by[k].plain_inputs, after_by[k].plain_inputs) <= {"image", "labels"}, k
        before_labels, after_labels = labels(before_by[k]), labels(after_by[k])
        assert {n for n in before_labels if before_labels[n] != after_labels[n]} == {"io.versatilehub.image"}
    assert ("command:local:Command", "verify-endpoints") not in changed


def _diff(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@pytest.mark.parametrize("key", sorted(FOLLOWERS))
def test_an_image_that_follows_another_moves_only_with_it(key: str) -> None:
    with pytest.raises(ValueError, match="always runs"):
        versions.check_override(key, next_patch(versions.IMAGES[key].tag))
    leader = FOLLOWERS[key]
    assert leader in LEADERS, "covered by the leader's bump above"


def test_every_pin_is_exercised() -> None:
    assert set(LEADERS) | set(FOLLOWERS) == set(versions.IMAGES)
