#!/bin/sh
# Container entry point. Two variants from the same Containerfile:
#  - nginx present (BASE=nginx:alpine): nginx with /opt/webapp/nginx.conf;
#  - otherwise (BASE=scratch, the default): busybox nc accepts connections on
#    8080 and runs serve.sh for each one.
# Both answer SIGTERM promptly (the shell traps it and stops the server).
if [ -x /usr/sbin/nginx ]; then
    # config.json for the app, from the ConfigMap's environment variables
    clean() { printf '%s' "$1" | tr -d '"\\\000-\037'; }
    printf '{"environment":"%s","banner":"%s"}' "$(clean "${APP_ENV:-}")" "$(clean "${APP_BANNER:-}")" >/tmp/config.json
    exec nginx -c /opt/webapp/nginx.conf -g 'daemon off;'
fi

echo "webapp: serving /www on :8080 ($(cat /www/healthz.json 2>/dev/null))" >&2
nc -ll -p 8080 -e /opt/webapp/serve.sh &
server=$!
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
wait "$server"
