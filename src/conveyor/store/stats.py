"""The store's aggregate reads for monitoring: Prometheus counts and DORA's executions
(`Store` inherits these queries)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, func, select

from conveyor.store import tables as t
from conveyor.store.records import StoreCounts


class StatsQueries:
    # the Store's transaction, which this mixin's queries run in (declared, not defined here)
    tx: Callable[[], AbstractContextManager[Connection]]

    def counts(self) -> StoreCounts:
        """Everything the metrics collector reads, in one transaction."""
        ex, att, ap, dep = t.executions, t.attempts, t.approvals, t.deployments
        with self.tx() as c:
            executions = c.execute(
                select(ex.c.pipeline, ex.c.kind, ex.c.status, func.count()).group_by(
                    ex.c.pipeline, ex.c.kind, ex.c.status
                )
            ).all()
            attempts = c.execute(
                select(att.c.type, att.c.status, att.c.started_at, att.c.ended_at).where(
                    att.c.ended_at.is_not(None)
                )
            ).all()
            approvals = c.execute(select(ap.c.status, ap.c.created_at, ap.c.decided_at)).all()
            deployments = c.execute(
                select(dep.c.environment, dep.c.kind, func.count(), func.max(dep.c.at)).group_by(
                    dep.c.environment, dep.c.kind
                )
            ).all()
        return StoreCounts(
            executions=[tuple(r) for r in executions],
            attempts=[tuple(r) for r in attempts],
            approvals=[tuple(r) for r in approvals],
            deployments=[tuple(r) for r in deployments],
        )

    def execution_outcomes(self, ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """Each given execution's (status, revisions column), 500 ids a query."""
        ex = t.executions
        out: dict[str, tuple[str, Any]] = {}
        ids = list(ids)
        for i in range(0, len(ids), 500):
            with self.tx() as c:
                for r in c.execute(
                    select(ex.c.id, ex.c.status, ex.c.revisions).where(
                        ex.c.id.in_(ids[i : i + 500])
                    )
                ):
                    out[r.id] = (r.status, r.revisions)
        return out
