"""Verification as part of `pulumi up`: every public endpoint probed from the host once the services are up.

The seed's manual check (`curl -I` on every domain, answers in under 2 s) as a host step that runs after
every service's containers and setup steps: each public hostname is requested over HTTPS on its health
path with `curl --resolve <host>:443:127.0.0.1`, so it works before DNS points at the server and checks the
real path through Traefik. Every endpoint must answer as expected within `verify.waitSeconds` of the step's
start (retried every 5 s); then the median of three fresh requests must stay within its budget
(`verify.budgetMs`, 2 s by default). A failure
fails the update with one line per endpoint. The results (status, latency, certificate trust) are the
`verification` stack output.

Certificates: before DNS points here, with Let's Encrypt's staging CA, or while a certificate is being
issued, Traefik serves one that the host does not trust. The probe records that (`tls: untrusted`) and
repeats the request without verification; that is safe because `--resolve` pins it to 127.0.0.1, so
nothing leaves the host. `verify.trustedTls` turns an untrusted certificate into a failure, for once DNS
points here. In standalone mode the single service is probed on its loopback port over plain HTTP.

Then each service's deeper checks run (components/core/probe.py: a login with the generated password, a
realtime handshake, ...), each retried until the same deadline; a failing one is one `verify: <check>:`
line naming what failed. The checks' secrets reach the step in its environment, never its command line.

The step re-runs whenever a container of the stack is replaced (its triggers are the containers' ids) or
the endpoints change; `pulumi up --replace <its URN>` re-runs it on demand.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import pulumi
import pulumi_command as command

from components.core.deployment import Deployment
from components.core.probe import Check
from components.edge.component import Edge
from components.edge.portal import Portal


@dataclass(frozen=True)
class Probe:
    name: str  # a service, "portal" or "dashboard"
    url: str  # what a browser would request
    resolve: str  # curl --resolve entry pinning the name to this host ("" for a loopback URL)
    expect: str  # bash pattern over the HTTP status: "2??" or an exact code
    budget_ms: int
    body: str = ""  # text the response must contain (an app that answers 200 to any path needs it)


def probes(
    d: Deployment, services: Mapping[str, Any], edge: Edge | None, portal: Portal | None
) -> list[Probe]:
    """Every public endpoint of the stack, with the answer it must give."""
    cfg = d.config
    found: list[Probe] = []
    for name, component in services.items():
        path = component.outputs.get("healthPath")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(
                f"{name}: the service component must export its health path as outputs['healthPath']"
            )
        body = component.outputs.get("healthBody", "")
        url = _base_url(d, name, component)
        found.append(_probe(name, url + path, "2??", cfg.verify.budget(name), body))
    if portal is not None:
        for host in cfg.portal_hostnames:
            found.append(_probe("portal", f"https://{host}/", "200", cfg.verify.budget_ms))
    if edge is not None and edge.dashboard_url:
        # Behind basic auth: an anonymous request must be refused (a 200 here would be a leak, a 404 a gap).
        found.append(_probe("dashboard", edge.dashboard_url, "401", cfg.verify.budget_ms))
    return found


def _base_url(d: Deployment, name: str, component: Any) -> str:
    """The service's public base URL, no trailing slash: its hostname, or its loopback port standalone."""
    if d.config.routed:
        return d.config.url(name).rstrip("/")
    url = component.outputs["url"]  # standalone: the loopback address expose() gave it
    if not isinstance(url, str) or not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"{name}: standalone outputs['url'] must be its http://127.0.0.1:<port> address")
    return url.rstrip("/")


def _resolve(url: str) -> str:
    """curl's --resolve entry pinning an https URL's name to this host ("" for a loopback URL)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 443}:127.0.0.1" if parts.scheme == "https" else ""


def _probe(name: str, url: str, expect: str, budget_ms: int, body: str = "") -> Probe:
    return Probe(name, url, _resolve(url), expect, budget_ms, body)


@dataclass(frozen=True)
class ServiceCheck:
    """A service's deeper check (components/core/probe.py) with the base URL it runs against."""

    check: Check
    base_url: str
    resolve: str


def service_checks(d: Deployment, services: Mapping[str, Any]) -> list[ServiceCheck]:
    """Every service's deeper checks, in service order."""
    found: list[ServiceCheck] = []
    for name, component in services.items():
        checks: list[Check] = getattr(component, "checks", [])
        for check in checks:
            base = _base_url(d, name, component)
            found.append(ServiceCheck(check, base, _resolve(base)))
    return found


# Runs on the host under `set -euo pipefail` (host.PREAMBLE). Results go to stdout as one JSON document,
# problems to stderr; exit 1 when any endpoint fails. Every value in it comes from the validated config.
_NEEDS_CURL = r"""command -v curl >/dev/null || {
  echo "verify: curl is not installed on the host: apt-get install -y curl" \
    "(or set versatilehub:verify.enabled false)" >&2
  exit 1
}
"""

