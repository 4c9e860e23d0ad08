"""The column and index shapes the migrations share, so that each table reads as its list
of columns.

A migration is a frozen record of the schema at its revision: a builder here only spells
a column more briefly, and must never change what an existing call creates
(tests/integration/test_store_executions.py pins the schema of 0001 and of head).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

Column = sa.Column[Any]


def string(name: str, length: int, *, null: bool = False) -> Column:
    """A VARCHAR(length) column, required unless `null`."""
    return sa.Column(name, sa.String(length=length), nullable=null)


def text(name: str) -> Column:
    """An optional TEXT column."""
    return sa.Column(name, sa.Text(), nullable=True)


def real(name: str, *, null: bool = False) -> Column:
    """A FLOAT column (the store's timestamps), required unless `null`."""
    return sa.Column(name, sa.Float(), nullable=null)


def integer(name: str, *, null: bool = False) -> Column:
    """An INTEGER column, required unless `null`."""
    return sa.Column(name, sa.Integer(), nullable=null)


def json(name: str) -> Column:
    """A required JSON column."""
    return sa.Column(name, sa.JSON(), nullable=False)


def boolean(name: str) -> Column:
    """A required BOOLEAN column."""
    return sa.Column(name, sa.Boolean(), nullable=False)


def serial() -> Column:
    """The auto-incremented integer `id` of an append-only table."""
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def status_change() -> list[Column]:
    """The columns of one recorded status change, shared by an attempt's history (0001)
    and an execution's history (0005)."""
    return [
        string("from_status", 20, null=True),
        string("to_status", 20),
        string("reason", 40, null=True),
        text("message"),
        string("actor", 200, null=True),
        real("at"),
    ]


def create_indexes(table: str, *indexes: tuple[str, list[str], bool]) -> None:
    """Create each (name, columns, unique) index of `table` in one batch."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name, columns, unique in indexes:
            batch_op.create_index(name, columns, unique=unique)


def drop_indexes(table: str, *names: str) -> None:
    """Drop the named indexes of `table` in one batch."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.drop_index(name)
