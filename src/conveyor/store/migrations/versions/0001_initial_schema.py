"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 14:57:23.329125
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.migrations.shapes import (
    boolean,
    create_indexes,
    drop_indexes,
    integer,
    json,
    real,
    serial,
    status_change,
    string,
    text,
)


revision = "0001"
down_revision = None


def upgrade() -> None:
    """Every table of the first schema, in the order Alembic generated them."""
    _approvals()
    _artifacts()
    _audit()
    _deployments()
    _engines()
    _executions()
    _health()
    _history()
    _pipelines()
    _requests()
    _transitions()
    _users()
    _attempts()


def _approvals() -> None:
    op.create_table(
        "approvals",
        string("attempt_id", 300),
        string("execution_id", 64),
        string("token", 64),
        string("status", 20),
        text("summary"),
        text("external_link"),
        string("digest", 100, null=True),
        real("expires_at"),
        string("decided_by", 200, null=True),
        text("comment"),
        real("decided_at", null=True),
        real("created_at"),
        sa.PrimaryKeyConstraint("attempt_id"),
        sa.UniqueConstraint("token"),
    )
    create_indexes("approvals", ("ix_approvals_execution", ["execution_id"], False))


def _artifacts() -> None:
    op.create_table(
        "artifacts",
        string("digest", 80),
        integer("files"),
        integer("size"),
        real("created_at"),
        sa.PrimaryKeyConstraint("digest"),
    )


def _audit() -> None:
    op.create_table(
        "audit",
        serial(),
        string("actor", 200),
        string("action", 100),
        text("target"),
        json("detail"),
        real("at"),
        sa.PrimaryKeyConstraint("id"),
    )


def _deployments() -> None:
    op.create_table(
        "deployments",
        serial(),
        string("environment", 100),
        string("pipeline", 100),
        string("execution_id", 64, null=True),
        string("kind", 20),
        text("image"),
        string("digest", 100, null=True),
        string("commit", 64, null=True),
        text("url"),
        string("actor", 200, null=True),
        json("details"),
        real("at"),
        sa.PrimaryKeyConstraint("id"),
    )
    create_indexes("deployments", ("ix_deployments_env", ["environment", "at"], False))


def _engines() -> None:
    op.create_table(
        "engines",
        string("worker", 200),
        integer("pid"),
        string("host", 200),
        real("started_at"),
        real("heartbeat"),
        sa.PrimaryKeyConstraint("worker"),
    )


def _executions() -> None:
    op.create_table(
        "executions",
        string("id", 64),
        string("pipeline", 100),
        integer("seq"),
        string("kind", 20),
        string("status", 20),
        text("message"),
        text("waiting"),
        json("definition"),
        json("variables"),
        json("trigger"),
        json("revisions"),
        json("stage_epochs"),
        string("stop_mode", 20, null=True),
        string("superseded_by", 64, null=True),
        string("actor", 100, null=True),
        real("created_at"),
        real("ended_at", null=True),
        string("lease_owner", 200, null=True),
        real("lease_expires", null=True),
        sa.PrimaryKeyConstraint("id"),
    )
    create_indexes(
        "executions",
        ("ix_executions_pipeline_seq", ["pipeline", "seq"], True),
        ("ix_executions_status", ["status"], False),
    )


def _health() -> None:
    op.create_table(
        "health",
        string("environment", 100),
        boolean("healthy"),
        text("detail"),
        real("since"),
        real("checked_at"),
        sa.PrimaryKeyConstraint("environment"),
    )


def _history() -> None:
    op.create_table(
        "history",
        serial(),
        string("attempt_id", 300),
        string("execution_id", 64),
        *status_change(),
        sa.PrimaryKeyConstraint("id"),
    )
    create_indexes("history", ("ix_history_execution", ["execution_id"], False))


def _pipelines() -> None:
    op.create_table(
        "pipelines",
        string("name", 100),
        json("definition"),
        text("source_path"),
        real("updated_at"),
        sa.PrimaryKeyConstraint("name"),
    )


def _requests() -> None:
    op.create_table(
        "requests",
        serial(),
        string("execution_id", 64),
        string("kind", 20),
        json("payload"),
        string("actor", 200, null=True),
        real("created_at"),
        real("handled_at", null=True),
        text("outcome"),
        sa.PrimaryKeyConstraint("id"),
    )
    create_indexes("requests", ("ix_requests_pending", ["execution_id", "handled_at"], False))


def _transitions() -> None:
    op.create_table(
        "transitions",
        string("pipeline", 100),
        string("stage", 100),
        boolean("enabled"),
        text("reason"),
        string("actor", 200, null=True),
        real("at"),
        sa.PrimaryKeyConstraint("pipeline", "stage"),
    )


def _users() -> None:
    op.create_table(
        "users",
        string("name", 100),
        string("role", 20),
        string("token_hash", 128),
        string("email", 200, null=True),
        real("created_at"),
        boolean("disabled"),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )


def _attempts() -> None:
    op.create_table(
        "attempts",
        string("id", 300),
        string("execution_id", 64),
        string("stage", 100),
        string("action", 100),
        integer("attempt"),
        integer("epoch"),
        string("type", 100),
        string("status", 20),
        string("reason", 40, null=True),
        text("message"),
        real("started_at"),
        real("ended_at", null=True),
        real("deadline", null=True),
        json("variables"),
        json("artifacts"),
        json("details"),
        json("reports"),
        integer("pgid", null=True),
        string("worker", 200, null=True),
        text("log_path"),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    create_indexes(
        "attempts",
        ("ix_attempts_execution", ["execution_id"], False),
        ("ix_attempts_status", ["status"], False),
    )


def downgrade() -> None:
    drop_indexes("attempts", "ix_attempts_status", "ix_attempts_execution")
    op.drop_table("attempts")
    op.drop_table("users")
    op.drop_table("transitions")
    drop_indexes("requests", "ix_requests_pending")
    op.drop_table("requests")
    op.drop_table("pipelines")
    drop_indexes("history", "ix_history_execution")
    op.drop_table("history")
    op.drop_table("health")
    drop_indexes("executions", "ix_executions_status", "ix_executions_pipeline_seq")
    op.drop_table("executions")
    op.drop_table("engines")
    drop_indexes("deployments", "ix_deployments_env")
    op.drop_table("deployments")
    op.drop_table("audit")
    op.drop_table("artifacts")
    drop_indexes("approvals", "ix_approvals_execution")
    op.drop_table("approvals")

