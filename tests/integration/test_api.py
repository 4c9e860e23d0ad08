"""The REST API against a real server (uvicorn), a real SQLite store, a real engine and git."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.live_server import (
    IMAGE_DIGEST,
    PNG,
    Env,
    release_pipeline,
    running,
    small_pipeline,
    wait_for,
)

pytestmark = pytest.mark.integration

PIPELINES = {
    "webapp": release_pipeline(),
    "strict": release_pipeline("strict", self_approval=False, mode="PARALLEL"),
    "slow": small_pipeline("slow", ["echo started", "sleep 60"]),
    "broken": small_pipeline("broken", ["echo about to fail", "exit 3"]),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running(tmp_path_factory.mktemp("api"), PIPELINES) as e:
        yield e


@pytest.fixture(scope="module")
def waiting(env: Env) -> str:
    """An execution of `webapp` waiting at its approval (shared by the read-only tests)."""
    ex = env.start("webapp")
    env.wait_approval(ex)
    return ex


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def counts(env: Env) -> tuple[int, int, int, int]:
    """Counts of audit rows, requests, executions and decided approvals (to see nothing changed)."""
    from sqlalchemy import func, select

    from conveyor.store import tables as t

    with env.store.tx() as c:
        return (
            c.execute(select(func.count()).select_from(t.audit)).scalar_one(),
            c.execute(select(func.count()).select_from(t.requests)).scalar_one(),
            c.execute(select(func.count()).select_from(t.executions)).scalar_one(),
            c.execute(
                select(func.count())
                .select_from(t.approvals)
                .where(t.approvals.c.status != "Pending")
            ).scalar_one(),
        )


def api_routes(env: Env) -> list[tuple[str, str]]:
    with env.client() as c:
        spec = c.get("/api/v1/openapi.json").json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def fill(path: str, ex: str) -> str:
    return (
        path.replace("{name}", "webapp")
        .replace("{ex_id}", ex)
        .replace("{stage}", "Build")
        .replace("{action}", "UnitTestsAndImage")
        .replace("{digest}", "sha256:00")
        .replace("{rel}", "x")
        .replace("{req_id}", "1")
    )


# ---- authentication and roles -------------------------------------------------------------------
def test_every_api_route_needs_a_token(env: Env, waiting: str) -> None:
    """Without a token every /api/v1 route answers 401 with a JSON error, and nothing changes."""
    before = counts(env)
    routes = api_routes(env)
    assert len(routes) >= 25
    with env.client() as c:
        for method, path in routes:
            r = c.request(method, fill(path, waiting), json={} if method == "POST" else None)
            msg = error(r, 401, "unauthorized")
            assert "Bearer" in msg, (method, path)
            assert r.headers["www-authenticate"] == "Bearer"
    assert counts(env) == before


def test_a_bad_token_is_401(env: Env) -> None:
    """An unknown token and a malformed Authorization header are both 401."""
    with env.client(token="cvy_not-a-real-token") as c:
        assert "not valid" in error(c.get("/api/v1/pipelines"), 401, "unauthorized")
    with httpx.Client(base_url=env.url, headers={"Authorization": "Basic abc"}) as c:
        assert "Bearer" in error(c.get("/api/v1/pipelines"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("viewer", "POST", "/api/v1/pipelines/webapp/executions", {}),
        ("viewer", "POST", "/api/v1/executions/{ex}/stop", {}),
        ("viewer", "POST", "/api/v1/executions/{ex}/abandon", {}),
        ("viewer", "POST", "/api/v1/executions/{ex}/retry", {}),
        (
            "viewer",
            "POST",
            "/api/v1/pipelines/webapp/transitions/Build/disable",
            {"reason": "freeze"},
        ),
        ("viewer", "POST", "/api/v1/pipelines/webapp/transitions/Build/enable", {}),
        ("viewer", "POST", "/api/v1/approvals/{ex}/approve", {"digest": IMAGE_DIGEST}),
        ("operator", "POST", "/api/v1/approvals/{ex}/approve", {"digest": IMAGE_DIGEST}),
        ("operator", "POST", "/api/v1/approvals/{ex}/reject", {"digest": IMAGE_DIGEST}),
        ("approver", "POST", "/api/v1/users", {"name": "eve", "role": "admin"}),
        ("operator", "GET", "/api/v1/users", None),
        ("approver", "GET", "/api/v1/audit", None),
    ],
)
def test_wrong_role_is_403_and_changes_nothing(
    env: Env, waiting: str, role: str, method: str, path: str, body: Any
) -> None:
    """A known user without the needed role gets 403 naming the role, and nothing changes."""
    before = counts(env)
    with env.client(role) as c:
        msg = error(c.request(method, path.replace("{ex}", waiting), json=body), 403, "forbidden")
    assert f"is {role}" in msg and "role" in msg
    assert counts(env) == before
    assert env.store.approval_records(waiting)[-1].status == "Pending"


def test_me_names_the_user(env: Env) -> None:
    """/me answers who the token belongs to and their role."""
    with env.client("approver") as c:
        body = c.get("/api/v1/me").json()
    assert (
        body["name"] == "approver"
        and body["role"] == "approver"
        and body["email"] == "approver@example.com"
    )


def test_openapi_is_served(env: Env) -> None:
    """The OpenAPI document is at /api/v1/openapi.json and lists the approval routes."""
    with env.client() as c:
        spec = c.get("/api/v1/openapi.json").json()
    assert "/api/v1/approvals/{ex_id}/approve" in spec["paths"]
    assert spec["info"]["title"] == "Conveyor"


# ---- pipelines ----------------------------------------------------------------------------------
def test_pipelines_list_and_get(env: Env, waiting: str) -> None:
    """Pipelines list with their latest execution; one shows stages, actions and transitions."""
    with env.client("viewer") as c:
        items = {p["name"]: p for p in c.get("/api/v1/pipelines").json()["items"]}
        assert set(PIPELINES) <= set(items)
        assert items["webapp"]["stages"][0] == "Source"
        p = c.get("/api/v1/pipelines/webapp").json()
        error(c.get("/api/v1/pipelines/nope"), 404, "not_found")
    assert [s["name"] for s in p["stages"]] == [
        "Source",
        "Build",
        "RunSeleniumTest",
        "ProdApproval",
        "DeployProd",
    ]
    assert p["stages"][3]["actions"][0]["type"] == "approval"
    assert p["stages"][1]["transition"]["enabled"] is True
    assert p["execution_mode"] == "SUPERSEDED"


# ---- executions ---------------------------------------------------------------------------------
def test_execution_detail_has_stages_and_actions(env: Env, waiting: str) -> None:
    """An execution shows each action's status, reason, times, duration and output variables."""
    with env.client("viewer") as c:
        ex = c.get(f"/api/v1/executions/{waiting}").json()
        error(c.get("/api/v1/executions/ffffffffffff"), 404, "not_found")
    assert ex["status"] == "InProgress"
    stages = {s["name"]: s for s in ex["stages"]}
    build = stages["Build"]["actions"][0]
    assert build["status"] == "Succeeded" and build["reason"] == "Succeeded"
    assert build["variables"]["ImageDigest"] == IMAGE_DIGEST
    assert build["duration_seconds"] is not None and build["ended_at"] >= build["started_at"]
    assert build["reports"][0]["name"] == "unit" and build["reports"][0]["passed"] == 3
    assert stages["ProdApproval"]["status"] == "InProgress"
    assert (
        stages["DeployProd"]["status"] is None
        and stages["DeployProd"]["actions"][0]["status"] is None
    )
    assert ex["source"]["commit"] == env.shas[-1]


