"""The queries the store owns for the entry points and monitoring, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from conveyor.errors import Conflict
from conveyor.model.status import ActionStatus
from conveyor.monitoring.metrics import render_metrics
from conveyor.server.auth import Session, Users
from conveyor.store.db import Store

pytestmark = pytest.mark.integration


def test_users_tokens_and_sessions(db_url: str) -> None:
    """A user is found by name and token; a session is valid until closed or expired; a
    disabled user is found by neither; a second add without replace is a Conflict."""
    s = Store(db_url)
    users = Users(s)
    assert users.count() == 0
    token = users.add("ann", "approver", "ann@example.com")
    assert users.count() == 1
    with pytest.raises(Conflict, match="already exists"):
        users.add("ann", "viewer")
    found = users.by_token(token)
    assert found is not None and found[0].role == "approver"
    session = Session(user="ann", token_hash_prefix=found[1][:16], sid="abc", issued=time.time())
    users.open_session(session)
    assert users.session_user(session) == found[0]
    users.close_session(session)
    assert users.session_user(session) is None
    old = Session(user="ann", token_hash_prefix=found[1][:16], sid="old", issued=0.0)
    users.open_session(old)
    assert users.session_user(old) is None  # expired
    assert [u["name"] for u in users.list()] == ["ann"]
    assert set(users.list()[0]) == {"name", "role", "email", "created_at", "disabled"}
    users.disable("ann")
    assert users.by_token(token) is None
    s.close()


def test_metrics_and_dora_read_through_the_store(db_url: str) -> None:
    """The collector's counts and DORA's execution outcomes come from the store's queries."""
    s = Store(db_url)
    ex = s.create_execution("p", {}, variables={}, trigger={})
    att = s.start_attempt(ex, "S", "A", "shell", epoch=0, worker="w", deadline=None, log_path="")
    s.transition(att.id, ActionStatus.SUCCEEDED, reason="Succeeded")
    s.record_deployment(environment="prod", pipeline="p", execution_id=ex, digest="sha256:1")
    counts = s.counts()
    assert counts.executions == [("p", "standard", "InProgress", 1)]
    assert [a[:2] for a in counts.attempts] == [("shell", "Succeeded")]
    assert [d[:3] for d in counts.deployments] == [("prod", "deploy", 1)]
    assert s.execution_outcomes([ex, "nope"]) == {ex: ("InProgress", {})}
    text = render_metrics(s).decode()
    assert 'conveyor_executions{kind="standard",pipeline="p",status="InProgress"} 1.0' in text
    s.close()
