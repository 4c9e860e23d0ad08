#!/usr/bin/env bash
# make test-fresh: prove the README's two commands on a fresh machine.
#
# A clean Debian 12 root (mmdebstrap minbase + ca-certificates python3 python3-venv make git,
# Debian's usual sources), this commit cloned into it as /src/conveyor and ../shared copied
# beside it (/src/shared), then `make demo` and `make test` inside with CI=true, in a private
# mount namespace (the recipe of MACHINE-NOTES "A clean Debian 12 root": plain chroot does not
# work for podman). Downloads are cached outside the root (apt archives, pip, npm); installed
# state never is: the root is built anew each time and removed afterwards.
#
#   FRESH_CMD   what to run inside instead of `make demo && make test` (for debugging)
#   FRESH_KEEP=1  keep the root (its path is printed) instead of removing it
#   FRESH_CACHE   the download cache (default /var/cache/conveyor-fresh)
#   FRESH_SHARED  the shared dir to put beside the clone (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHARED=${FRESH_SHARED:-$(cd .. && pwd)/shared}
if [ ! -d "$SHARED" ] && [ -n "${CONVEYOR_CORPUS:-}" ] && [ -d "$CONVEYOR_CORPUS" ]; then
  SHARED=$(cd "$CONVEYOR_CORPUS/.." && pwd)
fi
CACHE=${FRESH_CACHE:-/var/cache/conveyor-fresh}
CMD=${FRESH_CMD:-make demo && make test}
DEMO_PORTS=(5001 5002 8080 8081 8700)
PG_PORT=${FRESH_PG_PORT:-55433}

say() { echo "test-fresh: $*" >&2; }
die() { say "$*"; exit 3; }
now() { date +%s; }

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, unshare --mount and mount); run it as root"
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi
command -v unshare >/dev/null || die "needs unshare (util-linux)"
# Can we make a private mount namespace and bind-mount in it (root with CAP_SYS_ADMIN)?
probe=$(mktemp -d)
if ! err=$(unshare --mount --fork sh -c "mount --make-rprivate / && mount --bind '$probe' '$probe'" 2>&1); then
  rmdir "$probe"
  die "unshare --mount or mount is refused here (${err##*$'\n'}): it needs root with \
CAP_SYS_ADMIN, on a host or a privileged container"
fi
rmdir "$probe"
# The demo inside shares this machine's network: its fixed ports must be free.
busy=()
for p in "${DEMO_PORTS[@]}" "$PG_PORT"; do
  ss -Hltn "sport = :$p" | grep -q . && busy+=("$p")
done
[ ${#busy[@]} -eq 0 ] || die "ports ${busy[*]} are in use on this machine; the demo inside the \
fresh root needs them (same network namespace): stop what listens there (ss -ltnp) and retry"

ROOT=$(mktemp -d /var/tmp/conveyor-fresh.XXXXXX)
chmod 755 "$ROOT"
cleanup() {
  local rc=$?
  # Processes left inside the root (a registry, conmon, a front door): end them by pid.
  for d in /proc/[0-9]*; do
    r=$(readlink "$d/root" 2>/dev/null) || continue
    case "$r" in "$ROOT"|"$ROOT"/*) kill -9 "${d#/proc/}" 2>/dev/null || true ;; esac
  done
  if [ "${FRESH_KEEP:-}" = 1 ]; then
    say "root kept at $ROOT"
  elif ! grep -q " $ROOT" /proc/self/mounts; then
    rm -rf --one-file-system "$ROOT"
  else
    say "mounts under $ROOT are still there: not removing it (umount -R $ROOT, then rm -rf)"
  fi
  exit $rc
}
trap cleanup EXIT

t0=$(now)
say "building a clean Debian 12 root in $ROOT"
mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv,make,git \
  bookworm "$ROOT" >/dev/null
# Debian 12's usual sources (a fresh install has updates and security, as this machine has).
cat > "$ROOT/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# This machine's network trust is part of the image, not of Conveyor: its extra CA certificates
# (a TLS-inspecting egress) and pip's `cert` setting, so apt, pip and npm reach their registries.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null 2>&1
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
# apt in the root keeps its downloaded archives (they land in the bind-mounted cache).
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > "$ROOT/etc/apt/apt.conf.d/01keep"
rm -f "$ROOT/etc/apt/apt.conf.d/docker-clean"
t1=$(now)

say "cloning $(git rev-parse --short HEAD) into the root, ../shared beside it"
mkdir -p "$ROOT/src"
git clone --quiet --no-hardlinks "$REPO" "$ROOT/src/conveyor"
git -C "$ROOT/src/conveyor" checkout --quiet --detach "$(git rev-parse HEAD)"
if [ -d "$SHARED" ]; then
  # "$SHARED/." copies the directory's contents, so a shared dir that is a symlink is copied too
  # (plain `cp -a LINK` would put a link to a path that does not exist inside the root)
  mkdir -p "$ROOT/src/shared"
  cp -a "$SHARED/." "$ROOT/src/shared/"
  chmod -R a-w "$ROOT/src/shared"
else
  say "no shared dir at $SHARED (FRESH_SHARED=DIR): the corpus tests will fail under CI=true"
fi
mkdir -p "$CACHE/apt/partial" "$CACHE/pip" "$CACHE/npm" "$ROOT/root/.cache/pip" "$ROOT/root/.npm"

cat > "$ROOT/src/inside.sh" <<EOF
set -e
cd /src/conveyor
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 CI=true DEBIAN_FRONTEND=noninteractive CONVEYOR_PG_PORT=$PG_PORT
export CONVEYOR_PG_DIR=/tmp/conveyor-pg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
EOF
cat >> "$ROOT/src/inside.sh" <<'EOF'
teardown() {  # what the run left: pods, containers and their networks (bridges live on the host)
  command -v podman >/dev/null || return 0
  printf '[engine]\nruntime = "runc"\n' > /tmp/teardown.conf
  export CONTAINERS_CONF=/tmp/teardown.conf
  podman pod rm -af -t 0 >/dev/null 2>&1 || true
  podman rm -af -t 0 >/dev/null 2>&1 || true
  podman network ls --format '{{.Name}}' 2>/dev/null | grep -vx podman \
    | xargs -r podman network rm -f >/dev/null 2>&1 || true
  bash scripts/postgres.sh stop >/dev/null 2>&1 || true
}
trap teardown EXIT
step() {  # run a command, then say how long it took
  local s rc=0; s=$(date +%s)
  "$@" || rc=$?
  echo "test-fresh: \`$*\` took $(($(date +%s) - s)) s (exit $rc)" >&2
  return $rc
}
EOF
if [ -z "${FRESH_CMD:-}" ]; then
  echo 'step make demo && step make test' >> "$ROOT/src/inside.sh"
else
  echo "$CMD" >> "$ROOT/src/inside.sh"
fi

say "running \`$CMD\` inside (CI=true)"
set +e
unshare --mount --fork env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c '
  set -e
  R=$1; C=$2
  mount --make-rprivate /
  mount --bind "$R" "$R"
  mount -t proc proc "$R/proc"
  mount --rbind /sys "$R/sys"
  mount --rbind /dev "$R/dev"
  mount --bind "$C/apt" "$R/var/cache/apt/archives"
  mount --bind "$C/pip" "$R/root/.cache/pip"
  mount --bind "$C/npm" "$R/root/.npm"
  exec chroot "$R" /bin/bash /src/inside.sh
' fresh "$ROOT" "$CACHE"
rc=$?
set -e
t2=$(now)
say "root built in $((t1 - t0)) s; \`$CMD\` took $((t2 - t1)) s; exit $rc"
exit $rc
