"""The store: one SQLAlchemy engine, short transactions, guarded writes.

SQLite (WAL, busy timeout) by default; PostgreSQL when the URL says so. Every action status
change goes through `transition()`, which checks the model's table of allowed moves and
updates the row only if it still has the status we read (a compare-and-set), then appends
to `history`. Two writers racing: exactly one wins, the other gets `Conflict`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from conveyor.errors import Conflict, NotFound, Unavailable
from conveyor.model.provenance import ordered_revisions
from conveyor.model.status import (
    ACTIVE_EXECUTION,
    ActionStatus,
    ApprovalStatus,
    ExecutionReason,
    ExecutionStatus,
    Reason,
    StopMode,
    TransitionRefused,
    check_execution_transition,
    check_transition,
)
from conveyor.store import tables as t
from conveyor.store.columns import (
    LIGHT_ATTEMPT,
    LIGHT_EXECUTION,
    execution_by_id,
)
from conveyor.store.records import (
    ApprovalRecord,
    AttemptMoveRecord,
    AttemptRecord,
    AuditRecord,
    DeploymentRecord,
    EngineRecord,
    ExecutionMoveRecord,
    ExecutionRecord,
    HealthRecord,
    PipelineRecord,
    Record,
    RequestRecord,
    TransitionRecord,
)
from conveyor.store.schema_version import head_revision
from conveyor.store.sqlite_reader import ExecutionLists, alive, execution_filter
from conveyor.store.starts import ExecutionStarts
from conveyor.store.stats import StatsQueries
from conveyor.store.users import UserQueries

Row = dict[str, Any]
R = TypeVar("R", bound=Record)
ACTIVE = tuple(sorted(s.value for s in ACTIVE_EXECUTION))
# the execution columns `change_execution` writes unguarded, beside the guarded three
FACTS = frozenset({"waiting", "message", "ended_at", "stage_epochs"})


class _Keep:
    """The default of a guarded column `change_execution` leaves as it is."""


KEEP = _Keep()


def normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


SCHEMES = ("sqlite", "postgresql+psycopg")


def make_engine(
    url: str,
    *,
    connect_timeout: float = 10.0,
    statement_timeout: float = 60.0,
    create_dirs: bool = True,
) -> Engine:
    """An engine for a SQLite or PostgreSQL URL; anything else is Unavailable, in one line.

    PostgreSQL gets a connect timeout (the whole handshake: a port that accepts and never
    answers fails after it) and a server-side statement timeout. A SQLite file's missing
    directory is created only when `create_dirs`.
    """
    url = normalize_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise Unavailable(
            f"unsupported database URL {_safe(url)!r}: Conveyor keeps its state in SQLite "
            "(sqlite:///PATH) or PostgreSQL (postgresql://USER@HOST:PORT/DATABASE); "
            "fix CONVEYOR_DATABASE_URL"
        )
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            if not create_dirs:
                raise Unavailable(
                    f"cannot open database {url}: the directory {path.parent} does not exist "
                    "(outside the state directory, Conveyor creates it only with "
                    "CONVEYOR_DATABASE_CREATE_DIRS=1); create it first"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise Unavailable(
                    f"cannot open database {url}: {e.strerror} ({path.parent})"
                ) from None
        if path.is_dir():
            raise Unavailable(f"cannot open database {url}: {path} is a directory")
        eng = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 15},
            pool_size=10,
            max_overflow=20,
        )
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    try:
        return create_engine(
            url,
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(2, round(connect_timeout)),  # libpq: whole seconds, >= 2
                "options": f"-c statement_timeout={max(1, round(statement_timeout * 1000))}",
            },
        )
    except (SQLAlchemyError, ValueError) as e:
        raise Unavailable(f"unusable database URL {_safe(url)!r}: {e}") from None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision with Alembic (a no-op when current; when the
    database is at the head of the migration files, Alembic is not even imported)."""
    head = head_revision()
    if head is not None:
        try:
            with engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            current = None
        if current == head:
            return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config(str(Path(__file__).with_name("alembic.ini")))
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current == script.get_current_head():
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _row(r: Any) -> Row:
    return dict(r._mapping)