_FUNCTIONS = r"""
errfile=$(mktemp)
bodyfile=$(mktemp)
trap 'rm -f "$errfile" "$bodyfile"' EXIT
failed=0
results=()
checks=()

to_ms() {  # curl's seconds ("0.123456") -> whole milliseconds
  local s=${1:-0}
  s=${s/,/.}
  [[ $s == *.* ]] || s="$s.0"
  local frac="${s#*.}000"
  echo $(( 10#${s%%.*} * 1000 + 10#${frac:0:3} ))
}

request() {  # url resolve expect body max_time -> sets code, ms, tls, err, answered (as expected?)
  local url=$1 resolve=$2 expect=$3 body=$4 max_time=$5 out rc
  local -a args=(-sS -o "$bodyfile" --max-time "$max_time" -w '%{http_code} %{time_total}')
  [[ -z $resolve ]] || args+=(--resolve "$resolve")
  tls=none
  [[ $url != https://* ]] || tls=trusted
  out=$(curl "${args[@]}" "$url" 2>"$errfile") && rc=0 || rc=$?
  if [[ $tls == trusted ]] && (( rc == 60 || rc == 51 )); then
    # Not trusted (yet): record it and ask again unverified; --resolve keeps the request on this host.
    tls=untrusted
    out=$(curl -k "${args[@]}" "$url" 2>"$errfile") && rc=0 || rc=$?
  fi
  code=${out%% *}
  [[ $code =~ ^[0-9]{3}$ ]] || code=000
  ms=$(to_ms "${out##* }")
  err=$(tail -n 1 "$errfile" | tr -d '"\\')
  answered=0
  if [[ $code == $expect ]]; then
    if [[ -z $body ]] || grep -qF -- "$body" "$bodyfile"; then answered=1; else err="its body lacks $body"; fi
  fi
}

vh_curl() {  # url [curl args...]: for the checks; pinned to this host like the probes
  local url=$1
  shift
  local -a pin=()
  [[ -z ${VH_RESOLVE:-} ]] || pin=(--resolve "$VH_RESOLVE" -k)
  curl -sS --max-time 20 "${pin[@]}" "$@" "$url"
}
export -f vh_curl

check() {  # name base_url resolve script: a service's deeper check, retried until the deadline
  local name=$1 result=failed problem="" entry key value
  while :; do
    if VH_BASE_URL=$2 VH_RESOLVE=$3 bash -euo pipefail -c "$4" "$name" "$2" >/dev/null 2>"$errfile"; then
      result=ok
      break
    fi
    (( $(date +%s) < deadline )) || break
    sleep 5
  done
  if [[ $result != ok ]]; then
    problem=$(tail -n 1 "$errfile" | tr -d '"\\' | tr -d '[:cntrl:]')
    for key in $secret_names; do  # a check must not print a secret; if one does, it is masked here
      value=${!key:-}
      [[ -z $value ]] || problem=${problem//"$value"/***}
    done
    [[ -n $problem ]] || problem="failed and said nothing on stderr"
    failed=$((failed + 1))
    echo "verify: $name: $problem" >&2
  fi
  printf -v entry '{"name":"%s","result":"%s","problem":"%s"}' "$name" "$result" "$problem"
  checks+=("$entry")
}

probe() {  # name url resolve expect budget_ms body
  local name=$1 url=$2 resolve=$3 expect=$4 budget=$5 body=$6 result=ok problem="" median entry
  local max_time=$(( 10 + budget / 1000 ))  # a slow answer is measured, not cut off
  local -a samples=()
  while :; do
    request "$url" "$resolve" "$expect" "$body" "$max_time"
    if (( answered )) && [[ $trusted_tls == 0 || $tls != untrusted ]]; then break; fi
    (( $(date +%s) < deadline )) || break
    sleep 5
  done
  if (( ! answered )); then
    result=down
    problem="gave no good answer in ${wait_seconds} s:"
    problem+=" the last was ${code/#000/no HTTP response}${err:+ ($err)}"
    problem+="; expected ${expect//\?/x}${body:+ with $body in the body}"
    median=$ms
  elif [[ $trusted_tls == 1 && $tls == untrusted ]]; then
    result=untrusted
    problem="serves a certificate this host does not trust (DNS not pointing here yet, or not issued)"
    median=$ms
  else
    for _ in 1 2 3; do request "$url" "$resolve" "$expect" "$body" "$max_time"; samples+=("$ms"); done
    median=$(printf '%s\n' "${samples[@]}" | sort -n | sed -n 2p)
    if (( median > budget )); then
      result=slow
      problem="answers in ${median} ms (median of 3), over its ${budget} ms budget"
    fi
  fi
  if [[ $result != ok ]]; then
    failed=$((failed + 1))
    echo "verify: $name $url $problem" >&2
  fi
  local fields='"name":"%s","url":"%s","status":%d,"latencyMs":%d,"budgetMs":%d,"tls":"%s","result":"%s"'
  printf -v entry "{$fields}" "$name" "$url" "$((10#$code))" "$median" "$budget" "$tls" "$result"
  results+=("$entry")
}
"""

