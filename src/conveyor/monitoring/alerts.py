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
import time
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


class Notifier:
    """Sends alerts from one background thread, in order: the engine never waits for a webhook.

    Owned by whoever builds it (the composition root). Its thread starts with the first alert
    and ends as soon as the queue is empty; it is not a daemon, so a command that queued an
    alert does not exit before the alert was attempted (each POST is bounded by `timeout`).
    """

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str | None, str, str, dict[str, Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def send_later(
        self, url: str | None, text: str, event: str, facts: Mapping[str, Any] | None = None
    ) -> None:
        """Queue the alert; `send` runs on the notifier's thread."""
        with self._lock:
            self._queue.put((url, text, event, dict(facts or {})))
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="alerts", daemon=False)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                try:
                    url, text, event, facts = self._queue.get_nowait()
                except queue.Empty:
                    self._worker = None  # the next alert starts a new thread
                    return
            try:
                send(url, text, event, facts, timeout=self.timeout)
            except Exception:  # noqa: BLE001 - an alert never breaks the work it reports on
                log.exception("alert failed: %s", text)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert was attempted; True if done in time."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks
