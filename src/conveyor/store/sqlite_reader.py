"""A read-only view of a SQLite store through the standard library's `sqlite3`.

`conveyor history`, `status` and `logs` only read, and people type them many times a day:
importing SQLAlchemy alone costs them a quarter of a second on a small machine. This reader
answers the read methods those commands use with the same records as `Store` (JSON columns
decoded, booleans as bool); a test holds the two to the same answers. It opens the database
read-only, and only when the schema is at the code's revision; otherwise `open_reader`
returns None and the caller uses `Store`, which migrates.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from conveyor.errors import NotFound, Unavailable
from conveyor.store.columns import LIGHT_EXECUTION, Row, decode_row, execution_by_id
from conveyor.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EngineRecord,
    ExecutionRecord,
    PipelineRecord,
    Record,
    TransitionRecord,
)
from conveyor.store.schema_version import head_revision

R = TypeVar("R", bound=Record)
# the table each record type's rows come from (how a raw row decodes: columns.decode_row)
TABLES: dict[type[Record], str] = {
    PipelineRecord: "pipelines",
    ExecutionRecord: "executions",
    AttemptRecord: "attempts",
    TransitionRecord: "transitions",
    ApprovalRecord: "approvals",
    EngineRecord: "engines",
}


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


class ExecutionLists:
    """The list of executions, once for `Store` and `SqliteReader`: each answers one page of a
    filter its own way (`_executions_page`)."""

    # one page of the executions whose columns hold `where`'s values, newest first; `light`:
    # only `LIGHT_EXECUTION`'s columns (declared here, defined by each store)
    _executions_page: Callable[[Mapping[str, str], int, int, bool], list[ExecutionRecord]]

    def list_executions(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        light: bool = False,
    ) -> list[ExecutionRecord]:
        """Executions newest first, a page at a time: of one pipeline, with one status, or all."""
        return self._executions_page(execution_filter(pipeline, status), limit, offset, light)


def execution_filter(pipeline: str | None, status: str | None) -> dict[str, str]:
    """The columns a list of executions is filtered on (pipeline, status): those given."""
    return {k: v for k, v in (("pipeline", pipeline), ("status", status)) if v}


class SqliteReader(ExecutionLists):
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

    def _all(self, cls: type[R], sql: str, params: tuple[Any, ...] = ()) -> list[R]:
        """Every row of a query of `cls`'s table, as records."""
        return [cls.of(r) for r in self._rows(TABLES[cls], sql, params)]

    # ---- pipelines ---------------------------------------------------------------------------
    def pipeline_names(self) -> list[str]:
        return [r["name"] for r in self._rows("", "SELECT name FROM pipelines ORDER BY name")]

    def pipeline_records(self) -> list[PipelineRecord]:
        return self._all(PipelineRecord, "SELECT * FROM pipelines ORDER BY name")

    def pipeline_record(self, name: str) -> PipelineRecord:
        rows = self._all(PipelineRecord, "SELECT * FROM pipelines WHERE name = ?", (name,))
        if not rows:
            raise NotFound(
                f"no pipeline named '{name}' (known: {', '.join(self.pipeline_names()) or 'none'})"
            )
        return rows[0]

    # ---- executions --------------------------------------------------------------------------
    def execution(self, ex_id: str, *, light: bool = False) -> ExecutionRecord:
        cols = ", ".join(c for c in self._execution_columns() if not light or c != "definition")
        query = f"SELECT {cols} FROM executions WHERE id"  # noqa: S608 - column names come from the schema
        return execution_by_id(
            ex_id,
            lambda: next(iter(self._all(ExecutionRecord, f"{query} = ?", (ex_id,))), None),
            lambda pattern: self._all(ExecutionRecord, f"{query} LIKE ? LIMIT 2", (pattern,)),
        )

    def _execution_columns(self) -> list[str]:
        return [r["name"] for r in self._rows("", "PRAGMA table_info(executions)")]

    def _executions_page(
        self, where: Mapping[str, str], limit: int, offset: int, light: bool
    ) -> list[ExecutionRecord]:
        cols = ", ".join(LIGHT_EXECUTION) if light else "*"
        sql = (
            f"SELECT {cols} FROM executions"  # noqa: S608 - fixed column names and clauses
            + (f" WHERE {' AND '.join(f'{k} = ?' for k in where)}" if where else "")
            + " ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?"
        )
        return self._all(ExecutionRecord, sql, (*where.values(), limit, offset))

    def live_engines(self, max_age: float) -> list[EngineRecord]:
        """Engines with a recent heartbeat; on this host, only those whose process still runs."""
        return alive(
            self._all(
                EngineRecord, "SELECT * FROM engines WHERE heartbeat > ?", (time.time() - max_age,)
            )
        )

    # ---- attempts, transitions, approvals ----------------------------------------------------
    def attempts_for(self, ex_id: str) -> list[AttemptRecord]:
        return self._all(
            AttemptRecord,
            "SELECT * FROM attempts WHERE execution_id = ? ORDER BY started_at, attempt",
            (ex_id,),
        )

    def transitions_for(self, pipeline: str) -> list[TransitionRecord]:
        return self._all(
            TransitionRecord, "SELECT * FROM transitions WHERE pipeline = ?", (pipeline,)
        )

    def approval_records(self, ex_id: str) -> list[ApprovalRecord]:
        return self._all(
            ApprovalRecord,
            "SELECT * FROM approvals WHERE execution_id = ? ORDER BY created_at",
            (ex_id,),
        )


def alive(engines: list[EngineRecord]) -> list[EngineRecord]:
    """The engines (with a recent heartbeat) not known dead: on this host, only those whose
    process still runs."""
    host = socket.gethostname()
    return [e for e in engines if e.host != host or pid_running(e.pid)]


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
