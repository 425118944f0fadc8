# shellcheck shell=bash
# shellcheck disable=SC2154  # $jar and hub_login come from probe-session.sh, run first
# hub-company (after probe-session.sh): the company the setup wizard created is in the site (Frappe's REST
# API, GET /api/resource/Company with a name filter, as the Administrator).
: "${VH_HUB_COMPANY:?}"
hub_login "$1"
name=${VH_HUB_COMPANY//\\/\\\\}
name=${name//\"/\\\"}
found=$(vh_curl "$1/api/resource/Company" -b "$jar" -f -G \
  --data-urlencode "filters=[[\"name\",\"=\",\"$name\"]]") || {
  echo "the Company list could not be read: $1/api/resource/Company" >&2
  exit 1
}
grep -q '"name"' <<<"$found" || { echo "no Company named $VH_HUB_COMPANY in the site" >&2; exit 1; }
