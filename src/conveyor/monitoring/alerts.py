"""Alerts: a Slack-compatible JSON message POSTed to a webhook.

    {"text": "...", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "..."}}],
     "conveyor": {"event": "rollback", ...}}

Slack (and Mattermost, Rocket.Chat, Teams' Slack-compatible connectors) read `text` and
`blocks`; the `conveyor` object carries the facts for a program. Where the webhook comes
from: the pipeline file's `settings.notifications.webhook`, else `CONVEYOR_ALERT_WEBHOOK`.
An alert that cannot be delivered is logged, never raised: the work it reports on is done.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

import httpx

log = logging.getLogger("conveyor.alerts")
ENV_WEBHOOK = "CONVEYOR_ALERT_WEBHOOK"


def webhook_of(definition: Mapping[str, Any] | None) -> str | None:
    """The webhook of a pipeline (file form or model settings), else the environment's."""
    settings: Any = (definition or {}).get("settings", definition or {})
    notifications = settings.get("notifications") if isinstance(settings, Mapping) else None
    hook = notifications.get("webhook") if isinstance(notifications, Mapping) else None
    return str(hook) if hook else os.environ.get(ENV_WEBHOOK) or None


def payload(text: str, event: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "conveyor": {"event": event, **facts},
    }


def send(
    url: str | None,
    text: str,
    event: str,
    facts: Mapping[str, Any] | None = None,
    *,
    timeout: float = 5.0,
) -> bool:
    """POST the alert; True when the webhook answered 2xx."""
    if not url:
        log.info("alert (no webhook configured): %s", text)
        return False
    try:
        resp = httpx.post(url, json=payload(text, event, facts or {}), timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning("alert to %s failed (%s: %s): %s", url, type(exc).__name__, exc, text)
        return False
    if resp.status_code >= 300:
        log.warning("alert to %s answered HTTP %s: %s", url, resp.status_code, text)
        return False
    return True


_queue: queue.Queue[tuple[str | None, str, str, dict[str, Any]]] = queue.Queue()
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def _drain() -> None:
    while True:
        url, text, event, facts = _queue.get()
        try:
            send(url, text, event, facts)
        finally:
            _queue.task_done()


def send_later(
    url: str | None, text: str, event: str, facts: Mapping[str, Any] | None = None
) -> None:
    """`send` from one background thread, in order: the engine never waits for a webhook."""
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_drain, name="alerts", daemon=True)
            _worker.start()
    _queue.put((url, text, event, dict(facts or {})))


def flush(timeout: float = 10.0) -> bool:
    """Wait until every queued alert was attempted (a CLI before it exits); True if done."""
    import time

    end = time.monotonic() + timeout
    while _queue.unfinished_tasks and time.monotonic() < end:
        time.sleep(0.05)
    return not _queue.unfinished_tasks
