"""The REST API under /api/v1 (OpenAPI at /api/v1/openapi.json).

Authentication: `Authorization: Bearer <token>`; GET requests also accept the dashboard's
session cookie (the log page follows logs with it). Every change needs a bearer token and a
role: operator (start, stop, abandon, retry, transitions), approver (approve, reject),
admin (users, audit). Changes are requests the engine acts on (rows), never a status
written here; each is appended to the audit log. Errors: `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.errors import AuthError, NotFound
from conveyor.model.status import ActionStatus, ExecutionStatus
from conveyor.server.auth import bearer_token
from conveyor.server.context import Context, ctx_of
from conveyor.service import commands, queries
from conveyor.service import evidence as ev
from conveyor.service.users import ROLES, User, require

if TYPE_CHECKING:
    from conveyor.store.records import AttemptRecord

router = APIRouter(prefix="/api/v1")
SESSION_COOKIE = "conveyor_session"
MAX_INT = 2**31 - 1  # ids, attempts and offsets fit a 32-bit column; larger is a 422
MAX_PATH = 1024  # a longer file path inside an attempt or artifact is refused (404)
Status = ExecutionStatus


def authenticate(request: Request, *, allow_cookie: bool) -> User:
    """The user behind a request: a bearer token, or (for reads) the session cookie."""
    ctx = ctx_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if token:
        found = ctx.users.by_token(token)
        if found is None:
            raise AuthError(
                "the API token is not valid (unknown, replaced, or its user is disabled)"
            )
        return found[0]
    if allow_cookie:
        s = ctx.signer.read_session(request.cookies.get(SESSION_COOKIE))
        if s is not None:
            user = ctx.users.session_user(s)
            if user is not None:
                return user
    raise AuthError(
        "authentication required: send `Authorization: Bearer <token>` "
        "(an admin makes tokens with `conveyor user add NAME --role ROLE`)"
    )


def reader(request: Request) -> User:
    return authenticate(request, allow_cookie=True)


def writer(request: Request) -> User:
    return authenticate(request, allow_cookie=False)


Reader = Annotated[User, Depends(reader)]
Writer = Annotated[User, Depends(writer)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Body):
    variables: dict[str, str] = {}


class StopRequest(_Body):
    reason: str = Field(default="", max_length=2000)


class RetryRequest(_Body):
    stage: str | None = None
    failed_only: bool = False


class DecisionRequest(_Body):
    comment: str = Field(default="", max_length=4000)
    digest: str | None = Field(
        default=None, description="the image digest you reviewed (required when bound)"
    )


class DisableRequest(_Body):
    reason: str = Field(
        min_length=1, max_length=2000, description="why (a release freeze, an incident)"
    )


class EnableRequest(_Body):
    reason: str = Field(default="", max_length=2000)


class UserCreate(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    role: Literal["viewer", "operator", "approver", "admin"]
    email: str | None = Field(default=None, max_length=200)
    replace: bool = False


# ---- who am I ------------------------------------------------------------------------------------
@router.get("/me", tags=["users"])
def me(user: Reader) -> dict[str, Any]:
    """The signed-in user and their role."""
    return {"name": user.name, "role": user.role, "email": user.email, "roles": list(ROLES)}


# ---- pipelines -----------------------------------------------------------------------------------
@router.get("/pipelines", tags=["pipelines"])
def list_pipelines(request: Request, user: Reader) -> dict[str, Any]:
    """Every pipeline, with its latest execution."""
    ctx = ctx_of(request)
    return {"items": [queries.pipeline_summary(ctx.store, r) for r in queries.pipelines(ctx.store)]}


@router.get("/pipelines/{name}", tags=["pipelines"])
def get_pipeline(request: Request, name: str, user: Reader) -> dict[str, Any]:
    """A pipeline: stages, actions, transitions, environments, variables."""
    ctx = ctx_of(request)
    return queries.pipeline_detail(ctx.store, ctx.cache, queries.pipeline_row(ctx.store, name))


@router.post("/pipelines/{name}/executions", status_code=201, tags=["executions"])
def start_execution(
    request: Request, name: str, user: Writer, body: StartRequest | None = None
) -> dict[str, Any]:
    """Start an execution (operator)."""
    require(user, "operator", "starting a pipeline")
    ctx = ctx_of(request)
    ex_id = commands.start_execution(
        ctx.starter(),
        name,
        variables=(body or StartRequest()).variables,
        trigger={"type": "StartPipelineExecution", "by": user.name},
        actor=user.name,
        audit={"pipeline": name},
    )
    return queries.execution_summary(queries.execution(ctx.store, ex_id))


@router.post("/pipelines/{name}/transitions/{stage}/disable", tags=["transitions"])
def disable_transition(
    request: Request, name: str, stage: str, body: DisableRequest, user: Writer
) -> dict[str, Any]:
    """Disable the transition into a stage, with a reason (operator)."""
    return _set_transition(request, name, stage, False, body.reason, user)


@router.post("/pipelines/{name}/transitions/{stage}/enable", tags=["transitions"])
def enable_transition(
    request: Request, name: str, stage: str, user: Writer, body: EnableRequest | None = None
) -> dict[str, Any]:
    """Enable the transition into a stage again (operator)."""
    return _set_transition(request, name, stage, True, (body or EnableRequest()).reason, user)


def _set_transition(
    request: Request, name: str, stage: str, enabled: bool, reason: str, user: User
) -> dict[str, Any]:
    require(user, "operator", "changing a transition")
    ctx = ctx_of(request)
    commands.set_transition(ctx.store, ctx.cache, name, stage, enabled, reason, user.name)
    ctx.wake()
    return {
        "pipeline": name,
        "stage": stage,
        **queries.transition_view(
            {r.stage: r for r in queries.transitions(ctx.store, name)}.get(stage)
        ),
    }


# ---- executions ----------------------------------------------------------------------------------
@router.get("/executions", tags=["executions"])
def list_executions(
    request: Request,
    user: Reader,
    pipeline: str | None = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> dict[str, Any]:
    """Executions, newest first; filter by pipeline and status; page with limit/offset."""
    ctx = ctx_of(request)
    rows = queries.executions(ctx.store, pipeline, status, limit=limit, offset=offset, light=True)
    return {
        "items": [queries.execution_summary(r) for r in rows],
        "total": queries.execution_count(ctx.store, pipeline, status),
        "limit": limit,
        "offset": offset,
    }


@router.get("/executions/{ex_id}", tags=["executions"])
def get_execution(request: Request, ex_id: str, user: Reader) -> dict[str, Any]:
    """An execution with its stages and actions (status, reason, message, times, variables)."""
    ctx = ctx_of(request)
    return queries.execution_detail(ctx.store, ctx.cache, queries.execution(ctx.store, ex_id))


@router.get("/executions/{ex_id}/history", tags=["executions"])
def get_history(request: Request, ex_id: str, user: Reader) -> dict[str, Any]:
    """Every status change of the execution's actions, in order (who, when, why)."""
    ctx = ctx_of(request)
    ex = queries.execution(ctx.store, ex_id)
    return {"items": [m.as_row() for m in queries.history(ctx.store, ex.id)]}


