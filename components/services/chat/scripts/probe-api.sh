# shellcheck shell=bash
# chat-api (components/core/probe.py runs it with the public base URL as $1): Chatwoot's /api
# (app/controllers/api_controller.rb, ApiController#index) answers 200 unauthenticated even while Postgres or
# Redis is down, and says so in its body: `"data_services"` is "ok" only when ActiveRecord's connection is
# active, `"queue_services"` only when Redis answers PING. Each one not ok is named.
body=$(vh_curl "$1/api" -f) || {
  echo "$1/api did not answer 2xx" >&2
  exit 1
}
for service in data_services queue_services; do
  grep -q "\"$service\": *\"ok\"" <<<"$body" || {
    case $service in
      data_services) what="Postgres (chat-postgres)" ;;
      *) what="Redis (chat-redis)" ;;
    esac
    echo "$1/api reports $service not ok: Chatwoot cannot reach $what: $(head -c 200 <<<"$body")" >&2
    exit 1
  }
done
