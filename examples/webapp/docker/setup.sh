#!/opt/webapp/busybox sh
# Runs once at image build time (RUN in the Containerfile).
set -eu
bb=/opt/webapp/busybox
if [ -x /usr/sbin/nginx ]; then
    # BASE=nginx:alpine: keep Alpine's userland, check our nginx configuration.
    nginx -t -c /opt/webapp/nginx.conf
else
    # BASE=scratch: busybox provides the userland (/bin/sh for probes, wget, httpd, nc).
    $bb mkdir -p /bin /tmp /etc
    $bb --install -s /bin
    $bb chmod 1777 /tmp
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' >/etc/group
fi
# a source artifact unpacked from a zip may have lost the execute bits
$bb chmod 0755 /opt/webapp/busybox /opt/webapp/start.sh /opt/webapp/serve.sh
$bb chmod -R a+rX /www /opt/webapp
test -s /www/index.html
test -s /www/healthz.json