def request_change(
    ctx: Context, ex_id: str, kind: str, payload: dict[str, Any], user: User
) -> dict[str, Any]:
    """Ask the engine to stop, abandon or retry (`commands.request_change`) and wake it."""
    req, ex = commands.request_change(ctx.store, ex_id, kind, payload, user.name)
    ctx.wake()
    return {"request_id": req, "execution_id": ex, "kind": kind, "state": "requested"}


@router.post("/executions/{ex_id}/stop", status_code=202, tags=["executions"])
def stop_execution(
    request: Request, ex_id: str, user: Writer, body: StopRequest | None = None
) -> dict[str, Any]:
    """Stop: let running actions finish, start nothing new (operator)."""
    return _stop(request, ex_id, user, body, "stop")


@router.post("/executions/{ex_id}/abandon", status_code=202, tags=["executions"])
def abandon_execution(
    request: Request, ex_id: str, user: Writer, body: StopRequest | None = None
) -> dict[str, Any]:
    """Stop and abandon the running actions (operator)."""
    return _stop(request, ex_id, user, body, "abandon")


def _stop(
    request: Request, ex_id: str, user: User, body: StopRequest | None, kind: str
) -> dict[str, Any]:
    doing = "stopping" if kind == "stop" else "abandoning"
    require(user, "operator", f"{doing} an execution")
    reason = (body or StopRequest()).reason
    return request_change(ctx_of(request), ex_id, kind, {"reason": reason}, user)


