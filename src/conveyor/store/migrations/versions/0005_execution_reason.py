"""an execution's reason, and the history of its status, stop mode and superseded-by

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=40), nullable=True))
    op.create_table(
        "execution_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("stop_mode", sa.String(length=20), nullable=True),
        sa.Column("superseded_by", sa.String(length=64), nullable=True),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_execution_history_execution", "execution_history", ["execution_id"])


def downgrade() -> None:
    op.drop_index("ix_execution_history_execution", table_name="execution_history")
    op.drop_table("execution_history")
    with op.batch_alter_table("executions") as batch_op:
        batch_op.drop_column("reason")
