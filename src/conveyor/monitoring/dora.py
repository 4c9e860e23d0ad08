"""The four DORA measures of delivery performance, from the deployment history.

Measured on one environment (default `prod`: "a deployment" is a deployment to production)
over a window of `days` whole UTC days ending today, each with a small series (one point
per day, or per week for windows over 90 days) for a chart:

- **deployment frequency**: deployments (kind `deploy`; rollbacks are not releases) in the
  window, per day and per week;
- **lead time for changes**: from the deployed commit's AuthorDate (the source revision
  the execution built, `revisions[*].AuthorDate`) to the moment it went live in the
  environment; median and mean;
- **change failure rate**: the share of those deployments that failed — their execution
  ended Failed after deploying (e.g. a monitor breach), or the next deployment to the
  environment was a rollback;
- **time to restore**: for each failed deployment, from when it went live to when the
  environment next got a good version (a rollback, or a deployment whose execution
  succeeded); median. Failures not restored yet are counted as `open`.

`measures()` is pure (plain records in, a dict out); `dora(store)` gathers the records.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.model.status import ExecutionStatus

if TYPE_CHECKING:
    from conveyor.store.db import Store

DAY = 86400.0


@dataclass(frozen=True)
class Deployment:
    """One deployment to the measured environment, with what DORA needs of its execution."""

    at: float
    kind: str  # deploy | rollback
    execution_id: str
    execution_status: str  # the execution's final (or current) status
    commit_at: float | None = None  # AuthorDate of the deployed commit
    digest: str = ""


def author_time(revisions: Mapping[str, Any] | None, commit: str | None) -> float | None:
    """The AuthorDate (epoch seconds) of the deployed commit among an execution's revisions.

    The revision whose CommitId is the deployed commit (the image's source, not another
    source of the execution: none when it is not among them); without a recorded commit (an
    old deployment), the earliest of them all.
    """
    found: list[float] = []
    for rev in (revisions or {}).values():
        if not isinstance(rev, Mapping) or not rev.get("AuthorDate"):
            continue
        try:
            when = dt.datetime.fromisoformat(str(rev["AuthorDate"])).timestamp()
        except ValueError:
            continue
        if commit and rev.get("CommitId") == commit:
            return when
        found.append(when)
    return min(found) if found and not commit else None


def _failed(d: Deployment, nxt: Deployment | None) -> bool:
    return d.execution_status == ExecutionStatus.FAILED or (
        nxt is not None and nxt.kind == "rollback"
    )


def _good(d: Deployment) -> bool:
    return d.kind == "rollback" or d.execution_status == ExecutionStatus.SUCCEEDED


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def measures(
    history: Sequence[Deployment], *, now: float, days: int = 30, environment: str = "prod"
) -> dict[str, Any]:
    """The DORA measures over `days` up to `now` from an environment's deployments."""
    ordered = sorted(history, key=lambda d: d.at)
    # calendar buckets (UTC) ending with the one holding `now`: the window is whole days
    step = DAY if days <= 90 else 7 * DAY
    count = max(1, math.ceil(days * DAY / step))
    last = math.floor(now / DAY) * DAY - (step - DAY)
    buckets = [last - (count - 1 - i) * step for i in range(count)]
    start = buckets[0]

    def bucket(t: float) -> int:
        return min(len(buckets) - 1, max(0, int((t - start) // step)))

    releases: list[tuple[Deployment, bool, float | None]] = []  # (deploy, failed, restored in)
    for i, d in enumerate(ordered):
        if d.kind != "deploy" or not start <= d.at <= now:
            continue
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        failed = _failed(d, nxt)
        restored: float | None = None
        if failed:
            later = next(
                (
                    x
                    for j, x in enumerate(ordered[i + 1 :], i + 1)
                    if _good(x)
                    and not (
                        x.kind == "deploy"
                        and _failed(x, ordered[j + 1] if j + 1 < len(ordered) else None)
                    )
                ),
                None,
            )
            restored = later.at - d.at if later else None
        releases.append((d, failed, restored))

    n = len(releases)
    leads = [d.at - d.commit_at for d, _, _ in releases if d.commit_at is not None]
    failures = [r for r in releases if r[1]]
    restores = [r for _, f, r in releases if f and r is not None]
    per: list[dict[str, list[Any]]] = [
        {"deploys": [], "leads": [], "failed": [], "restores": []} for _ in buckets
    ]
    for d, failed, restored in releases:
        b = per[bucket(d.at)]
        b["deploys"].append(d)
        if d.commit_at is not None:
            b["leads"].append(d.at - d.commit_at)
        b["failed"].append(failed)
        if failed and restored is not None:
            b["restores"].append(restored)

    def series(fn: Any) -> list[dict[str, Any]]:
        return [
            {"date": dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d"), "value": fn(b)}
            for t, b in zip(buckets, per, strict=True)
        ]

    def rounded(v: float | None, unit: float = 1.0, digits: int = 2) -> float | None:
        return None if v is None else round(v / unit, digits)

    return {
        "environment": environment,
        "days": days,
        "from": start,
        "to": now,
        "bucket": "day" if step == DAY else "week",
        "deploymentFrequency": {
            "deployments": n,
            "perDay": round(n / days, 3) if days else None,
            "perWeek": round(n / days * 7, 2) if days else None,
            "unit": "deployments",
            "series": series(lambda b: len(b["deploys"])),
        },
        "leadTimeForChanges": {
            "count": len(leads),
            "medianSeconds": rounded(_median(leads), 1, 1),
            "meanSeconds": rounded(statistics.fmean(leads) if leads else None, 1, 1),
            "unit": "hours",
            "series": series(lambda b: rounded(_median(b["leads"]), 3600.0, 3)),
        },
        "changeFailureRate": {
            "failed": len(failures),
            "deployments": n,
            "rate": round(len(failures) / n, 4) if n else None,
            "unit": "ratio",
            "series": series(
                lambda b: round(sum(b["failed"]) / len(b["failed"]), 4) if b["failed"] else None
            ),
        },
        "timeToRestore": {
            "restored": len(restores),
            "open": len(failures) - len(restores),
            "medianSeconds": rounded(_median(restores), 1, 1),
            "unit": "minutes",
            "series": series(lambda b: rounded(_median(b["restores"]), 60.0, 2)),
        },
    }


def history_of(store: Store, environment: str) -> list[Deployment]:
    """An environment's deployments as DORA records (one query for the executions)."""
    rows = store.deployment_records(environment, limit=1_000_000)
    outcomes = store.execution_outcomes(sorted({r.execution_id for r in rows if r.execution_id}))
    status = {k: v[0] for k, v in outcomes.items()}
    revisions = {k: v[1] for k, v in outcomes.items()}
    out = []
    for r in rows:
        ex_id = r.execution_id or ""
        revs = (r.details or {}).get("revisions") or revisions.get(ex_id)
        out.append(
            Deployment(
                at=float(r.at),
                kind=r.kind or "deploy",
                execution_id=ex_id,
                execution_status=status.get(ex_id, "?"),
                commit_at=author_time(revs, r.commit),
                digest=r.digest or "",
            )
        )
    return out


def dora(
    store: Store, days: int = 30, environment: str = "prod", now: float | None = None
) -> dict[str, Any]:
    """The four DORA measures of ENVIRONMENT over the last DAYS days (see the module doc)."""
    import time

    return measures(
        history_of(store, environment), now=now or time.time(), days=days, environment=environment
    )
