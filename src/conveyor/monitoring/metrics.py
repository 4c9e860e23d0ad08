"""Prometheus metrics computed from the store, for `GET /metrics`.

    from conveyor.monitoring.metrics import CONTENT_TYPE, render_metrics
    body = render_metrics(store)          # bytes, Prometheus text format 0.0.4

Every call reads the store afresh into a new `CollectorRegistry` (no process-global state:
any number of servers/engines may share the store, and a scrape sees what the store holds).

    conveyor_executions{pipeline,kind,status}                 gauge: executions by status
    conveyor_action_duration_seconds{type,status}             histogram: finished attempts
    conveyor_approval_wait_seconds{decision}                  histogram: request -> decision
    conveyor_approvals_pending                                gauge
    conveyor_deployments_total{environment,kind}              counter: kind deploy | rollback
    conveyor_rollbacks_total{environment}                     counter
    conveyor_environment_healthy{environment}                 gauge 1/0 (the watcher's reading)
    conveyor_environment_health_checked_timestamp_seconds{environment}
    conveyor_environment_last_deployment_timestamp_seconds{environment}
    conveyor_environment_release_info{environment,digest,execution}   gauge 1
    conveyor_dora_deployments_per_day{environment}            DORA over the last 30 days
    conveyor_dora_lead_time_seconds{environment}              median
    conveyor_dora_change_failure_rate{environment}
    conveyor_dora_time_to_restore_seconds{environment}        median
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.model.status import ApprovalStatus
from conveyor.monitoring.dora import DAY, measures
from conveyor.monitoring.dora import history_of as dora_history

if TYPE_CHECKING:
    from conveyor.store.db import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
ACTION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
APPROVAL_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, DAY, 3 * DAY, 7 * DAY)


def _histogram(
    name: str,
    doc: str,
    labels: Sequence[str],
    bounds: Sequence[float],
    groups: dict[tuple[str, ...], list[float]],
) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, values in sorted(groups.items()):
        counts = [0] * (len(bounds) + 1)
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, c in zip([*map(str, bounds), "+Inf"], counts, strict=True):
            running += c
            cumulative.append((bound, running))
        fam.add_metric(list(key), cumulative, sum_value=sum(values))
    return fam


class StoreCollector(Collector):
    """Reads the store at each collect() (a custom collector, no state kept)."""

    def __init__(self, store: Store, dora_days: int = 30) -> None:
        self.store = store
        self.dora_days = dora_days

    def collect(self) -> Iterator[Metric]:
        counts = self.store.counts()
        executions, attempts = counts.executions, counts.attempts
        approvals, deployments = counts.approvals, counts.deployments
        ex = GaugeMetricFamily(
            "conveyor_executions",
            "Pipeline executions by current status",
            labels=["pipeline", "kind", "status"],
        )
        for pipeline, kind, status, n in executions:
            ex.add_metric([pipeline, kind or "standard", status], n)
        yield ex

        durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for type_, status, started, ended in attempts:
            durations[(type_, status)].append(max(0.0, ended - started))
        yield _histogram(
            "conveyor_action_duration_seconds",
            "Duration of finished action attempts",
            ["type", "status"],
            ACTION_BUCKETS,
            durations,
        )

        waits: dict[tuple[str, ...], list[float]] = defaultdict(list)
        pending = 0
        for status, created, decided in approvals:
            if status == ApprovalStatus.PENDING:
                pending += 1
            elif decided:
                waits[(status,)].append(max(0.0, decided - created))
        yield _histogram(
            "conveyor_approval_wait_seconds",
            "Time from an approval request to its decision",
            ["decision"],
            APPROVAL_BUCKETS,
            waits,
        )
        yield GaugeMetricFamily(
            "conveyor_approvals_pending", "Approvals waiting for a person", value=pending
        )

        deps = CounterMetricFamily(
            "conveyor_deployments", "Deployments to an environment", labels=["environment", "kind"]
        )
        rollbacks = CounterMetricFamily(
            "conveyor_rollbacks", "Rollbacks of an environment", labels=["environment"]
        )
        envs: set[str] = set()
        for env, kind, n, _last in deployments:
            envs.add(env)
            deps.add_metric([env, kind or "deploy"], n)
            if kind == "rollback":
                rollbacks.add_metric([env], n)
        yield deps
        yield rollbacks

        yield from self._environments(envs)
        yield from self._dora(sorted(envs))

    def _environments(self, envs: Iterable[str]) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(
            "conveyor_environment_healthy",
            "1 if the environment answered its health check",
            labels=["environment"],
        )
        checked = GaugeMetricFamily(
            "conveyor_environment_health_checked_timestamp_seconds",
            "When the environment's health was last checked",
            labels=["environment"],
        )
        for env, h in sorted(self.store.health_records().items()):
            healthy.add_metric([env], 1.0 if h.healthy else 0.0)
            checked.add_metric([env], h.checked_at)
        yield healthy
        yield checked
        last = GaugeMetricFamily(
            "conveyor_environment_last_deployment_timestamp_seconds",
            "When the environment's serving release was deployed",
            labels=["environment"],
        )
        info = GaugeMetricFamily(
            "conveyor_environment_release_info",
            "The release an environment serves (value 1)",
            labels=["environment", "digest", "execution", "kind"],
        )
        for env, d in sorted(self.store.current_deployment_records().items()):
            last.add_metric([env], d.at)
            info.add_metric([env, d.digest or "", d.execution_id or "", d.kind or "deploy"], 1.0)
        yield last
        yield info

    def _dora(self, envs: Sequence[str]) -> Iterator[Metric]:
        import time

        now = time.time()
        names = {
            "freq": ("conveyor_dora_deployments_per_day", "Deployments per day (DORA)"),
            "lead": ("conveyor_dora_lead_time_seconds", "Median commit-to-deploy time (DORA)"),
            "cfr": ("conveyor_dora_change_failure_rate", "Share of failed deployments (DORA)"),
            "ttr": ("conveyor_dora_time_to_restore_seconds", "Median time to restore (DORA)"),
        }
        fams = {
            k: GaugeMetricFamily(n, f"{d}, last {self.dora_days} days", labels=["environment"])
            for k, (n, d) in names.items()
        }
        for env in envs:
            m = measures(
                dora_history(self.store, env), now=now, days=self.dora_days, environment=env
            )
            values = {
                "freq": m["deploymentFrequency"]["perDay"],
                "lead": m["leadTimeForChanges"]["medianSeconds"],
                "cfr": m["changeFailureRate"]["rate"],
                "ttr": m["timeToRestore"]["medianSeconds"],
            }
            for k, v in values.items():
                if v is not None:
                    fams[k].add_metric([env], float(v))
        yield from fams.values()


def render_metrics(store: Store, *, dora_days: int = 30) -> bytes:
    """The store's metrics in the Prometheus text format (serve with CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, dora_days))
    return generate_latest(registry)
