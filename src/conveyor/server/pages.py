"""The dashboard: server-rendered pages (Jinja2), a little plain JavaScript for live refresh.

Signed in by a session cookie (see auth.py); every form carries a CSRF token. The pages read
the same views as the API and change things through the same functions (requests rows,
gate decisions, transition rows), audited the same way.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from conveyor.errors import AuthError, Forbidden, NotFound
from conveyor.model.status import ACTIVE_EXECUTION, ActionStatus, ApprovalStatus, ExecutionStatus
from conveyor.server.api import MAX_INT, SESSION_COOKIE
from conveyor.server.context import Context, ctx_of
from conveyor.server.headers import http_link, local_path
from conveyor.service import commands, queries
from conveyor.service.users import SESSION_SECONDS, Session, User, require

router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "conveyor_login_csrf"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _ts(value: object) -> str:
    if not isinstance(value, int | float) or not value:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _short(value: str | None, n: int = 12) -> str:
    if not value:
        return "—"
    if value.startswith("sha256:"):
        return "sha256:" + value[7 : 7 + n]
    return value[:n]


def _status_label(status: str | None) -> str:
    if status == ActionStatus.IN_PROGRESS:
        return "In progress"
    return status or "Not started"


_ICONS: dict[str, str] = {
    ActionStatus.SUCCEEDED: "✓",
    ActionStatus.FAILED: "✗",
    ActionStatus.IN_PROGRESS: "⟳",
    ExecutionStatus.STOPPING: "⟳",
    ExecutionStatus.STOPPED: "■",
    ActionStatus.ABANDONED: "■",
    ExecutionStatus.SUPERSEDED: "↷",
    ExecutionStatus.CANCELLED: "■",
    ApprovalStatus.PENDING: "…",
    ApprovalStatus.APPROVED: "✓",
    ApprovalStatus.REJECTED: "✗",
    ApprovalStatus.EXPIRED: "✗",
}


def _status_icon(status: str | None) -> str:
    return _ICONS.get(status or "", "○")


templates.env.filters.update(
    ts=_ts,
    dur=_dur,
    short=_short,
    status_label=_status_label,
    status_icon=_status_icon,
    http_link=http_link,
    local_path=local_path,
)


# ---- sessions -----------------------------------------------------------------------------------
def _session(request: Request) -> tuple[User, Session]:
    ctx = ctx_of(request)
    s = ctx.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if s is not None:
        user = ctx.users.session_user(s)
        if user is not None:
            return user, s
    raise AuthError("sign in with your API token")


def _check_csrf(request: Request, s: Session, token: str | None) -> None:
    if not ctx_of(request).signer.check_csrf(s.sid, token):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")


def _form_user(request: Request, csrf: str) -> User:
    """The signed-in user of a form post whose CSRF token is good."""
    user, s = _session(request)
    _check_csrf(request, s, csrf)
    return user


def _one_of(value: str, what: str, choices: tuple[str, ...]) -> None:
    """A form field's value must be one of `choices` (else a 404 naming them)."""
    if value not in choices:
        raise NotFound(f"unknown {what} '{value}' ({', '.join(choices[:-1])} or {choices[-1]})")


def render(request: Request, name: str, status_code: int = 200, **data: Any) -> HTMLResponse:
    try:
        user, s = _session(request)
        data.setdefault("user", user)
        data.setdefault("csrf", ctx_of(request).signer.csrf_token(s.sid))
    except AuthError:
        data.setdefault("user", None)
        data.setdefault("csrf", "")
    data.setdefault("msg", request.query_params.get("msg", ""))
    data.setdefault(
        "pending_count",
        len(queries.pending_approvals(ctx_of(request).store)) if data["user"] else 0,
    )
    resp = templates.TemplateResponse(request, name, data, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    return render(
        request,
        "error.html",
        status_code=status,
        status=status,
        code=code,
        message=message,
        title=f"Error {status}",
    )


def _back(url: str, msg: str) -> RedirectResponse:
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}msg={quote(msg)}", status_code=303)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# ---- sign in / out ------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    nonce = secrets.token_urlsafe(16)
    resp = render(
        request, "login.html", title="Sign in", next=_safe_next(next), login_csrf=nonce, error=""
    )
    resp.set_cookie(LOGIN_CSRF, nonce, httponly=True, samesite="lax", max_age=3600, path="/login")
    return resp


