"""The store's rows as frozen dataclasses (plain data: no SQLAlchemy here, so the
standard-library reader can build them too).

`Record.of(row)` takes any mapping of column -> value (a SQLAlchemy row's `_mapping`, a
`sqlite3.Row` decoded to a dict): a column the query left out (a "light" read) keeps its
default. `as_row()` gives the dict form the entry points render as JSON (the fields in
the table's column order, so the JSON reads as the row always did).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self


@dataclass(frozen=True)
class Record:
    @classmethod
    def of(cls, row: Any) -> Self:
        m: Mapping[str, Any] = row._mapping if hasattr(row, "_mapping") else row
        return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls) if f.name in m})

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PipelineRecord(Record):
    """A saved pipeline file, as data."""

    name: str
    definition: Mapping[str, Any]
    updated_at: float
    source_path: str | None = None


@dataclass(frozen=True, kw_only=True)
class Outcome(Record):
    """Why a status was reached and what to read about it: an execution's, an attempt's,
    and each recorded move of an execution."""

    reason: str | None = ""
    message: str | None = ""


@dataclass(frozen=True, kw_only=True)
class ExecutionState(Outcome):
    """How an execution stands besides its status: a stop asked for, the run that
    superseded it, and who made the change."""

    stop_mode: str | None = None
    superseded_by: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class ExecutionRecord(ExecutionState):
    """One run of a pipeline. `definition` is None in a light read."""

    id: str
    pipeline: str
    seq: int
    status: str
    kind: str = "standard"
    waiting: str | None = None
    definition: Mapping[str, Any] | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    trigger: Mapping[str, Any] = field(default_factory=dict)
    revisions: Mapping[str, Any] = field(default_factory=dict)
    stage_epochs: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    ended_at: float | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None


@dataclass(frozen=True)
class ExecutionMoveRecord(ExecutionState):
    """One change of an execution's status, stop mode or superseded-by, with its reason."""

    id: int
    execution_id: str
    to_status: str
    at: float
    from_status: str | None = None


@dataclass(frozen=True)
class AttemptRecord(Outcome):
    """One attempt of one action. The JSON payloads are empty in a light read."""

    id: str
    execution_id: str
    stage: str
    action: str
    attempt: int
    type: str
    status: str
    epoch: int = 0
    started_at: float = 0.0
    ended_at: float | None = None
    deadline: float | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    reports: list[Any] = field(default_factory=list)
    pgid: int | None = None
    worker: str | None = None
    log_path: str | None = None
    input_digest: str | None = None


@dataclass(frozen=True)
class DeploymentRecord(Record):
    """A release that went live in an environment (a deploy or a rollback)."""

    id: int
    environment: str
    pipeline: str
    at: float
    execution_id: str | None = None
    kind: str = "deploy"
    image: str | None = None
    digest: str | None = None
    commit: str | None = None
    url: str | None = None
    actor: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RequestRecord(Record):
    """Something asked of an execution (stop, abandon, retry), for the engine to act on."""

    id: int
    execution_id: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None
    created_at: float
    handled_at: float | None = None
    outcome: str | None = None


@dataclass(frozen=True, kw_only=True)
class AttemptMoveRecord(Record):
    """One guarded move of an attempt's status (a row of `history`)."""

    id: int
    attempt_id: str
    execution_id: str
    from_status: str | None = None
    to_status: str
    reason: str | None = ""
    message: str | None = ""
    actor: str | None = None
    at: float


@dataclass(frozen=True, kw_only=True)
class TransitionRecord(Record):
    """The inbound transition of a stage, set by hand (disabled with a reason, or enabled)."""

    pipeline: str
    stage: str
    enabled: bool
    reason: str | None = ""
    actor: str | None = None
    at: float


@dataclass(frozen=True)
class EngineRecord(Record):
    """A running engine loop and its heartbeat."""

    worker: str
    pid: int
    host: str
    started_at: float
    heartbeat: float


@dataclass(frozen=True, kw_only=True)
class AuditRecord(Record):
    """Who did what to which target, when (a row of the audit log)."""

    id: int
    actor: str
    action: str
    target: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float


@dataclass(frozen=True)
class ApprovalRecord(Record):
    """A person's decision an approval attempt waits for (bound to an image digest)."""

    attempt_id: str
    execution_id: str
    token: str
    status: str
    expires_at: float
    created_at: float
    summary: str | None = ""
    external_link: str | None = None
    digest: str | None = None
    decided_by: str | None = None
    comment: str | None = None
    decided_at: float | None = None


@dataclass(frozen=True)
class HealthRecord(Record):
    """An environment's latest health reading."""

    environment: str
    healthy: bool
    since: float
    checked_at: float
    detail: str | None = ""


@dataclass(frozen=True)
class UserRecord(Record):
    name: str
    role: str
    token_hash: str
    email: str | None = None
    created_at: float = 0.0
    disabled: bool = False


@dataclass(frozen=True)
class StoreCounts:
    """What the Prometheus collector reads, in one transaction: executions by (pipeline,
    kind, status) with their count; finished attempts (type, status, started, ended);
    approvals (status, created, decided); deployments by (environment, kind) with count and
    latest time."""

    executions: list[tuple[str, str | None, str, int]]
    attempts: list[tuple[str, str, float, float]]
    approvals: list[tuple[str, float, float | None]]
    deployments: list[tuple[str, str | None, int, float]]
