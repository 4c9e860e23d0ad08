"""DORA measures from a deployment history (pure: records in, numbers out)."""

from __future__ import annotations

import datetime as dt

from conveyor.monitoring.dora import DAY, Deployment, author_time, measures

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0


def deploy(
    at: float,
    ex: str,
    status: str = "Succeeded",
    commit_age: float | None = HOUR,
    kind: str = "deploy",
) -> Deployment:
    return Deployment(
        at=at,
        kind=kind,
        execution_id=ex,
        execution_status=status,
        commit_at=at - commit_age if commit_age is not None else None,
    )


def test_deployment_frequency_counts_releases_in_the_window_not_rollbacks() -> None:
    """Deploys inside the window count, per day and per week; rollbacks and older ones do not."""
    history = [
        deploy(NOW - 40 * DAY, "old"),
        deploy(NOW - 2 * DAY, "a"),
        deploy(NOW - DAY, "b", status="Failed"),
        deploy(NOW - DAY + 600, "r", kind="rollback"),
        deploy(NOW - HOUR, "c"),
    ]
    m = measures(history, now=NOW, days=7)
    assert m["deploymentFrequency"]["deployments"] == 3
    assert m["deploymentFrequency"]["perWeek"] == 3.0
    series = m["deploymentFrequency"]["series"]
    assert len(series) == 7 and series[-1]["date"] == "2025-03-10"
    assert [p["value"] for p in series[-3:]] == [1, 1, 1]


def test_lead_time_is_commit_author_date_to_deployment() -> None:
    """Lead time is the median of deploy time minus the deployed commit's AuthorDate."""
    history = [
        deploy(NOW - 3 * HOUR, "a", commit_age=HOUR),
        deploy(NOW - 2 * HOUR, "b", commit_age=3 * HOUR),
        deploy(NOW - HOUR, "c", commit_age=10 * HOUR),
        deploy(NOW - 0.5 * HOUR, "d", commit_age=None),
    ]
    lead = measures(history, now=NOW, days=1)["leadTimeForChanges"]
    assert lead["count"] == 3
    assert lead["medianSeconds"] == 3 * HOUR
    assert lead["series"][-1]["value"] == 3.0  # hours


def test_change_failure_rate_and_time_to_restore_after_a_rollback() -> None:
    """A deploy whose execution failed and was rolled back is a failure restored by the rollback."""
    history = [
        deploy(NOW - 5 * HOUR, "v1"),
        deploy(NOW - 4 * HOUR, "v2", status="Failed"),
        deploy(NOW - 4 * HOUR + 90, "rb", kind="rollback"),
        deploy(NOW - 3 * HOUR, "v3"),
        deploy(NOW - 2 * HOUR, "v4"),
    ]
    m = measures(history, now=NOW, days=1)
    cfr = m["changeFailureRate"]
    assert (cfr["failed"], cfr["deployments"], cfr["rate"]) == (1, 4, 0.25)
    ttr = m["timeToRestore"]
    assert ttr["restored"] == 1 and ttr["open"] == 0
    assert ttr["medianSeconds"] == 90
    assert ttr["series"][-1]["value"] == 1.5  # minutes


def test_a_succeeded_deploy_followed_by_a_manual_rollback_is_a_failure() -> None:
    """The next deployment being a rollback marks a change as failed even if its run succeeded."""
    history = [
        deploy(NOW - 5 * HOUR, "v1"),
        deploy(NOW - 4 * HOUR, "v2"),
        deploy(NOW - 2 * HOUR, "rb", kind="rollback"),
    ]
    m = measures(history, now=NOW, days=1)
    assert m["changeFailureRate"]["rate"] == 0.5
    assert m["timeToRestore"]["medianSeconds"] == 2 * HOUR


def test_an_unrestored_failure_is_open_and_a_later_failure_does_not_restore_it() -> None:
    """Failures with no good deployment after them are counted as open, not as restored."""
    history = [
        deploy(NOW - 5 * HOUR, "v1", status="Failed"),
        deploy(NOW - 4 * HOUR, "v2", status="Failed"),
    ]
    ttr = measures(history, now=NOW, days=1)["timeToRestore"]
    assert (ttr["restored"], ttr["open"], ttr["medianSeconds"]) == (0, 2, None)


def test_no_deployment_gives_empty_measures_not_zero_division() -> None:
    """An environment never deployed to has no rate, no lead time, and all-zero series."""
    m = measures([], now=NOW, days=30)
    assert m["changeFailureRate"]["rate"] is None
    assert m["leadTimeForChanges"]["medianSeconds"] is None
    assert len(m["deploymentFrequency"]["series"]) == 30
    assert {p["value"] for p in m["deploymentFrequency"]["series"]} == {0}


def test_long_windows_use_weekly_points() -> None:
    """A 180-day window is charted per week (26 points), not per day."""
    m = measures([deploy(NOW - 100 * DAY, "a")], now=NOW, days=180)
    assert m["bucket"] == "week"
    assert len(m["deploymentFrequency"]["series"]) == 26
    assert sum(p["value"] for p in m["deploymentFrequency"]["series"]) == 1


def test_author_time_prefers_the_deployed_commit() -> None:
    """The AuthorDate of the deployed commit is used; another source's date never stands in for
    it; only a deployment with no recorded commit falls back to the earliest."""
    revs = {
        "Tests": {"CommitId": "t1", "AuthorDate": "2025-03-01T10:00:00+00:00"},
        "App": {"CommitId": "a1", "AuthorDate": "2025-03-05T10:00:00+02:00"},
    }
    assert author_time(revs, "a1") == dt.datetime(2025, 3, 5, 8, 0, tzinfo=dt.UTC).timestamp()
    assert author_time(revs, "zz") is None
    assert author_time(revs, None) == dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC).timestamp()
    assert author_time({"App": {"CommitId": "a1", "AuthorDate": "not a date"}}, "a1") is None