_REPORT = r"""
ok=true
(( failed == 0 )) || ok=false
joined=$(IFS=,; echo "${results[*]}")
joined_checks=$(IFS=,; echo "${checks[*]}")
printf '{"ok":%s,"checkedAt":"%s","endpoints":[%s],"checks":[%s]}\n' "$ok" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$joined" "$joined_checks"
if (( failed )); then
  echo "verify: $failed of $(( ${#results[@]} + ${#checks[@]} )) endpoints and checks failed;" \
    "fix the service (docker logs <container>)" \
    "and run pulumi up again, or adjust versatilehub:verify" >&2
  exit 1
fi
"""


def script(
    probe_list: list[Probe],
    *,
    wait_seconds: int,
    trusted_tls: bool,
    checks: Sequence[ServiceCheck] = (),
) -> str:
    """The bash the host runs (after host.PREAMBLE's `set -euo pipefail`): the probes, then the checks."""
    for p in probe_list:  # everything below is interpolated into bash and JSON: keep it to safe characters
        assert re.fullmatch(r"[A-Za-z0-9:/._?=&%-]+", p.url) and re.fullmatch(r"[a-z-]+", p.name), p
    for c in checks:  # the name is checked by Check itself; the script is passed quoted, as one argument
        assert re.fullmatch(r"[A-Za-z0-9:/._-]+", c.base_url), c.base_url
    calls = [
        "probe "
        + " ".join(shlex.quote(v) for v in (p.name, p.url, p.resolve, p.expect, str(p.budget_ms), p.body))
        for p in probe_list
    ]
    calls += [
        "check " + " ".join(shlex.quote(v) for v in (c.check.name, c.base_url, c.resolve, c.check.script))
        for c in checks
    ]
    secret_names = sorted({key for c in checks for key in c.check.secret_env})
    header = (
        f"wait_seconds={wait_seconds}\ntrusted_tls={int(trusted_tls)}\n"
        f"secret_names={shlex.quote(' '.join(secret_names))}\n"
        "deadline=$(( $(date +%s) + wait_seconds ))\n"
    )
    return _NEEDS_CURL + header + _FUNCTIONS + "\n".join(calls) + "\n" + _REPORT


def parse_report(stdout: str) -> dict[str, Any]:
    """The step's stdout as the `verification` output ({} before its first run, e.g. in a preview)."""
    text = stdout.strip()
    return json.loads(text.splitlines()[-1]) if text else {}


class Verify(pulumi.ComponentResource):
    """The post-deploy probe of every public endpoint (a host step that depends on everything else)."""

    results: pulumi.Output[dict[str, Any]]
    endpoints: dict[str, list[str]]

    def __init__(
        self,
        name: str,
        d: Deployment,
        *,
        services: Mapping[str, pulumi.Resource],
        edge: Edge | None,
        portal: Portal | None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("versatilehub:verify:Verify", name, None, opts)
        cfg = d.config
        probe_list = probes(d, services, edge, portal)
        check_list = service_checks(d, services)
        env: dict[str, pulumi.Input[str]] = {}
        secret_env: dict[str, pulumi.Input[str]] = {}
        given: dict[str, object] = {}
        for c in check_list:
            for key, value in (*c.check.env.items(), *c.check.secret_env.items()):
                # Checks of one service may share a value (the same password output); other values clash.
                if given.setdefault(key, value) is not value:
                    raise ValueError(f"verify: two checks set {key}")
            env.update(c.check.env)
            secret_env.update({k: pulumi.Output.secret(v) for k, v in c.check.secret_env.items()})
        self.endpoints = {}
        for p in probe_list:
            self.endpoints.setdefault(p.name, []).append(p.url)
        # Depending on a component waits for all of its children: every container, setup step and migration.
        after = [*services.values(), *(r for r in (edge, portal) if r is not None)]
        step = d.run(
            f"{name}-endpoints",
            script(
                probe_list,
                wait_seconds=cfg.verify.wait_seconds,
                trusted_tls=cfg.verify.trusted_tls,
                checks=check_list,
            ),
            parent=self,
            env=env,
            secret_env=secret_env,
            progress=True,  # its stderr is the `verify:` lines, with any secret a check printed masked
            # A replaced container gets a new id: the probe runs again after every update that touched one.
            triggers=[c.id for c in d.created_containers],
            depends_on=after,
        )
        # host.run keeps every step's stdout secret in case it echoes a secret it was given; this step prints
        # only statuses, timings and the checks' problem lines (their stdout is discarded, secrets masked).
        stdout = pulumi.Output.unsecret(cast(command.local.Command, step).stdout)  # remote has it too
        self.results = stdout.apply(parse_report)
        self.register_outputs({"endpoints": self.endpoints})