@router.post("/login")
def login(
    request: Request, token: str = Form(""), csrf: str = Form(""), next: str = Form("/")
) -> Response:
    ctx = ctx_of(request)
    cookie = request.cookies.get(LOGIN_CSRF)
    if not cookie or not secrets.compare_digest(cookie, csrf):
        raise Forbidden("the sign-in form expired: reload the page and try again")
    found = ctx.users.by_token(token.strip()) if token.strip() else None
    if found is None:
        nonce = secrets.token_urlsafe(16)
        page = render(
            request,
            "login.html",
            status_code=401,
            title="Sign in",
            next=_safe_next(next),
            login_csrf=nonce,
            error="That token is not valid (unknown, replaced or disabled).",
        )
        page.set_cookie(
            LOGIN_CSRF, nonce, httponly=True, samesite="lax", max_age=3600, path="/login"
        )
        return page
    user, token_hash = found
    cookie, session = ctx.signer.session_cookie(user, token_hash)
    ctx.users.open_session(session)
    commands.record(ctx.store, user.name, "session.start", None, {"via": "dashboard"})
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        max_age=SESSION_SECONDS,
        path="/",
    )
    resp.delete_cookie(LOGIN_CSRF, path="/login")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    user, s = _session(request)
    _check_csrf(request, s, csrf)
    ctx_of(request).users.close_session(s)
    commands.record(ctx_of(request).store, user.name, "session.end", None, {"via": "dashboard"})
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# ---- overview and pipelines ---------------------------------------------------------------------
@router.get("/")
def home(request: Request) -> Response:
    _session(request)
    ctx = ctx_of(request)
    pipelines = [queries.pipeline_summary(ctx.store, r) for r in queries.pipelines(ctx.store)]
    return render(
        request,
        "home.html",
        title="Pipelines",
        pipelines=pipelines,
        approvals=queries.pending_list(ctx.store),
        nav="pipelines",
    )


def _pipeline_data(ctx: Context, name: str, execution: str | None) -> dict[str, Any]:
    row = queries.pipeline_row(ctx.store, name)
    detail = queries.pipeline_detail(ctx.store, ctx.cache, row)
    ex = None
    if execution:
        ex = queries.execution(ctx.store, execution)
        if ex.pipeline != name:
            raise NotFound(
                f"execution {execution} belongs to pipeline '{ex.pipeline}', not '{name}'"
            )
    else:
        latest = queries.executions(ctx.store, name, limit=1)
        ex = latest[0] if latest else None
    current = queries.execution_detail(ctx.store, ctx.cache, ex) if ex else None
    approval = None
    if ex is not None:
        rows = queries.approvals(ctx.store, ex.id)
        approval = rows[-1] if rows else None
    live = current is not None and current["status"] in ACTIVE_EXECUTION
    interval = 1500 if live else (0 if execution else 5000)
    query = urlencode({"execution": execution} if execution else {})
    return {
        "pipeline": detail,
        "current": current,
        "approval": approval,
        "interval": interval,
        "live_url": f"/pipelines/{name}/live" + (f"?{query}" if query else ""),
        "explicit": bool(execution),
    }


@router.get("/pipelines/{name}")
def pipeline_page(request: Request, name: str, execution: str | None = None) -> Response:
    _session(request)
    ctx = ctx_of(request)
    data = _pipeline_data(ctx, name, execution)
    recent = [
        queries.execution_summary(e)
        for e in queries.executions(ctx.store, name, limit=25, light=True)
    ]
    return render(request, "pipeline.html", title=name, recent=recent, nav="pipelines", **data)


