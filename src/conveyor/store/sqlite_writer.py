"""Starting an execution through the standard library's `sqlite3`: what `conveyor run
--detach` writes (the pipeline row, then a queued execution row), without SQLAlchemy.

Scripts call `run --detach` in loops; importing SQLAlchemy alone costs each call about a
tenth of a second on a small machine. This writer inserts the same rows as `Store.save_pipeline`
and `Store.create_execution` (JSON columns as SQLAlchemy's JSON type writes them), and a test
holds the two to the same rows. The schema stays Alembic's: the writer opens only a database
already at the code's revision (`open_writer` returns None otherwise, and the caller uses
`Store`, which migrates).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import Unavailable
from conveyor.store.columns import JSON_COLUMNS, Row
from conveyor.store.sqlite_reader import SqliteReader, open_reader
from conveyor.store.starts import ExecutionStarts


def open_writer(url: str) -> SqliteWriter | None:
    """A writer for a `sqlite:///FILE` URL whose file exists at the current schema, else None."""
    reader = open_reader(url)
    if reader is None:
        return None
    reader.close()
    return SqliteWriter(reader.path)


def _json(value: Any) -> str:
    return json.dumps(value)  # what SQLAlchemy's JSON type writes (its default serializer)


def _encoded(table: str, row: Row) -> tuple[str, tuple[Any, ...]]:
    """The row's column names (comma-separated) and its values, JSON columns as text."""
    json_columns = JSON_COLUMNS[table]
    values = tuple(_json(v) if k in json_columns else v for k, v in row.items())
    return ", ".join(row), values


def _insert(table: str, row: Row) -> tuple[str, tuple[Any, ...]]:
    """An INSERT of one row into `table` (a fixed table name, column names from columns.py)."""
    names, values = _encoded(table, row)
    marks = ", ".join("?" * len(values))
    return f"INSERT INTO {table} ({names}) VALUES ({marks})", values  # noqa: S608 - as above


class SqliteWriter(SqliteReader, ExecutionStarts):
    """The reader's methods, and the two writes that start an execution."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # autocommit mode: each write below opens its own transaction (BEGIN IMMEDIATE)
        self.conn = sqlite3.connect(str(path), timeout=15, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout=15000")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self.conn.execute(sql, params)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise Unavailable(f"database {self.path} failed: {e}") from None

    def save_pipeline(
        self, name: str, definition: Mapping[str, Any], source_path: str | None
    ) -> None:
        """Create or update the pipeline row (as `Store.save_pipeline`)."""
        self._write(
            [
                (
                    "INSERT INTO pipelines (name, definition, source_path, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "definition = excluded.definition, source_path = excluded.source_path, "
                    "updated_at = excluded.updated_at",
                    (name, _json(dict(definition)), source_path, time.time()),
                )
            ]
        )

    _raced = (sqlite3.IntegrityError,)

    def _insert_started(self, pipeline: str, row: Row, move: Row) -> None:
        """`create_execution`'s insert, numbered next in its pipeline (as `Store`'s)."""
        names, values = _encoded("executions", row)
        numbered = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM executions WHERE pipeline = ?)"
        self._write(
            [
                (
                    f"INSERT INTO executions ({names}, seq) "  # noqa: S608 - column names from columns.py
                    f"VALUES ({', '.join('?' * len(values))}, {numbered})",
                    (*values, pipeline),
                ),
                _insert("execution_history", move),
            ]
        )
