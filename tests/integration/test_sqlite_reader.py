"""The CLI's light read path (stdlib sqlite3) answers exactly as the SQLAlchemy store does."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor.store.db import Store
from conveyor.store.schema_version import head_revision
from conveyor.store.sqlite_reader import open_reader

DEFINITION = {
    "name": "p",
    "stages": [{"name": "A", "actions": [{"name": "a", "type": "shell", "config": {}}]}],
}


def test_reader_rows_equal_the_store_rows(tmp_path: Path) -> None:
    """Every read method of SqliteReader returns the rows Store returns, JSON and booleans alike."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    store.save_pipeline("p", DEFINITION, "/x/p.yaml")
    ex = store.create_execution(
        "p", DEFINITION, variables={"V": "1"}, trigger={"type": "t"}, revisions={"S": {"a": 1}}
    )
    store.create_execution("p", DEFINITION, variables={}, trigger={"type": "t"})
    att = store.start_attempt(
        ex, "A", "a", "shell", epoch=0, worker="w", deadline=None, log_path="/tmp/l"
    )
    store.set_transition("p", "A", False, "freeze", "me")
    store.create_approval(
        att.id, ex, token="tok", summary="s", digest="sha256:1", expires_at=time.time() + 60
    )
    store.register_engine("w")
    reader = open_reader(url)
    assert reader is not None
    assert reader.pipeline_records() == store.pipeline_records()
    assert reader.pipeline_names() == store.pipeline_names()
    assert reader.pipeline_record("p") == store.pipeline_record("p")
    for light in (False, True):
        assert reader.list_executions(light=light) == store.list_executions(light=light)
        assert reader.execution(ex[:6], light=light) == store.execution(ex[:6], light=light)
    assert reader.list_executions("p", "InProgress", limit=1) == store.list_executions(
        "p", "InProgress", limit=1
    )
    assert reader.attempts_for(ex) == store.attempts_for(ex)
    assert reader.transitions_for("p") == store.transitions_for("p")
    assert reader.approval_records(ex) == store.approval_records(ex)
    assert reader.live_engines(60) == store.live_engines(60)


def test_no_reader_for_a_missing_or_old_database(tmp_path: Path) -> None:
    """The light path steps aside (the store then migrates) for a missing or older database."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert open_reader(url) is None
    store = Store(url)
    with store.tx() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert open_reader(url) is None
    assert open_reader("postgresql://x@127.0.0.1/db") is None


def test_head_revision_is_alembics_head() -> None:
    """The migration head read from the files is the one Alembic computes."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    ini = Path(__file__).parents[2] / "src" / "conveyor" / "store" / "alembic.ini"
    assert head_revision() == ScriptDirectory.from_config(Config(str(ini))).get_current_head()


def test_the_shared_decoder_knows_every_json_and_boolean_column() -> None:
    """columns.py's JSON and boolean lists (the reader's decoder) match tables.py exactly."""
    from sqlalchemy import JSON, Boolean

    from conveyor.store import tables
    from conveyor.store.columns import BOOL_COLUMNS, JSON_COLUMNS

    def of(kind: type) -> dict[str, tuple[str, ...]]:
        return {
            name: cols
            for name, table in tables.metadata.tables.items()
            if (cols := tuple(c.name for c in table.c if isinstance(c.type, kind)))
        }

    assert {k: v for k, v in JSON_COLUMNS.items() if v} == of(JSON)
    assert dict(BOOL_COLUMNS) == of(Boolean)


def test_the_reader_imports_no_sqlalchemy() -> None:
    """The CLI's read path (the reader, its decoder and records) loads without SQLAlchemy."""
    import subprocess
    import sys

    code = (
        "import sys, conveyor.store.sqlite_reader, conveyor.store.records;"
        "sys.exit('sqlalchemy' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
