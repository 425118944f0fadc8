"""Secrets reach containers as files (issue 14), on every shipped stack, as the providers read them back.

A container's envs, command, entrypoints and labels are what `docker inspect` (and through the socket
proxy's CONTAINERS=1, Traefik) shows and what a preview prints: none of them is secret or holds a
generated secret. Each secret is one file, written once by its step (components/core/secrets.py), mounted
read-only, with a fingerprint label; rotating one replaces exactly the containers that read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import labels_of, secret_file_steps
from tools import harness, provider_model

STACKS = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in harness.iter_stack_files()]
FIELDS = ("envs", "command", "entrypoints", "labels")
# Containers whose secrets still travel in their environment, until their service's commit of issue 14
# moves them to files (flow: n8n and its runner; agent: the gateway).
NOT_YET: set[str] = set()


@pytest.fixture(scope="module", params=STACKS)
def plan(request: pytest.FixtureRequest) -> harness.Plan:
    return harness.plan_stack(request.param)


def _generated(plan: harness.Plan) -> set[str]:
    """Every generated secret value of the stack (pulumi-random results) and each config secret."""
    out = set()
    for (typ, _), state in plan.state.items():
        if typ == provider_model.PASSWORD:
            out |= {harness.plain(state["result"]), harness.plain(state["bcryptHash"])}
        elif typ == provider_model.BYTES:
            out |= {harness.plain(state["hex"]), harness.plain(state["base64"])}
    return out


def _plain_strings(value: Any) -> Iterator[str]:
    """The strings of a value outside any secret wrapper."""
    if harness.is_secret(value):
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from _plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _plain_strings(v)
    elif isinstance(value, str):
        yield value


def test_no_container_shows_a_secret(plan: harness.Plan) -> None:
    generated = _generated(plan)
    assert generated
    for c in plan.containers():
        if c.name in NOT_YET:
            continue
        for field in FIELDS:
            value = c.inputs.get(field)
            assert not harness.contains_secret(value), f"{c.name}.{field} is secret: a preview hides it"
            text = json.dumps(harness.plain(value))
            assert not [s for s in generated if s in text], f"{c.name}.{field} holds a generated secret"


def test_each_generated_secret_is_only_inside_secret_wrappers(plan: harness.Plan) -> None:
    """A scan of the recorded state (what `pulumi up` stores): no generated secret outside a secret."""
    generated = _generated(plan)
    for (typ, name), state in plan.state.items():
        if typ in (provider_model.PASSWORD, provider_model.BYTES):
            continue
        leaked = [s[:4] for s in generated for text in _plain_strings(state) if s in text]
        assert not leaked, f"{typ} {name}: a generated secret in plain state ({leaked})"


def test_each_secret_file_is_written_once_and_mounted_read_only_with_its_fingerprint(
    plan: harness.Plan,
) -> None:
    steps = secret_file_steps(plan)
    names = [r.name for r in steps.values()]
    assert len(names) == len(set(names)) == len(steps), "one step per file"
    mounted = set()
    for c in plan.containers():
        labels = labels_of(c)
        for m in harness.plain(c.inputs.get("mounts", [])):
            if not m["target"].startswith("/run/secrets/"):
                assert m["source"] not in steps, f"{c.name}: a secret file mounted elsewhere"
                continue
            assert m["type"] == "bind" and m["readOnly"] is True, (c.name, m)
            step = steps[m["source"]]
            env = harness.plain(step.inputs["environment"])
            name = env["VH_FILE_NAME"]
            assert m["target"] == f"/run/secrets/{name}"
            # Owned by the uid the container runs as (the file is 0400).
            user = str(harness.plain(c.inputs.get("user")) or "0")  # no user: the image's root
            assert env["VH_FILE_OWNER"].split(":")[0] == user.split(":")[0], c.name
            assert re.fullmatch(r"[0-9a-f]{16}", labels[f"io.versatilehub.secret.{name}"]), c.name
            assert step.urn in c.dependencies, f"{c.name} starts after its secret file is written"
            mounted.add(m["source"])
        for label in labels:
            if label.startswith("io.versatilehub.secret."):
                name = label.removeprefix("io.versatilehub.secret.")
                assert any(
                    m["target"] == f"/run/secrets/{name}" for m in harness.plain(c.inputs["mounts"])
                ), f"{c.name}: a fingerprint of a file it does not read"
    # One-off `docker run` steps (Chat's prepare and bootstrap) mount theirs read-only too.
    for r in [*plan.of_type(provider_model.LOCAL_COMMAND), *plan.of_type(provider_model.REMOTE_COMMAND)]:
        text = str(harness.plain(r.inputs.get("create")))
        for path in steps:
            if f"source={path},target=/run/secrets/" in text:
                assert re.search(rf"source={re.escape(path)},target=/run/secrets/[^,\s']+,readonly", text)
                assert steps[path].urn in r.dependencies, f"{r.name} runs after its secret file is written"
                mounted.add(path)
    assert mounted == set(steps), "every file written is read"
    for step in steps.values():
        env = step.inputs["environment"]
        assert harness.is_secret(env["VH_SECRET_VALUE"]), "the content is a secret in state"
        assert not harness.contains_secret({k: v for k, v in env.items() if k != "VH_SECRET_VALUE"})
        script = harness.plain(step.inputs["create"])
        assert '"$VH_SECRET_VALUE"' in script and "chmod 0400" in script
        assert step.inputs["logging"] == "none", "a step holding a secret prints nothing"


def _rotated(stack: str, password: str, monkeypatch: pytest.MonkeyPatch) -> harness.Plan:
    """The same stack after `password` (a RandomPassword) is regenerated (`pulumi up --replace`)."""
    real = harness._fake_password
    monkeypatch.setattr(
        harness,
        "_fake_password",
        lambda inputs, name: real(inputs, name + "-rotated") if name == password else real(inputs, name),
    )
    try:
        return harness.plan_stack(stack)
    finally:
        monkeypatch.setattr(harness, "_fake_password", real)


@pytest.mark.parametrize(
    ("password", "consumers"),
    [
        ("hub-db-root-password", {"hub-mariadb"}),
        ("chat-db-password", {"chat-postgres", "chat-rails", "chat-sidekiq"}),
        ("flow-db-password", {"flow-postgres", "flow-n8n"}),
        ("flow-runner-token", {"flow-n8n", "flow-runner"}),
        ("agent-gateway-token", {"agent-gateway"}),
    ],
)
def test_rotating_one_secret_replaces_exactly_its_consumers(
    password: str, consumers: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint label changes on the containers that read the secret, and only there; the preview
    names the secret (the label io.versatilehub.secret.<name>) and re-runs only that secret's file step."""
    before = harness.plan_stack("clienteA")
    after = _rotated("clienteA", password, monkeypatch)
    changes = harness.second_run(before, after)
    replaced = {c.name for c in changes if c.type == provider_model.CONTAINER}
    assert {c.action for c in changes if c.type == provider_model.CONTAINER} == {"replace"}
    assert replaced == consumers, changes
    files = secret_file_steps(after)
    rewritten = {c.name for c in changes if c.name in {s.name for s in files.values()}}
    assert rewritten, "the files holding the secret are written again"
    # Exactly the containers that mount one of those files (or, until converted, carry it in their env).
    readers = {
        c.name
        for c in after.containers()
        for m in harness.plain(c.inputs.get("mounts", []))
        if m["source"] in files and files[m["source"]].name in rewritten
    }
    assert readers <= replaced and replaced - readers <= NOT_YET, (readers, replaced)
    assert not rewritten - {f.name for f in files.values()}
    for c in changes:
        if c.type == provider_model.CONTAINER and c.name not in NOT_YET:
            assert c.fields == ["labels"], c  # the fingerprint, nothing else
            old, new = labels_of(before.get(c.type, c.name)), labels_of(after.get(c.type, c.name))
            changed = [k for k in new if new[k] != old.get(k)]
            assert len(changed) == 1 and changed[0].startswith("io.versatilehub.secret."), changed


