# flow-login (components/core/probe.py): n8n is ready and the owner the stack provisioned can sign in through
# the public route. n8n 2.41.1 dist/controllers/auth.controller.js: POST /rest/login takes
# {"emailOrLdapLoginId", "password"} and answers 200 with the user (and the n8n-auth cookie), 401 otherwise.
# Needs VH_FLOW_OWNER_EMAIL and (secret) VH_FLOW_OWNER_PASSWORD; the password goes on stdin, never argv.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
code=$(vh_curl "$1/healthz/readiness" -o "$out" -w '%{http_code}') || code=000
if [[ $code != 200 ]] || ! grep -qF '"status":"ok"' "$out"; then
  echo "n8n is not ready: GET /healthz/readiness answered ${code/#000/nothing}" \
    "$(head -c 200 "$out" | tr -d '\n')" >&2
  exit 1
fi
code=$(printf '{"emailOrLdapLoginId":"%s","password":"%s"}' "$VH_FLOW_OWNER_EMAIL" "$VH_FLOW_OWNER_PASSWORD" |
  vh_curl "$1/rest/login" -H 'Content-Type: application/json' --data-binary @- -o "$out" -w '%{http_code}') ||
  code=000
if [[ $code != 200 ]] || ! grep -qiF "\"email\":\"$VH_FLOW_OWNER_EMAIL\"" "$out"; then
  # n8n's refusal names no secret ({"code":401,"message":"Wrong username or password..."}).
  echo "the owner $VH_FLOW_OWNER_EMAIL cannot log in: POST /rest/login answered ${code/#000/nothing}" \
    "$(head -c 200 "$out" | tr -d '\n')" >&2
  exit 1
fi
