# shellcheck shell=bash
# The start of every Hub check (components/core/probe.py runs each with the public base URL as $1):
# hub_login signs in as Administrator with the generated password through the public route and keeps the
# session cookie in $jar. The password reaches curl on its stdin (printf is a bash builtin), never argv.
# Frappe's login (frappe/auth.py, LoginManager): POST /api/method/login with usr and pwd; a System User
# gets {"message": "Logged In"} and the `sid` cookie; a wrong password is HTTP 401.
: "${VH_HUB_ADMIN_PASSWORD:?the check needs the Administrator password}"
jar=$(mktemp)
answer=$(mktemp)
trap 'rm -f "$jar" "$answer"' EXIT

hub_login() {
  local code
  code=$(printf '%s' "$VH_HUB_ADMIN_PASSWORD" | vh_curl "$1/api/method/login" -o "$answer" -w '%{http_code}' \
    -c "$jar" --data-urlencode usr=Administrator --data-urlencode pwd@-) || code=000
  if [[ $code != 200 ]] || ! grep -q '"Logged In"' "$answer"; then
    echo "login as Administrator with the generated password refused: HTTP ${code/#000/no answer}" \
      "$(head -c 200 "$answer" | tr -d '\r\n')" >&2
    return 1
  fi
  if ! grep -q $'\tsid\t' "$jar"; then
    echo "login as Administrator answered without a session cookie (sid)" >&2
    return 1
  fi
}
