"""The security headers every response carries, and the one rule for links built from data.

The dashboard runs no inline script and no inline style: its JavaScript and CSS are files
under static/, so the Content-Security-Policy allows scripts and styles from this origin
only (`'self'`). A `javascript:` URL is inline script to the browser, so even a link that
slipped through would not run. Pages cannot be framed (`frame-ancestors 'none'` and
`X-Frame-Options: DENY`), forms post only here (`form-action 'self'`), plugins and `<base>`
are off, and no referrer leaves the site.

A response that sets its own policy keeps it (the sandbox of served HTML reports, the API
docs page); the other headers are added to every response.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
HEADERS: dict[bytes, bytes] = {
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"same-origin",
    b"x-content-type-options": b"nosniff",
}
LINK_SCHEMES = ("http", "https")


def http_link(value: object) -> str | None:
    """`value` if it is an absolute http(s) URL with a host, else None (shown as text)."""
    if not isinstance(value, str) or not value or value != value.strip():
        return None
    if re.search(r"[\x00-\x20\x7f]", value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.hostname:
        return None
    return value


def local_path(value: object) -> str:
    """`value` if it is a path on this site (`/…`, not `//host`), else `#` (a dead link)."""
    if not isinstance(value, str) or not value.startswith("/"):
        return "#"
    if value.startswith(("//", "/\\")) or re.search(r"[\x00-\x1f\x7f]", value):
        return "#"
    return value


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script (for pages we do not write)."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


class SecurityHeaders:
    """ASGI middleware: adds the policy headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers.extend((k, v) for k, v in HEADERS.items() if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
