"""Batch builds (`batch: build-list | build-graph`): the builds run one after the other, in
`depend-on` order; a build whose dependencies did not succeed is skipped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from conveyor.buildspec.result import BuildResult, Log, PhaseResult
from conveyor.buildspec.spec import Batch, BatchBuild, Buildspec, batch_order, load_buildspec

# (the child buildspec, its variables, its work directory, its identifier) -> its result
RunOne = Callable[[Buildspec, Mapping[str, str], Path, str], BuildResult]


def run_batch(
    spec: Buildspec,
    primary: Path,
    env: Mapping[str, str] | None,
    workdir: Path,
    log: Log | None,
    result: BuildResult,
    run_one: RunOne,
    image: str | None = None,
) -> BuildResult:
    """Run every build of `spec.batch` with `run_one`, gathering their results into `result`."""
    assert spec.batch is not None
    batch = spec.batch

    def say(text: str) -> None:
        if log:
            log(f"[Batch] {text}\n")

    say(f"batch {batch.kind}: {len(batch.builds)} build(s), run one after the other")
    states: dict[str, str] = {}
    stop = False
    for b in batch_order(batch):
        skipped = _skip_reason(b, states, stop)
        if skipped:
            states[b.identifier] = "SKIPPED"
            result.phases.append(PhaseResult(b.identifier, "SKIPPED", message=skipped))
            continue
        if b.buildspec:
            child = replace(load_buildspec(primary / b.buildspec, name=b.buildspec), batch=None)
        else:
            child = replace(spec, batch=None)
        if b.image:
            say(
                f"{b.identifier}: env.image {b.image} is a CodeBuild image; the build runs "
                + ("in " + image if image else "on the host")
            )
        say(f"{b.identifier}: starting ({b.buildspec or spec.file})")
        sub = run_one(
            child, {**(env or {}), **b.variables}, workdir / "batch" / b.identifier, b.identifier
        )
        status = _gather(result, b.identifier, sub)
        states[b.identifier] = status
        say(f"{b.identifier}: {status}")
        if sub.stopped:
            result.stopped = sub.stopped
            stop = True
        elif not sub.succeeded and not b.ignore_failure:
            stop = batch.kind == "build-list" or batch.fast_fail
    bad = [i for i, s in states.items() if s != "SUCCEEDED" and not _ignored(batch, i)]
    result.succeeded = not bad and not result.stopped
    result.message = "" if result.succeeded else f"batch builds did not succeed: {', '.join(bad)}"
    return result


def _skip_reason(b: BatchBuild, states: Mapping[str, str], stop: bool) -> str:
    if stop:
        return "skipped: an earlier build failed"
    failed_deps = [d for d in b.depend_on if states.get(d) != "SUCCEEDED"]
    if failed_deps:
        return f"skipped: depends on {', '.join(failed_deps)} which did not succeed"
    return ""


def _gather(result: BuildResult, identifier: str, sub: BuildResult) -> str:
    """Add a child build's result to the batch's; its status."""
    result.batch.append((identifier, sub))
    status = "SUCCEEDED" if sub.succeeded else ("STOPPED" if sub.stopped else "FAILED")
    total = sum(p.duration for p in sub.phases)
    result.phases.append(PhaseResult(identifier, status, total, sub.message, 1))
    result.exported.update(sub.exported)
    result.artifacts.extend(sub.artifacts)
    result.reports.extend(sub.reports)
    result.warnings.extend(f"{identifier}: {w}" for w in sub.warnings)
    return status


def _ignored(batch: Batch, identifier: str) -> bool:
    return next(b for b in batch.builds if b.identifier == identifier).ignore_failure
