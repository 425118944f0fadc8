# shellcheck shell=bash
# hub-frontend: frappe_docker's nginx (resources/core/nginx/nginx-entrypoint.sh renders
# /templates/nginx/frappe.conf.template with envsubst, then runs nginx), with one change in its socket.io
# location. Run as `bash -c` under the image's entrypoint (which links sites/assets first).
#
# Why: Frappe's socket.io middleware (realtime/middlewares/authenticate.js) refuses a connection whose
# Origin and Host name different hosts, then authenticates it by calling <Origin>/api/method/
# frappe.realtime.get_user_info (realtime/utils.js get_url) from the websocket container. Upstream's
# location sets Origin to <scheme>://<site name> and keeps the browser's Host: a site name other than the
# hostname fails the first check, standalone mode (Host 127.0.0.1) too, and https://<hostname> is not
# reachable from the websocket, which sits on the Hub's internal network only. Here Origin and Host both
# name this container on that network, so the check passes and the callback comes straight back to this
# nginx over plain HTTP, which serves it for the site (X-Frappe-Site-Name). The browser's own Origin was
# never passed on upstream either.
set -euo pipefail
template=${NGINX_TEMPLATE:-/templates/nginx/frappe.conf.template}
conf=${NGINX_CONF:-/etc/nginx/conf.d/frappe.conf}
: "${BACKEND:?}" "${SOCKETIO:?}" "${FRAPPE_SITE_NAME_HEADER:?}" "${REALTIME_SELF:?}"
: "${CLIENT_MAX_BODY_SIZE:?}"
# nginx-entrypoint.sh's defaults for the rest.
export UPSTREAM_REAL_IP_ADDRESS=${UPSTREAM_REAL_IP_ADDRESS:-127.0.0.1}
export UPSTREAM_REAL_IP_HEADER=${UPSTREAM_REAL_IP_HEADER:-X-Forwarded-For}
export UPSTREAM_REAL_IP_RECURSIVE=${UPSTREAM_REAL_IP_RECURSIVE:-off}
export PROXY_READ_TIMEOUT=${PROXY_READ_TIMEOUT:-120}

# The variables nginx-entrypoint.sh substitutes, and no others (nginx's own $host etc. stay as they are).
# shellcheck disable=SC2016
envsubst '${BACKEND} ${SOCKETIO} ${UPSTREAM_REAL_IP_ADDRESS} ${UPSTREAM_REAL_IP_HEADER}
  ${UPSTREAM_REAL_IP_RECURSIVE} ${FRAPPE_SITE_NAME_HEADER} ${PROXY_READ_TIMEOUT}
  ${CLIENT_MAX_BODY_SIZE}' <"$template" >"$conf"

# Inside `location /socket.io { ... }` only: the two headers the middleware compares.
sed -i -E "/location \/socket\.io \{/,/\}/{
s|^([[:space:]]*proxy_set_header Origin )[^;]*;|\1http://$REALTIME_SELF;|
s|^([[:space:]]*proxy_set_header Host )[^;]*;|\1$REALTIME_SELF;|
}" "$conf"
# A template of another shape would silently keep the old headers: stop here, saying so.
block=$(sed -n '/location \/socket\.io {/,/}/p' "$conf")
for header in "Origin http://$REALTIME_SELF;" "Host $REALTIME_SELF;"; do
  if ! grep -qF "proxy_set_header $header" <<<"$block"; then
    echo "hub-frontend: $template has no socket.io location with proxy_set_header ${header%% *};" \
      "this image's nginx template changed: check components/services/hub/scripts/frontend.sh" >&2
    exit 1
  fi
done
exec nginx -g 'daemon off;'
