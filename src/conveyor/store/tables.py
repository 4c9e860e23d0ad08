"""The store's tables (SQLAlchemy Core). Changes go through an Alembic migration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()


def _serial() -> Column[int]:
    """An autoincrementing integer primary key `id`."""
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _at(name: str = "at") -> Column[float]:
    """A required timestamp (seconds since the epoch)."""
    return Column(name, Float, nullable=False)


def _actor() -> Column[str]:
    return Column("actor", String(200))


def _condition(status: str = "status") -> list[Column[Any]]:
    """A status with its reason and message (Tekton's Condition): an execution's status is
    derived from its actions and cached here for queries; its reason says why its status,
    stop mode or superseded-by last moved."""
    return [
        Column(status, String(20), nullable=False),
        Column("reason", String(40), default=""),
        Column("message", Text, default=""),
    ]


def _move() -> list[Column[Any]]:
    """A status move's columns, shared by the attempts' and the executions' history."""
    return [Column("from_status", String(20)), *_condition("to_status"), _actor(), _at()]


pipelines = Table(
    "pipelines",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("definition", JSON, nullable=False),  # the pipeline file, as data
    Column("source_path", Text),
    _at("updated_at"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("pipeline", String(100), nullable=False),
    Column("seq", Integer, nullable=False),  # order within the pipeline
    Column("kind", String(20), nullable=False, default="standard"),  # standard | rollback
    *_condition(),
    Column("waiting", Text),  # why it waits (a disabled transition, a busy stage)
    Column("definition", JSON, nullable=False),  # snapshot of the pipeline file at start
    Column("variables", JSON, nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("revisions", JSON, nullable=False),  # source action -> {CommitId, BranchName, ...}
    Column("stage_epochs", JSON, nullable=False),
    Column("stop_mode", String(20)),  # None | finish | abandon
    Column("superseded_by", String(64)),
    Column("actor", String(100)),
    _at("created_at"),
    Column("ended_at", Float),
    Column("lease_owner", String(200)),
    Column("lease_expires", Float),
)
Index("ix_executions_pipeline_seq", executions.c.pipeline, executions.c.seq, unique=True)
Index("ix_executions_status", executions.c.status)
Index("ix_executions_created", executions.c.created_at)
Index("ix_executions_pipeline_created", executions.c.pipeline, executions.c.created_at)

# one row per source action of an execution: a source that finishes writes its own row, so
# two sources finishing together never overwrite each other (migration 0003)
source_revisions = Table(
    "source_revisions",
    metadata,
    Column("execution_id", String(64), ForeignKey("executions.id"), primary_key=True),
    Column("action", String(100), primary_key=True),
    Column("position", Integer, nullable=False),  # the source's place among declared sources
    Column("revision", JSON, nullable=False),  # {CommitId, BranchName, AuthorDate, ...}
    _at("recorded_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(300), primary_key=True),  # exec/stage/action/attempt: deterministic
    Column("execution_id", String(64), ForeignKey("executions.id"), nullable=False),
    Column("stage", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("epoch", Integer, nullable=False, default=0),
    Column("type", String(100), nullable=False),
    *_condition(),
    _at("started_at"),
    Column("ended_at", Float),
    Column("deadline", Float),
    Column("variables", JSON, nullable=False, default=dict),
    Column("artifacts", JSON, nullable=False, default=dict),  # output name -> digest
    Column("details", JSON, nullable=False, default=dict),
    Column("reports", JSON, nullable=False, default=list),
    Column("pgid", Integer),
    Column("worker", String(200)),
    Column("log_path", Text),
    # what the action's inputs hashed to (engine/reuse.py): an equal one may reuse this attempt
    Column("input_digest", String(80)),
)
Index("ix_attempts_execution", attempts.c.execution_id)
Index("ix_attempts_input_digest", attempts.c.input_digest)
Index("ix_attempts_status", attempts.c.status)

history = Table(
    "history",
    metadata,
    _serial(),
    Column("attempt_id", String(300), nullable=False),
    Column("execution_id", String(64), nullable=False),
    *_move(),
)
Index("ix_history_execution", history.c.execution_id)

# every change of an execution's status, stop mode or superseded-by, with its reason
# (migration 0005; the attempts' moves are in `history`)
execution_history = Table(
    "execution_history",
    metadata,
    _serial(),
    Column("execution_id", String(64), nullable=False),
    Column("stop_mode", String(20)),
    Column("superseded_by", String(64)),
    *_move(),
    Index("ix_execution_history_execution", "execution_id"),
)

requests = Table(
    "requests",
    metadata,
    _serial(),
    Column("execution_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),  # stop | abandon | retry | approve | reject
    Column("payload", JSON, nullable=False, default=dict),
    _actor(),
    _at("created_at"),
    Column("handled_at", Float),
    Column("outcome", Text),
)
Index("ix_requests_pending", requests.c.execution_id, requests.c.handled_at)

transitions = Table(
    "transitions",
    metadata,
    Column("pipeline", String(100), primary_key=True),
    Column("stage", String(100), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("reason", Text, default=""),
    _actor(),
    _at(),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(80), primary_key=True),
    Column("files", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    _at("created_at"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("attempt_id", String(300), primary_key=True),
    Column("execution_id", String(64), nullable=False),
    Column("token", String(64), nullable=False, unique=True),
    Column(
        "status", String(20), nullable=False
    ),  # Pending | Approved | Rejected | Expired | Superseded
    Column("summary", Text, default=""),
    Column("external_link", Text),
    Column("digest", String(100)),  # the image digest the decision is bound to
    _at("expires_at"),
    Column("decided_by", String(200)),
    Column("comment", Text),
    Column("decided_at", Float),
    _at("created_at"),
)
Index("ix_approvals_execution", approvals.c.execution_id)

deployments = Table(
    "deployments",
    metadata,
    _serial(),
    Column("environment", String(100), nullable=False),
    Column("pipeline", String(100), nullable=False),
    Column("execution_id", String(64)),
    Column("kind", String(20), nullable=False, default="deploy"),  # deploy | rollback
    Column("image", Text),
    Column("digest", String(100)),
    Column("commit", String(64)),
    Column("url", Text),
    _actor(),
    Column("details", JSON, nullable=False, default=dict),
    _at(),
)
Index("ix_deployments_env", deployments.c.environment, deployments.c.at)

health = Table(
    "health",
    metadata,
    Column("environment", String(100), primary_key=True),
    Column("healthy", Boolean, nullable=False),
    Column("detail", Text, default=""),
    _at("since"),
    _at("checked_at"),
)

engines = Table(
    "engines",
    metadata,
    Column("worker", String(200), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(200), nullable=False),
    _at("started_at"),
    _at("heartbeat"),
)

users = Table(
    "users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),  # viewer | operator | approver | admin
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("email", String(200)),
    _at("created_at"),
    Column("disabled", Boolean, nullable=False, default=False),
)

# dashboard sessions: a signed cookie is valid only while its row is here (logout deletes it)
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie's session id
    Column("user_name", String(100), nullable=False),
    _at("created_at"),
    _at("expires_at"),
    Index("ix_sessions_user", "user_name"),
)

audit = Table(
    "audit",
    metadata,
    _serial(),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text),
    Column("detail", JSON, nullable=False, default=dict),
    _at(),
)