def test_execution_list_filters_and_pages(env: Env, waiting: str) -> None:
    """The list filters by pipeline and status, pages, and answers bad filters with 422."""
    with env.client("viewer") as c:
        r = c.get(
            "/api/v1/executions", params={"pipeline": "webapp", "status": "InProgress"}
        ).json()
        assert waiting in [e["id"] for e in r["items"]]
        assert all(e["status"] == "InProgress" and e["pipeline"] == "webapp" for e in r["items"])
        everything = c.get("/api/v1/executions").json()
        page = c.get("/api/v1/executions", params={"limit": 1, "offset": 0}).json()
        assert page["total"] == everything["total"] and len(page["items"]) == 1
        assert page["items"][0]["id"] == everything["items"][0]["id"]
        none = c.get(
            "/api/v1/executions", params={"status": "Succeeded", "pipeline": "nope"}
        ).json()
        assert none == {"items": [], "total": 0, "limit": 50, "offset": 0}
        assert "status" in error(
            c.get("/api/v1/executions", params={"status": "Done"}), 422, "invalid"
        )
        error(c.get("/api/v1/executions", params={"limit": 0}), 422, "invalid")


def test_history_lists_transitions(env: Env, waiting: str) -> None:
    """The history of an execution records each action's moves with who and why."""
    with env.client("viewer") as c:
        items = c.get(f"/api/v1/executions/{waiting}/history").json()["items"]
    moves = [(h["attempt_id"].split("/")[2], h["to_status"]) for h in items]
    assert ("App", "InProgress") in moves and ("App", "Succeeded") in moves
    assert all(h["actor"] for h in items)


def test_start_needs_operator_and_validates_variables(env: Env) -> None:
    """Starting takes operator; an unknown variable is a 400 and starts nothing."""
    before = counts(env)
    with env.client("operator") as c:
        msg = error(
            c.post("/api/v1/pipelines/slow/executions", json={"variables": {"NOPE": "1"}}),
            400,
            "bad_request",
        )
        assert "NOPE" in msg
        error(c.post("/api/v1/pipelines/nope/executions"), 404, "not_found")
        error(c.post("/api/v1/pipelines/slow/executions", json={"variables": "x"}), 422, "invalid")
    assert counts(env) == before