DOCKER_STUB = r"""#!/bin/bash
# Records its argv, then runs the helper's script here with /secrets at the -v source (as root, as dockerd).
printf '%s\n' "$*" >> "$STUB_LOG"
args=("$@"); for i in "${!args[@]}"; do
  [ "${args[$i]}" = -v ] && src=${args[$((i + 1))]%%:*}
  [ "${args[$i]}" = -c ] && at=$i
done
mkdir -p "$src"
exec sh -c "${args[$((at + 1))]//\/secrets/$src}" "${args[@]:$((at + 2))}"
"""


def test_the_step_writes_0400_owned_files_and_keeps_the_value_off_every_command_line(tmp_path: Any) -> None:
    """scripts/secret_file.sh, run by bash as a host step runs it, against a docker CLI stand-in that runs
    the helper's shell here (as root): the file holds the value exactly (no trailing newline, which n8n's
    `_FILE` reader would keep), mode 0400, owned as asked, its folder root-only; no argv holds the value."""
    import os
    import stat
    import subprocess

    from components.core import secrets
    from components.core.host import PREAMBLE

    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    stub = tmp_path / "bin" / "docker"
    stub.parent.mkdir()
    stub.write_text(DOCKER_STUB)
    stub.chmod(0o755)
    value = "p4ss w0rd 'quoted' $HOME\nsecond line"
    env = {
        "PATH": f"{stub.parent}:/usr/bin:/bin",
        "STUB_LOG": str(tmp_path / "argv.log"),
        "VH_FILE_DIR": str(tmp_path / "secrets" / "flow"),
        "VH_FILE_NAME": "postgres-password",
        "VH_FILE_OWNER": "70:70",
        "VH_HELPER_IMAGE": "restic/restic:0.19.1",
        "VH_SECRET_VALUE": value,
    }
    for _ in range(2):  # a second run (a rotation) replaces the file in place
        subprocess.run(["/bin/bash", "-c", PREAMBLE + secrets.WRITE], env=env, check=True)
    path = tmp_path / "secrets" / "flow" / "postgres-password"
    st = path.stat()
    assert path.read_text() == value
    assert stat.S_IMODE(st.st_mode) == 0o400 and (st.st_uid, st.st_gid) == (70, 70)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["postgres-password"], "no leftover .new"
    log = (tmp_path / "argv.log").read_text()
    assert "--network none" in log and "p4ss" not in log