class Store(UserQueries, StatsQueries, ExecutionStarts, ExecutionLists):
    def __init__(
        self,
        url: str,
        *,
        migrate_schema: bool = True,
        connect_timeout: float = 10.0,
        statement_timeout: float = 60.0,
        create_dirs: bool = True,
    ) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(
            self.url,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            create_dirs=create_dirs,
        )
        # SQLite allows one writer; its busy handler backs off with sleeps of up to 100 ms.
        # Serializing this process's transactions ourselves is much faster than contending.
        self._serial: Any = threading.RLock() if self.url.startswith("sqlite") else nullcontext()
        try:
            if migrate_schema:
                migrate(self.engine)
            else:
                with self.engine.connect():
                    pass
        except SQLAlchemyError as e:  # not a database, refused, timed out, ...
            self.engine.dispose()
            raise Unavailable(f"cannot open database {_safe(self.url)}: {_first_line(e)}") from None

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> Store:
        """The store the settings name: their timeouts; a SQLite directory is created only
        inside the state directory, unless `database_create_dirs`."""
        url = normalize_url(settings.database_url)
        create = bool(settings.database_create_dirs)
        if url.startswith("sqlite:///"):
            parent = Path(url.removeprefix("sqlite:///")).resolve().parent
            create = create or parent.is_relative_to(Path(settings.state_dir).resolve())
        return cls(
            url,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.db_statement_timeout,
            create_dirs=create,
            **kw,
        )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self._serial, self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise Unavailable(f"database {_safe(self.url)} failed: {_first_line(e)}") from None

    @classmethod
    def _put(
        cls, c: Connection, table: Table, keys: Mapping[str, Any], values: Mapping[str, Any]
    ) -> None:
        """Write the row of `table` that `keys` name: update it when it exists, else insert it."""
        where = [table.c[k] == v for k, v in keys.items()]
        if c.execute(select(*(table.c[k] for k in keys)).where(*where)).first():
            cls._set_where(c, table, *where, **values)
        else:
            c.execute(insert(table).values(**keys, **values))

    @staticmethod
    def _set_where(c: Connection, table: Table, *conditions: Any, **values: Any) -> int:
        """Update the rows of `table` that meet every condition; how many changed (for a
        compare-and-set, 0: another writer got there first)."""
        return int(c.execute(update(table).where(and_(*conditions)).values(**values)).rowcount)

    def _all(self, cls: type[R], query: Any) -> list[R]:
        """Every row of a query, as records of `cls`, in one short transaction."""
        with self.tx() as c:
            return [cls.of(r) for r in c.execute(query)]

    # ---- pipelines -------------------------------------------------------------------------
    def save_pipeline(
        self, name: str, definition: Mapping[str, Any], source_path: str | None
    ) -> None:
        values = {"definition": dict(definition), "source_path": source_path}
        with self.tx() as c:
            self._put(c, t.pipelines, {"name": name}, {**values, "updated_at": time.time()})

    def pipeline_record(self, name: str) -> PipelineRecord:
        with self.tx() as c:
            r = c.execute(select(t.pipelines).where(t.pipelines.c.name == name)).first()
        if r is None:
            raise NotFound(
                f"no pipeline named '{name}' (known: {', '.join(self.pipeline_names()) or 'none'})"
            )
        return PipelineRecord.of(r)

    def pipeline_names(self) -> list[str]:
        with self.tx() as c:
            return [
                r[0] for r in c.execute(select(t.pipelines.c.name).order_by(t.pipelines.c.name))
            ]

    def pipeline_records(self) -> list[PipelineRecord]:
        """Every saved pipeline, by name."""
        return self._all(PipelineRecord, select(t.pipelines).order_by(t.pipelines.c.name))

    # ---- executions ------------------------------------------------------------------------
    _raced = (IntegrityError,)

    def _insert_started(self, pipeline: str, row: Row, move: Row) -> None:
        """`create_execution`'s insert, numbered next in its pipeline."""
        with self.tx() as c:
            if self.engine.dialect.name == "postgresql":
                # numbers are per pipeline: concurrent starts of one pipeline take turns
                c.execute(text("SELECT pg_advisory_xact_lock(hashtext(:p))"), {"p": pipeline})
            seq = (
                c.execute(
                    select(func.coalesce(func.max(t.executions.c.seq), 0)).where(
                        t.executions.c.pipeline == pipeline
                    )
                ).scalar_one()
                + 1
            )
            c.execute(insert(t.executions).values({**row, "seq": seq}))
            c.execute(insert(t.execution_history).values(move))

    @staticmethod
    def _execution_cols(light: bool) -> list[Any]:
        """light: without the pipeline definition (the largest column), for hot paths."""
        if not light:
            return [t.executions]
        return [c for c in t.executions.c if c.name != "definition"]

    def execution(self, ex_id: str, *, light: bool = False) -> ExecutionRecord:
        """The execution `ex_id` (an id prefix of 4+ characters works too); NotFound otherwise."""
        cols = self._execution_cols(light)
        with self.tx() as c:
            r = execution_by_id(
                ex_id,
                lambda: c.execute(select(*cols).where(t.executions.c.id == ex_id)).first(),
                lambda pattern: list(
                    c.execute(select(*cols).where(t.executions.c.id.like(pattern)).limit(2))
                ),
            )
            return self._executions(c, [r])[0]

    def _executions_page(
        self, where: Mapping[str, str], limit: int, offset: int, light: bool
    ) -> list[ExecutionRecord]:
        ex = t.executions
        q = (
            select(*([ex] if not light else [ex.c[n] for n in LIGHT_EXECUTION]))
            .where(*(ex.c[k] == v for k, v in where.items()))
            .order_by(ex.c.created_at.desc(), ex.c.seq.desc())
        )
        with self.tx() as c:
            return self._executions(c, c.execute(q.limit(limit).offset(offset)))

    def count_executions(self, pipeline: str | None = None, status: str | None = None) -> int:
        where = execution_filter(pipeline, status)
        q = select(func.count()).select_from(t.executions)
        q = q.where(*(t.executions.c[k] == v for k, v in where.items()))
        with self.tx() as c:
            return int(c.execute(q).scalar_one())

    def active_executions(
        self, pipeline: str | None = None, *, light: bool = False
    ) -> list[ExecutionRecord]:
        q = (
            select(*self._execution_cols(light))
            .where(t.executions.c.status.in_(ACTIVE))
            .order_by(t.executions.c.created_at)
        )
        if pipeline:
            q = q.where(t.executions.c.pipeline == pipeline)
        with self.tx() as c:
            return self._executions(c, c.execute(q))

    def record_revision(
        self, ex_id: str, action: str, revision: Mapping[str, Any], *, position: int = 0
    ) -> None:
        """Record one source action's revision: its own row, so parallel sources never collide.

        The execution's `revisions` column is rewritten in the same transaction, under the
        execution row's lock, from every recorded row: readers of the column alone see them all.
        """
        ex = t.executions
        with self.tx() as c:
            if self.engine.dialect.name == "postgresql":
                c.execute(select(ex.c.id).where(ex.c.id == ex_id).with_for_update())
            sr = t.source_revisions
            # on SQLite this first write takes the database's write lock: the read below sees
            # every other source's committed row
            c.execute(sr.delete().where(and_(sr.c.execution_id == ex_id, sr.c.action == action)))
            c.execute(
                insert(sr).values(
                    execution_id=ex_id,
                    action=action,
                    position=position,
                    revision=dict(revision),
                    recorded_at=time.time(),
                )
            )
            r = c.execute(
                select(ex.c.id, ex.c.revisions, ex.c.trigger).where(ex.c.id == ex_id)
            ).first()
            if r is not None:
                (merged,) = self._with_revisions(c, [_row(r)])
                self._set_where(c, ex, ex.c.id == ex_id, revisions=merged["revisions"])

    @classmethod
    def _executions(cls, c: Connection, found: Iterable[Any]) -> list[ExecutionRecord]:
        """Execution rows as records, their `revisions` with what each source recorded."""
        return [ExecutionRecord.of(r) for r in cls._with_revisions(c, [_row(r) for r in found])]

    @staticmethod
    def _with_revisions(c: Connection, rows: list[Row]) -> list[Row]:
        """Each execution's `revisions`: the pins it started with, overlaid by what each source
        recorded, the headline (triggering, else first declared) source first."""
        ids = [r["id"] for r in rows if "revisions" in r]
        if not ids:
            return rows
        sr = t.source_revisions
        recorded: dict[str, dict[str, Any]] = {}
        order: dict[str, dict[str, int]] = {}
        for i in range(0, len(ids), 500):
            for r in c.execute(
                select(sr.c.execution_id, sr.c.action, sr.c.position, sr.c.revision).where(
                    sr.c.execution_id.in_(ids[i : i + 500])
                )
            ):
                recorded.setdefault(r.execution_id, {})[r.action] = r.revision
                order.setdefault(r.execution_id, {})[r.action] = r.position
        for row in rows:
            if "revisions" not in row:
                continue
            revs = dict(row["revisions"] or {})
            revs.update(recorded.get(row["id"], {}))
            trigger = row.get("trigger") or {}
            headline = trigger.get("source") if isinstance(trigger, Mapping) else None
            row["revisions"] = ordered_revisions(
                revs, headline=headline, order=order.get(row["id"], {})
            )
        return rows

    def active_execution_keys(self) -> list[tuple[str, str]]:
        """(id, pipeline) of the executions in progress, oldest first (no JSON columns)."""
        with self.tx() as c:
            return [
                (r[0], r[1])
                for r in c.execute(
                    select(t.executions.c.id, t.executions.c.pipeline)
                    .where(t.executions.c.status.in_(ACTIVE))
                    .order_by(t.executions.c.created_at)
                )
            ]

    def step_view(
        self, now: float, *, ready_approvals: bool
    ) -> tuple[tuple[int, float], set[str], set[str], dict[str, dict[str, str]]]:
        """What the engine reads at the start of a step, in one transaction: the active
        set's fingerprint, the executions with pending requests, (when asked) those with an
        approval that waits no more, and every pipeline's disabled transitions."""
        with self.tx() as c:
            mark = self._fingerprint(c)
            requested = {
                r[0]
                for r in c.execute(
                    select(t.requests.c.execution_id)
                    .where(t.requests.c.handled_at.is_(None))
                    .distinct()
                )
            }
            ready = set(self._ready(c, now)) if ready_approvals else set()
            disabled = self._disabled(c)
        return mark, requested, ready, disabled

    def active_fingerprint(self) -> tuple[int, float]:
        """How many executions are in progress and the newest one's creation time: when
        neither moved, the set of active executions did not either (one cheap row)."""
        with self.tx() as c:
            return self._fingerprint(c)

    @staticmethod
    def _fingerprint(c: Connection) -> tuple[int, float]:
        r = c.execute(
            select(func.count(), func.coalesce(func.max(t.executions.c.created_at), 0.0)).where(
                t.executions.c.status.in_(ACTIVE)
            )
        ).one()
        return int(r[0]), float(r[1])

    def executions_by_id(self, ids: Sequence[str], *, light: bool = True) -> list[ExecutionRecord]:
        """The given executions, oldest first, in one query."""
        if not ids:
            return []
        out: list[ExecutionRecord] = []
        with self.tx() as c:
            for i in range(0, len(ids), 500):
                out.extend(
                    ExecutionRecord.of(r)
                    for r in c.execute(
                        select(*self._execution_cols(light)).where(
                            t.executions.c.id.in_(list(ids[i : i + 500]))
                        )
                    )
                )
        return sorted(out, key=lambda r: (r.created_at, r.id))

    def execution_definition(self, ex_id: str) -> dict[str, Any]:
        with self.tx() as c:
            r = c.execute(
                select(t.executions.c.definition).where(t.executions.c.id == ex_id)
            ).first()
        if r is None:
            raise NotFound(f"no execution '{ex_id}'")
        return dict(r[0])

    def change_execution(
        self,
        ex_id: str,
        *,
        reason: str = ExecutionReason.DERIVED,
        actor: str = "engine",
        status: ExecutionStatus | None = None,
        stop_mode: StopMode | None | _Keep = KEEP,
        superseded_by: str | None | _Keep = KEEP,
        **facts: Any,
    ) -> None:
        """The one way an execution row changes.

        Its status, stop mode and superseded-by are guarded: the status move must be in the
        model's table (`check_execution_transition`), the row must still hold what was read
        (a compare-and-set: a lost race is `Conflict`), and every change of the three is
        appended to `execution_history` with its reason. The other columns (`FACTS`: waiting,
        message, ended_at, stage epochs) are plain facts written alongside.
        """
        unknown = set(facts) - FACTS
        if unknown:
            raise TypeError(f"change_execution: unknown columns {sorted(unknown)}")
        ex = t.executions
        guarded: dict[str, Any] = {}
        if status is not None:
            guarded["status"] = ExecutionStatus(status).value
        if not isinstance(stop_mode, _Keep):
            guarded["stop_mode"] = None if stop_mode is None else StopMode(stop_mode).value
        if not isinstance(superseded_by, _Keep):
            guarded["superseded_by"] = superseded_by
        with self.tx() as c:
            if not guarded:
                if facts:
                    self._set_where(c, ex, ex.c.id == ex_id, **facts)
                return
            r = c.execute(
                select(ex.c.status, ex.c.stop_mode, ex.c.superseded_by).where(ex.c.id == ex_id)
            ).first()
            if r is None:
                raise NotFound(f"no execution '{ex_id}'")
            cur = ExecutionStatus(r.status)
            to = ExecutionStatus(guarded.get("status", cur))
            if to != cur:
                try:
                    check_execution_transition(cur, to)
                except TransitionRefused as e:
                    raise Conflict(f"execution {ex_id}: {e}") from None
            if all(getattr(r, k) == v for k, v in guarded.items()):
                if facts:
                    self._set_where(c, ex, ex.c.id == ex_id, **facts)
                return
            values = {"reason": str(reason), **guarded, **facts}
            if self._set_where(c, ex, ex.c.id == ex_id, ex.c.status == cur.value, **values) != 1:
                raise Conflict(f"execution {ex_id}: changed concurrently")
            c.execute(
                insert(t.execution_history).values(
                    _move_row(
                        cur,
                        to,
                        reason,
                        facts.get("message", ""),
                        actor,
                        time.time(),
                        execution_id=ex_id,
                        stop_mode=guarded.get("stop_mode", r.stop_mode),
                        superseded_by=guarded.get("superseded_by", r.superseded_by),
                    )
                )
            )

    def execution_history_for(self, ex_id: str) -> list[ExecutionMoveRecord]:
        """The moves of an execution's status, stop mode and superseded-by, oldest first."""
        h = t.execution_history
        return self._all(
            ExecutionMoveRecord, select(h).where(h.c.execution_id == ex_id).order_by(h.c.id)
        )

    # ---- leases and engines ------------------------------------------------------------------
    def claim(self, ex_id: str, worker: str, ttl: float) -> bool:
        now = time.time()
        ex = t.executions
        free = or_(ex.c.lease_owner.is_(None), ex.c.lease_owner == worker, ex.c.lease_expires < now)
        with self.tx() as c:
            taken = self._set_where(
                c, ex, ex.c.id == ex_id, free, lease_owner=worker, lease_expires=now + ttl
            )
        return bool(taken)

    def previous_owner(self, ex_id: str) -> tuple[str | None, float | None]:
        with self.tx() as c:
            r = c.execute(
                select(t.executions.c.lease_owner, t.executions.c.lease_expires).where(
                    t.executions.c.id == ex_id
                )
            ).first()
        return (r[0], r[1]) if r else (None, None)

    def renew(self, worker: str, ttl: float) -> None:
        """Extend the worker's leases that have run past 40 % of their time (a lease is
        written every ~ttl/2, not at every heartbeat: 1,000 waiting executions stay cheap)."""
        now = time.time()
        ex = t.executions
        with self.tx() as c:
            due = ex.c.lease_expires < now + ttl * 0.6
            self._set_where(c, ex, ex.c.lease_owner == worker, due, lease_expires=now + ttl)
            self._set_where(c, t.engines, t.engines.c.worker == worker, heartbeat=now)

    def release(self, ex_id: str, worker: str) -> None:
        ex = t.executions
        with self.tx() as c:
            mine = (ex.c.id == ex_id, ex.c.lease_owner == worker)
            self._set_where(c, ex, *mine, lease_owner=None, lease_expires=None)

    def register_engine(self, worker: str) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                insert(t.engines).values(
                    worker=worker,
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    started_at=now,
                    heartbeat=now,
                )
            )

    def unregister_engine(self, worker: str) -> None:
        with self.tx() as c:
            c.execute(t.engines.delete().where(t.engines.c.worker == worker))

    def live_engines(self, max_age: float) -> list[EngineRecord]:
        """Engines with a recent heartbeat; on this host, only those whose process still runs."""
        return alive(
            self._all(
                EngineRecord, select(t.engines).where(t.engines.c.heartbeat > time.time() - max_age)
            )
        )

    # ---- attempts --------------------------------------------------------------------------
    def start_attempt(
        self,
        ex_id: str,
        stage: str,
        action: str,
        type_: str,
        *,
        epoch: int,
        worker: str,
        deadline: float | None,
        log_path: str | Callable[[int], str],
        actor: str = "engine",
    ) -> AttemptRecord:
        """Persist an InProgress attempt before the action runs (its id is deterministic)."""
        return self.start_attempts(
            ex_id,
            [(stage, action, type_, epoch, deadline)],
            worker=worker,
            log_path=lambda _s, _a, n: log_path(n) if callable(log_path) else log_path,
            actor=actor,
        )[0]

    def start_attempts(
        self,
        ex_id: str,
        starts: Sequence[tuple[str, str, str, int, float | None]],
        *,
        worker: str,
        log_path: Callable[[str, str, int], str],
        actor: str = "engine",
    ) -> list[AttemptRecord]:
        """`start_attempt` for several actions (stage, action, type, epoch, deadline) at once:
        one short transaction persists every InProgress row and its history before any runs."""
        if not starts:
            return []
        out: list[Row] = []
        with self.tx() as c:
            wanted = {(s[0], s[1]) for s in starts}
            latest: dict[tuple[str, str], int] = {}
            for r in c.execute(
                select(t.attempts.c.stage, t.attempts.c.action, func.max(t.attempts.c.attempt))
                .where(
                    and_(
                        t.attempts.c.execution_id == ex_id,
                        t.attempts.c.stage.in_(sorted({s[0] for s in starts})),
                    )
                )
                .group_by(t.attempts.c.stage, t.attempts.c.action)
            ):
                if (r[0], r[1]) in wanted:
                    latest[(r[0], r[1])] = int(r[2])
            now = time.time()
            check_transition(None, ActionStatus.IN_PROGRESS)
            history = []
            for stage, action, type_, epoch, deadline in starts:
                n = latest.get((stage, action), 0) + 1
                att_id = f"{ex_id}/{stage}/{action}/{n}"
                out.append(
                    _attempt_row(
                        ex_id,
                        stage,
                        action,
                        n,
                        epoch,
                        type_,
                        now,
                        deadline,
                        worker,
                        log_path(stage, action, n),
                    )
                )
                history.append(
                    _history_row(
                        att_id,
                        ex_id,
                        None,
                        ActionStatus.IN_PROGRESS,
                        Reason.STARTED,
                        "",
                        actor,
                        now,
                    )
                )
            try:
                c.execute(insert(t.attempts), out)
            except IntegrityError:
                which = f"attempt {out[0]['id']}" if len(out) == 1 else f"an attempt of {ex_id}"
                raise Conflict(f"{which} already exists") from None
            c.execute(insert(t.history), history)
        return [AttemptRecord.of(r) for r in out]

    def transition_many(
        self, moves: Sequence[tuple[str, ActionStatus, dict[str, Any]]]
    ) -> list[Row | None]:
        """Several guarded moves (attempt id, to, {reason, message, ...}) in one transaction;
        each is a compare-and-set on its own: a move that lost its race is None, the others
        are applied."""
        if not moves:
            return []
        with self.tx() as c:
            return self._moves(c, moves)

    def record_finished(
        self,
        pgids: Mapping[str, int],
        moves: Sequence[tuple[str, ActionStatus, dict[str, Any]]],
    ) -> list[Row | None]:
        """What the engine loop records after a step's worth of work, in one transaction:
        the process groups of running attempts and guarded moves (as `transition_many`)."""
        if not pgids and not moves:
            return []
        with self.tx() as c:
            if pgids:
                self._pgids(c, pgids)
            return self._moves(c, moves) if moves else []

    def _moves(
        self, c: Connection, moves: Sequence[tuple[str, ActionStatus, dict[str, Any]]]
    ) -> list[Row | None]:
        out: list[Row | None] = []
        ids = [m[0] for m in moves]
        current = {
            r.id: r
            for r in c.execute(
                select(t.attempts.c.id, t.attempts.c.status, t.attempts.c.execution_id).where(
                    t.attempts.c.id.in_(ids)
                )
            )
        }
        history = []
        now = time.time()
        for att_id, to, values in moves:
            r = current.get(att_id)
            if r is None:
                out.append(None)
                continue
            cur = ActionStatus(r.status)
            try:
                check_transition(cur, to)
            except TransitionRefused:
                out.append(None)
                continue
            vals = dict(values)
            vals.setdefault("message", "")
            actor = vals.pop("actor", "engine")
            vals.update(status=to.value, ended_at=now)
            if not self._compare_and_set(c, att_id, cur, vals):
                out.append(None)
                continue
            history.append(
                _history_row(
                    att_id, r.execution_id, cur, to, vals["reason"], vals["message"], actor, now
                )
            )
            out.append(vals)
        if history:
            c.execute(insert(t.history), history)
        return out

    @classmethod
    def _compare_and_set(
        cls, c: Connection, att_id: str, cur: ActionStatus, values: Mapping[str, Any]
    ) -> bool:
        """Write an attempt's move only if it still has the status read; False if it lost."""
        a = t.attempts
        return cls._set_where(c, a, a.c.id == att_id, a.c.status == cur.value, **values) == 1

    def transition(
        self,
        att_id: str,
        to: ActionStatus,
        *,
        reason: str,
        message: str = "",
        actor: str = "engine",
        **values: Any,
    ) -> AttemptRecord:
        """The one guarded move of an action attempt; raises Conflict when it lost a race."""
        with self.tx() as c:
            r = c.execute(select(t.attempts).where(t.attempts.c.id == att_id)).first()
            if r is None:
                raise NotFound(f"no attempt {att_id}")
            cur = ActionStatus(r.status)
            try:
                check_transition(cur, to)
            except TransitionRefused as e:
                raise Conflict(f"{att_id}: {e} (it is already {cur}: {r.reason})") from None
            now = time.time()
            vals = dict(status=to.value, reason=reason, message=message, ended_at=now, **values)
            if not self._compare_and_set(c, att_id, cur, vals):
                raise Conflict(f"{att_id}: changed concurrently")
            c.execute(
                insert(t.history).values(
                    _history_row(att_id, r.execution_id, cur, to, reason, message, actor, now)
                )
            )
            out = _row(r)
            out.update(vals)
            return AttemptRecord.of(out)

    def note_attempt(self, att_id: str, **values: Any) -> None:
        """Non-status facts about a running attempt (its process group, its details so far)."""
        with self.tx() as c:
            self._set_where(c, t.attempts, t.attempts.c.id == att_id, **values)

    def note_pgids(self, pgids: Mapping[str, int]) -> None:
        """The process groups of running attempts, in one transaction."""
        with self.tx() as c:
            self._pgids(c, pgids)

    @staticmethod
    def _pgids(c: Connection, pgids: Mapping[str, int]) -> None:
        c.execute(
            update(t.attempts)
            .where(t.attempts.c.id == bindparam("att_id"))
            .values(pgid=bindparam("att_pgid")),
            [{"att_id": k, "att_pgid": v} for k, v in pgids.items()],
        )

    def attempts_for(self, ex_id: str, *, light: bool = False) -> list[AttemptRecord]:
        """An execution's attempts, in the order they started. `light`: without their JSON
        payloads (left empty), what planning needs, cheap to load."""
        cols = [t.attempts.c[n] for n in LIGHT_ATTEMPT] if light else [t.attempts]
        return self._all(
            AttemptRecord,
            select(*cols)
            .where(t.attempts.c.execution_id == ex_id)
            .order_by(t.attempts.c.started_at, t.attempts.c.attempt),
        )

    def history_count(self, ex_id: str) -> int:
        """How many status moves an execution's attempts made: a cheap version of its state."""
        with self.tx() as c:
            return int(
                c.execute(
                    select(func.count())
                    .select_from(t.history)
                    .where(t.history.c.execution_id == ex_id)
                ).scalar_one()
            )

    def attempts_by_id(self, ids: Sequence[str]) -> dict[str, AttemptRecord]:
        if not ids:
            return {}
        found = self._all(AttemptRecord, select(t.attempts).where(t.attempts.c.id.in_(list(ids))))
        return {a.id: a for a in found}

    def reusable_attempts(
        self, pipeline: str, stage: str, action: str, input_digest: str, limit: int = 3
    ) -> list[AttemptRecord]:
        """Succeeded attempts of this pipeline's action whose inputs hashed to `input_digest`,
        newest first (engine/reuse.py): never another pipeline's, never a failed one."""
        a = t.attempts
        return self._all(
            AttemptRecord,
            select(a)
            .join(t.executions, t.executions.c.id == a.c.execution_id)
            .where(
                a.c.input_digest == input_digest,
                a.c.status == ActionStatus.SUCCEEDED.value,
                a.c.stage == stage,
                a.c.action == action,
                t.executions.c.pipeline == pipeline,
            )
            .order_by(a.c.ended_at.desc())
            .limit(limit),
        )

    def history_for(self, ex_id: str) -> list[AttemptMoveRecord]:
        """The moves of an execution's attempts, oldest first."""
        return self._all(
            AttemptMoveRecord,
            select(t.history).where(t.history.c.execution_id == ex_id).order_by(t.history.c.id),
        )

    # ---- requests --------------------------------------------------------------------------
    def add_request(
        self,
        ex_id: str,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> int:
        with self.tx() as c:
            res = c.execute(
                insert(t.requests).values(
                    execution_id=ex_id,
                    kind=kind,
                    payload=dict(payload or {}),
                    actor=actor,
                    created_at=time.time(),
                )
            )
            key = res.inserted_primary_key
            assert key is not None
            return int(key[0])

    def pending_requests(self, ex_id: str) -> list[RequestRecord]:
        """An execution's requests not handled yet, oldest first."""
        return self._all(
            RequestRecord,
            select(t.requests)
            .where(and_(t.requests.c.execution_id == ex_id, t.requests.c.handled_at.is_(None)))
            .order_by(t.requests.c.id),
        )

    def handle_request(self, req_id: int, outcome: str) -> None:
        r = t.requests
        with self.tx() as c:
            self._set_where(c, r, r.c.id == req_id, handled_at=time.time(), outcome=outcome)

    def get_request(self, req_id: int) -> RequestRecord:
        with self.tx() as c:
            r = c.execute(select(t.requests).where(t.requests.c.id == req_id)).first()
        if r is None:
            raise NotFound(f"no request {req_id}")
        return RequestRecord.of(r)

    # ---- transitions -----------------------------------------------------------------------
    def set_transition(
        self, pipeline: str, stage: str, enabled: bool, reason: str, actor: str | None
    ) -> None:
        keys = {"pipeline": pipeline, "stage": stage}
        values = {"enabled": enabled, "reason": reason, "actor": actor, "at": time.time()}
        with self.tx() as c:
            self._put(c, t.transitions, keys, values)

    def transitions_for(self, pipeline: str) -> list[TransitionRecord]:
        return self._all(
            TransitionRecord, select(t.transitions).where(t.transitions.c.pipeline == pipeline)
        )

    def disabled_transitions_all(self) -> dict[str, dict[str, str]]:
        """Every pipeline's disabled transitions: pipeline -> stage -> reason (one query)."""
        with self.tx() as c:
            return self._disabled(c)

    @staticmethod
    def _disabled(c: Connection) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for r in c.execute(select(t.transitions).where(t.transitions.c.enabled.is_(False))):
            out.setdefault(r.pipeline, {})[r.stage] = r.reason or "disabled"
        return out

    def disabled_transitions(self, pipeline: str) -> dict[str, str]:
        return {
            r.stage: r.reason or "disabled" for r in self.transitions_for(pipeline) if not r.enabled
        }

    # ---- approvals -------------------------------------------------------------------------
    def create_approval(
        self,
        att_id: str,
        ex_id: str,
        *,
        token: str,
        summary: str,
        digest: str | None,
        expires_at: float,
        external_link: str | None = None,
    ) -> ApprovalRecord:
        row = dict(
            attempt_id=att_id,
            execution_id=ex_id,
            token=token,
            status=ApprovalStatus.PENDING.value,
            summary=summary,
            digest=digest,
            expires_at=expires_at,
            external_link=external_link,
            created_at=time.time(),
        )
        with self.tx() as c:
            existing = c.execute(
                select(t.approvals).where(t.approvals.c.attempt_id == att_id)
            ).first()
            if existing:
                return ApprovalRecord.of(existing)
            c.execute(insert(t.approvals).values(**row))
        return ApprovalRecord.of(row)

    def approval_records(self, ex_id: str) -> list[ApprovalRecord]:
        """An execution's approvals, oldest first."""
        return self._all(
            ApprovalRecord,
            select(t.approvals)
            .where(t.approvals.c.execution_id == ex_id)
            .order_by(t.approvals.c.created_at),
        )

    def approval(self, att_id: str) -> ApprovalRecord | None:
        with self.tx() as c:
            r = c.execute(select(t.approvals).where(t.approvals.c.attempt_id == att_id)).first()
        return ApprovalRecord.of(r) if r else None

    def pending_approvals(self) -> list[ApprovalRecord]:
        return self._all(
            ApprovalRecord,
            select(t.approvals)
            .where(t.approvals.c.status == ApprovalStatus.PENDING.value)
            .order_by(t.approvals.c.created_at),
        )

    def ready_approvals(self, now: float) -> list[str]:
        """Executions with an approval that waits no more (decided or expired) while its
        attempt is still InProgress: the events that resume a parked wait."""
        with self.tx() as c:
            return self._ready(c, now)

    @staticmethod
    def _ready(c: Connection, now: float) -> list[str]:
        a, att = t.approvals, t.attempts
        return [
            r[0]
            for r in c.execute(
                select(a.c.execution_id)
                .select_from(a.join(att, att.c.id == a.c.attempt_id))
                .where(
                    and_(
                        att.c.status == ActionStatus.IN_PROGRESS.value,
                        or_(a.c.status != ApprovalStatus.PENDING.value, a.c.expires_at < now),
                    )
                )
                .distinct()
            )
        ]

    def decide_approval(self, att_id: str, status: str, *, by: str, comment: str) -> ApprovalRecord:
        """Pending -> Approved/Rejected/Expired/Superseded, once. A second decision is a Conflict."""
        a = t.approvals
        decision = {"status": status, "decided_by": by, "comment": comment}
        with self.tx() as c:
            pending = (a.c.attempt_id == att_id, a.c.status == ApprovalStatus.PENDING.value)
            won = self._set_where(c, a, *pending, **decision, decided_at=time.time())
            r = c.execute(select(a).where(a.c.attempt_id == att_id)).first()
        if r is None:
            raise NotFound(f"no approval for {att_id}")
        if won != 1:
            raise Conflict(
                f"this approval was already decided: {r.status} by {r.decided_by or 'the engine'}"
                + (f" ({r.comment})" if r.comment else "")
            )
        return ApprovalRecord.of(r)

    # ---- deployments and health ---------------------------------------------------------------
    def record_deployment(self, **values: Any) -> None:
        values.setdefault("at", time.time())
        values.setdefault("details", {})
        with self.tx() as c:
            c.execute(insert(t.deployments).values(**values))

    def deployment_records(
        self, environment: str | None = None, limit: int = 100
    ) -> list[DeploymentRecord]:
        """The newest deployments first (of one environment, or all)."""
        q = select(t.deployments).order_by(t.deployments.c.at.desc(), t.deployments.c.id.desc())
        if environment:
            q = q.where(t.deployments.c.environment == environment)
        return self._all(DeploymentRecord, q.limit(limit))

    def current_deployment_records(self) -> dict[str, DeploymentRecord]:
        """What each environment serves: its newest deployment."""
        out: dict[str, DeploymentRecord] = {}
        for d in reversed(self.deployment_records(limit=10000)):
            out[d.environment] = d
        return out

    def set_health(self, environment: str, healthy: bool, detail: str) -> bool:
        """Record a health reading; True when the health changed (or is new)."""
        now = time.time()
        h = t.health
        with self.tx() as c:
            r = c.execute(
                select(h.c.healthy, h.c.since).where(h.c.environment == environment)
            ).first()
            changed = r is None or bool(r.healthy) != healthy
            reading = {"healthy": healthy, "detail": detail, "checked_at": now}
            since = now if r is None or changed else r.since
            self._put(c, h, {"environment": environment}, {**reading, "since": since})
        return changed

    def health_records(self) -> dict[str, HealthRecord]:
        return {h.environment: h for h in self._all(HealthRecord, select(t.health))}

    # ---- artifacts and audit ---------------------------------------------------------------------
    def record_artifact(self, digest: str, files: int, size: int) -> None:
        with self.tx() as c:
            if c.execute(
                select(t.artifacts.c.digest).where(t.artifacts.c.digest == digest)
            ).first():
                return
            with suppress(IntegrityError):
                c.execute(
                    insert(t.artifacts).values(
                        digest=digest, files=files, size=size, created_at=time.time()
                    )
                )

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        with self.tx() as c:
            c.execute(
                insert(t.audit).values(
                    actor=actor,
                    action=action,
                    target=target,
                    detail=dict(detail or {}),
                    at=time.time(),
                )
            )

    def audit_log(self, limit: int = 200) -> list[AuditRecord]:
        """The newest entries of the audit log first."""
        return self._all(AuditRecord, select(t.audit).order_by(t.audit.c.id.desc()).limit(limit))


def _first_line(e: SQLAlchemyError) -> str:
    return str(e.orig if hasattr(e, "orig") and e.orig else e).strip().splitlines()[0]


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _attempt_row(
    ex_id: str,
    stage: str,
    action: str,
    n: int,
    epoch: int,
    type_: str,
    now: float,
    deadline: float | None,
    worker: str | None,
    log_path: str | None,
) -> dict[str, Any]:
    """A new attempt's row, InProgress (one shape for a single start and a step's batch)."""
    return dict(
        id=f"{ex_id}/{stage}/{action}/{n}",
        execution_id=ex_id,
        stage=stage,
        action=action,
        attempt=n,
        epoch=epoch,
        type=type_,
        status=ActionStatus.IN_PROGRESS.value,
        reason=Reason.STARTED.value,
        message="",
        started_at=now,
        deadline=deadline,
        variables={},
        artifacts={},
        details={},
        reports=[],
        worker=worker,
        log_path=log_path,
    )


def _history_row(
    att_id: str,
    ex_id: str,
    cur: ActionStatus | None,
    to: ActionStatus,
    reason: str,
    message: str,
    actor: str,
    now: float,
) -> dict[str, Any]:
    """One attempt's move as a `history` row."""
    return _move_row(cur, to, reason, message, actor, now, attempt_id=att_id, execution_id=ex_id)


def _move_row(
    cur: StrEnum | None,
    to: StrEnum,
    reason: str,
    message: str,
    actor: str | None,
    now: float,
    **ids: Any,
) -> dict[str, Any]:
    """A status move as a row of `history` (an attempt's) or `execution_history`."""
    return dict(
        ids,
        from_status=cur.value if cur else None,
        to_status=to.value,
        reason=str(reason),
        message=message,
        actor=actor,
        at=now,
    )