@router.get("/pipelines/{name}/live")
def pipeline_live(request: Request, name: str, execution: str | None = None) -> Response:
    _session(request)
    return render(request, "_stages.html", **_pipeline_data(ctx_of(request), name, execution))


@router.post("/pipelines/{name}/transitions/{stage}")
def transition_form(
    request: Request,
    name: str,
    stage: str,
    action: str = Form(...),
    reason: str = Form(""),
    csrf: str = Form(""),
    back: str = Form(""),
) -> Response:
    user = _form_user(request, csrf)
    require(user, "operator", "changing a transition")
    _one_of(action, "transition action", ("enable", "disable"))
    if action == "disable" and not reason.strip():
        return _back(
            _safe_next(back or f"/pipelines/{name}"), "Give a reason to disable a transition."
        )
    ctx = ctx_of(request)
    commands.set_transition(
        ctx.store, ctx.cache, name, stage, action == "enable", reason.strip(), user.name
    )
    ctx.wake()
    verb = "enabled" if action == "enable" else "disabled"
    return _back(_safe_next(back or f"/pipelines/{name}"), f"Transition into {stage} {verb}.")


@router.post("/pipelines/{name}/start")
def start_form(request: Request, name: str, csrf: str = Form("")) -> Response:
    user = _form_user(request, csrf)
    require(user, "operator", "starting a pipeline")
    ctx = ctx_of(request)
    ex_id = commands.start_execution(
        ctx.starter(),
        name,
        variables={},
        trigger={"type": "StartPipelineExecution", "by": user.name},
        actor=user.name,
        audit={"pipeline": name, "via": "dashboard"},
    )
    return _back(f"/pipelines/{name}?execution={ex_id}", f"Started execution {ex_id}.")


@router.post("/executions/{ex_id}/request")
def request_form(
    request: Request, ex_id: str, kind: str = Form(...), csrf: str = Form("")
) -> Response:
    user = _form_user(request, csrf)
    _one_of(kind, "request", ("stop", "abandon", "retry"))
    require(user, "operator", f"{kind} of an execution")
    ctx = ctx_of(request)
    ex = queries.execution(ctx.store, ex_id)
    payload: dict[str, Any] = (
        {"reason": "from the dashboard"} if kind != "retry" else {"failed_only": False}
    )
    commands.request_change(ctx.store, ex.id, kind, payload, user.name)
    ctx.wake()
    return _back(
        f"/pipelines/{ex.pipeline}?execution={ex.id}",
        f"Requested {kind} of execution {ex.id}.",
    )


