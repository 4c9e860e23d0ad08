#!/bin/sh
# Answers one HTTP request on stdin/stdout; `nc -ll -p 8080 -e` (see start.sh)
# starts it once per connection.
#   /healthz, /healthz.json  -> healthz.json (written by the build: status, version, commit)
#   /config.json             -> generated here from APP_ENV and APP_BANNER (the ConfigMap)
#   /, /index.html and every missing path whose last segment has no dot
#   (an SPA route such as /tasks/2)  -> index.html, status 200
#   anything else            -> `busybox httpd -i` (hashed assets, favicon; a missing
#                               /main-x.js stays a 404)
# The documents answered here carry `Cache-Control: no-cache` and no validator:
# `podman build --timestamp 0` gives every file the same mtime, so httpd's ETag
# (mtime-size) could not tell one release's index.html or healthz.json from the next.
ROOT=/www
CR=$(printf '\r')

IFS= read -r -t 10 line || exit 0
headers=
while IFS= read -r -t 10 header; do
    headers="$headers$header
"
    [ "${header%"$CR"}" = "" ] && break
done

set -f
# shellcheck disable=SC2086  # split the request line into method, target, version
set -- ${line%"$CR"}
method=${1:-} target=${2:-/} version=${3:-HTTP/1.0}
path=${target%%\?*}

clean() { printf '%s' "$1" | tr -d '"\\\000-\037'; }

reply() { # reply CONTENT_TYPE FILE|- : status 200 with the file (or stdin) as body
    if [ "$2" = - ]; then body=$(cat); else body=$(cat "$2"); fi
    printf 'HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
        "$1" "$(printf '%s\n' "$body" | wc -c)"
    [ "$method" = HEAD ] || printf '%s\n' "$body"
    exit 0
}

document=
if [ "$method" = GET ] || [ "$method" = HEAD ]; then
    case "$path" in
        /config.json)
            body=$(printf '{"environment":"%s","banner":"%s"}' \
                "$(clean "${APP_ENV:-}")" "$(clean "${APP_BANNER:-}")")
            printf '%s' "$body" | reply application/json -
            ;;
        /healthz | /healthz.json) document=healthz.json ;;
        / | /index.html) document=index.html ;;
        *)
            case "${path##*/}" in
                *.*) ;;
                *) [ -e "$ROOT$(httpd -d "$path")" ] || document=index.html ;;
            esac
            ;;
    esac
fi

case "$path" in /healthz | /healthz.json) ;; *) echo "$method $path -> ${document:-httpd}" >&2 ;; esac
case "$document" in
    healthz.json) reply application/json "$ROOT/healthz.json" ;;
    index.html) reply 'text/html; charset=utf-8' "$ROOT/index.html" ;;
esac
printf '%s %s %s\r\n%s' "$method" "$target" "$version" "$headers" |
    exec httpd -i -h "$ROOT" -c /opt/webapp/httpd.conf
