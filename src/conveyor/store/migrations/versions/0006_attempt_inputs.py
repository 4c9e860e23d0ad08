"""an attempt's input digest, so that an unchanged action can reuse an earlier attempt"""

from alembic import op

from conveyor.store.migrations.shapes import string

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("attempts") as b:
        b.add_column(string("input_digest", 80, null=True))
    op.create_index("ix_attempts_input_digest", "attempts", ["input_digest"])


def downgrade() -> None:
    op.drop_index("ix_attempts_input_digest", table_name="attempts")
    with op.batch_alter_table("attempts") as b:
        b.drop_column("input_digest")
