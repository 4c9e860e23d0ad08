"""Which columns the store's reads return and how a raw row decodes: shared by `Store` and
the standard-library `SqliteReader` (so no SQLAlchemy here: the reader must stay light)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from conveyor.errors import NotFound
from conveyor.model.status import ExecutionReason, ExecutionStatus

Row = dict[str, Any]
T = TypeVar("T")

# an execution without its definition (the largest column) and leases: the lists' columns
LIGHT_EXECUTION = (
    "id",
    "pipeline",
    "seq",
    "kind",
    "status",
    "reason",
    "message",
    "waiting",
    "revisions",
    "trigger",
    "actor",
    "created_at",
    "ended_at",
)

# an attempt without its JSON payloads: what planning needs, cheap to load
LIGHT_ATTEMPT = (
    "id",
    "execution_id",
    "stage",
    "action",
    "attempt",
    "epoch",
    "type",
    "status",
    "reason",
    "message",
    "started_at",
    "ended_at",
    "deadline",
    "pgid",
    "worker",
    "log_path",
)

# the columns a raw SQLite row holds as JSON text or 0/1 (a test holds these to tables.py)
JSON_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "pipelines": ("definition",),
    "executions": ("definition", "variables", "trigger", "revisions", "stage_epochs"),
    "source_revisions": ("revision",),
    "attempts": ("variables", "artifacts", "details", "reports"),
    "execution_history": (),
    "requests": ("payload",),
    "deployments": ("details",),
    "audit": ("detail",),
}
BOOL_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "transitions": ("enabled",),
    "health": ("healthy",),
    "users": ("disabled",),
}


def decode_row(table: str, raw: Mapping[str, Any]) -> Row:
    """A raw row of `table` as `Store` returns it: JSON columns decoded, booleans as bool."""
    row = dict(raw)
    for col in JSON_COLUMNS.get(table, ()):
        if isinstance(row.get(col), str):
            row[col] = json.loads(row[col])
    for col in BOOL_COLUMNS.get(table, ()):
        if row.get(col) is not None:
            row[col] = bool(row[col])
    return row


def execution_by_id(
    ex_id: str, exact: Callable[[], T | None], by_prefix: Callable[[str], list[T]]
) -> T:
    """The execution whose id is `ex_id`, else the only one whose id starts with it (four
    characters or more, as a LIKE pattern for `by_prefix`); NotFound otherwise."""
    found = exact()
    if found is None and ex_id and len(ex_id) >= 4:
        candidates = by_prefix(f"{ex_id}%")
        found = candidates[0] if len(candidates) == 1 else None
    if found is None:
        raise NotFound(f"no execution '{ex_id}' (see `conveyor history`)")
    return found


def started_execution(
    ex_id: str,
    pipeline: str,
    definition: Mapping[str, Any],
    *,
    variables: Mapping[str, str],
    trigger: Mapping[str, Any],
    revisions: Mapping[str, Any] | None,
    kind: str,
    actor: str | None,
    now: float,
) -> tuple[Row, Row]:
    """A new execution's row (InProgress, Started; without `seq`, which the database
    numbers) and the first row of its history, as both `Store` and `SqliteWriter` insert
    them."""
    status, reason = ExecutionStatus.IN_PROGRESS.value, ExecutionReason.STARTED.value
    row = {
        "id": ex_id,
        "pipeline": pipeline,
        "kind": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "definition": dict(definition),
        "variables": dict(variables),
        "trigger": dict(trigger),
        "revisions": dict(revisions or {}),
        "stage_epochs": {},
        "actor": actor,
        "created_at": now,
    }
    move: Row = {"execution_id": ex_id, "from_status": None, "to_status": status}
    move |= {"reason": reason, "message": "", "actor": actor, "at": now}
    return row, move