@router.post("/executions/{ex_id}/retry", status_code=202, tags=["executions"])
def retry_execution(
    request: Request, ex_id: str, user: Writer, body: RetryRequest | None = None
) -> dict[str, Any]:
    """Retry the failed (or a named) stage of a Failed or Stopped execution (operator)."""
    require(user, "operator", "retrying an execution")
    b = body or RetryRequest()
    payload: dict[str, Any] = {"failed_only": b.failed_only}
    if b.stage:
        payload["stage"] = b.stage
    return request_change(ctx_of(request), ex_id, "retry", payload, user)


@router.get("/requests/{req_id}", tags=["executions"])
def get_request(
    request: Request, req_id: Annotated[int, FastAPIPath(ge=1, le=MAX_INT)], user: Reader
) -> dict[str, Any]:
    """A stop/abandon/retry request and what the engine did with it."""
    return queries.change_request(ctx_of(request).store, req_id).as_row()


# ---- logs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptRef:
    """An action attempt named by a URL: execution, stage, action and (optional) attempt."""

    ex_id: str
    stage: str
    action: str
    attempt: int | None


def _attempt_ref(
    ex_id: str,
    stage: str,
    action: str,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> AttemptRef:
    return AttemptRef(ex_id, stage, action, attempt)


Attempt = Annotated[AttemptRef, Depends(_attempt_ref)]


def _log_file(
    ctx: Context, ex_id: str, stage: str, action: str, attempt: int | None
) -> tuple[AttemptRecord, Path]:
    ex = queries.execution(ctx.store, ex_id)
    row = queries.attempt_row(ctx.store, ex.id, stage, action, attempt)
    if not row.log_path:
        raise NotFound(f"{stage}/{action} attempt {row.attempt} has no log yet")
    return row, Path(row.log_path)


@router.get(
    "/executions/{ex_id}/actions/{stage}/{action}/log",
    tags=["logs"],
    response_class=PlainTextResponse,
)
def get_log(request: Request, ref: Attempt, user: Reader) -> Response:
    """An action attempt's log so far (the latest attempt unless `attempt` is given)."""
    _, path = _log_file(ctx_of(request), ref.ex_id, ref.stage, ref.action, ref.attempt)
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return PlainTextResponse(text)


@router.get("/executions/{ex_id}/actions/{stage}/{action}/log/stream", tags=["logs"])
def stream_log(request: Request, ref: Attempt, user: Reader) -> StreamingResponse:
    """The log as server-sent events: one `data:` event per line, live, then `event: end`."""
    ctx = ctx_of(request)
    stage, action = ref.stage, ref.action
    row, path = _log_file(ctx, ref.ex_id, stage, action, ref.attempt)

    def status() -> str:
        return queries.attempt_row(ctx.store, row.execution_id, stage, action, row.attempt).status

    def events() -> Iterator[str]:
        yield "retry: 2000\n\n"
        for chunk in queries.follow_log(path, lambda: status() != ActionStatus.IN_PROGRESS):
            for line in chunk.splitlines():
                yield f"data: {line}\n\n"
        yield f"event: end\ndata: {status()}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ---- artifacts and reports ----------------------------------------------------------------------
def serve_file(path: Path, name: str) -> FileResponse:
    """A stored file with its content type; HTML and SVG are sandboxed (no same-origin access)."""
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff"}
    if ctype in ("text/html", "image/svg+xml", "application/xhtml+xml"):
        headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups"
    return FileResponse(path, media_type=ctype, headers=headers)


def _inside(root: Path, rel: str) -> Path:
    """`root/rel`, refusing any path that leaves root (.., absolute paths, symlinks out)."""
    shown = rel if len(rel) <= 100 else rel[:100] + "…"
    if (
        not rel
        or len(rel) > MAX_PATH
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(p in ("..", "") for p in rel.split("/"))
    ):
        raise NotFound(f"no file '{shown}' here (paths are relative, without '..')")
    try:
        p = (root / rel).resolve()
        found = p.is_relative_to(root.resolve()) and p.is_file()
    except (OSError, ValueError):  # a name too long for the filesystem, a loop of links
        found = False
    if not found:
        raise NotFound(f"no file '{shown}' here")
    return p


@router.get("/executions/{ex_id}/artifacts", tags=["artifacts"])
def list_artifacts(request: Request, ex_id: str, user: Reader) -> dict[str, Any]:
    """The execution's output artifacts (with their files) and test reports, per action attempt."""
    ctx = ctx_of(request)
    ex = queries.execution(ctx.store, ex_id)
    arts, reps = [], []
    for a in queries.attempts(ctx.store, ex.id):
        for name, digest in (a.artifacts or {}).items():
            try:
                files = ctx.artifacts.manifest(digest)
            except NotFound:
                files = []
            arts.append(
                {
                    "stage": a.stage,
                    "action": a.action,
                    "attempt": a.attempt,
                    "name": name,
                    "digest": digest,
                    "files": [
                        {"path": f["path"], "url": ev.artifact_url(digest, str(f["path"]))}
                        for f in files
                        if "blob" in f
                    ],
                }
            )
        for r in a.reports or []:
            reps.append(
                {
                    "stage": a.stage,
                    "action": a.action,
                    "attempt": a.attempt,
                    **r,
                    "file_urls": [ev.file_url(ex.id, a, str(f)) for f in r.get("files") or []],
                }
            )
    return {"artifacts": arts, "reports": reps}


@router.get("/executions/{ex_id}/reports", tags=["artifacts"])
def list_reports(request: Request, ex_id: str, user: Reader) -> dict[str, Any]:
    """The execution's test reports (totals, failed cases, files)."""
    return {"items": list_artifacts(request, ex_id, user)["reports"]}


@router.get("/executions/{ex_id}/actions/{stage}/{action}/files/{rel:path}", tags=["artifacts"])
def get_attempt_file(request: Request, ref: Attempt, rel: str, user: Reader) -> FileResponse:
    """One of the files an action attempt's reports name (a JUnit file, a screenshot). The rest
    of its working directory (sources, a `.env`, what a build wrote) is never served: only
    declared report files and output artifacts are evidence."""
    ctx = ctx_of(request)
    ex = queries.execution(ctx.store, ref.ex_id)
    row = queries.attempt_row(ctx.store, ex.id, ref.stage, ref.action, ref.attempt)
    if rel not in queries.report_files(row):
        raise NotFound(f"no report file '{rel[:100]}' in {ref.stage}/{ref.action}")
    step = f"{ref.stage}.{ref.action}.{row.attempt}"
    root = ctx.settings.state_dir / "work" / ex.id / step
    return serve_file(_inside(root, rel), rel)


@router.get("/artifacts/{digest}", tags=["artifacts"])
def get_artifact(request: Request, digest: str, user: Reader) -> dict[str, Any]:
    """An artifact's files."""
    files = ctx_of(request).artifacts.manifest(digest)
    return {
        "digest": digest,
        "files": [
            {"path": f["path"], "url": ev.artifact_url(digest, str(f["path"]))}
            for f in files
            if "blob" in f
        ],
    }


@router.get("/artifacts/{digest}/files/{rel:path}", tags=["artifacts"])
def get_artifact_file(request: Request, digest: str, rel: str, user: Reader) -> FileResponse:
    """One file of an artifact, with its content type (an HTML report, a screenshot)."""
    path = queries.artifact_file(ctx_of(request).artifacts, digest, rel)
    if path is not None:
        return serve_file(path, rel)
    raise NotFound(f"artifact {digest} has no file '{rel[:100]}'")


# ---- environments -------------------------------------------------------------------------------
@router.get("/environments", tags=["environments"])
def list_environments(request: Request, user: Reader) -> dict[str, Any]:
    """Each environment: what runs there (image, digest, commit), since when, from where."""
    return {"items": queries.environments(ctx_of(request).store)}


@router.get("/metrics/dora", tags=["metrics"])
def dora_metrics(
    request: Request,
    user: Reader,
    environment: str = "prod",
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> dict[str, Any]:
    """The four DORA measures (deployment frequency, lead time, change failure rate, time to
    restore) for an environment, each with a series for charts."""
    from conveyor.monitoring.dora import dora

    return dora(ctx_of(request).store, days=days, environment=environment)


@router.get("/environments/{name}/deployments", tags=["environments"])
def environment_history(
    request: Request, name: str, user: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """An environment's deployment history, newest first."""
    rows = queries.deployments(ctx_of(request).store, name, limit=limit)
    if not rows:
        known = [e["name"] for e in queries.environments(ctx_of(request).store)]
        raise NotFound(
            f"no deployments to environment '{name}' "
            f"(environments: {', '.join(known) or 'none yet'})"
        )
    return {"environment": name, "items": [queries.deployment_view(d) for d in rows]}


# ---- approvals ----------------------------------------------------------------------------------
@router.get("/approvals", tags=["approvals"])
def list_approvals(request: Request, user: Reader) -> dict[str, Any]:
    """The approvals waiting for a decision."""
    return {"items": queries.pending_list(ctx_of(request).store)}


@router.get("/approvals/{ex_id}", tags=["approvals"])
def get_approval(request: Request, ex_id: str, user: Reader) -> dict[str, Any]:
    """An execution's approval with its evidence (tests, failures, screenshots, digest, commits)."""
    ctx = ctx_of(request)
    return queries.approval_evidence(ctx.store, ctx.artifacts, ctx.settings, ctx.cache, ex_id)


def _decide(
    request: Request, ex_id: str, body: DecisionRequest, user: User, approve: bool
) -> dict[str, Any]:
    row = ctx_of(request).decide(ex_id, user, approve, body.comment, body.digest)
    return ev.approval_view(row)


@router.post("/approvals/{ex_id}/approve", tags=["approvals"])
def approve(request: Request, ex_id: str, body: DecisionRequest, user: Writer) -> dict[str, Any]:
    """Approve (approver). `digest` must be the one shown: a changed image is a 409."""
    return _decide(request, ex_id, body, user, approve=True)


@router.post("/approvals/{ex_id}/reject", tags=["approvals"])
def reject(request: Request, ex_id: str, body: DecisionRequest, user: Writer) -> dict[str, Any]:
    """Reject (approver); the approval action fails with reason Rejected."""
    return _decide(request, ex_id, body, user, approve=False)


# ---- users and audit (admin) --------------------------------------------------------------------
@router.get("/users", tags=["users"])
def list_users(request: Request, user: Reader) -> dict[str, Any]:
    """Users and roles (admin); tokens are never shown again."""
    require(user, "admin", "listing users")
    return {"items": ctx_of(request).users.list()}


@router.post("/users", status_code=201, tags=["users"])
def create_user(request: Request, body: UserCreate, user: Writer) -> dict[str, Any]:
    """Create a user (admin); the answer holds their token, shown this once."""
    require(user, "admin", "creating users")
    token = commands.add_user(
        ctx_of(request).store,
        body.name,
        body.role,
        body.email,
        replace=body.replace,
        actor=user.name,
    )
    return {"name": body.name, "role": body.role, "email": body.email, "token": token}


@router.get("/audit", tags=["users"])
def audit_log(
    request: Request, user: Reader, limit: Annotated[int, Query(ge=1, le=5000)] = 200
) -> dict[str, Any]:
    """Every change, newest first: who, what, on what, when (admin)."""
    require(user, "admin", "reading the audit log")
    return {"items": [r.as_row() for r in queries.audit_log(ctx_of(request).store, limit)]}
