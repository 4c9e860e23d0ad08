"""PromQL instant queries against a Prometheus server (`GET /api/v1/query`).

    client = PrometheusClient("http://127.0.0.1:9090")
    client.query('sum(rate(http_requests_total{code=~"5.."}[1m]))')  -> [Series(labels, value)]

The HTTP API answers `{"status": "success", "data": {"resultType": ..., "result": ...}}`;
a bad query answers `{"status": "error", "errorType": "bad_data", "error": "..."}` (HTTP 400).
Errors raise `PromQLError` (the query is wrong) or `ActionError` (Prometheus cannot be
reached or answers nonsense), each naming the server and the query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor.errors import ActionError


class PromQLError(ActionError):
    """Prometheus refused the query (syntax, unknown function, bad range...)."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float

    def describe(self) -> str:
        if not self.labels:
            return f"{self.value:g}"
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{{{inner}}} {self.value:g}"


class PrometheusClient:
    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> list[Series]:
        """The instant value(s) of `expr` now: one Series per vector element (a scalar is one)."""
        url = f"{self.base_url}/api/v1/query"
        try:
            resp = httpx.get(url, params={"query": expr}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ActionError(
                f"Prometheus at {self.base_url} cannot be reached "
                f"({type(exc).__name__}: {exc or 'no response'}); check "
                "`prometheus.url`"
            ) from None
        try:
            body: dict[str, Any] = resp.json()
        except ValueError:
            raise ActionError(
                f"{url} answered HTTP {resp.status_code} with something that is "
                f"not Prometheus JSON: {resp.text[:120]!r}; is `prometheus.url` "
                "the server's base URL?"
            ) from None
        if body.get("status") != "success":
            raise PromQLError(
                f"PromQL query {expr!r} failed on {self.base_url}: "
                f"{body.get('errorType', 'error')}: "
                f"{body.get('error', resp.text[:200])}"
            )
        return _series(body.get("data") or {}, expr)


def _series(data: dict[str, Any], expr: str) -> list[Series]:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [Series({}, _number(result[1]))]
    if kind == "vector" and isinstance(result, list):
        return [Series(dict(r.get("metric") or {}), _number(r["value"][1])) for r in result]
    raise PromQLError(
        f"PromQL query {expr!r} returned a {kind} result; a monitor threshold "
        "needs an instant vector or a scalar (drop the range selector [..] or "
        "wrap it in a function such as rate())"
    )


def _number(text: Any) -> float:
    try:
        return float(text)  # Prometheus sends "NaN", "+Inf" as strings: float() reads them
    except (TypeError, ValueError):
        return math.nan
