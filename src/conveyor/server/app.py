"""The server's composition root: `create_app(settings, store=...)` builds one FastAPI app
(REST API under /api/v1, dashboard pages, static files) from what it is given; `serve()`
runs it with uvicorn next to an engine loop, so approvals given on a page release the engine.

Every response goes through two middlewares: `headers.SecurityHeaders` (CSP, framing,
referrer, nosniff) and `failures.Failures` (NUL refused, unexpected errors as clean 500s).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import AuthError, ConveyorError
from conveyor.server import api, pages
from conveyor.server.auth import Signer, session_key
from conveyor.server.context import Context
from conveyor.server.failures import Failures
from conveyor.server.headers import CSP, SecurityHeaders, script_hash
from conveyor.server.scrape import metrics_refusal
from conveyor.service import commands
from conveyor.service.users import Users, ensure_admin
from conveyor.settings import Settings

if TYPE_CHECKING:  # types only: the server reaches the engine and store through the service
    from conveyor.engine.engine import Engine
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store

HERE = Path(__file__).parent
log = logging.getLogger("conveyor.server")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def docs_page(title: str) -> Response:
    """Swagger UI (from its CDN, as FastAPI serves it), under a policy naming what it loads."""
    page = get_swagger_ui_html(openapi_url="/api/v1/openapi.json", title=f"{title} API")
    html = bytes(page.body).decode()
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    cdn = "https://cdn.jsdelivr.net"
    policy = CSP.replace(
        "script-src 'self'", f"script-src 'self' {cdn} " + " ".join(script_hash(s) for s in inline)
    )
    policy = policy.replace("style-src 'self'", f"style-src 'self' {cdn} 'unsafe-inline'")
    policy = policy.replace("img-src 'self'", "img-src 'self' data: https://fastapi.tiangolo.com")
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    engine: Engine | None = None,
    artifacts: ArtifactStore | None = None,
    session_secret: bytes | None = None,
) -> FastAPI:
    """One app over one store. `engine`: the engine loop of this process (woken on changes);
    without one, executions started here are picked up by whichever engine runs."""
    store = store or commands.open_store(settings)
    ctx = Context(
        settings=settings,
        store=store,
        users=Users(store),
        signer=Signer(session_secret or session_key(settings.state_dir)),
        artifacts=artifacts or commands.open_artifacts(settings),
        engine=engine,
    )
    app = FastAPI(
        title="Conveyor",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="Pipelines, executions, approvals and environments of Conveyor.",
    )
    app.state.ctx = ctx
    _add_error_handlers(app)
    app.add_middleware(Failures, render=_plain_answer)
    app.add_middleware(SecurityHeaders)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    _add_plain_routes(app, ctx)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """ConveyorError, invalid requests and HTTP errors as JSON (API) or a page (browser)."""

    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> Response:
        if not _wants_json(request):
            if isinstance(exc, AuthError) and exc.http_status == 401:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return pages.error_page(request, exc.http_status, exc.code, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        extra: dict[str, Any] = {}
        problems = getattr(exc, "problems", None)
        if problems:
            extra["problems"] = [str(p) for p in problems]
        return JSONResponse(
            error_body(exc.code, exc.message, **extra), status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        message = "the request is not valid: " + "; ".join(problems)
        if not _wants_json(request):
            return pages.error_page(request, 422, "invalid", message)
        return JSONResponse(error_body("invalid", message, problems=problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code
        if exc.status_code == 404:
            message = f"no such page or route: {request.method} {request.url.path}"
        if not _wants_json(request):
            return pages.error_page(request, exc.status_code, code, message)
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )


def _plain_answer(request: Request, status: int, code: str, message: str) -> Response:
    """The failure middleware's answer: the page, or plain text when the page fails."""
    if not _wants_json(request):
        try:
            return pages.error_page(request, status, code, message)
        except Exception:  # noqa: BLE001 - the page itself failed (store down): plain text
            log.exception("the error page failed on %s", request.url.path)
            return PlainTextResponse(f"{status} {code}: {message}", status_code=status)
    return JSONResponse(error_body(code, message), status_code=status)


def _add_plain_routes(app: FastAPI, ctx: Context) -> None:
    """/metrics, the Swagger page and /healthz."""

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus text format: executions, action durations, approval waits, deployments,
        rollbacks and environment health, read from the store at each scrape."""
        from conveyor.monitoring.metrics import CONTENT_TYPE, render_metrics

        refused = metrics_refusal(ctx, request.headers.get("authorization"))
        if refused:
            return PlainTextResponse(
                refused + "\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return Response(render_metrics(app.state.ctx.store), media_type=CONTENT_TYPE)

    @app.get("/api/v1/docs", include_in_schema=False)
    def docs() -> Response:
        """Swagger UI: its one inline script is allowed by its hash, nothing else inline."""
        return docs_page(app.title)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    stop_event: threading.Event | None = None,
    *,
    run_engine: bool = True,
    announce: Callable[[str], None] = print,
    ready: threading.Event | None = None,
) -> None:
    """Serve the API and dashboard (blocking) with an engine loop in a background thread.

    Returns when `stop_event` is set (or on Ctrl-C). Prints the admin token once on the first
    start (through `announce`). `ready` is set once the server accepts connections.
    """
    import uvicorn

    from conveyor import bootstrap

    host = host or settings.server_host
    port = port or settings.server_port
    settings = dataclasses.replace(settings, server_host=host, server_port=port)
    stop_event = stop_event or threading.Event()
    built = bootstrap.build(settings)
    token = ensure_admin(built.store)
    if token:
        announce(
            f"created user 'admin' (role admin); its API token, shown once:\n  {token}\n"
            f"sign in on http://{host}:{port}/login with it"
        )
    engine = built.engine() if run_engine else None
    engine_thread = None
    if engine is not None:
        engine_thread = threading.Thread(
            target=engine.run, args=(stop_event,), name="conveyor-engine", daemon=True
        )
        engine_thread.start()
    app = create_app(settings, built.store, engine=engine)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    def watch() -> None:
        while not stop_event.wait(0.2):
            if server.started and ready is not None and not ready.is_set():
                ready.set()
        server.should_exit = True

    watcher = threading.Thread(target=watch, name="conveyor-server-stop", daemon=True)
    watcher.start()
    try:
        server.run()
    finally:
        stop_event.set()
        if engine_thread is not None:
            engine_thread.join(timeout=10)
        if engine is not None:
            engine.shutdown(wait=False)
        commands.close_store(built.store)
