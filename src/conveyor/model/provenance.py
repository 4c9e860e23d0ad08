"""Provenance: which source revision an action's work came from (pure).

The lineage of a deployment is read from the pipeline definition, backwards: the deploy
action's image (`#{Build.ImageURI}`) or its first input artifact (`build_out`) leads to the
action that produced it (the build), whose primary input (its first input artifact,
CodeBuild's primary source) leads to a source action:

    deploy <- build_out <- build <- app_src <- CodeCommitDMF

An execution's *headline* source is the one that triggered it, or for a manual start the
first declared source action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.model.pipeline import Action, Pipeline
from conveyor.model.variables import find_refs

# config keys that name the image an action works on: followed before any other reference
IMAGE_KEYS = ("image", "imageUri", "ImageURI")


def _upstream(pipeline: Pipeline, action: Action) -> list[Action]:
    """The actions this one takes its work from, the most direct first."""
    by_ns = {a.namespace: a for _, a in pipeline.all_actions() if a.namespace}
    by_output = {o: a for _, a in pipeline.all_actions() for o in a.outputs}
    out: list[Action] = []
    cfg = dict(action.config)
    refs = [
        ns for key in IMAGE_KEYS if key in cfg for _, ns, _ in find_refs(cfg[key]) if ns in by_ns
    ]
    out.extend(by_ns[ns] for ns in refs)
    out.extend(by_output[i] for i in action.inputs if i in by_output)
    out.extend(by_ns[ns] for _, ns, _ in find_refs(cfg) if ns in by_ns)
    return out


def source_of(pipeline: Pipeline, action_name: str) -> str | None:
    """The source action whose revision the named action's work was built from, if any."""
    try:
        _, start = pipeline.find_action(action_name)
    except KeyError:
        return None
    seen: set[str] = set()
    todo = [start]
    while todo:
        a = todo.pop(0)
        if a.name in seen:
            continue
        seen.add(a.name)
        if a.type.startswith("source."):
            return a.name
        # depth first along the most direct link: its upstream goes before the others
        todo[0:0] = [u for u in _upstream(pipeline, a) if u.name not in seen]
    return None


def headline_source(pipeline: Pipeline, trigger: Mapping[str, Any] | None) -> str | None:
    """The triggering source action, else (a manual start) the first declared source."""
    names = [a.name for a in pipeline.source_actions()]
    src = (trigger or {}).get("source")
    if isinstance(src, str) and src in names:
        return src
    return names[0] if names else None


def ordered_revisions(
    revisions: Mapping[str, Any],
    *,
    headline: str | None = None,
    order: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Revisions with the headline source first, then in declared order (unknown ones last)."""
    rank = dict(order or {})

    def key(name: str) -> tuple[int, int, str]:
        return (0 if name == headline else 1, rank.get(name, 1 << 30), name)

    return {name: revisions[name] for name in sorted(revisions, key=key)}


def commit_of(revisions: Mapping[str, Any], source: str | None) -> str | None:
    """The CommitId recorded for a source action, if any."""
    rev = revisions.get(source) if source else None
    if isinstance(rev, Mapping) and rev.get("CommitId"):
        return str(rev["CommitId"])
    return None
