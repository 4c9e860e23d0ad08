"""What the server answers when a request is hostile or a handler breaks.

- A request whose path or query holds a NUL character is refused (400) before any handler
  sees it: no filesystem or database call is made with it.
- An unexpected exception becomes a 500 with a short reference and no internals (no
  exception text, no paths); the details go to the server log under the same reference.
  It is answered here, inside the app, so the server does not drop the keep-alive
  connection (uvicorn closes it when an exception reaches it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("conveyor.server")

Render = Callable[[Request, int, str, str], Response]


def internal_message(ref: str) -> str:
    return f"internal error (reference {ref}): the server log has the details"


class Failures:
    """ASGI middleware: refuses NUL characters, turns unexpected errors into clean 500s."""

    def __init__(self, app: ASGIApp, render: Render) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = bytes(scope.get("query_string", b"")).lower()
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            message = "the request's path or query holds a NUL character (%00): remove it"
            await self.render(Request(scope), 400, "bad_request", message)(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("unhandled error %s on %s %s", ref, scope["method"], scope["path"])
            if started:
                raise  # the response is already on its way: nothing cleaner to send
            response = self.render(Request(scope), 500, "internal", internal_message(ref))
            await response(scope, receive, send)
