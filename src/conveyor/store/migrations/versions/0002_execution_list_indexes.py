"""indexes for the execution lists (newest first, per pipeline)"""
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("ix_executions_created", "executions", ["created_at"])
    op.create_index("ix_executions_pipeline_created", "executions", ["pipeline", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_pipeline_created", table_name="executions")
    op.drop_index("ix_executions_created", table_name="executions")
