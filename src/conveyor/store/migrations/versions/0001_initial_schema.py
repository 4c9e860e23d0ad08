"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 14:57:23.329125
"""

from alembic import op
import sqlalchemy as sa


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


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
        sa.Column("attempt_id", sa.String(length=300), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("external_link", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=100), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("attempt_id"),
        sa.UniqueConstraint("token"),
    )
    _create_indexes("approvals", ("ix_approvals_execution", ["execution_id"], False))


def _artifacts() -> None:
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def _audit() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _deployments() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("pipeline", sa.String(length=100), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=100), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_indexes("deployments", ("ix_deployments_env", ["environment", "at"], False))


def _engines() -> None:
    op.create_table(
        "engines",
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker"),
    )


def _executions() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pipeline", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("waiting", sa.Text(), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("revisions", sa.JSON(), nullable=False),
        sa.Column("stage_epochs", sa.JSON(), nullable=False),
        sa.Column("stop_mode", sa.String(length=20), nullable=True),
        sa.Column("superseded_by", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_indexes(
        "executions",
        ("ix_executions_pipeline_seq", ["pipeline", "seq"], True),
        ("ix_executions_status", ["status"], False),
    )


def _health() -> None:
    op.create_table(
        "health",
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("environment"),
    )


def _history() -> None:
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.String(length=300), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_indexes("history", ("ix_history_execution", ["execution_id"], False))


def _pipelines() -> None:
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def _requests() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("handled_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_indexes("requests", ("ix_requests_pending", ["execution_id", "handled_at"], False))


def _transitions() -> None:
    op.create_table(
        "transitions",
        sa.Column("pipeline", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "stage"),
    )


def _users() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )


def _attempts() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("reports", sa.JSON(), nullable=False),
        sa.Column("pgid", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_indexes(
        "attempts",
        ("ix_attempts_execution", ["execution_id"], False),
        ("ix_attempts_status", ["status"], False),
    )


def downgrade() -> None:
    _drop_indexes("attempts", "ix_attempts_status", "ix_attempts_execution")
    op.drop_table("attempts")
    op.drop_table("users")
    op.drop_table("transitions")
    _drop_indexes("requests", "ix_requests_pending")
    op.drop_table("requests")
    op.drop_table("pipelines")
    _drop_indexes("history", "ix_history_execution")
    op.drop_table("history")
    op.drop_table("health")
    _drop_indexes("executions", "ix_executions_status", "ix_executions_pipeline_seq")
    op.drop_table("executions")
    op.drop_table("engines")
    _drop_indexes("deployments", "ix_deployments_env")
    op.drop_table("deployments")
    op.drop_table("audit")
    op.drop_table("artifacts")
    _drop_indexes("approvals", "ix_approvals_execution")
    op.drop_table("approvals")


def _create_indexes(table: str, *indexes: tuple[str, list[str], bool]) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name, columns, unique in indexes:
            batch_op.create_index(name, columns, unique=unique)


def _drop_indexes(table: str, *names: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.drop_index(name)
