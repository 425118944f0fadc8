# shellcheck shell=bash
# shellcheck disable=SC2154  # $jar and hub_login come from probe-session.sh, run first
# hub-realtime (after probe-session.sh): a socket.io connection to the site's namespace through the
# public route, as the browser opens it (Engine.IO 4 polling: open, then the namespace's CONNECT packet
# `40/<site>,`). Frappe's middleware (realtime/middlewares/authenticate.js) runs on that CONNECT: it
# answers `40/<site>,{"sid":...}` once it authenticated the session with the backend, `44/<site>,{...}`
# (CONNECT_ERROR) when it refused it.
: "${VH_HUB_SITE:?}"
hub_login "$1"
io="$1/socket.io/?EIO=4&transport=polling"
open=$(vh_curl "$io" -b "$jar" -f) || { echo "socket.io handshake refused: $io" >&2; exit 1; }
sid=$(sed -n 's/^0{"sid":"\([^"]*\)".*/\1/p' <<<"$open")
[[ -n $sid ]] || { echo "socket.io handshake refused: no Engine.IO session in $(head -c 120 <<<"$open")" >&2; exit 1; }
vh_curl "$io&sid=$sid" -b "$jar" -f --data-binary "40/$VH_HUB_SITE," -H 'Content-Type: text/plain' >/dev/null || {
  echo "socket.io handshake refused: the namespace CONNECT for $VH_HUB_SITE was not accepted" >&2
  exit 1
}
reply=$(vh_curl "$io&sid=$sid" -b "$jar" -f) || { echo "socket.io handshake refused: no reply to CONNECT" >&2; exit 1; }
if ! grep -qF "40/$VH_HUB_SITE,{" <<<"$reply"; then
  echo "socket.io handshake refused by Frappe's realtime: $(tr -c '[:print:]' ' ' <<<"$reply" | head -c 200)" >&2
  exit 1
fi
