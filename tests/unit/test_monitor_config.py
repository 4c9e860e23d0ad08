"""The monitor action's config: nonsense thresholds are refused at validation, with file:line."""

from __future__ import annotations

import pytest

from conveyor.actions.monitor import Monitor, MonitorConfig
from conveyor.actions.registry import ActionRegistry
from conveyor.errors import ValidationFailed
from conveyor.model.pipeline import Action
from conveyor.monitoring.probes import ProbeSeries, ProbeTarget, Sample, percentile
from conveyor.spec.pipeline_file import load_pipeline

PIPELINE = """\
name: shop
environments:
  prod: {{registry: prod, port: 8080}}
stages:
  - name: Prod
    actions:
      - name: Watch
        type: monitor
        environment: prod
{timeout}        config:
{config}
"""


def problems(config: str, timeout: str = "") -> list[str]:
    text = PIPELINE.format(config=config, timeout=timeout)
    registry = ActionRegistry({"monitor": Monitor})
    try:
        load_pipeline("pipeline.yaml", registry.catalogue(), text=text)
    except ValidationFailed as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_sensible_config_is_accepted() -> None:
    """Bake, interval, probes and a PromQL query with thresholds validate without a problem."""
    assert (
        problems("""\
          bake: 2m
          interval: 5
          timeout: 2
          probes:
            - {path: /healthz, maxLatencyMs: 500, minAvailability: 0.99}
            - {url: "http://127.0.0.1:8080/api", expectStatus: [200, 204]}
          prometheus:
            url: http://127.0.0.1:9090
            queries: [{name: errors, query: "sum(rate(x[1m]))", max: 0.5}]""")
        == []
    )


def test_negative_and_zero_thresholds_are_refused_with_their_line() -> None:
    """A negative latency, a zero interval and an availability above 1 each name their line."""
    found = problems("""\
          interval: 0
          probes:
            - {path: /healthz, maxLatencyMs: -5}
            - {path: /, minAvailability: 1.5}""")
    assert any(
        p.startswith("pipeline.yaml:11:") and "interval" in p and "positive" in p for p in found
    ), found
    assert any(
        p.startswith("pipeline.yaml:13:") and "maxLatencyMs" in p and "(got -5)" in p for p in found
    ), found
    assert any(
        p.startswith("pipeline.yaml:14:") and "minAvailability" in p and "(0, 1]" in p
        for p in found
    ), found


def test_a_p95_threshold_above_the_request_timeout_is_refused() -> None:
    """maxLatencyMs at or above the per-request timeout cannot be measured: a clear message."""
    found = problems("""\
          timeout: 2
          probes:
            - {path: /healthz, maxLatencyMs: 3000}""")
    assert len(found) == 1, found
    assert found[0].startswith("pipeline.yaml:13:")
    assert "3000 ms is not below the request timeout (2 s = 2000 ms)" in found[0]


def test_a_bake_shorter_than_the_interval_is_refused() -> None:
    """A bake that would probe only once is refused at the bake's line."""
    found = problems("""\
          bake: 3s
          interval: 10""")
    assert len(found) == 1 and found[0].startswith("pipeline.yaml:11:"), found
    assert "shorter than the interval between probes (10 s)" in found[0]


def test_an_action_timeout_that_cuts_the_bake_short_is_refused() -> None:
    """An action timeout at or below the bake would kill the monitor mid-bake."""
    found = problems("          bake: 5m", timeout="        timeout: 60\n")
    assert len(found) == 1 and found[0].startswith("pipeline.yaml:10:"), found
    assert "does not fit in the action's timeout (60 s)" in found[0]


def test_queries_need_a_bound_and_probes_one_address() -> None:
    """A query with neither max nor min, and a probe with both path and url, are refused."""
    found = problems("""\
          probes: [{path: /a, url: "http://127.0.0.1:1/b"}]
          prometheus:
            url: http://127.0.0.1:9090
            queries: [{name: q, query: up}]""")
    assert any("give `path`" in p and "not both" in p for p in found), found
    assert any("query 'q' needs a threshold" in p for p in found), found


def test_unresolved_variables_are_left_for_run_time() -> None:
    """A bake given as a pipeline variable is not judged before the variable has a value."""
    cfg = MonitorConfig.model_validate({"bake": "#{variables.BAKE}"})
    assert Monitor.extra_checks(Action("W", "monitor"), cfg) == []


def test_the_planned_rounds_cover_the_bake() -> None:
    """A 60 s bake probed every 5 s takes 13 rounds (0 s to 60 s); 61 s takes 14 (the last at 61 s)."""
    assert MonitorConfig(bake="60s", interval=5).planned_rounds() == 13
    assert MonitorConfig(bake=61, interval=5).planned_rounds() == 14


def test_availability_breaches_as_soon_as_the_minimum_is_out_of_reach() -> None:
    """With 10 probes planned at 0.9, one failure is tolerated and the second one breaches."""
    s = ProbeSeries(ProbeTarget("http://x/healthz", min_availability=0.9))
    s.add(Sample(0, True, 200, 5.0))
    s.add(Sample(1, False, 500, 5.0, body="boom"))
    assert s.breaches(planned=10) == []
    s.add(Sample(2, False, 500, 5.0, body="boom"))
    (msg,) = s.breaches(planned=10)
    assert msg == "availability 0.33 < 0.9 over 3 probes (2 failed; last: HTTP 500 'boom')"


def test_p95_latency_uses_the_nearest_rank() -> None:
    """p95 of 1..20 ms is 19 ms; a 15 ms threshold is breached with the measured value."""
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0
    assert percentile([], 95) is None
    s = ProbeSeries(ProbeTarget("http://x/", max_latency_ms=15))
    for i in range(1, 21):
        s.add(Sample(i, True, 200, float(i)))
    assert s.breaches() == ["p95 latency 19 ms > 15 ms over 20 answers"]


@pytest.mark.parametrize("value", ["-1s", "0", "soon"])
def test_a_bake_that_is_not_a_positive_duration_is_refused(value: str) -> None:
    """bake: -1s, 0 or a word are refused with what a duration looks like."""
    found = problems(f'          bake: "{value}"')
    assert found and found[0].startswith("pipeline.yaml:11:"), found
