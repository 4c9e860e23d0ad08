"""The content-addressed artifact store in the state dir.

An artifact is a directory snapshot: each file's bytes are stored once under
`artifacts/blobs/<sha256>`, and a manifest (path -> blob, mode, symlink target) is stored
under `artifacts/manifests/<sha256 of the manifest>.json`. The manifest's digest names the
artifact; the same tree gives the same digest, and unchanged files cost nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import NotFound


@dataclass(frozen=True)
class Stored:
    digest: str
    files: int
    size: int


DIGEST = re.compile(r"[0-9a-f]{64}")


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)

    def put(self, directory: Path) -> Stored:
        entries: list[dict[str, object]] = []
        size = 0
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for name in sorted(filenames) + sorted(
                d for d in dirnames if (Path(dirpath) / d).is_symlink()
            ):
                p = Path(dirpath) / name
                rel = p.relative_to(directory).as_posix()
                if p.is_symlink():
                    entries.append({"path": rel, "link": os.readlink(p)})
                    continue
                if not p.is_file():
                    continue
                h = hashlib.sha256()
                with p.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                blob = h.hexdigest()
                target = self.blobs / blob[:2] / blob
                if not target.exists():
                    target.parent.mkdir(exist_ok=True)
                    tmp = target.with_suffix(f".tmp{os.getpid()}")
                    shutil.copyfile(p, tmp)
                    os.replace(tmp, target)
                st = p.stat()
                size += st.st_size
                entries.append({"path": rel, "blob": blob, "mode": st.st_mode & 0o777})
        body = json.dumps({"files": entries}, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        mf = self.manifests / (digest.split(":", 1)[1] + ".json")
        if not mf.exists():
            tmp = mf.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(body)
            os.replace(tmp, mf)
        return Stored(digest, len(entries), size)

    def manifest(self, digest: str) -> list[dict[str, object]]:
        hexdigest = digest.removeprefix("sha256:")
        if not DIGEST.fullmatch(hexdigest):
            shown = digest if len(digest) <= 80 else digest[:80] + "…"
            raise NotFound(f"no artifact '{shown}' (a digest is sha256: and 64 hex digits)")
        mf = self.manifests / (hexdigest + ".json")
        if not mf.exists():
            raise NotFound(f"artifact {digest} is not in the artifact store")
        files: list[dict[str, object]] = json.loads(mf.read_text())["files"]
        return files

    def get(self, digest: str, into: Path) -> Path:
        """Materialize an artifact into a directory (hard links where possible, else copies)."""
        into.mkdir(parents=True, exist_ok=True)
        for e in self.manifest(digest):
            dest = into / str(e["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            if "link" in e:
                os.symlink(str(e["link"]), dest)
                continue
            blob = str(e["blob"])
            src = self.blobs / blob[:2] / blob
            shutil.copyfile(src, dest)
            os.chmod(dest, int(str(e["mode"])))
        return into
