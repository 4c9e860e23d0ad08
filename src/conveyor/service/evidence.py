"""The evidence panel of an approval: what a person needs to decide a release.

From the attempts that ended before the approval opened: unit and end-to-end test totals
(the attempts' reports), the failed cases with their messages, the screenshots (PNG files
among the e2e reports' files and the e2e actions' output artifacts), the HTML reports; the
image digest the decision is bound to (the approval row's `digest`); and the commits
between what runs in the target environment now (its latest deployment's commit) and what
would go (the execution's source revision), read from the sources' git caches.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from conveyor.adapters import git
from conveyor.errors import ConveyorError
from conveyor.model.pipeline import Pipeline
from conveyor.service.queries import pick
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.records import ApprovalRecord, AttemptRecord, ExecutionRecord

E2E = re.compile(r"e2e|selenium|end.?to.?end|acceptance|browser|ui.?test", re.IGNORECASE)
COUNTS = ("total", "passed", "failed", "skipped", "errors")
MAX_FILES = 40


def kind_of(report: Mapping[str, Any], attempt: AttemptRecord) -> str:
    """'e2e' for a report of an end-to-end suite (by its name, action or stage), else 'unit'."""
    hay = " ".join(
        str(x) for x in (report.get("name"), attempt.action, attempt.stage, attempt.type)
    )
    return "e2e" if E2E.search(hay) else "unit"


def file_url(ex_id: str, attempt: AttemptRecord, rel: str) -> str:
    """A same-origin path; names from data are percent-encoded (no `?`, `#` or scheme)."""
    where = f"{quote(str(attempt.stage), safe='')}/{quote(str(attempt.action), safe='')}"
    return (
        f"/api/v1/executions/{quote(ex_id, safe='')}/actions/{where}/files/"
        f"{quote(rel, safe='/')}?attempt={int(attempt.attempt)}"
    )


def artifact_url(digest: str, rel: str) -> str:
    return f"/api/v1/artifacts/{quote(digest, safe=':')}/files/{quote(rel, safe='/')}"


def latest_before(attempts: list[AttemptRecord], before: float) -> list[AttemptRecord]:
    """The latest attempt of each action among those that ended before `before`."""
    latest: dict[tuple[str, str], AttemptRecord] = {}
    for a in attempts:
        if a.ended_at is None or a.ended_at > before:
            continue
        key = (a.stage, a.action)
        if key not in latest or a.attempt > latest[key].attempt:
            latest[key] = a
    return sorted(latest.values(), key=lambda a: a.started_at)


def target_environment(pipeline: Pipeline, approval_stage: str) -> str:
    """The environment the approval guards: of the first later action that names one."""
    try:
        idx = pipeline.stage_index(approval_stage)
    except KeyError:
        return "prod"
    for stage in pipeline.stages[idx:]:
        for action in stage.actions:
            if action.environment:
                return action.environment
    return "prod"


def gather(
    store: Store,
    artifacts: ArtifactStore,
    settings: Settings,
    pipeline: Pipeline,
    ex: ExecutionRecord,
    approval: ApprovalRecord,
) -> dict[str, Any]:
    attempts = store.attempts_for(ex.id)
    gate = next((a for a in attempts if a.id == approval.attempt_id), None)
    stage = gate.stage if gate else approval.attempt_id.split("/")[1]
    before = approval.created_at
    tests: dict[str, dict[str, float]] = {k: dict.fromkeys(COUNTS, 0) for k in ("unit", "e2e")}
    reports: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    screenshots: list[dict[str, str]] = []
    html: list[dict[str, str]] = []
    for a in latest_before(attempts, before):
        kinds = set()
        for r in a.reports or []:
            kind = kind_of(r, a)
            kinds.add(kind)
            for k in COUNTS:
                tests[kind][k] += int(r.get(k) or 0)
            files = [str(f) for f in r.get("files") or []]
            for f in files:
                entry = {"name": f"{a.action}: {f}", "url": file_url(ex.id, a, f)}
                if f.lower().endswith(".png") and kind == "e2e":
                    screenshots.append(entry)
                elif f.lower().endswith((".html", ".htm")):
                    html.append(entry)
            reports.append(
                {
                    "stage": a.stage,
                    "action": a.action,
                    "attempt": a.attempt,
                    "kind": kind,
                    **{k: r.get(k) for k in ("name", "format", *COUNTS, "duration_seconds")},
                    "failures": r.get("failures") or [],
                }
            )
            for fc in r.get("failures") or []:
                failures.append(
                    {
                        "kind": kind,
                        "report": r.get("name"),
                        "action": a.action,
                        "suite": fc.get("suite", ""),
                        "name": fc.get("name", ""),
                        "message": fc.get("message", ""),
                    }
                )
        if "e2e" in kinds or E2E.search(f"{a.action} {a.stage}"):
            for out_name, digest in (a.artifacts or {}).items():
                try:
                    manifest = artifacts.manifest(digest)
                except ConveyorError:
                    continue
                for e in manifest:
                    p = str(e["path"])
                    entry = {"name": f"{out_name}: {p}", "url": artifact_url(digest, p)}
                    if p.lower().endswith(".png"):
                        screenshots.append(entry)
                    elif p.lower().endswith((".html", ".htm")):
                        html.append(entry)
    env = target_environment(pipeline, stage)
    return {
        "approval": approval_view(approval),
        "stage": stage,
        "digest": approval.digest,
        "target_environment": env,
        "tests": {k: {c: int(v) for c, v in counts.items()} for k, counts in tests.items()},
        "reports": reports,
        "failures": failures,
        "screenshots": _dedupe(screenshots)[:MAX_FILES],
        "html_reports": _dedupe(html)[:MAX_FILES],
        "commits": commits(store, settings, pipeline, ex, env),
    }


_APPROVAL_FIELDS = (
    "attempt_id execution_id status summary external_link digest expires_at decided_by"
    " comment decided_at created_at"
)


def approval_view(a: ApprovalRecord) -> dict[str, Any]:
    return pick(a, _APPROVAL_FIELDS)


def _dedupe(items: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i["url"] not in seen:
            seen.add(i["url"])
            out.append(i)
    return out


def _repo_for(settings: Settings, pipeline: Pipeline, source_action: str) -> Path | None:
    """The local git repository holding a source action's commits (its fetch cache)."""
    try:
        _, action = pipeline.find_action(source_action)
    except KeyError:
        return None
    repository = action.config.get("repository")
    if not isinstance(repository, str):
        return None
    try:
        url = git.resolve_url(repository, settings.state_dir)
    except ConveyorError:
        return None
    cached = (
        settings.state_dir / "git-cache" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")
    )
    if cached.exists():
        return cached
    p = Path(url)
    return p if p.exists() else None


