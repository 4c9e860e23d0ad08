"""Who may scrape `/metrics`: open on a loopback-bound server without a metrics token; else
`Authorization: Bearer` with the metrics token (`CONVEYOR_METRICS_TOKEN`) or a user's token."""

from __future__ import annotations

import hmac
import ipaddress

from conveyor.errors import AuthError
from conveyor.server.auth import bearer_token
from conveyor.server.context import Context


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metrics_refusal(ctx: Context, authorization: str | None) -> str | None:
    """Why a scrape of /metrics is refused, or None to serve it.

    Open when the server is bound to loopback and no metrics token is set; otherwise it needs
    `Authorization: Bearer` with the metrics token (CONVEYOR_METRICS_TOKEN) or a user's token.
    """
    expected = ctx.settings.metrics_token
    if expected is None and is_loopback(ctx.settings.server_host):
        return None
    try:
        presented = bearer_token(authorization)
    except AuthError:
        presented = None
    if presented and expected and hmac.compare_digest(presented.encode(), expected.encode()):
        return None
    if presented and ctx.users.by_token(presented) is not None:
        return None
    how = "the metrics token (CONVEYOR_METRICS_TOKEN) or a user's API token"
    if expected is None:
        how = "a user's API token, or set CONVEYOR_METRICS_TOKEN on the server and use it"
    return (
        f"/metrics needs `Authorization: Bearer <token>` on a server bound to "
        f"{ctx.settings.server_host}: send {how}"
    )