# ---- executions ---------------------------------------------------------------------------------
@router.get("/executions")
def executions_page(
    request: Request, status: str = "", pipeline: str = "", page: int = 1
) -> Response:
    _session(request)
    ctx = ctx_of(request)
    if status and status not in queries.STATUSES:
        status = ""
    per = 50
    page = max(1, min(page, MAX_INT // per))
    rows = queries.executions(
        ctx.store, pipeline or None, status or None, limit=per, offset=(page - 1) * per, light=True
    )
    total = queries.execution_count(ctx.store, pipeline or None, status or None)
    return render(
        request,
        "executions.html",
        title="Execution history",
        nav="executions",
        items=[queries.execution_summary(r) for r in rows],
        total=total,
        page=page,
        per=per,
        status=status,
        pipeline=pipeline,
        statuses=queries.STATUSES,
        pipelines=queries.pipeline_names(ctx.store),
    )


@router.get("/executions/{ex_id}")
def execution_page(request: Request, ex_id: str) -> Response:
    _session(request)
    ex = queries.execution(ctx_of(request).store, ex_id)
    return RedirectResponse(f"/pipelines/{ex.pipeline}?execution={ex.id}", status_code=303)


@router.get("/executions/{ex_id}/logs/{stage}/{action}")
def log_page(
    request: Request,
    ex_id: str,
    stage: str,
    action: str,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> Response:
    _session(request)
    ctx = ctx_of(request)
    ex = queries.execution(ctx.store, ex_id)
    row = queries.attempt_row(ctx.store, ex.id, stage, action, attempt)
    path = Path(row.log_path) if row.log_path else None
    text = path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""
    base = f"/api/v1/executions/{ex.id}/actions/{stage}/{action}"
    return render(
        request,
        "log.html",
        title=f"Log of {stage}/{action}",
        ex=queries.execution_summary(ex),
        attempt=row,
        text=text,
        stream_url=f"{base}/log/stream?attempt={row.attempt}",
        raw_url=f"{base}/log?attempt={row.attempt}",
        nav="pipelines",
    )


# ---- environments -------------------------------------------------------------------------------
@router.get("/environments")
def environments_page(request: Request) -> Response:
    _session(request)
    ctx = ctx_of(request)
    envs = queries.environments(ctx.store)
    history = {
        e["name"]: [
            queries.deployment_view(d) for d in queries.deployments(ctx.store, e["name"], limit=10)
        ]
        for e in envs
    }
    return render(
        request,
        "environments.html",
        title="Environments",
        envs=envs,
        history=history,
        nav="environments",
    )


@router.get("/delivery")
def delivery_page(request: Request, environment: str = "prod", days: int = 30) -> Response:
    """The four DORA measures with a small chart each."""
    from conveyor.monitoring.dora import dora

    _session(request)
    d = dora(ctx_of(request).store, days=max(1, min(days, 365)), environment=environment)
    return render(
        request, "delivery.html", title="Delivery metrics", d=d, bucket=d["bucket"], nav="delivery"
    )


# ---- approvals ----------------------------------------------------------------------------------
@router.get("/approvals")
def approvals_page(request: Request) -> Response:
    _session(request)
    return render(
        request,
        "approvals.html",
        title="Approvals",
        items=queries.pending_list(ctx_of(request).store),
        nav="approvals",
    )


@router.get("/executions/{ex_id}/approval")
def approval_page(request: Request, ex_id: str) -> Response:
    user, _ = _session(request)
    ctx = ctx_of(request)
    evidence = queries.approval_evidence(ctx.store, ctx.artifacts, ctx.settings, ctx.cache, ex_id)
    ex = queries.execution(ctx.store, ex_id)
    author = queries.is_author(user.name, user.email, ex)
    can_decide = user.can("approver") and evidence["approval"]["status"] == ApprovalStatus.PENDING
    can_approve = can_decide and not (author and not evidence["self_approval"])
    superseded_by = ex.superseded_by
    return render(
        request,
        "approval.html",
        title=f"Approval for execution {ex.id}",
        ev=evidence,
        can_decide=can_decide,
        can_approve=can_approve,
        is_author=author,
        superseded_by=superseded_by,
        nav="approvals",
        now=time.time(),
    )


@router.post("/executions/{ex_id}/approval")
def approval_decide(
    request: Request,
    ex_id: str,
    decision: str = Form(...),
    comment: str = Form(""),
    digest: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    user = _form_user(request, csrf)
    _one_of(decision, "decision", ("approve", "reject"))
    ctx = ctx_of(request)
    row = ctx.decide(ex_id, user, decision == "approve", comment, digest or None)
    ex = queries.execution(ctx.store, ex_id)
    word = (
        ApprovalStatus.APPROVED
        if row.status == ApprovalStatus.APPROVED
        else ApprovalStatus.REJECTED
    ).value
    return _back(f"/pipelines/{ex.pipeline}?execution={ex.id}", f"{word} execution {ex.id}.")


# ---- audit --------------------------------------------------------------------------------------
@router.get("/audit")
def audit_page(request: Request) -> Response:
    user, _ = _session(request)
    require(user, "admin", "reading the audit log")
    return render(
        request,
        "audit.html",
        title="Audit log",
        items=queries.audit_log(ctx_of(request).store, 300),
        nav="audit",
    )