def commits(
    store: Store, settings: Settings, pipeline: Pipeline, ex: ExecutionRecord, env: str
) -> dict[str, Any]:
    """The commits between what runs in `env` now and what this execution would deploy."""
    deployed = store.deployment_records(env, limit=1)
    old = deployed[0].commit if deployed else None
    result: dict[str, Any] = {
        "environment": env,
        "from": old,
        "to": None,
        "source": None,
        "list": [],
        "deployed_at": deployed[0].at if deployed else None,
        "deployed_execution": deployed[0].execution_id if deployed else None,
        "note": "",
    }
    sources = [
        (name, r)
        for name, r in (ex.revisions or {}).items()
        if isinstance(r, Mapping) and r.get("CommitId")
    ]
    if not sources:
        result["note"] = "this execution has no source revision"
        return result
    for name, r in sources:
        repo = _repo_for(settings, pipeline, name)
        new = str(r["CommitId"])
        if repo is None:
            continue
        try:
            if old and git.commit_of(repo, old) is None:
                continue  # prod's commit is from another source
            rows = git.log_between(repo, old, new, limit=50)
        except ConveyorError:
            continue
        result.update({"to": new, "source": name, "list": rows})
        if old == new:
            result["note"] = f"{env} already runs this commit"
        elif not old:
            result["note"] = f"nothing is deployed to {env} yet: the latest commits of {name}"
        return result
    name, r = sources[0]
    result.update({"to": r["CommitId"], "source": name})
    result["note"] = (
        f"the commit in {env} ({old[:12]}) is not in the git cache of any source"
        if old
        else "the source repository is not in the git cache"
    )
    return result
