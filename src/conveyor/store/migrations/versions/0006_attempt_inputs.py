"""an attempt's input digest, so that an unchanged action can reuse an earlier attempt

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as b:
        b.add_column(sa.Column("input_digest", sa.String(length=80), nullable=True))
    op.create_index("ix_attempts_input_digest", "attempts", ["input_digest"])


def downgrade() -> None:
    op.drop_index("ix_attempts_input_digest", table_name="attempts")
    with op.batch_alter_table("attempts") as b:
        b.drop_column("input_digest")
