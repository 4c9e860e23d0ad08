"""`monitor`: bake a release — probe its environment for a while and fail on a breach.

    - name: Monitor
      type: monitor
      environment: prod
      runOrder: 3                       # after the deploy of the same stage
      config:
        bake: 60s                       # how long to watch (seconds or 30s / 5m / 1h)
        interval: 5                     # seconds between two rounds of probes
        timeout: 2                      # seconds per HTTP request
        probes:                         # default: [{path: /healthz}] on the environment's URL
          - path: /healthz              # relative to the environment's URL, or
          # url: http://127.0.0.1:8080/api/health
            expectStatus: 200           # or a list: [200, 204]
            minAvailability: 0.99       # share of probes answered with an expected status
            maxLatencyMs: 500           # p95 latency threshold
        prometheus:                     # optional
          url: http://127.0.0.1:9090
          queries:
            - name: error-rate
              query: sum(rate(http_requests_total{code=~"5.."}[1m]))
              max: 0.5                  # and/or min; noData: ok (default) | breach

Every `interval` seconds each probe is requested once and each PromQL query evaluated.
The action fails (reason ActionFailed) on the first breach that is certain: a query beyond
its bound, or an availability that cannot reach its minimum any more even if every
remaining probe succeeded; the p95 latency is judged at the end of the bake. The message
names what broke, e.g. `availability 0.62 < 0.99 over 25 probes (...); p95 latency 812 ms >
500 ms`, and `details["monitor"]` holds every measurement. A failed monitor rolls the stage
back (conveyor.engine.rollback). Output variables: `Verdict` (healthy | breach),
`Availability` (the lowest of the probes), `P95LatencyMs` (the highest).

"The tool broke" (reason ToolError, no rollback): the URL does not answer at all from the
first probe on (a wrong URL, not a sick release), Prometheus cannot be reached, or a query
is refused (PromQL syntax) — each with a message naming the URL or the query.

Nonsense thresholds are refused at `conveyor validate`: a zero or negative latency,
interval, timeout or bake; an availability outside (0, 1]; a p95 threshold at or above the
request timeout (a slow request times out before it is measured); a bake shorter than the
interval; an action timeout that would cut the bake short.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import httpx
from pydantic import field_validator, model_validator

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.errors import ActionError, ConfigError
from conveyor.model.pipeline import Action, Environment
from conveyor.model.status import Reason
from conveyor.monitoring.probes import ProbeSeries, ProbeTarget, probe_once
from conveyor.monitoring.prometheus import PrometheusClient, Series
from conveyor.spec.pipeline_file import parse_duration

DEFAULT_BAKE = "60s"
ENGINE_DEFAULT_TIMEOUT = 3600  # the engine's timeout for an action without `timeout`


def _unresolved(v: object) -> bool:
    return isinstance(v, str) and "#{" in v


def _positive(name: str, unit: str, v: float | None) -> float | None:
    if v is not None and not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive number of {unit} (got {v:g})")
    return v


class ProbeConfig(ActionConfig):
    path: str | None = None
    url: str | None = None
    expectStatus: int | list[int] = 200
    maxLatencyMs: float | None = None
    minAvailability: float = 0.99

    @field_validator("maxLatencyMs")
    @classmethod
    def _latency(cls, v: float | None) -> float | None:
        return _positive("maxLatencyMs (the p95 latency threshold)", "milliseconds", v)

    @field_validator("minAvailability")
    @classmethod
    def _availability(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(
                f"minAvailability is a share of successful probes in (0, 1], e.g. 0.99 (got {v:g})"
            )
        return v

    @field_validator("expectStatus")
    @classmethod
    def _status(cls, v: int | list[int]) -> int | list[int]:
        codes = [v] if isinstance(v, int) else v
        bad = [c for c in codes if not 100 <= c <= 599]
        if bad or not codes:
            raise ValueError(f"expectStatus must be HTTP status codes 100..599 (got {v})")
        return v

    @model_validator(mode="after")
    def _where(self) -> ProbeConfig:
        if self.path and self.url:
            raise ValueError("give `path` (relative to the environment's URL) or `url`, not both")
        if (
            self.url
            and not _unresolved(self.url)
            and not self.url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
        return self

    def codes(self) -> frozenset[int]:
        return frozenset(
            [self.expectStatus] if isinstance(self.expectStatus, int) else self.expectStatus
        )


class QueryConfig(ActionConfig):
    name: str
    query: str
    max: float | None = None
    min: float | None = None
    noData: Literal["ok", "breach"] = "ok"

    @model_validator(mode="after")
    def _bounds(self) -> QueryConfig:
        if self.max is None and self.min is None:
            raise ValueError(f"query '{self.name}' needs a threshold: `max`, `min` or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(
                f"query '{self.name}': min {self.min:g} is above max {self.max:g}; "
                "no value could pass"
            )
        if not self.query.strip():
            raise ValueError(f"query '{self.name}' is empty")
        return self

    def breach(self, s: Series) -> str | None:
        if math.isnan(s.value):
            return f"query '{self.name}' = NaN ({s.describe()})"
        if self.max is not None and s.value > self.max:
            return f"query '{self.name}' {s.describe()} > {self.max:g}"
        if self.min is not None and s.value < self.min:
            return f"query '{self.name}' {s.describe()} < {self.min:g}"
        return None


class PrometheusConfig(ActionConfig):
    url: str
    queries: list[QueryConfig]

    @field_validator("queries")
    @classmethod
    def _some(cls, v: list[QueryConfig]) -> list[QueryConfig]:
        if not v:
            raise ValueError("list at least one query (name, query, max/min)")
        names = [q.name for q in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate query name(s): {', '.join(dup)}")
        return v


class MonitorConfig(ActionConfig):
    bake: int | str = DEFAULT_BAKE
    interval: float = 5.0
    timeout: float = 2.0
    probes: list[ProbeConfig] = []
    prometheus: PrometheusConfig | None = None

    @field_validator("bake")
    @classmethod
    def _bake(cls, v: int | str) -> int | str:
        if _unresolved(v):
            return v
        secs = parse_duration(v)
        if not secs or secs <= 0:
            raise ValueError(f"bake must be a positive duration such as 60s or 5m (got {v!r})")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        return _positive("interval (seconds between probes)", "seconds", v) or v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        return _positive("timeout (per request)", "seconds", v) or v

    def bake_seconds(self) -> int:
        return parse_duration(self.bake) or 0

    def planned_rounds(self) -> int:
        """Rounds of probes over the bake: at 0, interval, 2*interval... and one at its end."""
        return rounds_for(self.bake_seconds(), self.interval)


def rounds_for(bake: float, interval: float) -> int:
    """Probes at 0, interval, 2*interval... and the last one at the end of the bake, so a
    release said healthy for a 10 s bake was seen healthy at 10 s."""
    return math.ceil(bake / interval) + 1


class Monitor(BaseAction):
    type_name: ClassVar[str] = "monitor"
    Config: ClassVar[type[ActionConfig]] = MonitorConfig
    needs_environment: ClassVar[bool] = True
    output_variables: ClassVar[frozenset[str] | None] = frozenset(
        {"Verdict", "Availability", "P95LatencyMs"}
    )

    @classmethod
    def extra_checks(
        cls, action: Action, config: ActionConfig
    ) -> Sequence[tuple[tuple[str | int, ...], str]]:
        assert isinstance(config, MonitorConfig)
        out: list[tuple[tuple[str | int, ...], str]] = []
        timeout_ms = config.timeout * 1000
        for i, p in enumerate(config.probes):
            if p.maxLatencyMs is not None and p.maxLatencyMs >= timeout_ms:
                out.append(
                    (
                        ("config", "probes", i, "maxLatencyMs"),
                        f"the p95 threshold {p.maxLatencyMs:g} ms is not below the request "
                        f"timeout ({config.timeout:g} s = {timeout_ms:g} ms): a request that "
                        "slow times out before its latency is measured; lower maxLatencyMs "
                        "or raise `timeout`",
                    )
                )
        if _unresolved(config.bake):
            return out
        bake = config.bake_seconds()
        if bake < config.interval:
            out.append(
                (
                    ("config", "bake"),
                    f"the bake ({bake} s) is shorter than the interval between probes "
                    f"({config.interval:g} s): it would take a single round of probes; "
                    "lengthen `bake` or shorten `interval`",
                )
            )
        limit = action.timeout_seconds or ENGINE_DEFAULT_TIMEOUT
        if bake + config.timeout >= limit:
            where = ("timeout",) if action.timeout_seconds else ("config", "bake")
            out.append(
                (
                    where,
                    f"the bake ({bake} s) does not fit in the action's timeout ({limit} s"
                    f"{'' if action.timeout_seconds else ', the default'}): the engine "
                    "would stop the monitor before the end of its bake; set the action's "
                    "`timeout` above the bake",
                )
            )
        return out

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = MonitorConfig.model_validate(dict(ctx.config))
        env = ctx.required_environment("monitors")
        targets = _targets(cfg, lambda: _base_url(ctx, env))
        series = [ProbeSeries(t) for t in targets]
        prom = PrometheusClient(cfg.prometheus.url, timeout=cfg.timeout) if cfg.prometheus else None
        queries = list(cfg.prometheus.queries) if cfg.prometheus else []
        last_values: dict[str, list[dict[str, Any]]] = {}
        bake = float(cfg.bake_seconds())
        remaining = ctx.remaining()
        if remaining is not None and bake > remaining - cfg.timeout - 2:
            bake = max(cfg.interval, remaining - cfg.timeout - 2)
            ctx.log.write(f"the action's deadline shortens the bake to {bake:.0f} s\n")
        planned = rounds_for(bake, cfg.interval)
        log = ctx.log.write
        what = ", ".join(t.describe() for t in targets)
        if queries:
            what += f" and {len(queries)} PromQL quer{'y' if len(queries) == 1 else 'ies'}"
        log(
            f"baking {env.name} for {bake:.0f} s: {planned} round(s) every {cfg.interval:g} s "
            f"of {what}\n"
        )
        started = time.monotonic()
        breaches: list[str] = []
        rounds = 0
        with httpx.Client(timeout=cfg.timeout) as client:
            while rounds < planned:
                if ctx.cancel.is_set():
                    raise ActionError(
                        f"monitoring of {env.name} stopped after {rounds} round(s) "
                        "(the execution was stopped or timed out)"
                    )
                rounds += 1
                for s in series:
                    sample = probe_once(client, s.target)
                    s.add(sample)
                    if rounds == 1 and sample.status is None:
                        raise ActionError(
                            f"{s.target.describe()} does not answer ({sample.error}); nothing "
                            f"listens there: check the probe's `url`/`path` and the environment "
                            f"'{env.name}' URL ({env.url or 'its front door'})"
                        )
                    lat = f" {sample.latency_ms:.0f} ms" if sample.latency_ms is not None else ""
                    log(
                        f"[{rounds}/{planned}] {s.target.describe()}: {sample.outcome()}{lat}"
                        f"{'' if sample.ok else ' UNEXPECTED ' + repr(sample.body or sample.error)}"
                        "\n"
                    )
                breaches = [b for s in series for b in _named(s, s.breaches(planned), series)]
                if prom is not None:
                    breaches += _query_round(
                        prom, queries, last_values, log, f"[{rounds}/{planned}]"
                    )
                if breaches:
                    break
                next_at = started + min(rounds * cfg.interval, bake)
                if rounds < planned:
                    ctx.cancel.wait(max(0.0, next_at - time.monotonic()))
        if not breaches:
            breaches = [b for s in series for b in _named(s, s.breaches(), series)]
        elapsed = time.monotonic() - started
        details = {
            "monitor": {
                "environment": env.name,
                "verdict": "breach" if breaches else "healthy",
                "bakeSeconds": bake,
                "intervalSeconds": cfg.interval,
                "rounds": rounds,
                "plannedRounds": planned,
                "elapsedSeconds": round(elapsed, 3),
                "probes": [s.summary() for s in series],
                "queries": [_query_summary(q, last_values) for q in queries],
                "breaches": breaches,
            }
        }
        variables = _variables(series, breaches)
        if breaches:
            message = (
                f"{env.name} breached its thresholds after {elapsed:.0f} s of a "
                f"{bake:.0f} s bake: {'; '.join(breaches)}"
            )
            log(message + "\n")
            return ActionResult(
                False, str(Reason.ACTION_FAILED), message, variables, details=details
            )
        summary = "; ".join(
            f"{s.target.describe()}: availability {s.availability:.2f} over {s.count} probes"
            + (f", p95 {s.p95_ms:.0f} ms" if s.p95_ms is not None else "")
            for s in series
            if s.availability is not None
        )
        return ActionResult(
            message=f"{env.name} healthy for {elapsed:.0f} s: {summary}",
            variables=variables,
            details=details,
        )


def _variables(series: list[ProbeSeries], breaches: list[str]) -> dict[str, str]:
    """The output variables: the verdict, the worst availability and p95 latency."""
    avail = min((s.availability for s in series if s.availability is not None), default=1.0)
    p95s = [p for s in series if (p := s.p95_ms) is not None]
    return {
        "Verdict": "breach" if breaches else "healthy",
        "Availability": f"{avail:.4f}",
        "P95LatencyMs": f"{max(p95s):.1f}" if p95s else "",
    }


def _query_round(
    prom: PrometheusClient,
    queries: list[QueryConfig],
    last_values: dict[str, list[dict[str, Any]]],
    log: Callable[[str], None],
    where: str,
) -> list[str]:
    """Evaluate each PromQL query once; its breaches (values kept in LAST_VALUES)."""
    breaches: list[str] = []
    for q in queries:
        values = prom.query(q.query)
        last_values[q.name] = [{"labels": v.labels, "value": v.value} for v in values]
        breaches += [b for v in values if (b := q.breach(v))]
        if not values and q.noData == "breach":
            breaches.append(f"query '{q.name}' returned no data")
        log(f"{where} query '{q.name}': {', '.join(v.describe() for v in values) or 'no data'}\n")
    return breaches


def _query_summary(q: QueryConfig, last_values: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "name": q.name,
        "query": q.query,
        "max": q.max,
        "min": q.min,
        "values": last_values.get(q.name, []),
    }


def _named(s: ProbeSeries, breaches: list[str], all_series: list[ProbeSeries]) -> list[str]:
    """Prefix the URL when several probes run, so the message says which one broke."""
    if len(all_series) == 1:
        return breaches
    return [f"{s.target.describe()}: {b}" for b in breaches]


def _base_url(ctx: ActionContext, env: Environment) -> str:
    if env.url:
        return env.url
    if env.driver == "podman":
        return ctx.services.platform.podman_environment(env).url
    raise ConfigError(
        f"environment '{env.name}' has no `url`: set it in the pipeline file, or "
        "give each probe of the monitor an absolute `url`"
    )


def _targets(cfg: MonitorConfig, base: Callable[[], str]) -> list[ProbeTarget]:
    probes = cfg.probes or [ProbeConfig(path="/healthz")]
    out = []
    for p in probes:
        url = p.url or base().rstrip("/") + "/" + (p.path or "/healthz").lstrip("/")
        out.append(ProbeTarget(url, p.codes(), p.maxLatencyMs, p.minAvailability))
    return out
