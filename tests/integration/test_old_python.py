"""Conveyor runs on Debian 12's own Python (3.11.2), whose tarfile has no extraction filters
(they came in 3.11.4): a fresh machine's source stage exported nothing before this."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters import git


def test_export_tree_without_tarfile_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export_tree writes the commit's files when tarfile knows no `filter` (Python 3.11.2)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "b.txt").write_text("b\n")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    original = tarfile.TarFile.extractall

    def old_extractall(self: tarfile.TarFile, path: Any = ".", *a: Any, **kw: Any) -> None:
        if "filter" in kw:
            raise TypeError("TarFile.extractall() got an unexpected keyword argument 'filter'")
        original(self, path, *a, **kw)

    for name in ("tar_filter", "data_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    out = tmp_path / "out"
    assert git.export_tree(repo, "HEAD", out) == 2
    assert (out / "sub" / "b.txt").read_text() == "b\n"