def test_stop_abandon_are_requests_the_engine_acts_on(env: Env) -> None:
    """Abandon writes a request row (202) the engine acts on; a second stop is 409."""
    ex = env.start("slow")
    wait_for(
        "the slow action to run",
        lambda: any(a.status == "InProgress" for a in env.store.attempts_for(ex)),
    )
    with env.client("operator") as c:
        r = c.post(f"/api/v1/executions/{ex}/abandon", json={"reason": "wrong branch"})
        assert r.status_code == 202, r.text
        req = r.json()["request_id"]
        assert env.store.get_request(req).kind == "abandon"
        assert env.wait_status(ex, "Stopped") == "Stopped"
        handled = c.get(f"/api/v1/requests/{req}").json()
        assert handled["outcome"].startswith("stopping") and handled["actor"] == "operator"
        assert "nothing to stop" in error(c.post(f"/api/v1/executions/{ex}/stop"), 409, "conflict")
        error(c.post("/api/v1/executions/ffffffffffff/stop"), 404, "not_found")
        error(c.get("/api/v1/requests/999999"), 404, "not_found")
    work = [a for a in env.store.attempts_for(ex) if a.action == "Work"][0]
    assert work.status == "Abandoned"


def test_retry_of_an_execution_that_did_not_fail_is_a_conflict(env: Env, waiting: str) -> None:
    """Retrying a running execution is a 409 with the CLI's message, and writes no request."""
    with env.client("operator") as c:
        msg = error(c.post(f"/api/v1/executions/{waiting}/retry", json={}), 409, "conflict")
    assert "only a Failed or Stopped execution can be retried" in msg
    assert not env.store.pending_requests(waiting)


def test_retry_of_a_failed_execution(env: Env) -> None:
    """Retry is 409 while running; on a Failed execution the engine runs the stage again."""
    ex = env.start("broken")
    env.wait_status(ex, "Failed")
    with env.client("operator") as c:
        r = c.post(f"/api/v1/executions/{ex}/retry", json={"stage": "Run"})
        assert r.status_code == 202, r.text
    wait_for("a second attempt", lambda: any(a.attempt == 2 for a in env.store.attempts_for(ex)))
    env.wait_status(ex, "Failed")
    slow = env.start("slow")
    with env.client("operator") as c:
        assert "only a Failed or Stopped" in error(
            c.post(f"/api/v1/executions/{slow}/retry"), 409, "conflict"
        )
        assert c.post(f"/api/v1/executions/{slow}/stop").status_code == 202


