"""An execution's guarded changes and their history, and the migrations that hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from conveyor.errors import Conflict
from conveyor.model.status import ExecutionReason, ExecutionStatus, StopMode
from conveyor.store.db import Store, make_engine

pytestmark = pytest.mark.integration

SNAPSHOT = Path(__file__).parent / "data" / "schema_0001.json"
HEAD_SNAPSHOT = Path(__file__).parent / "data" / "schema_head.json"


def _upgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    import conveyor.store.db as db

    cfg = Config(str(Path(db.__file__).with_name("alembic.ini")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _downgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    import conveyor.store.db as db

    cfg = Config(str(Path(db.__file__).with_name("alembic.ini")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def schema_of(engine: Engine) -> dict[str, Any]:
    """Each table's columns (name, type, nullable, primary key), indexes, unique and foreign
    keys, as plain data that compares equal across runs."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        out[table] = {
            "columns": [
                [c["name"], str(c["type"]), bool(c["nullable"])] for c in insp.get_columns(table)
            ],
            "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                [i["name"], i["column_names"], bool(i["unique"])] for i in insp.get_indexes(table)
            ),
            "unique": sorted(sorted(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "foreign_keys": sorted(
                [f["constrained_columns"], f["referred_table"], f["referred_columns"]]
                for f in insp.get_foreign_keys(table)
            ),
        }
    return out


def test_migration_0001_creates_the_recorded_schema(db_url: str) -> None:
    """Migration 0001 alone builds the same tables, columns, keys and indexes as recorded
    before its upgrade was split into one function per table."""
    engine = make_engine(db_url)
    _upgrade(engine, "0001")
    _downgrade(engine, "base")  # and its downgrade removes every table again
    assert schema_of(engine) == {}
    _upgrade(engine, "0001")
    got = json.loads(json.dumps(schema_of(engine)))
    engine.dispose()
    dialect = db_url.split(":", 1)[0]
    assert got == json.loads(SNAPSHOT.read_text())[dialect]


def test_migrations_to_head_create_the_recorded_schema(db_url: str) -> None:
    """Every migration up to head builds the same tables, columns, keys and indexes as
    recorded before the migrations shared their column builders."""
    engine = make_engine(db_url)
    _upgrade(engine, "head")
    got = json.loads(json.dumps(schema_of(engine)))
    engine.dispose()
    dialect = db_url.split(":", 1)[0]
    assert got == json.loads(HEAD_SNAPSHOT.read_text())[dialect]


def test_migration_0005_adds_the_reason_and_keeps_the_rows(db_url: str) -> None:
    """Upgrading a 0004 database with an execution in it to 0005 keeps the row (reason empty)
    and adds the execution history; downgrading removes both again."""
    engine = make_engine(db_url)
    _upgrade(engine, "0004")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO executions (id, pipeline, seq, kind, status, message, definition,"
                " variables, \"trigger\", revisions, stage_epochs, created_at) VALUES ('old1', 'p',"
                " 1, 'standard', 'Succeeded', '', '{}', '{}', '{}', '{}', '{}', 1.0)"
            )
        )
    _upgrade(engine, "0005")
    insp = inspect(engine)
    assert "reason" in {c["name"] for c in insp.get_columns("executions")}
    assert "execution_history" in insp.get_table_names()
    with engine.connect() as c:
        assert c.execute(text("SELECT status, reason FROM executions")).all() == [
            ("Succeeded", None)
        ]
    _downgrade(engine, "0004")
    insp = inspect(engine)
    assert "reason" not in {c["name"] for c in insp.get_columns("executions")}
    assert "execution_history" not in insp.get_table_names()
    engine.dispose()
    s = Store(db_url)  # and the store brings it back to the head
    assert s.execution("old1").status == "Succeeded"
    s.close()


