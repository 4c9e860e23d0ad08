"""Starting an execution, written once for `Store` and the standard-library `SqliteWriter`
(`conveyor run --detach`): a new id, the rows `columns.started_execution` builds, numbered next
in its pipeline by the database. Each store inserts the two rows its own way; a start that
lost the race for its number (or its id) tries again with a new id."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.errors import Conflict
from conveyor.model.status import ExecutionStatus, check_execution_transition
from conveyor.store.columns import Row, started_execution


class ExecutionStarts:
    # the store's insert of a new execution's row (without `seq`) and its first history row,
    # in one transaction that numbers it (declared here, defined by each store)
    _insert_started: Callable[[str, Row, Row], None]
    # what that insert raises when another start took the number or the id
    _raced: tuple[type[Exception], ...]

    def create_execution(
        self,
        pipeline: str,
        definition: Mapping[str, Any],
        *,
        variables: Mapping[str, str],
        trigger: Mapping[str, Any],
        revisions: Mapping[str, Any] | None = None,
        kind: str = "standard",
        actor: str | None = None,
    ) -> str:
        """Insert an InProgress execution numbered next in its pipeline; returns its id."""
        check_execution_transition(None, ExecutionStatus.IN_PROGRESS)
        for _ in range(20):
            ex_id = uuid.uuid4().hex[:12]
            row, move = started_execution(
                ex_id,
                pipeline,
                definition,
                variables=variables,
                trigger=trigger,
                revisions=revisions,
                kind=kind,
                actor=actor,
                now=time.time(),
            )
            try:
                self._insert_started(pipeline, row, move)
                return ex_id
            except self._raced:
                time.sleep(random.uniform(0, 0.02))  # noqa: S311 - a back-off, not a secret
        raise Conflict(f"could not allocate an execution number for pipeline '{pipeline}'")
