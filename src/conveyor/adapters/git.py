"""Git, through the real `git` binary: bare repos, a fetch cache, trees, commit facts."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from conveyor.adapters.process import require
from conveyor.adapters.tool_errors import describe
from conveyor.errors import ActionError, ConfigError

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "LC_ALL": "C",
    # a repository URL may come from a variable: no transport that runs commands (ext::, fd::)
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
}


def _git(
    args: list[str],
    *,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 600,
    binary: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    git = require("git", "git")
    env = dict(os.environ)
    env.update(GIT_ENV)
    res = subprocess.run(
        [git, *args], cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
    )
    if check and res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace")
        raise ActionError(
            describe("git", f"git {' '.join(args[:2])} failed (exit {res.returncode})", err)
        )
    return res


def out(args: list[str], *, cwd: Path | None = None) -> str:
    return _git(args, cwd=cwd).stdout.decode("utf-8", "replace").strip()


def repos_dir(state_dir: Path) -> Path:
    return state_dir / "repos"


def resolve_url(repository: str, state_dir: Path) -> str:
    """A bare name is a repo in the state dir (`conveyor repo create NAME`); else a URL or path."""
    if repository.startswith("-"):
        # it would reach git as an option (`--upload-pack=...` runs a command): data only
        raise ActionError(f"repository {repository!r} is not a repository name, URL or path")
    if "/" not in repository and ":" not in repository:
        p = repos_dir(state_dir) / f"{repository}.git"
        if not p.exists():
            known = (
                sorted(x.name[:-4] for x in repos_dir(state_dir).glob("*.git"))
                if repos_dir(state_dir).exists()
                else []
            )
            raise ActionError(
                f"no repository '{repository}' in {repos_dir(state_dir)} "
                f"(known: {', '.join(known) or 'none'}; create it with `conveyor repo create {repository}`)"
            )
        return str(p)
    if repository.startswith(("/", "./", "../", "~")):
        p = Path(repository).expanduser()
        if not p.exists():
            raise ActionError(f"git repository path '{repository}' does not exist")
        return str(p.resolve())
    return repository


def create_bare(state_dir: Path, name: str, hook: str | None) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"'{name}' is not a valid repository name (letters, digits, - and _)")
    path = repos_dir(state_dir) / f"{name}.git"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--bare", "-q", "-b", "main", str(path)])
    if hook:
        h = path / "hooks" / "post-receive"
        h.write_text(hook)
        h.chmod(0o755)
    return path


def post_receive_hook(state_dir: Path, name: str) -> str:
    py = sys.executable
    return (
        "#!/bin/sh\n"
        "# installed by `conveyor repo create`: start the pipelines whose triggers match\n"
        f"export CONVEYOR_HOME='{state_dir}'\n"
        "while read old new ref; do\n"
        f'  \'{py}\' -m conveyor trigger --repository \'{name}\' --ref "$ref" --old "$old" --new "$new" || true\n'
        "done\n"
    )


class GitCache:
    """A bare mirror per remote under the state dir: fetches are incremental."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "git-cache"

    def fetch(self, url: str, branch: str) -> Path:
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        path = self.root / f"{key}.git"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _git(["init", "--bare", "-q", str(path)])
        res = _git(
            [
                "fetch",
                "-q",
                "--prune",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            cwd=path,
            check=False,
        )
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", "replace")
            raise ActionError(describe("git", f"cannot fetch {url}", err))
        return path

    @staticmethod
    def branches(repo: Path) -> list[str]:
        return [
            b
            for b in out(
                ["for-each-ref", "--format=%(refname:short)", "refs/heads"], cwd=repo
            ).splitlines()
            if b
        ]


def commit_of(repo: Path, rev: str) -> str | None:
    res = _git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=repo, check=False)
    return res.stdout.decode().strip() if res.returncode == 0 else None


def commit_facts(repo: Path, commit: str) -> dict[str, str]:
    fmt = "%H%x00%ae%x00%an%x00%aI%x00%B"
    raw = out(["show", "-s", f"--format={fmt}", commit], cwd=repo)
    h, email, name, date, msg = (raw.split("\x00") + [""] * 5)[:5]
    return {
        "CommitId": h,
        "AuthorEmail": email,
        "AuthorName": name,
        "AuthorDate": date,
        "CommitMessage": msg.strip(),
    }


def export_tree(repo: Path, commit: str, into: Path) -> int:
    """Write the commit's tree (tracked files only) into a directory; returns the file count."""
    data = _git(["archive", "--format=tar", commit], cwd=repo).stdout
    into.mkdir(parents=True, exist_ok=True)
    n = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                n += 1
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(into, filter="tar")
        else:  # Python < 3.11.4 (Debian 12's own 3.11.2) has no extraction filters
            for member in tar.getmembers():
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise ActionError(f"git archive of {commit}: unsafe path {member.name!r}")
            tar.extractall(into)  # noqa: S202 - names checked above; git archive of our repo
    return n


def changed_files(repo: Path, old: str, new: str) -> list[str]:
    if not old or set(old) == {"0"}:
        return out(["ls-tree", "-r", "--name-only", new], cwd=repo).splitlines()
    return out(["diff", "--name-only", old, new], cwd=repo).splitlines()


def log_between(repo: Path, old: str | None, new: str, limit: int = 50) -> list[dict[str, str]]:
    rng = f"{old}..{new}" if old else new
    res = _git(
        ["log", f"--max-count={limit}", "--format=%H%x00%an%x00%s", rng], cwd=repo, check=False
    )
    rows = []
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\x00")
        if len(parts) == 3:
            rows.append({"commit": parts[0], "author": parts[1], "subject": parts[2]})
    return rows
