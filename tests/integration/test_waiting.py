"""Waiting holds no worker (issue 12): approvals that wait are state in the store, not parked
threads, so any number of them leaves the engine free for other pipelines. SQLite and
PostgreSQL (through the `db_url` fixture)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_pipeline

pytestmark = pytest.mark.integration

WAITING = 500

GATED = """
name: gated
executionMode: PARALLEL
stages:
  - name: Gate
    actions: [{name: approve, type: approval, config: {timeout: 10m}}]
  - name: After
    actions: [{name: after, type: shell, config: {commands: ["true"]}}]
"""

OTHER = """
name: other
stages:
  - name: Build
    actions: [{name: build, type: shell, config: {commands: ["echo built"]}}]
"""


def _register(app: Any, tmp_path: Path, text: str, name: str) -> str:
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = write_pipeline(tmp_path, text, name)
    p = load_pipeline(path, app.registry.catalogue())
    doc, _ = load(path)
    app.store.save_pipeline(p.name, doc, str(path))
    return p.name


def _wait(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.time() + timeout
    while not what():
        if time.time() > deadline:
            raise AssertionError(f"{why} (not within {timeout:.0f} s)")
        time.sleep(0.2)


def test_500_waiting_approvals_leave_the_engine_free(db_url: str, tmp_path: Path) -> None:
    """With 500 approvals waiting, another pipeline runs to its end, the engine holds no thread
    per wait, and a decision, an abandon and a crash takeover still end their waits."""
    from conveyor.bootstrap import build
    from conveyor.engine.gate import decide
    from conveyor.settings import Settings

    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.05,
    )
    app = build(settings)
    store = app.store
    gated = _register(app, tmp_path, GATED, "gated.yaml")
    other = _register(app, tmp_path, OTHER, "other.yaml")
    eng = app.engine()
    waiting = [eng.start(gated) for _ in range(WAITING)]
    threads_before = threading.active_count()
    stop = threading.Event()
    loop = threading.Thread(target=eng.run, args=(stop,), daemon=True)
    loop.start()
    try:
        _wait(
            lambda: len(store.pending_approvals()) == WAITING,
            300,
            f"{WAITING} approvals did not all open",
        )
        ex = eng.start(other)
        _wait(
            lambda: store.execution(ex).status != "InProgress",
            120,
            f"pipeline '{other}' did not run while {WAITING} approvals waited",
        )
        assert store.execution(ex).status == "Succeeded"
        # the waits are rows, not threads: the engine runs at most its pool beside them
        assert threading.active_count() - threads_before < 40
        assert all(store.attempts_for(w)[0].status == "InProgress" for w in waiting[:20]), (
            "a waiting approval ended by itself"
        )

        decide(store, waiting[0], approve=True, by="alice", comment="ship it")
        store.add_request(waiting[1], "abandon", {}, actor="bob")
        _wait(
            lambda: (
                store.execution(waiting[0]).status == "Succeeded"
                and store.execution(waiting[1]).status == "Stopped"
            ),
            120,
            "a decision or an abandon did not end its wait",
        )
        assert store.attempts_for(waiting[0])[0].variables["ApprovedBy"] == "alice"
        assert store.attempts_for(waiting[1])[0].status == "Abandoned"
    finally:
        stop.set()
        loop.join(30)
        eng.shutdown(wait=True, timeout=30)

    # a new engine takes the waits over (the first one's lease expires) and they still resume
    store.unregister_engine(eng.worker)
    time.sleep(settings.lease_seconds + 0.5)
    eng2 = app.engine()
    stop2 = threading.Event()
    loop2 = threading.Thread(target=eng2.run, args=(stop2,), daemon=True)
    loop2.start()
    try:
        _wait(
            lambda: store.attempts_for(waiting[2])[0].worker == eng2.worker,
            120,
            "the new engine did not take the waiting approval over",
        )
        assert store.attempts_for(waiting[2])[0].status == "InProgress"
        decide(store, waiting[2], approve=False, by="carol", comment="not today")
        _wait(
            lambda: store.execution(waiting[2]).status == "Failed",
            120,
            "a decision after a takeover did not end the wait",
        )
        assert store.attempts_for(waiting[2])[0].reason == "Rejected"
    finally:
        stop2.set()
        loop2.join(30)
        eng2.shutdown(wait=True, timeout=30)
        store.close()
