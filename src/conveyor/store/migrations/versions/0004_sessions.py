"""dashboard sessions kept in the store, so that logout revokes them"""
import sqlalchemy as sa
from alembic import op

from conveyor.store.migrations.shapes import real, string

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "sessions",
        string("id", 64),
        string("user_name", 100),
        real("created_at"),
        real("expires_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_name"])


def downgrade() -> None:
    op.drop_index("ix_sessions_user", table_name="sessions")
    op.drop_table("sessions")
