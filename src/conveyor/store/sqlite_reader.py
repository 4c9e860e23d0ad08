"""A read-only view of a SQLite store through the standard library's `sqlite3`.

`conveyor history`, `status` and `logs` only read, and people type them many times a day:
importing SQLAlchemy alone costs them a quarter of a second on a small machine. This reader
answers the read methods those commands use with the same rows as `Store` (JSON columns
decoded, booleans as bool); a test holds the two to the same answers. It opens the database
read-only, and only when the schema is at the code's revision; otherwise `open_reader`
returns None and the caller uses `Store`, which migrates.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from conveyor.errors import NotFound, Unavailable
from conveyor.store.columns import LIGHT_EXECUTION, Row, decode_row, execution_by_id
from conveyor.store.schema_version import head_revision


def open_reader(url: str) -> SqliteReader | None:
    """A reader for a `sqlite:///FILE` URL whose file exists at the current schema, else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    head = head_revision()
    if head is None:
        return None
    try:
        reader = SqliteReader(path)
        current = reader.conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    if current is None or current[0] != head:
        reader.close()
        return None
    return reader


class SqliteReader:
    """The read methods of `Store` that the CLI's read commands call, on one connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=15)
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def _rows(self, table: str, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        try:
            found = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise Unavailable(f"database {self.path} failed: {e}") from None
        return [decode_row(table, r) for r in found]

    # ---- pipelines ---------------------------------------------------------------------------
    def pipeline_names(self) -> list[str]:
        return [r["name"] for r in self._rows("", "SELECT name FROM pipelines ORDER BY name")]

    def list_pipelines(self) -> list[Row]:
        return self._rows("pipelines", "SELECT * FROM pipelines ORDER BY name")

    def get_pipeline(self, name: str) -> Row:
        rows = self._rows("pipelines", "SELECT * FROM pipelines WHERE name = ?", (name,))
        if not rows:
            raise NotFound(
                f"no pipeline named '{name}' (known: {', '.join(self.pipeline_names()) or 'none'})"
            )
        return rows[0]

    # ---- executions --------------------------------------------------------------------------
    def get_execution(self, ex_id: str, *, light: bool = False) -> Row:
        cols = ", ".join(c for c in self._execution_columns() if not light or c != "definition")
        query = f"SELECT {cols} FROM executions WHERE id"  # noqa: S608 - column names come from the schema
        return execution_by_id(
            ex_id,
            lambda: next(iter(self._rows("executions", f"{query} = ?", (ex_id,))), None),
            lambda pattern: self._rows("executions", f"{query} LIKE ? LIMIT 2", (pattern,)),
        )

    def _execution_columns(self) -> list[str]:
        return [r["name"] for r in self._rows("", "PRAGMA table_info(executions)")]

    def list_executions(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        light: bool = False,
    ) -> list[Row]:
        cols = ", ".join(LIGHT_EXECUTION) if light else "*"
        where, params = [], []
        if pipeline:
            where.append("pipeline = ?")
            params.append(pipeline)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = (
            f"SELECT {cols} FROM executions"  # noqa: S608 - fixed column names and clauses
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?"
        )
        return self._rows("executions", sql, (*params, limit, offset))

    def live_engines(self, max_age: float) -> list[Row]:
        """Engines with a recent heartbeat; on this host, only those whose process still runs."""
        return alive(
            self._rows(
                "engines", "SELECT * FROM engines WHERE heartbeat > ?", (time.time() - max_age,)
            )
        )

    # ---- attempts, transitions, approvals ----------------------------------------------------
    def attempts_for(self, ex_id: str) -> list[Row]:
        return self._rows(
            "attempts",
            "SELECT * FROM attempts WHERE execution_id = ? ORDER BY started_at, attempt",
            (ex_id,),
        )

    def transitions_for(self, pipeline: str) -> list[Row]:
        return self._rows(
            "transitions", "SELECT * FROM transitions WHERE pipeline = ?", (pipeline,)
        )

    def approvals_for(self, ex_id: str) -> list[Row]:
        return self._rows(
            "approvals",
            "SELECT * FROM approvals WHERE execution_id = ? ORDER BY created_at",
            (ex_id,),
        )


def alive(engines: list[Row]) -> list[Row]:
    """The engines (rows with a recent heartbeat) not known dead: on this host, only those
    whose process still runs."""
    host = socket.gethostname()
    return [r for r in engines if r["host"] != host or pid_running(r["pid"])]


def pid_running(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
