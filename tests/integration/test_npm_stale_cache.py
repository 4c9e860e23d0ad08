"""A stale npm cache does not break `init --app`'s lock-file update.

`--prefer-offline` makes npm trust the package metadata in ~/.npm without revalidating it, and
npm does not revalidate it either when the version it needs is missing from it (ETARGET; see
"XXX add ETARGET ... revalidation of cached packuments" in pacote's registry.js). CI failed that
way on a ~/.npm filled days earlier. Conveyor's npm calls keep the fast path and retry once with
fresh metadata.

The npm registry here is a FAKE: a loopback HTTP server that serves one package, because the
real registry cannot be made to publish a version between two calls. npm itself is real.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conveyor.scaffold.detect import AppInfo
from conveyor.scaffold.junit import _lock

pytestmark = pytest.mark.integration

if shutil.which("npm") is None:
    pytest.skip("the stale-cache test runs the real npm (install Node.js)", allow_module_level=True)

PACKAGE = "conveyor-probe"


def _tarball(version: str) -> bytes:
    """The package's .tgz, byte-for-byte the same on every call (its integrity is in the lock)."""
    data = json.dumps({"name": PACKAGE, "version": version}).encode()
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeNpmRegistry:
    """Serves PACKAGE's metadata with `versions`, and its tarballs (FAKE: stands in for npmjs)."""

    def __init__(self) -> None:
        self.versions = ["1.0.0"]
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.endswith(".tgz"):
                    body = _tarball(self.path.rsplit("-", 1)[1].removesuffix(".tgz"))
                else:
                    body = json.dumps(registry.packument()).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def packument(self) -> dict[str, object]:
        def manifest(v: str) -> dict[str, object]:
            digest = base64.b64encode(hashlib.sha512(_tarball(v)).digest()).decode()
            tarball = f"{self.url}{PACKAGE}/-/{PACKAGE}-{v}.tgz"
            dist = {"tarball": tarball, "integrity": f"sha512-{digest}"}
            return {"name": PACKAGE, "version": v, "dist": dist}

        return {
            "name": PACKAGE,
            "dist-tags": {"latest": self.versions[-1]},
            "versions": {v: manifest(v) for v in self.versions},
        }


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeNpmRegistry]:
    reg = FakeNpmRegistry()
    thread = threading.Thread(target=reg.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("npm_config_registry", reg.url)
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    yield reg
    reg.server.shutdown()
    reg.server.server_close()


def _package(deps: str) -> str:
    return json.dumps({"name": "app", "version": "1.0.0", "dependencies": {PACKAGE: deps}})


def test_a_version_published_after_the_cache_was_filled_still_locks(
    registry: FakeNpmRegistry, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(_package("1.0.0"))
    npm = ["npm", "install", "--no-audit", "--no-fund"]
    subprocess.run([*npm, "--prefer-offline"], cwd=app, check=True, capture_output=True)
    registry.versions.append("1.0.1")  # published after ~/.npm cached the metadata

    wanted = _package("1.0.1")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "package.json").write_text(wanted)
    stale = subprocess.run(
        [*npm, "--package-lock-only", "--prefer-offline"],
        cwd=probe,
        capture_output=True,
        text=True,
        check=False,
    )
    # the failure the retry is for: without it, this is what init would report
    assert stale.returncode != 0 and "ETARGET" in stale.stderr, stale.stderr

    info = AppInfo(
        root=app, name="app", angular_major=None, output_dir="dist", runner="jest",
        build_command="npm run build", node_major=20,
    )  # fmt: skip
    lock = json.loads(_lock(info, wanted))
    assert lock["packages"][f"node_modules/{PACKAGE}"]["version"] == "1.0.1"
