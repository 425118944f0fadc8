# agent-auth (components/core/probe.py): the OpenClaw gateway is ready and refuses a call without its token.
# openclaw 2026.9.6 dist: /readyz is the "ready" probe route (gateway-http-route-contracts-*.mjs);
# POST /tools/invoke is always routed and authorizes first (tools-invoke-http-*.mjs), answering 401 without
# a token (http-common-*.mjs sendGatewayAuthFailure), before it reads the body.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
code=$(vh_curl "$1/readyz" -o "$out" -w '%{http_code}') || code=000
if [[ $code != 200 ]]; then
  echo "OpenClaw is not ready: GET /readyz answered ${code/#000/nothing} $(head -c 200 "$out" | tr -d '\n')" >&2
  exit 1
fi
code=$(vh_curl "$1/tools/invoke" -X POST -H 'Content-Type: application/json' --data-binary '{}' -o "$out" \
  -w '%{http_code}') || code=000
if [[ $code != 401 ]]; then
  echo "OpenClaw answered ${code/#000/nothing} to an unauthenticated POST /tools/invoke (expected 401):" \
    "is gateway.auth on?" >&2
  exit 1
fi
