"""HTTP probes of a running environment: availability, status codes and latency p95.

A `ProbeTarget` is one URL with its thresholds; each `probe_once` is one GET, recorded as a
`Sample`. A `ProbeSeries` accumulates the samples of one target over a bake and judges them:

- availability = samples answered with an expected status / samples taken;
- latency p95 over the answered samples (nearest-rank: the smallest value with at least 95 %
  of the samples at or below it);
- a breach is a measurement beyond its threshold; with `planned` (the number of probes the
  bake will take) a series also knows when availability can no longer reach its minimum,
  so a bake fails as soon as the outcome is certain instead of waiting for its end.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class ProbeTarget:
    url: str
    expect_status: frozenset[int] = frozenset({200})
    max_latency_ms: float | None = None
    min_availability: float = 0.99

    def describe(self) -> str:
        return f"GET {self.url}"


@dataclass(frozen=True)
class Sample:
    at: float
    ok: bool
    status: int | None = None  # None: no HTTP answer at all
    latency_ms: float | None = None
    error: str | None = None  # why there was no answer (connection refused, timeout...)
    body: str = ""  # the first bytes of an unexpected answer, for the message

    def outcome(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return (self.error or "no answer").split(":", 1)[0]


def probe_once(client: httpx.Client, target: ProbeTarget) -> Sample:
    """One GET of the target (no exception: a failure is a sample too)."""
    start = time.perf_counter()
    now = time.time()
    try:
        resp = client.get(target.url)
    except httpx.HTTPError as exc:
        return Sample(now, False, error=f"{type(exc).__name__}: {exc or 'no response'}")
    latency = (time.perf_counter() - start) * 1000.0
    ok = resp.status_code in target.expect_status
    body = "" if ok else resp.text.strip().replace("\n", " ")[:80]
    return Sample(now, ok, resp.status_code, latency, body=body)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ProbeSeries:
    target: ProbeTarget
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def good(self) -> int:
        return sum(1 for s in self.samples if s.ok)

    @property
    def availability(self) -> float | None:
        return self.good / self.count if self.samples else None

    @property
    def p95_ms(self) -> float | None:
        return percentile([s.latency_ms for s in self.samples if s.latency_ms is not None], 95)

    def outcomes(self) -> dict[str, int]:
        return dict(Counter(s.outcome() for s in self.samples))

    def answered(self) -> bool:
        return any(s.status is not None for s in self.samples)

    def breaches(self, planned: int | None = None) -> list[str]:
        """Measurements beyond their thresholds, worded for a person.

        With `planned`, availability breaches as soon as it cannot reach its minimum even if
        every remaining probe succeeds; latency is judged on what was measured so far.
        """
        out: list[str] = []
        t = self.target
        avail = self.availability
        if avail is not None:
            total = max(planned or 0, self.count)
            best = (self.good + (total - self.count)) / total
            if avail < t.min_availability and (planned is None or best < t.min_availability):
                failures = [s for s in self.samples if not s.ok]
                last = failures[-1]
                detail = (
                    f"HTTP {last.status} {last.body!r}"
                    if last.status is not None
                    else last.error or "no answer"
                )
                out.append(
                    f"availability {avail:.2f} < {t.min_availability:g} over {self.count} "
                    f"probe{'s' if self.count != 1 else ''} "
                    f"({self.count - self.good} failed; last: {detail})"
                )
        p95 = self.p95_ms
        if t.max_latency_ms is not None and p95 is not None and p95 > t.max_latency_ms:
            answered = sum(1 for s in self.samples if s.latency_ms is not None)
            out.append(
                f"p95 latency {p95:.0f} ms > {t.max_latency_ms:g} ms over {answered} answers"
            )
        return out

    def summary(self) -> dict[str, Any]:
        p95 = self.p95_ms
        avail = self.availability
        return {
            "url": self.target.url,
            "probes": self.count,
            "succeeded": self.good,
            "availability": round(avail, 4) if avail is not None else None,
            "minAvailability": self.target.min_availability,
            "p95LatencyMs": round(p95, 1) if p95 is not None else None,
            "maxLatencyMs": self.target.max_latency_ms,
            "expectStatus": sorted(self.target.expect_status),
            "outcomes": self.outcomes(),
        }


def check(urls: Iterable[str], timeout: float = 5.0) -> dict[str, Sample]:
    """One GET per URL expecting a 2xx/3xx answer (the watcher's reading)."""
    out: dict[str, Sample] = {}
    with httpx.Client(timeout=timeout) as client:
        for url in urls:
            out[url] = probe_once(client, ProbeTarget(url, frozenset(range(200, 400))))
    return out
