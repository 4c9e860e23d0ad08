"""one row per source revision of an execution (two sources finishing together lose nothing)"""
import sqlalchemy as sa
from alembic import op

from conveyor.store.migrations.shapes import integer, json, real, string

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "source_revisions",
        string("execution_id", 64),
        string("action", 100),
        integer("position"),
        json("revision"),
        real("recorded_at"),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"]),
        sa.PrimaryKeyConstraint("execution_id", "action"),
    )


def downgrade() -> None:
    op.drop_table("source_revisions")
