"""The health watcher: after the pipelines end, keep checking every deployed environment.

Every `interval` seconds, for each environment with a current deployment (its URL + the
environment's `settings.readinessPath`, default `/healthz`): one GET; a failure is
confirmed by two more tries half a second apart before the environment is called unhealthy
(one lost packet is not an incident). The reading goes to the store (`set_health`: what
`conveyor env list`, the dashboard and `/metrics` show) and, when the health *changes* —
an environment turns unhealthy, or recovers — an alert goes to the webhook of the pipeline
that deployed it (`settings.notifications.webhook`, else `CONVEYOR_ALERT_WEBHOOK`).

`conveyor up` starts it as a detached daemon (`conveyor monitor watch`, pid file
`state_dir/run/watcher.pid`, log `state_dir/logs/platform/watcher.log`); `conveyor down`
stops it. `Watcher(app, interval).run(stop_event)` runs it in a thread instead.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from conveyor.errors import ConveyorError
from conveyor.monitoring import alerts
from conveyor.monitoring.probes import ProbeTarget, Sample, probe_once
from conveyor.platform.daemon import Daemon
from conveyor.settings import Settings
from conveyor.store.records import DeploymentRecord, HealthRecord

log = logging.getLogger("conveyor.watcher")
DEFAULT_INTERVAL = 30.0
CONFIRM_TRIES = 2
MARKER = "conveyor monitor watch --home"


@dataclass(frozen=True)
class Reading:
    environment: str
    url: str
    healthy: bool
    detail: str
    changed: bool  # the health differs from the previous reading (or is a first failure)
    alerted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _detail(s: Sample) -> str:
    if s.ok:
        return f"HTTP {s.status} in {s.latency_ms:.0f} ms"
    if s.status is not None:
        return f"HTTP {s.status} {s.body!r}"
    return s.error or "no answer"


@dataclass
class Watcher:
    """Reads the health of each environment's current release every `interval` seconds (a
    probe waits `timeout`); a change alerts the deploying pipeline's webhook, else `webhook`."""

    app: Any
    interval: float = DEFAULT_INTERVAL
    timeout: float = field(default=5.0, kw_only=True)
    webhook: str | None = field(default=None, kw_only=True)

    def _health_url(
        self, deployment: DeploymentRecord, definitions: dict[str, Mapping[str, Any]]
    ) -> tuple[str, Mapping[str, Any]]:
        name = deployment.pipeline
        if name not in definitions:
            try:
                definitions[name] = self.app.store.pipeline_record(name).definition
            except ConveyorError:
                definitions[name] = {}
        definition = definitions[name]
        env = (definition.get("environments") or {}).get(deployment.environment) or {}
        path = str((env.get("settings") or {}).get("readinessPath") or "/healthz")
        return str(deployment.url).rstrip("/") + "/" + path.lstrip("/"), definition

    def check_once(self) -> list[Reading]:
        """Probe every deployed environment once; record and alert on changes."""
        store = self.app.store
        before = store.health_records()
        definitions: dict[str, Mapping[str, Any]] = {}
        readings: list[Reading] = []
        with httpx.Client(timeout=self.timeout) as client:
            for env, dep in sorted(store.current_deployment_records().items()):
                if not dep.url:
                    continue
                url, definition = self._health_url(dep, definitions)
                target = ProbeTarget(url, frozenset(range(200, 400)))
                sample = probe_once(client, target)
                for _ in range(CONFIRM_TRIES):
                    if sample.ok:
                        break
                    time.sleep(0.5)
                    sample = probe_once(client, target)
                detail = _detail(sample)
                prev = before.get(env)
                store.set_health(env, sample.ok, detail)
                changed = (not sample.ok) if prev is None else bool(prev.healthy) != sample.ok
                alerted = False
                if changed:
                    alerted = self._alert(env, url, sample.ok, detail, dep, prev, definition)
                readings.append(Reading(env, url, sample.ok, detail, changed, alerted))
        return readings

    def _alert(
        self,
        env: str,
        url: str,
        healthy: bool,
        detail: str,
        dep: DeploymentRecord,
        prev: HealthRecord | None,
        definition: Mapping[str, Any],
    ) -> bool:
        hook = alerts.webhook_of(definition) or self.webhook
        digest = str(dep.digest or "?")[:19]
        if healthy:
            down_for = f" after {time.time() - prev.since:.0f} s" if prev else ""
            text = (
                f":white_check_mark: *{env}* recovered{down_for}: {url} answers ({detail}); "
                f"serving {digest} (execution `{dep.execution_id}`)."
            )
            event = "environment-recovered"
        else:
            text = (
                f":rotating_light: *{env}* is unhealthy: {url} -> {detail}; serving {digest} "
                f"(execution `{dep.execution_id}`). Roll back with `conveyor "
                f"rollback {env}`."
            )
            event = "environment-unhealthy"
        log.warning("%s", text)
        return alerts.send(
            hook,
            text,
            event,
            {
                "environment": env,
                "url": url,
                "healthy": healthy,
                "detail": detail,
                "digest": dep.digest,
                "execution": dep.execution_id,
            },
        )

    def run(self, stop: threading.Event) -> None:
        """Check every `interval` seconds until `stop` is set (errors are logged, not fatal)."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                for r in self.check_once():
                    if r.changed:
                        log.info(
                            "%s: %s (%s)",
                            r.environment,
                            "healthy" if r.healthy else "UNHEALTHY",
                            r.detail,
                        )
            except ConveyorError as exc:
                log.error("health check round failed: %s", exc.message)
            except Exception:  # noqa: BLE001 - the watcher outlives one bad round
                log.exception("health check round failed")
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


# ---- the daemon `conveyor up` starts ----------------------------------------------------------


def daemon(settings: Settings) -> Daemon:
    return Daemon.of_platform(settings.state_dir, "watcher", f"{MARKER} {settings.state_dir}")


def start_daemon(settings: Settings, interval: float) -> bool:
    """Start the watcher daemon unless it runs; True when it was started."""
    d = daemon(settings)
    if d.pid() is not None:
        return False
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(settings.state_dir),
        "CONVEYOR_DATABASE_URL": settings.database_url,
    }
    d.start(
        [
            sys.executable,
            "-m",
            "conveyor",
            "monitor",
            "watch",
            "--home",
            str(settings.state_dir),
            "--interval",
            f"{interval:g}",
        ],
        env=env,
    )
    return True


def stop_daemon(settings: Settings) -> bool:
    """Stop the watcher daemon; True if it was running."""
    return daemon(settings).stop()
