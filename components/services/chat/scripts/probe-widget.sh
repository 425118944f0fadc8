# shellcheck shell=bash
# chat-widget (only with chat.websiteInbox): the website widget can be embedded by the client's site.
# Chatwoot's WidgetsController (app/controllers/widgets_controller.rb, after_action allow_iframe_requests)
# deletes X-Frame-Options for /widget, or sets CSP frame-ancestors from the inbox's allowed domains; a
# router that adds X-Frame-Options again blocks the widget on every site. /widget needs the inbox's
# website_token, which only Chatwoot knows: the check signs in as the super admin through the public route
# (devise_token_auth: POST /auth/sign_in, the session in the access-token/client/uid response headers) and
# reads it from the account's inboxes. The password reaches curl on stdin, the session headers from a file:
# neither is ever on a command line.
: "${VH_CHAT_ADMIN_EMAIL:?the check needs the admin login}"
: "${VH_CHAT_ADMIN_PASSWORD:?the check needs the admin password}"
: "${VH_CHAT_WEBSITE:?the check needs the website inbox address}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

code=$(printf '{"email":"%s","password":"%s"}' "$VH_CHAT_ADMIN_EMAIL" "$VH_CHAT_ADMIN_PASSWORD" |
  vh_curl "$1/auth/sign_in" -H 'Content-Type: application/json' --data-binary @- \
    -D "$scratch/headers" -o "$scratch/signin" -w '%{http_code}') || code=000
if [[ $code != 200 ]]; then
  echo "sign-in as $VH_CHAT_ADMIN_EMAIL with the generated password refused: HTTP ${code/#000/no answer}" \
    "(changed in Chatwoot? then this check cannot read the widget's token)" >&2
  exit 1
fi
tr -d '\r' <"$scratch/headers" | grep -iE '^(access-token|client|uid): ' >"$scratch/session" || true
if [[ $(wc -l <"$scratch/session") -ne 3 ]]; then
  echo "sign-in answered without devise_token_auth's access-token, client and uid headers" >&2
  exit 1
fi
account=$(grep -o '"account_id": *[0-9]*' "$scratch/signin" | head -n 1 | grep -o '[0-9]*$') || {
  echo "sign-in answered without the admin's account_id: $(head -c 200 "$scratch/signin")" >&2
  exit 1
}
vh_curl "$1/api/v1/accounts/$account/inboxes" -f -H "@$scratch/session" -o "$scratch/inboxes" || {
  echo "listing account $account's inboxes with the admin's session failed" >&2
  exit 1
}
# One inbox per chunk (each inbox object starts with its id); the site's widget carries its token.
token=$(sed 's/{"id":/\n&/g' "$scratch/inboxes" | grep -F "\"website_url\":\"$VH_CHAT_WEBSITE\"" |
  grep -o '"website_token":"[^"]*"' | head -n 1 | cut -d'"' -f4) || true
if [[ -z $token ]]; then
  echo "account $account has no website inbox for $VH_CHAT_WEBSITE (deleted in Chatwoot? the bootstrap" \
    "provisions it once; remove chat.websiteInbox if it is gone for good)" >&2
  exit 1
fi
code=$(vh_curl "$1/widget?website_token=$token" -D "$scratch/widget" -o /dev/null -w '%{http_code}') || code=000
if [[ $code != 200 ]]; then
  echo "$1/widget answered HTTP ${code/#000/nothing} for $VH_CHAT_WEBSITE's inbox" >&2
  exit 1
fi
frame=$(tr -d '\r' <"$scratch/widget" | grep -i '^x-frame-options:' | head -n 1) || true
if [[ -n $frame ]]; then
  echo "$1/widget carries '$frame': browsers refuse to show the chat widget on $VH_CHAT_WEBSITE" \
    "(Chat's router must leave frame options to Chatwoot)" >&2
  exit 1
fi
