"""Reuse by input digest (issue 18.1): an action whose inputs equal those of an earlier
Succeeded attempt of the same pipeline takes that attempt's outputs instead of running.

The inputs are hashed into one digest (`input_digest`): the action's identity (stage, name,
type, outputs), the digests of its input artifacts, its resolved configuration, the
environment it targets, and what its type adds (`reuse_inputs(ctx)`: for a build, the
buildspec's content, the variables it runs with and its environment image). An equal digest
recorded on an earlier Succeeded attempt of the same pipeline is a candidate; it is taken
only when what it produced is still whole:
- each output artifact's manifest hashes to its digest and every file's blob to its hash;
- the image it published (`details.image.ImageURI`) is still in its registry.
A candidate that fails a check is skipped with a warning in the action's log, and the
action runs for real. Only Succeeded attempts are candidates: reuse never hides a failure.

On by default for a `build` that publishes an image (its type's `reuse_by_default`), off
for every other type; `reuse: true|false` on the action decides, and a run started with
`--no-reuse` (trigger `reuse: false`) reuses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.actions.base import ActionResult
from conveyor.errors import ConveyorError
from conveyor.model.pipeline import Action, Pipeline, reusable_type
from conveyor.model.report import Report
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import AttemptRecord

Row = dict[str, Any]
VERSION = 1  # bump when what goes into the digest changes: older digests then never match


@dataclass(frozen=True)
class Reused:
    result: ActionResult
    artifacts: dict[str, str]  # output name -> artifact digest (the earlier attempt's)
    source: Row  # {execution, attempt, number, id}: where the outputs came from


def enabled(
    trigger: Mapping[str, Any] | None, action: Action, cls: Any, config: Mapping[str, Any]
) -> bool:
    """Whether this action of an execution started by `trigger` may reuse an earlier attempt."""
    if (trigger or {}).get("reuse") is False:  # `conveyor run --no-reuse`
        return False
    if not reusable_type(action.type):
        return False
    if action.reuse is not None:
        return action.reuse
    default = getattr(cls, "reuse_by_default", None)
    return bool(default(config)) if callable(default) else False


def input_digest(
    pipeline: Pipeline,
    stage: str,
    action: Action,
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
    extra: Mapping[str, Any],
) -> str:
    """One sha256 over everything the action's outputs follow from."""
    env = pipeline.environments.get(action.environment) if action.environment else None
    doc = {
        "version": VERSION,
        "pipeline": pipeline.name,
        "stage": stage,
        "action": action.name,
        "type": action.type,
        "outputs": list(action.outputs),
        "namespace": action.namespace,
        "inputs": dict(inputs),
        "config": _plain(config),
        "environment": _plain(dataclasses.asdict(env)) if env is not None else None,
        "extra": _plain(extra),
    }
    body = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def find(
    candidates: list[AttemptRecord],
    artifacts: ArtifactStore,
    state_dir: Path,
    workdir: Path,
    image_present: Callable[[str], bool],
    warn: Callable[[str], None],
) -> Reused | None:
    """The first candidate (newest first) whose outputs are still whole, as a result."""
    for cand in candidates:
        problem = _problem(cand, artifacts, image_present)
        if problem:
            warn(
                f"[conveyor] warning: not reusing {cand.id}: {problem}; "
                "running the action for real\n"
            )
            continue
        origin = (cand.details or {}).get("reused_from") or {
            "execution": cand.execution_id,
            "attempt": cand.id,
            "number": cand.attempt,
        }
        _copy_report_files(cand, state_dir, workdir)
        fields = {f.name for f in dataclasses.fields(Report)}
        reports = [
            Report(**{k: v for k, v in r.items() if k in fields})
            for r in (cand.reports or [])
            if isinstance(r, dict) and "name" in r and "format" in r
        ]
        details = {**(cand.details or {}), "reused_from": origin}
        message = f"reused from execution {origin['execution']}, attempt {origin['attempt']}"
        result = ActionResult(
            True,
            "Reused",
            message,
            dict(cand.variables or {}),
            reports,
            details,
        )
        return Reused(result, dict(cand.artifacts or {}), origin)
    return None


def _problem(
    cand: AttemptRecord, artifacts: ArtifactStore, image_present: Callable[[str], bool]
) -> str | None:
    for name, digest in (cand.artifacts or {}).items():
        bad = verify_artifact(artifacts, str(digest))
        if bad:
            return f"its output artifact '{name}' ({digest}) {bad}"
    image = ((cand.details or {}).get("image") or {}).get("ImageURI")
    if image:
        try:
            if not image_present(str(image)):
                return f"its image {image} is no longer in its registry"
        except ConveyorError as e:
            return f"cannot check its image {image}: {e.message}"
    return None


def verify_artifact(store: ArtifactStore, digest: str) -> str | None:
    """None when the artifact is whole; else what is wrong with it."""
    hexdigest = digest.removeprefix("sha256:")
    mf = store.manifests / (hexdigest + ".json")
    try:
        body = mf.read_bytes()
    except OSError:
        return "is gone from the artifact store"
    if hashlib.sha256(body).hexdigest() != hexdigest:
        return "has a manifest that does not match its digest"
    try:
        entries = json.loads(body)["files"]
    except (ValueError, KeyError, TypeError):
        return "has an unreadable manifest"
    for e in entries:
        blob = e.get("blob") if isinstance(e, dict) else None
        if not blob:
            continue
        h = hashlib.sha256()
        try:
            with (store.blobs / blob[:2] / blob).open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return f"lost the content of {e.get('path')}"
        if h.hexdigest() != blob:
            # discarded, so that the real run stores the right content again
            (store.blobs / blob[:2] / blob).unlink(missing_ok=True)
            return f"has a corrupted {e.get('path')} (its content does not match its digest)"
    return None


def workdir_of(state_dir: Path, attempt: AttemptRecord) -> Path:
    name = f"{attempt.stage}.{attempt.action}.{attempt.attempt}"
    return state_dir / "work" / str(attempt.execution_id) / name


def _copy_report_files(cand: AttemptRecord, state_dir: Path, workdir: Path) -> None:
    """The reports' files (JUnit XML, screenshots) next to the new attempt, as the evidence
    reads them relative to the attempt's workdir."""
    old = workdir_of(state_dir, cand)
    for r in cand.reports or []:
        for rel in (r.get("files") or []) if isinstance(r, dict) else []:
            src, dest = old / str(rel), workdir / str(rel)
            if ".." in Path(str(rel)).parts or not src.is_file():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)
