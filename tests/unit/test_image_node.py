"""The build image's Node is unpacked on Debian 12's own Python (3.11.2: no tarfile filters)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from conveyor.images.node import NodeFromNpm


def _tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("package/bin/node")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/bin/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


@pytest.mark.parametrize("filters", [True, False])
def test_unpack_works_with_and_without_tarfile_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    """With Python's extraction filters a link out of the target is refused; without them
    (3.11.2) only plain files and directories are unpacked. Either way no link leaves it."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    target = tmp_path / "node"
    if filters:
        with pytest.raises(tarfile.FilterError):
            NodeFromNpm(tmp_path / "cache")._unpack(_tgz(), target)
    else:
        NodeFromNpm(tmp_path / "cache")._unpack(_tgz(), target)
        assert (target / "bin" / "node").read_bytes() == b"#!/bin/sh\n"
    assert not (target / "bin" / "escape").is_symlink()