def test_the_step_writes_the_file_through_a_real_engine(tmp_path: Any, docker_engine: Any) -> None:
    """The same step with the real docker CLI and a private dockerd (tools/engine.py), the helper being a
    local Debian image (no registry: the pinned restic image stands for any image with a shell and
    coreutils): the bind mount, the ownership and the rename happen as on a server (the stub test above
    checks that no argv holds the value)."""
    import os
    import stat
    import subprocess

    from components.core import secrets
    from components.core.host import PREAMBLE
    from tools import engine

    image = engine.base_image(docker_engine)
    value = "r3al-engine 'quoted' $HOME"
    folder = tmp_path / "secrets" / "chat"
    env = {
        **docker_engine.env,
        "VH_FILE_DIR": str(folder),
        "VH_FILE_NAME": "redis.conf",
        "VH_FILE_OWNER": "999:999",
        "VH_HELPER_IMAGE": image,
        "VH_SECRET_VALUE": value,
    }
    for _ in range(2):  # created, then rotated in place
        subprocess.run(["/bin/bash", "-c", PREAMBLE + secrets.WRITE], env=env, check=True, timeout=120)
    path = folder / "redis.conf"
    st = path.stat()
    assert path.read_text() == value
    assert stat.S_IMODE(st.st_mode) == 0o400 and (st.st_uid, st.st_gid) == (999, 999)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and os.listdir(folder) == ["redis.conf"]
    # The helpers are gone (--rm): nothing left that holds the value on the engine.
    assert docker_engine.docker("ps", "-aq", "--filter", f"ancestor={image}").strip() == ""


def _plan_json() -> dict[str, Any]:
    """`python -m tools.plan clienteA --json`, as the file holds it."""
    doc: dict[str, Any] = json.loads(json.dumps(harness.plan_stack("clienteA").to_json()))
    return doc


def test_the_policy_pack_reads_every_container_of_a_plan_json_and_refuses_the_socket() -> None:
    """Issue 14 item 5. Before, every container env was one secret list, masked in a plan.json: the
    env-based rules were "not run (needs .envs)", and a plan mounting the Docker socket into an app passed
    with exit 0 (no read-only proxy could be told apart). Now no container rule waits on a masked value;
    the checks of a secret's own value (strength, reuse) still need the stack, as the report says."""
    from tools import policy

    doc = _plan_json()
    report = policy.check(policy.from_plan_json(doc))
    assert report.mandatory == []
    assert not [v for v in report.not_run if v.resource_type == provider_model.CONTAINER], report.not_run
    assert {v.policy for v in report.not_run} <= {
        "secret-strength",
        "no-default-credentials",
        "secrets-not-reused",
    }
    [rails] = [r for r in doc["resources"] if r["name"] == "chat-rails"]
    rails["inputs"]["mounts"].append(
        {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock", "readOnly": True}
    )
    refused = policy.check(policy.from_plan_json(doc))
    assert [(v.policy, v.resource_name) for v in refused.mandatory] == [("no-docker-socket", "chat-rails")]


def test_a_credential_in_plain_text_in_a_stack_file_is_one_line_in_every_tool(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14 item 6: `backup.applicationKey` written in plain text beside a `secure:` keyId. Pulumi
    marks the whole `backup` object secret, so the program cannot see it; before, tools.plan, tools.policy
    and tools.fleet passed it (exit 0). Now each says which key and the exact fix, before any plan."""
    import yaml

    from tools import fleet, plan, policy

    doc = yaml.safe_load((harness.ROOT / "Pulumi.clienteA.yaml").read_text())
    doc["config"]["versatilehub:backup"] |= {
        "keyId": {"secure": "v1:x"},
        "applicationKey": "K005abcdefghij0123",
    }
    path = tmp_path / "Pulumi.plainkey.yaml"
    path.write_text(yaml.safe_dump(doc))
    line = (
        "versatilehub:backup.applicationKey is stored in plain text; store it encrypted: "
        "pulumi config set --secret --path 'versatilehub:backup.applicationKey' <value>"
    )
    for tool in (plan, policy):
        assert tool.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert line in err and "Traceback" not in err and "K005" not in err
    assert fleet.main([str(path)]) != 0
    out = capsys.readouterr().out
    assert line in out and "K005" not in out
