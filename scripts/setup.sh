#!/usr/bin/env bash
# Installs what Conveyor needs on a fresh Debian 12 machine, and nothing when it is already there.
#   apt packages (as root), the Python venv (.venv), a Node for the example when the machine's is
#   missing or older than examples/webapp's `engines` (.tools/node), the example's npm packages.
# It ends with `conveyor doctor`, which checks every tool and names the fix of anything missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# --no-install-recommends below, so what podman only recommends is listed: catatonit is its
# pause binary (`kube play` fails without it), uidmap and slirp4netns its helpers. curl: the
# generated CodeBuild buildspecs use it (the CodeBuild image has it), and `aws rehearse` runs them.
# mmdebstrap builds the base images (`conveyor images build`; podman import needs nothing more).
APT_PACKAGES=(git podman catatonit runc uidmap slirp4netns buildah skopeo docker-registry
              busybox-static chromium chromium-driver prometheus postgresql iproute2 procps
              python3-dev curl mmdebstrap)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q -U pip
fi
stamp=.venv/.conveyor-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import conveyor" 2>/dev/null; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import conveyor, fastapi, sqlalchemy, selenium"
  # optional: ruamel's C parser (large pipeline files parse about 7x faster); never fatal
  .venv/bin/pip install -q 'ruamel.yaml.clibz>=0.3.7' 2>&1 | grep -v "is ignored" | tail -n 3 || true
  .venv/bin/python -c "from ruamel.yaml.cyaml import CParser" 2>/dev/null ||
    echo "setup: the optional C YAML parser (ruamel.yaml.clibz) did not install: large pipeline files parse slower"
  echo "$want" > "$stamp"
fi

# Node: the machine's when it satisfies the example's engines, else one in .tools/node.
node_bin=$(python3 scripts/node_tool.py ensure)
if [ -n "$node_bin" ]; then
  echo "setup: using Node from $node_bin ($("$node_bin/node" --version))"
  export PATH="$node_bin:$PATH"
fi

if [ -f examples/webapp/package-lock.json ]; then
  lock=examples/webapp/package-lock.json
  mark=examples/webapp/node_modules/.conveyor-lock
  if [ ! -f "$mark" ] || [ "$(sha256sum "$lock" | cut -d' ' -f1)" != "$(cat "$mark")" ]; then
    echo "setup: npm ci in examples/webapp"
    (cd examples/webapp && NG_CLI_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error)
    sha256sum "$lock" | cut -d' ' -f1 > "$mark"
  fi
fi
.venv/bin/conveyor doctor || { echo "setup: \`conveyor doctor\` found a missing tool (above)" >&2; exit 3; }
echo "setup: ready"
