"""The store on SQLite and PostgreSQL: migrations, guarded transitions, races, an engine run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import Conflict, Unavailable
from conveyor.model.status import ActionStatus
from conveyor.store.db import Store

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent(db_url: str) -> None:
    """Opening the store twice migrates once and keeps the data."""
    s = Store(db_url)
    ex = s.create_execution("p", {"name": "p"}, variables={}, trigger={})
    s.close()
    s2 = Store(db_url)
    assert s2.execution(ex).seq == 1
    s2.close()


def test_only_one_of_two_racing_transitions_wins(db_url: str) -> None:
    """Two writers finish the same attempt at once: one succeeds, the other gets Conflict."""
    s = Store(db_url)
    ex = s.create_execution("p", {}, variables={}, trigger={})
    att = s.start_attempt(ex, "S", "A", "shell", epoch=0, worker="w", deadline=None, log_path="")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def finish(to: ActionStatus) -> None:
        barrier.wait()
        try:
            s.transition(att.id, to, reason=to.value)
            results.append("won")
        except Conflict:
            results.append("conflict")

    ts = [
        threading.Thread(target=finish, args=(st,))
        for st in (ActionStatus.SUCCEEDED, ActionStatus.FAILED)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(results) == ["conflict", "won"]
    assert len([h for h in s.history_for(ex) if h.from_status == "InProgress"]) == 1
    s.close()


def test_two_approvers_exactly_one_wins(db_url: str) -> None:
    """Approve and reject racing on one pending approval: one decision is kept."""
    import time

    s = Store(db_url)
    ex = s.create_execution("p", {}, variables={}, trigger={})
    att = s.start_attempt(
        ex, "Gate", "Approve", "approval", epoch=0, worker="w", deadline=None, log_path=""
    )
    s.create_approval(
        att.id, ex, token="t" * 32, summary="", digest=None, expires_at=time.time() + 60
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(status: str, who: str) -> None:
        barrier.wait()
        try:
            s.decide_approval(att.id, status, by=who, comment="")
            outcomes.append(who)
        except Conflict as e:
            outcomes.append("conflict:" + e.message)

    ts = [
        threading.Thread(target=decide, args=a)
        for a in (("Approved", "alice"), ("Rejected", "bob"))
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    winners = [o for o in outcomes if not o.startswith("conflict")]
    assert len(winners) == 1
    assert s.approval(att.id).decided_by == winners[0]
    assert any("already decided" in o for o in outcomes)
    s.close()


def test_execution_numbers_are_unique_under_concurrent_starts(db_url: str) -> None:
    """Eight executions started at once get eight distinct numbers."""
    s = Store(db_url)
    ids: list[str] = []
    ts = [
        threading.Thread(
            target=lambda: ids.append(s.create_execution("p", {}, variables={}, trigger={}))
        )
        for _ in range(8)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(s.execution(i).seq for i in ids) == list(range(1, 9))
    s.close()


def test_engine_runs_a_pipeline_on_this_store(db_url: str, tmp_path: Path) -> None:
    """The whole engine works on either database."""
    from conveyor.bootstrap import build
    from conveyor.settings import Settings
    from tests.conftest import run_pipeline

    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        lease_seconds=3,
        heartbeat_seconds=0.5,
        poll_seconds=0.05,
    )
    app: Any = build(settings)
    ex = run_pipeline(
        app,
        """
name: ondb
stages:
  - name: A
    actions:
      - {name: a1, type: shell, outputs: [o], config: {commands: ["echo x > f"]}}
      - {name: a2, type: shell, config: {commands: ["true"]}}
  - name: B
    actions: [{name: b, type: shell, inputs: [o], config: {commands: ["test -f f"]}}]
""",
        tmp_path,
    )
    assert app.store.execution(ex).status == "Succeeded"
    app.store.close()


def test_unopenable_database_is_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened is one clear Unavailable error (exit code 3)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable) as e:
        Store(f"sqlite:///{blocker}/sub/c.db")
    assert e.value.exit_code == 3
    with pytest.raises(Unavailable) as e2:
        Store("postgresql://nobody@127.0.0.1:1/none")
    assert "cannot open database" in e2.value.message and "***@" in e2.value.message


def test_migrations_build_exactly_the_declared_tables(db_url: str) -> None:
    """After `upgrade head`, Alembic finds no difference between the database and tables.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from conveyor.store.tables import metadata

    s = Store(db_url)
    with s.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    s.close()
    assert diff == []


def test_two_sources_finishing_at_the_same_moment_both_keep_their_revision(
    db_url: str, tmp_path: Path
) -> None:
    """Two sources recorded at once, 100 times: every execution keeps both revisions."""
    from sqlalchemy import select

    from conveyor.actions.base import ActionResult
    from conveyor.bootstrap import build
    from conveyor.engine.engine import pipeline_of
    from conveyor.settings import Settings
    from conveyor.store import tables as t

    definition = {
        "name": "two",
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {"name": "app", "type": "source.git", "outputs": ["a"],
                     "config": {"repository": "app"}},
                    {"name": "tests", "type": "source.git", "outputs": ["t"],
                     "config": {"repository": "tests"}},
                ],
            }
        ],
    }  # fmt: skip
    settings = Settings(state_dir=tmp_path / "state", database_url=db_url)
    app: Any = build(settings)
    app.store.save_pipeline("two", definition, None)
    pipeline = pipeline_of(definition, "two")
    eng = app.engine()
    lost = []
    for i in range(100):
        ex_id = app.store.create_execution("two", definition, variables={}, trigger={})
        ex = app.store.execution(ex_id, light=True)
        barrier = threading.Barrier(2)

        def finish(name: str, ex: Any = ex, barrier: threading.Barrier = barrier) -> None:
            _, action = pipeline.find_action(name)
            barrier.wait()
            eng._after_success(
                ex,
                pipeline,
                "Source",
                action,
                ActionResult(variables={"CommitId": name * 4}, revision={"CommitId": name * 4}),
            )

        threads = [threading.Thread(target=finish, args=(n,)) for n in ("app", "tests")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        revs = app.store.execution(ex_id).revisions
        with app.store.tx() as c:  # the column itself, as readers that bypass the store see it
            column = c.execute(
                select(t.executions.c.revisions).where(t.executions.c.id == ex_id)
            ).scalar_one()
        if set(revs) != {"app", "tests"} or set(column) != {"app", "tests"}:
            lost.append((i, sorted(revs), sorted(column)))
    eng.shutdown(wait=False)
    app.store.close()
    assert lost == []


def test_the_headline_source_is_the_trigger_else_the_first_declared(db_url: str) -> None:
    """A push to the tests repo heads its execution; a manual start heads with the first source,
    whatever order the sources finished in."""
    from conveyor.service.queries import source_summary

    s = Store(db_url)
    pushed = s.create_execution("p", {"name": "p"}, variables={}, trigger={"source": "tests"})
    manual = s.create_execution("p", {"name": "p"}, variables={}, trigger={"type": "Start"})
    for ex in (pushed, manual):
        s.record_revision(ex, "tests", {"CommitId": "t" * 40}, position=1)
        s.record_revision(ex, "app", {"CommitId": "a" * 40}, position=0)
    assert source_summary(s.execution(pushed).revisions)["action"] == "tests"
    assert source_summary(s.execution(manual).revisions)["action"] == "app"
    assert [r.id for r in s.list_executions(light=True)] == [manual, pushed]
    assert list(s.list_executions(light=True)[0].revisions) == ["app", "tests"]
    s.close()