# ---- logs, artifacts, reports -------------------------------------------------------------------
def test_logs_as_text_and_as_server_sent_events(env: Env, waiting: str) -> None:
    """A finished action's log is served as text and as SSE ending with an `end` event."""
    with env.client("viewer") as c:
        text = c.get(f"/api/v1/executions/{waiting}/actions/Build/UnitTestsAndImage/log").text
        assert "building" in text and "::set-output ImageDigest" in text
        with c.stream(
            "GET", f"/api/v1/executions/{waiting}/actions/Build/UnitTestsAndImage/log/stream"
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            body = r.read().decode()
        assert "data: building" in body and body.rstrip().endswith("event: end\ndata: Succeeded")
        error(c.get(f"/api/v1/executions/{waiting}/actions/Build/Nope/log"), 404, "not_found")
        error(
            c.get(
                f"/api/v1/executions/{waiting}/actions/Build/UnitTestsAndImage/log",
                params={"attempt": 9},
            ),
            404,
            "not_found",
        )


def test_live_log_follows_a_running_action(env: Env) -> None:
    """The SSE stream of a running action delivers its lines as they come and ends when it ends."""
    ex = env.start("slow")
    wait_for(
        "the slow action to run",
        lambda: any(a.status == "InProgress" for a in env.store.attempts_for(ex)),
    )
    got: list[str] = []
    with (
        env.client("operator") as c,
        c.stream("GET", f"/api/v1/executions/{ex}/actions/Run/Work/log/stream") as r,
    ):
        for line in r.iter_lines():
            got.append(line)
            if line == "data: started":
                assert c.post(f"/api/v1/executions/{ex}/abandon").status_code == 202
            if line.startswith("event: end"):
                break
    assert "data: started" in got and got[-1] == "event: end"


def test_artifacts_and_reports_are_listed_and_served(env: Env, waiting: str) -> None:
    """Artifacts list their files; a PNG is image/png, the HTML report text/html, sandboxed."""
    with env.client("viewer") as c:
        listing = c.get(f"/api/v1/executions/{waiting}/artifacts").json()
        e2e = [a for a in listing["artifacts"] if a["name"] == "e2e_report"][0]
        paths = {f["path"]: f["url"] for f in e2e["files"]}
        assert set(paths) == {"report.html", "screenshots/home.png"}
        png = c.get(paths["screenshots/home.png"])
        assert (
            png.status_code == 200
            and png.headers["content-type"] == "image/png"
            and png.content == PNG
        )
        html = c.get(paths["report.html"])
        assert html.headers["content-type"].startswith("text/html") and "e2e report" in html.text
        assert html.headers["content-security-policy"].startswith("sandbox")
        assert (
            c.get(f"/api/v1/artifacts/{e2e['digest']}").json()["files"][0]["path"] == "report.html"
        )
        reports = c.get(f"/api/v1/executions/{waiting}/reports").json()["items"]
        by_name = {r["name"]: r for r in reports}
        assert by_name["unit"]["passed"] == 3 and by_name["e2e-selenium"]["failed"] == 1
        xml = c.get(by_name["unit"]["file_urls"][0])
        assert xml.status_code == 200 and xml.headers["content-type"] in (
            "application/xml",
            "text/xml",
        )
        assert "TaskStore" in xml.text
        error(c.get(f"/api/v1/artifacts/{e2e['digest']}/files/nope.txt"), 404, "not_found")
        error(c.get("/api/v1/artifacts/sha256:0000/files/x"), 404, "not_found")


@pytest.mark.parametrize(
    "rel",
    [
        "../../../conveyor.db",
        "..%2F..%2F..%2Fconveyor.db",
        "%2Fetc%2Fpasswd",
        "in/app_src/../../../../../conveyor.db",
        "in/app_src/ci/../../../x",
    ],
)
def test_path_traversal_is_refused(env: Env, waiting: str, rel: str) -> None:
    """Attempt and artifact file routes refuse paths that leave their root (404, no bytes)."""
    with env.client("viewer") as c:
        r = c.get(f"/api/v1/executions/{waiting}/actions/Build/UnitTestsAndImage/files/{rel}")
        assert r.status_code == 404, r.text
        assert "SQLite" not in r.text and "root:" not in r.text
        digest = env.store.attempts_for(waiting)[0].artifacts["app_src"]
        assert c.get(f"/api/v1/artifacts/{digest}/files/{rel}").status_code == 404


def test_only_report_files_of_an_attempt_are_served(env: Env, waiting: str) -> None:
    """A file of the attempt's working directory that no report names (its sources, whatever
    the build wrote) is a 404 for a viewer; the report's own file is served."""
    row = [a for a in env.store.attempts_for(waiting) if a.action == "UnitTestsAndImage"][-1]
    named = {str(f) for r in row.reports for f in r.get("files") or []}
    work = env.settings.state_dir / "work" / waiting / f"Build.UnitTestsAndImage.{row.attempt}"
    others = [
        p.relative_to(work).as_posix()
        for p in work.rglob("*")
        if p.is_file() and p.relative_to(work).as_posix() not in named
    ]
    assert named and others
    base = f"/api/v1/executions/{waiting}/actions/Build/UnitTestsAndImage/files/"
    with env.client("viewer") as c:
        assert c.get(base + sorted(named)[0]).status_code == 200
        for rel in others[:5]:
            error(c.get(base + rel), 404, "not_found")


# ---- environments -------------------------------------------------------------------------------
def test_environments_and_their_history(env: Env) -> None:
    """Environments show what runs now; the history lists deployments, newest first."""
    env.store.record_deployment(
        environment="test",
        pipeline="webapp",
        execution_id="e1",
        image="r/app@x",
        digest="sha256:11",
        commit=env.shas[0],
        actor="engine",
        at=1000.0,
    )
    env.store.record_deployment(
        environment="test",
        pipeline="webapp",
        execution_id="e2",
        image="r/app@y",
        digest="sha256:22",
        commit=env.shas[1],
        actor="engine",
        at=2000.0,
    )
    with env.client("viewer") as c:
        envs = {e["name"]: e for e in c.get("/api/v1/environments").json()["items"]}
        assert envs["test"]["current"]["digest"] == "sha256:22"
        assert (
            envs["test"]["current"]["execution_id"] == "e2"
            and envs["test"]["current"]["at"] == 2000.0
        )
        hist = c.get("/api/v1/environments/test/deployments").json()["items"]
        assert [d["digest"] for d in hist][:2] == ["sha256:22", "sha256:11"]
        assert "environments" in error(
            c.get("/api/v1/environments/staging/deployments"), 404, "not_found"
        )


# ---- approvals ----------------------------------------------------------------------------------
def test_pending_approvals_and_evidence(env: Env, waiting: str) -> None:
    """The evidence: unit/e2e totals, failed case, screenshot, HTML report, digest, commits."""
    env.store.record_deployment(
        environment="prod",
        pipeline="webapp",
        execution_id="old",
        image="r/app@old",
        digest="sha256:old",
        commit=env.shas[0],
        actor="engine",
    )
    with env.client("viewer") as c:
        pending = c.get("/api/v1/approvals").json()["items"]
        assert waiting in [p["execution_id"] for p in pending]
        ev = c.get(f"/api/v1/approvals/{waiting}").json()
        error(c.get("/api/v1/approvals/ffffffffffff"), 404, "not_found")
    assert ev["approval"]["status"] == "Pending" and ev["digest"] == IMAGE_DIGEST
    assert ev["tests"]["unit"] == {"total": 3, "passed": 3, "failed": 0, "skipped": 0, "errors": 0}
    assert ev["tests"]["e2e"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1, "errors": 0}
    assert ev["failures"] == [
        {
            "kind": "e2e",
            "report": "e2e-selenium",
            "action": "SeleniumE2E",
            "suite": "webapp e2e",
            "name": "test_tasks.test_add_task",
            "message": "expected 4 rows, saw 3",
        }
    ]
    assert [s["name"] for s in ev["screenshots"]] == ["e2e_report: screenshots/home.png"]
    assert [h["name"] for h in ev["html_reports"]] == ["e2e_report: report.html"]
    assert ev["target_environment"] == "prod"
    commits = ev["commits"]
    assert commits["from"] == env.shas[0] and commits["to"] == env.shas[-1]
    assert [x["commit"] for x in commits["list"]] == [env.shas[2], env.shas[1]]
    assert commits["list"][0]["subject"] == "change number 2"


def test_approve_is_bound_to_the_digest(env: Env) -> None:
    """Approve needs the digest shown (422 without, 409 on another); then the pipeline goes on."""
    ex = env.start("webapp")
    env.wait_approval(ex)
    before = counts(env)
    with env.client("approver") as c:
        assert "digest" in error(
            c.post(f"/api/v1/approvals/{ex}/approve", json={"comment": "ok"}), 422, "invalid"
        )
        msg = error(
            c.post(f"/api/v1/approvals/{ex}/approve", json={"digest": "sha256:" + "cd" * 32}),
            409,
            "conflict",
        )
        assert IMAGE_DIGEST in msg
        error(
            c.post(f"/api/v1/approvals/{ex}/approve", json={"digest": IMAGE_DIGEST, "extra": 1}),
            422,
            "invalid",
        )
        assert counts(env) == before
        r = c.post(
            f"/api/v1/approvals/{ex}/approve",
            json={"digest": IMAGE_DIGEST, "comment": "e2e looks fine"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Approved" and r.json()["decided_by"] == "approver"
    assert env.wait_status(ex, "Succeeded") == "Succeeded"
    gate = [a for a in env.store.attempts_for(ex) if a.type == "approval"][0]
    assert gate.variables == {
        "ApprovedBy": "approver",
        "Comment": "e2e looks fine",
        "Decision": "Approved",
    }
    last = env.store.audit_log(5)
    assert any(
        a.action == "approval.approve" and a.target == ex and a.actor == "approver" for a in last
    )


def test_two_approvers_at_once_exactly_one_wins(env: Env) -> None:
    """Two approvers deciding at once: one 200, the other 409, one decision recorded."""
    ex = env.start("strict")
    env.wait_approval(ex)
    barrier = threading.Barrier(2)
    results: dict[str, httpx.Response] = {}

    def decide(role: str, verb: str) -> None:
        with env.client(role) as c:
            barrier.wait()
            results[role] = c.post(
                f"/api/v1/approvals/{ex}/{verb}", json={"digest": IMAGE_DIGEST, "comment": role}
            )

    threads = [
        threading.Thread(target=decide, args=("approver", "approve")),
        threading.Thread(target=decide, args=("approver2", "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {k: v.text for k, v in results.items()}
    winner = next(k for k, v in results.items() if v.status_code == 200)
    loser = next(v for v in results.values() if v.status_code == 409)
    assert winner in error(loser, 409, "conflict")  # the loser is told who decided first
    row = env.store.approval_records(ex)[-1]
    assert row.decided_by == winner and row.comment == winner
    decisions = [
        a for a in env.store.audit_log(50) if a.target == ex and a.action.startswith("approval.")
    ]
    assert len(decisions) == 1
    env.wait_status(ex, "Succeeded" if winner == "approver" else "Failed")


def test_self_approval_false_stops_the_author(env: Env) -> None:
    """selfApproval: false: the commit's author (by email) gets 403 on approve; others may."""
    ex = env.start("strict", actor="operator")
    env.wait_approval(ex)
    with env.client("author") as c:
        msg = error(
            c.post(f"/api/v1/approvals/{ex}/approve", json={"digest": IMAGE_DIGEST}),
            403,
            "forbidden",
        )
        assert "selfApproval" in msg
    assert env.store.approval_records(ex)[-1].status == "Pending"
    with env.client("approver") as c:
        assert (
            c.post(f"/api/v1/approvals/{ex}/approve", json={"digest": IMAGE_DIGEST}).status_code
            == 200
        )
    env.wait_status(ex, "Succeeded")


def test_reject_fails_the_execution(env: Env) -> None:
    """Reject makes the approval action fail with reason Rejected; a later approve is 409."""
    ex = env.start("strict")
    env.wait_approval(ex)
    with env.client("author") as c:
        r = c.post(
            f"/api/v1/approvals/{ex}/reject", json={"digest": IMAGE_DIGEST, "comment": "not yet"}
        )
        assert r.status_code == 200 and r.json()["status"] == "Rejected"
    env.wait_status(ex, "Failed")
    gate = [a for a in env.store.attempts_for(ex) if a.type == "approval"][0]
    assert gate.reason == "Rejected" and "not yet" in gate.message
    with env.client("approver") as c:
        assert "Rejected" in error(
            c.post(f"/api/v1/approvals/{ex}/approve", json={"digest": IMAGE_DIGEST}),
            409,
            "conflict",
        )


# ---- transitions --------------------------------------------------------------------------------
def test_disabled_transition_holds_executions_until_enabled(env: Env) -> None:
    """Disable needs a reason and a real, non-first stage; disable/enable are audited."""
    with env.client("operator") as c:
        assert "reason" in error(
            c.post("/api/v1/pipelines/slow/transitions/After/disable", json={}), 422, "invalid"
        )
        error(
            c.post("/api/v1/pipelines/slow/transitions/Nope/disable", json={"reason": "x"}),
            404,
            "not_found",
        )
        assert "first stage" in error(
            c.post("/api/v1/pipelines/broken/transitions/Run/disable", json={"reason": "x"}),
            400,
            "bad_request",
        )
        r = c.post(
            "/api/v1/pipelines/broken/transitions/After/disable", json={"reason": "release freeze"}
        )
        assert (
            r.status_code == 200
            and r.json()["enabled"] is False
            and r.json()["reason"] == "release freeze"
        )
        p = c.get("/api/v1/pipelines/broken").json()
        assert p["stages"][1]["transition"] == {
            "enabled": False,
            "reason": "release freeze",
            "actor": "operator",
            "at": p["stages"][1]["transition"]["at"],
        }
        r = c.post("/api/v1/pipelines/broken/transitions/After/enable")
        assert r.status_code == 200 and r.json()["enabled"] is True
    actions = [a.action for a in env.store.audit_log(10) if a.target == "broken/After"]
    assert actions[:2] == ["transition.enable", "transition.disable"]


def test_disabled_transition_stops_the_engine_before_the_stage(env: Env, tmp_path: Path) -> None:
    """An execution waits at a disabled transition with its reason; enabling lets it finish."""
    env.store.save_pipeline("gated", small_pipeline("gated", ["echo one"]), None)
    with env.client("operator") as c:
        c.post(
            "/api/v1/pipelines/gated/transitions/After/disable",
            json={"reason": "freeze until Monday"},
        )
        ex = env.start("gated")
        wait_for(
            "the execution to wait at the transition",
            lambda: "freeze until Monday" in (env.store.execution(ex).waiting or ""),
        )
        assert env.status(ex) == "InProgress"
        c.post("/api/v1/pipelines/gated/transitions/After/enable")
    env.wait_status(ex, "Succeeded")


# ---- users and audit ----------------------------------------------------------------------------
def test_admin_manages_users_and_reads_the_audit_log(env: Env) -> None:
    """An admin creates a user (token shown once, works), lists users, reads the audit."""
    with env.client("admin") as c:
        r = c.post(
            "/api/v1/users",
            json={"name": "carol", "role": "operator", "email": "carol@example.com"},
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert token.startswith("cvy_")
        error(c.post("/api/v1/users", json={"name": "carol", "role": "operator"}), 409, "conflict")
        error(c.post("/api/v1/users", json={"name": "dave", "role": "root"}), 422, "invalid")
        users = c.get("/api/v1/users").json()["items"]
        assert {"carol", "admin", "viewer"} <= {u["name"] for u in users}
        assert all("token" not in str(k) for u in users for k in u)
        audit = c.get("/api/v1/audit").json()["items"]
    assert (
        audit[0]["action"] == "user.create"
        and audit[0]["target"] == "carol"
        and audit[0]["actor"] == "admin"
    )
    assert {"actor", "action", "target", "detail", "at"} <= set(audit[0])
    with env.client(token=token) as c:
        assert c.get("/api/v1/me").json() == {
            "name": "carol",
            "role": "operator",
            "email": "carol@example.com",
            "roles": ["viewer", "operator", "approver", "admin"],
        }


def test_unknown_routes_and_methods_answer_json(env: Env) -> None:
    """Unknown API routes are a JSON 404; a wrong method is a JSON 405."""
    with env.client("viewer") as c:
        error(c.get("/api/v1/nothing-here"), 404, "not_found")
        error(c.delete("/api/v1/pipelines"), 405, "method_not_allowed")


def test_metrics_dora_and_the_delivery_page(env: Env) -> None:
    """/metrics speaks Prometheus; DORA is on the API (token needed) and on the Delivery page."""
    env.store.record_deployment(
        environment="prod",
        pipeline="webapp",
        execution_id="p1",
        image="r/app@z",
        digest="sha256:33",
        commit=env.shas[0],
        actor="engine",
    )
    with env.client() as c:
        m = c.get("/metrics")
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        assert "conveyor_executions" in m.text and "conveyor_deployments" in m.text
        error(c.get("/api/v1/metrics/dora"), 401, "unauthorized")
    with env.client("viewer") as c:
        d = c.get("/api/v1/metrics/dora", params={"environment": "prod"}).json()
        assert d["deploymentFrequency"]["deployments"] >= 1
        assert {"leadTimeForChanges", "changeFailureRate", "timeToRestore"} <= set(d)


# ---- hostile input ------------------------------------------------------------------------------
HOSTILE = [
    str(2**70),
    str(2**63),
    "-1",
    "0",
    "x" * 5000,
    "sha256:" + "f" * 5000,
    "\x00",
    "a\x00b",
    "../../../etc/passwd",
    "..",
    "ünïcødé ✓ 名前",
    "\u202e\ufeff",
]
BODIES = {
    "/api/v1/pipelines/{name}/transitions/{stage}/disable": {"reason": "crawl"},
    "/api/v1/approvals/{ex_id}/approve": {"comment": "crawl", "digest": IMAGE_DIGEST},
    "/api/v1/approvals/{ex_id}/reject": {"comment": "crawl", "digest": IMAGE_DIGEST},
}
ABSOLUTE = re.compile(r"(?<![\w.])/(tmp|work|root|home|usr|var|etc|proc)/")


def test_hostile_values_in_every_parameter_never_give_a_500_or_a_path(
    env: Env, waiting: str
) -> None:
    """Crawling the OpenAPI with hostile values (huge ints, negatives, 5,000 characters, NUL,
    ../, unicode) in every path and query parameter gives 4xx JSON errors, never a 500, and no
    body names an absolute path."""
    assert crawl_api(env, waiting) > 300


def test_hostile_values_on_postgresql(db_url: str, tmp_path: Path) -> None:
    """The same crawl against a server whose store is PostgreSQL (NUL, huge ints, long text
    are errors there that SQLite lets through): no 500, no path."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the module's server already crawls SQLite")
    with running(tmp_path, {"webapp": release_pipeline()}, database_url=db_url) as e:
        ex = e.start("webapp")
        e.wait_approval(ex)
        assert crawl_api(e, ex) > 300


def crawl_api(env: Env, waiting: str) -> int:
    """Send every hostile value in every parameter of every route; return the request count."""
    with env.client() as c:
        spec = c.get("/api/v1/openapi.json").json()
    state = str(env.settings.state_dir)
    tried = 0
    with env.client("admin") as c:
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
                for param in params:
                    for value in HOSTILE:
                        url, query = path, {}
                        if param["in"] == "path":
                            url = url.replace("{" + param["name"] + "}", quote(value, safe=""))
                            url = url.replace("{" + param["name"] + ":path}", quote(value, safe=""))
                        else:
                            query[param["name"]] = value
                        r = c.request(
                            method.upper(),
                            fill(url, waiting).replace("{rel:path}", "x"),
                            params=query,
                            json=BODIES.get(path, {}) if method == "post" else None,
                        )
                        tried += 1
                        where = (method, path, param["name"], value[:20], r.status_code, r.text)
                        assert r.status_code < 500, where
                        assert state not in r.text and not ABSOLUTE.search(r.text), where
                        if r.status_code >= 400:
                            assert set(r.json()) == {"error"}, where
    return tried


def test_an_unexpected_error_is_a_clean_500_on_a_connection_that_stays_open(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that breaks answers a JSON 500 without the exception's text or paths, and the
    same keep-alive connection serves the next request."""
    secret_path = str(env.settings.state_dir / "conveyor.db")

    def broken() -> Any:
        raise OSError(f"[Errno 5] Input/output error: '{secret_path}'")

    monkeypatch.setattr(env.store, "pipeline_records", broken)
    host, port = env.url.removeprefix("http://").split(":")
    head = "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        f = sock.makefile("rb")
        answers = []
        for path in ("/api/v1/pipelines", "/api/v1/me"):
            sock.sendall(head.format(path=path, host=host, token=env.tokens["viewer"]).encode())
            status = f.readline().decode()
            headers = {}
            while line := f.readline().decode().strip():
                k, _, v = line.partition(":")
                headers[k.lower()] = v.strip()
            body = f.read(int(headers.get("content-length", 0))).decode()
            answers.append((status or "connection closed", headers, body))
    (status, headers, body), (status2, _, body2) = answers
    assert " 500 " in status and headers.get("connection") != "close"
    error = json.loads(body)["error"]
    assert error["code"] == "internal" and "reference" in error["message"]
    assert secret_path not in body and "OSError" not in body and "Errno" not in body
    assert " 200 " in status2, status2
    assert json.loads(body2)["name"] == "viewer"


# ---- sessions -----------------------------------------------------------------------------------
def sign_in(env: Env, role: str) -> httpx.Client:
    """A client signed in on the dashboard's form (session cookie, no bearer token)."""
    c = httpx.Client(base_url=env.url, timeout=30)
    c.get("/login")
    r = c.post(
        "/login",
        data={"token": env.tokens[role], "csrf": c.cookies["conveyor_login_csrf"], "next": "/"},
    )
    assert r.status_code == 303, r.text
    return c


def test_a_session_cookie_saved_before_logout_is_refused_after(env: Env) -> None:
    """Logout revokes the session in the store: a copy of the cookie taken before is refused
    afterwards by the pages and the API; other sessions of the same user stay signed in."""
    c = sign_in(env, "viewer")
    other = sign_in(env, "viewer")
    saved = c.cookies["conveyor_session"]
    assert c.get("/api/v1/me").json()["name"] == "viewer"
    page = c.get("/")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    r = c.post("/logout", data={"csrf": csrf.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    c.close()
    with httpx.Client(base_url=env.url, timeout=30, cookies={"conveyor_session": saved}) as thief:
        error(thief.get("/api/v1/me"), 401, "unauthorized")
        r = thief.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert other.get("/api/v1/me").json()["name"] == "viewer"
    other.close()
    assert any(a.action == "session.end" for a in env.store.audit_log(20))


# ---- /metrics access ----------------------------------------------------------------------------
def test_metrics_are_open_on_loopback_without_a_metrics_token(env: Env) -> None:
    """Bound to loopback with no metrics token set, /metrics answers without credentials."""
    assert env.settings.server_host == "127.0.0.1" and env.settings.metrics_token is None
    with env.client() as c:
        assert c.get("/metrics").status_code == 200


@pytest.mark.parametrize("metrics_token", ["m-" + "s" * 30, None])
def test_metrics_need_a_token_when_the_server_is_bound_elsewhere(
    tmp_path: Path, metrics_token: str | None
) -> None:
    """A server bound beyond loopback (0.0.0.0) serves /metrics only with the metrics token or
    a user's API token; without one it is a 401 saying what to send."""
    pipelines = {"slow": small_pipeline("slow", ["true"])}
    with running(tmp_path, pipelines, server_host="0.0.0.0", metrics_token=metrics_token) as e:
        with e.client() as c:
            r = c.get("/metrics")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert "CONVEYOR_METRICS_TOKEN" in r.text and "conveyor_" not in r.text
            bad = c.get("/metrics", headers={"Authorization": "Bearer cvy_wrong"})
            assert bad.status_code == 401
            if metrics_token:
                ok = c.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
                assert ok.status_code == 200 and "conveyor_executions" in ok.text
        with e.client("viewer") as c:
            assert c.get("/metrics").status_code == 200


def test_hostile_values_in_the_dashboard_pages_never_give_a_500_or_a_path(
    env: Env, waiting: str
) -> None:
    """The same hostile values in every path and query parameter of the dashboard's GET pages
    give a 4xx page (or a redirect), never a 500, and no page names an absolute path."""
    from fastapi.routing import APIRoute

    from conveyor.server.pages import router

    state = str(env.settings.state_dir)
    tried = 0
    c = sign_in(env, "admin")
    try:
        for route in router.routes:
            if not isinstance(route, APIRoute) or "GET" not in route.methods:
                continue
            dep = route.dependant
            for param in [*dep.path_params, *dep.query_params]:
                for value in HOSTILE:
                    url, query = route.path, {}
                    if param in dep.path_params:
                        url = url.replace("{" + param.name + "}", quote(value, safe=""))
                    else:
                        query[param.name] = value
                    r = c.get(
                        fill(url, waiting).replace("{pipeline}", "webapp"),
                        params=query,
                        follow_redirects=False,
                    )
                    tried += 1
                    where = (route.path, param.name, value[:20], r.status_code, r.text[:300])
                    assert r.status_code < 500, where
                    assert state not in r.text and not ABSOLUTE.search(r.text), where
    finally:
        c.close()
    assert tried > 100


def test_an_environment_url_from_data_is_a_link_only_when_http(env: Env) -> None:
    """On the environments page a deployment's URL is a link only when it is http(s); a
    `javascript:` URL is shown as text."""
    for name, url in (
        ("qa-js", "javascript:alert(document.cookie)"),
        ("qa-ok", "https://qa.example/"),
    ):
        env.store.record_deployment(
            environment=name,
            pipeline="webapp",
            execution_id="e-" + name,
            image="r/app@x",
            digest="sha256:" + "cd" * 32,
            commit=env.shas[0],
            actor="engine",
            url=url,
        )
    c = sign_in(env, "viewer")
    try:
        page = c.get("/environments").text
    finally:
        c.close()
    assert 'href="javascript:' not in page
    assert "javascript:alert(document.cookie)" in page
    assert 'href="https://qa.example/"' in page
