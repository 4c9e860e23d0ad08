"""Starting executions from pushes (a repo's post-receive hook) and from polling remotes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conveyor.adapters import git
from conveyor.engine.engine import pipeline_of
from conveyor.errors import ConveyorError
from conveyor.model.pipeline import Action, Pipeline, Trigger
from conveyor.model.triggers import matches

log = logging.getLogger("conveyor.triggers")


def _source_repo(config: dict[str, Any]) -> str:
    return str(config.get("repository", ""))


def _triggers(app: Any) -> Iterator[tuple[Pipeline, Trigger, Action]]:
    """Every stored pipeline's triggers, each with the source action it watches."""
    for row in app.store.pipeline_records():
        p = pipeline_of(row.definition, row.name)
        for t in p.triggers:
            try:
                _, action = p.find_action(t.source_action)
            except KeyError:
                continue
            yield p, t, action


def _start(app: Any, pipeline: str, actor: str, trigger: dict[str, Any], commit: str) -> str:
    """Start `pipeline` at `commit` of the trigger's source action; the execution's id."""
    eng = app.engine()
    ex_id: str = eng.start(
        pipeline,
        actor=actor,
        trigger=trigger,
        revisions={trigger["source"]: {"CommitId": commit}},
    )
    eng.shutdown(wait=False)
    return ex_id


def start_matching(
    app: Any, *, repository: str, ref: str, old: str, new: str
) -> list[tuple[str, str]]:
    """Start every pipeline with a trigger on a source action reading `repository` that matches."""
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    if set(new) == {"0"}:
        return []  # a deleted ref starts nothing
    repo_path = git.repos_dir(app.settings.state_dir) / f"{repository}.git"
    files = git.changed_files(repo_path, old, new) if repo_path.exists() else []
    started = []
    done: set[str] = set()
    for p, t, action in _triggers(app):
        if p.name in done:
            continue
        if _source_repo(dict(action.config)) not in (repository, str(repo_path)):
            continue
        if action.config.get("branch", "main") != branch and tag is None:
            continue
        if not matches(t, branch=branch, tag=tag, files=files):
            continue
        trigger = {
            "type": "Push",
            "source": t.source_action,
            "repository": repository,
            "ref": ref,
            "old": old,
            "new": new,
            "files": files[:50],
        }
        ex_id = _start(app, p.name, f"git push to {repository}", trigger, new)
        started.append((ex_id, p.name))
        done.add(p.name)  # one execution a pipeline per push
    return started


class Poller:
    """Polls the remote URLs of trigger sources; a new commit on a branch starts pipelines."""

    def __init__(self, app: Any, interval: float = 60.0) -> None:
        self.app = app
        self.interval = interval
        self.last: dict[tuple[str, str], str] = {}

    def poll_once(self) -> list[tuple[str, str]]:
        started: list[tuple[str, str]] = []
        cache = git.GitCache(self.app.settings.state_dir)
        for p, t, action in _triggers(self.app):
            repository = _source_repo(dict(action.config))
            if "/" not in repository and ":" not in repository:
                continue  # local repos trigger through their hook
            branch = str(action.config.get("branch", "main"))
            try:
                url = git.resolve_url(repository, self.app.settings.state_dir)
                mirror = cache.fetch(url, branch)
            except ConveyorError as e:
                log.warning("poll %s: %s", repository, e.message)
                continue
            head = git.commit_of(Path(mirror), f"refs/heads/{branch}")
            key = (p.name, t.source_action)
            old = self.last.get(key)
            self.last[key] = head or ""
            if head and old is not None and head != old:
                files = git.changed_files(Path(mirror), old, head)
                if matches(t, branch=branch, tag=None, files=files):
                    trigger = {
                        "type": "Poll",
                        "source": t.source_action,
                        "old": old,
                        "new": head,
                    }
                    ex = _start(self.app, p.name, f"poll of {repository}", trigger, head)
                    started.append((ex, p.name))
        return started

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except ConveyorError as e:
                log.warning("poll failed: %s", e.message)
            stop.wait(self.interval)
