"""poll_until: the one polling loop, with a fake clock (no real waiting)."""

from __future__ import annotations

from conveyor.timing import poll_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_accepted_value_without_sleeping_after_it() -> None:
    """The value `done` accepts is returned at once; probes stop there."""
    clock = FakeClock()
    values = iter([1, 2, 3, 4])
    got = poll_until(
        lambda: next(values),
        lambda v: v == 3,
        deadline=10,
        interval=1,
        clock=clock,
        sleep=clock.sleep,
    )
    assert got == 3
    assert clock.sleeps == [1, 1]


def test_returns_the_last_value_when_the_deadline_passes() -> None:
    """Past the deadline the last probed value comes back, so the caller sees why it waited."""
    clock = FakeClock()
    count = iter(range(100))
    got = poll_until(
        lambda: next(count),
        lambda v: False,
        deadline=2.5,
        interval=1,
        clock=clock,
        sleep=clock.sleep,
    )
    assert got == 3  # probed at 0, 1, 2 and 3 (3 >= 2.5)
    assert clock.now == 3


def test_no_deadline_waits_until_done() -> None:
    """deadline=None polls until done, however long that takes."""
    clock = FakeClock()
    got = poll_until(
        lambda: clock.now,
        lambda v: v >= 50,
        deadline=None,
        interval=5,
        clock=clock,
        sleep=clock.sleep,
    )
    assert got == 50