def test_an_execution_change_is_guarded_and_kept_in_its_history(db_url: str) -> None:
    """Stop, end and retry an execution: each move is in its history with its reason, and
    a move the table refuses (Succeeded back to InProgress) is a Conflict that writes nothing."""
    s = Store(db_url)
    ex = s.create_execution("p", {}, variables={}, trigger={}, actor="ann")
    s.change_execution(
        ex, stop_mode=StopMode.FINISH, reason=ExecutionReason.STOP_REQUESTED, actor="bob"
    )
    s.change_execution(ex, status=ExecutionStatus.STOPPED, ended_at=5.0, message="stopped")
    s.change_execution(
        ex, status=ExecutionStatus.IN_PROGRESS, stop_mode=None, reason=ExecutionReason.RETRIED
    )
    s.change_execution(ex, waiting="a transition is disabled")  # a fact: no history row
    s.change_execution(ex, status=ExecutionStatus.SUCCEEDED)
    with pytest.raises(Conflict, match="cannot go from Succeeded to InProgress"):
        s.change_execution(ex, status=ExecutionStatus.IN_PROGRESS, reason="Retried")
    moves = [
        (h.from_status, h.to_status, h.stop_mode, h.reason, h.actor)
        for h in s.execution_history_for(ex)
    ]
    assert moves == [
        (None, "InProgress", None, "Started", "ann"),
        ("InProgress", "InProgress", "finish", "StopRequested", "bob"),
        ("InProgress", "Stopped", "finish", "Derived", "engine"),
        ("Stopped", "InProgress", None, "Retried", "engine"),
        ("InProgress", "Succeeded", None, "Derived", "engine"),
    ]
    row = s.execution(ex)
    assert (row.status, row.reason, row.waiting) == (
        "Succeeded",
        "Derived",
        "a transition is disabled",
    )
    s.close()


def test_an_unknown_execution_column_is_refused(tmp_path: Path) -> None:
    """change_execution writes only the guarded three and the listed facts: a typo fails."""
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    ex = s.create_execution("p", {}, variables={}, trigger={})
    with pytest.raises(TypeError, match="statsu"):
        s.change_execution(ex, statsu="Failed")
    s.close()


def test_the_engine_records_why_an_execution_stopped_and_came_back(
    app: Any, tmp_path: Path
) -> None:
    """Stop then retry through requests: the execution's history names each move's reason and
    who asked (StopRequested by the stopper, Retried by the retrier), ending Succeeded."""
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load
    from tests.conftest import drive, write_pipeline

    path = write_pipeline(
        tmp_path,
        """
name: stopped
stages:
  - name: A
    actions: [{name: first, type: shell, config: {commands: ["sleep 1"]}}]
  - name: B
    actions: [{name: second, type: shell, config: {commands: ["true"]}}]
""",
    )
    p = load_pipeline(path, app.registry.catalogue())
    app.store.save_pipeline(p.name, load(path)[0], str(path))
    eng = app.engine()
    ex = eng.start(p.name)
    asked: list[bool] = []

    def stopped(a: Any) -> bool:
        if not asked and a.store.attempts_for(ex):
            a.store.add_request(ex, "stop", {"reason": "freeze"}, actor="ann")
            asked.append(True)
        return bool(a.store.execution(ex).status == "Stopped")

    drive(app, eng, stopped)
    app.store.add_request(ex, "retry", {}, actor="bob")
    drive(app, app.engine(), lambda a: a.store.execution(ex).status == "Succeeded")
    moves = [
        (h.from_status, h.to_status, h.stop_mode, h.reason, h.actor)
        for h in app.store.execution_history_for(ex)
    ]
    assert moves[0][:4] == (None, "InProgress", None, "Started")
    assert ("InProgress", "InProgress", "finish", "StopRequested", "ann") in moves
    assert ("Stopped", "InProgress", None, "Retried", "bob") in moves
    assert moves[-1][:2] == ("InProgress", "Succeeded")
    assert app.store.execution(ex).reason == "Derived"
