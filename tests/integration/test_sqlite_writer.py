"""`conveyor run --detach`'s light path (stdlib sqlite3) writes the rows the SQLAlchemy store
writes, and takes no part in the schema (Alembic's)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conveyor.store.db import Store
from conveyor.store.sqlite_writer import open_writer

DEFINITION = {
    "name": "p",
    "variables": [{"name": "V", "defaultValue": "1"}],
    "stages": [{"name": "A", "actions": [{"name": "a", "type": "shell", "config": {"x": "é"}}]}],
}
VOLATILE = {"id", "created_at", "updated_at", "execution_id", "at"}


def _raw(path: Path, table: str) -> list[dict[str, object]]:
    """The table's rows as stored (JSON as text), without the columns that differ by nature."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    order = {"executions": "seq", "pipelines": "name"}.get(table, "id")
    rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]  # noqa: S608 - a fixed table name
    conn.close()
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_the_stdlib_writer_writes_the_rows_the_store_writes(tmp_path: Path) -> None:
    """save_pipeline and create_execution leave byte-identical rows (the execution's reason
    and first history row included) through either path."""
    rows = {}
    for way in ("store", "stdlib"):
        db = tmp_path / f"{way}.db"
        store = Store(f"sqlite:///{db}")  # Alembic makes the schema either way
        writer = open_writer(f"sqlite:///{db}") if way == "stdlib" else None
        target = writer or store
        target.save_pipeline("p", DEFINITION, "/x/p.yaml")
        target.save_pipeline("p", DEFINITION, "/y/p.yaml")  # an update
        for n in range(2):
            target.create_execution(
                "p",
                DEFINITION,
                variables={"V": str(n)},
                trigger={"type": "StartPipelineExecution", "by": "me"},
                actor="local:me",
            )
        if writer is not None:
            writer.close()
        store.close()
        rows[way] = (_raw(db, "pipelines"), _raw(db, "executions"), _raw(db, "execution_history"))
    assert rows["stdlib"] == rows["store"]
    executions = rows["stdlib"][1]
    assert [e["seq"] for e in executions] == [1, 2]
    assert json.loads(str(executions[1]["variables"])) == {"V": "1"}
    assert [m["to_status"] for m in rows["stdlib"][2]] == ["InProgress", "InProgress"]


def test_no_writer_for_a_missing_or_old_database(tmp_path: Path) -> None:
    """The light path steps aside (the store then migrates) for a missing or older database."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert open_writer(url) is None
    store = Store(url)
    with store.tx() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert open_writer(url) is None
    store.close()


def test_run_detach_imports_neither_sqlalchemy_nor_the_engine(tmp_path: Path) -> None:
    """`conveyor run --detach` on a state dir at the current schema loads no SQLAlchemy, no
    engine module, and queues the execution a `conveyor status` then shows."""
    home = tmp_path / "state"
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\nstages:\n  - name: A\n    actions:\n"
        "      - {name: wait, type: approval, config: {timeout: 1h}}\n"
    )
    env_code = (
        "import os, sys, json\n"
        f"os.environ['CONVEYOR_HOME'] = {str(home)!r}\n"
        "from conveyor.cli.main import cli\n"
        "try:\n"
        f"    cli(['run', '--detach', '--json', {str(f)!r}], prog_name='conveyor')\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'alembic', 'conveyor.engine')))))\n"
    )
    home.mkdir()
    store = Store(f"sqlite:///{home / 'conveyor.db'}")
    store.register_engine("test-engine")  # an engine runs (this process): none is started
    out = subprocess.run(
        [sys.executable, "-c", env_code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ex_id = json.loads("\n".join(out[:-1]))["executionId"]
    assert json.loads(out[-1]) == []
    assert store.execution(ex_id).status == "InProgress"
    store.close()


def test_status_of_an_execution_imports_neither_sqlalchemy_nor_pydantic(tmp_path: Path) -> None:
    """`conveyor status EXECUTION` reads through the stdlib reader and the light pipeline
    reader: no SQLAlchemy, no engine, no pydantic parser; it shows the stage."""
    home = tmp_path / "state"
    home.mkdir()
    store = Store(f"sqlite:///{home / 'conveyor.db'}")
    store.save_pipeline("p", DEFINITION, None)
    ex_id = store.create_execution(
        "p", DEFINITION, variables={"V": "1"}, trigger={"type": "t"}, actor="me"
    )
    store.close()
    code = (
        "import os, sys, json\n"
        f"os.environ['CONVEYOR_HOME'] = {str(home)!r}\n"
        "from conveyor.cli.main import cli\n"
        "try:\n"
        f"    cli(['status', {ex_id!r}, '--json'], prog_name='conveyor')\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'alembic', 'pydantic', 'conveyor.engine', 'conveyor.spec')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    desc = json.loads("\n".join(out[:-1]))
    assert desc["id"] == ex_id and desc["stages"][0]["name"] == "A"
    assert json.loads(out[-1]) == []
