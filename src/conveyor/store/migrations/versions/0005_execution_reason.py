"""an execution's reason, and the history of its status, stop mode and superseded-by"""
import sqlalchemy as sa
from alembic import op

from conveyor.store.migrations.shapes import serial, status_change, string

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.add_column(string("reason", 40, null=True))
    op.create_table(
        "execution_history",
        serial(),
        string("execution_id", 64),
        string("stop_mode", 20, null=True),
        string("superseded_by", 64, null=True),
        *status_change(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_execution_history_execution", "execution_history", ["execution_id"])


def downgrade() -> None:
    op.drop_index("ix_execution_history_execution", table_name="execution_history")
    op.drop_table("execution_history")
    with op.batch_alter_table("executions") as batch_op:
        batch_op.drop_column("reason")
