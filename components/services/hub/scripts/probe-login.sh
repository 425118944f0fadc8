# shellcheck shell=bash
# shellcheck disable=SC2154  # $jar and hub_login come from probe-session.sh, run first
# hub-login (after probe-session.sh): the session works for an authenticated call, not only the login.
hub_login "$1"
user=$(vh_curl "$1/api/method/frappe.auth.get_logged_user" -b "$jar" -f) || {
  echo "a call with the Administrator's session failed: $1/api/method/frappe.auth.get_logged_user" >&2
  exit 1
}
grep -q '"message": *"Administrator"' <<<"$user" || {
  echo "the Administrator's session is not the Administrator's: $(head -c 200 <<<"$user")" >&2
  exit 1
}
