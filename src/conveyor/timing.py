"""Waiting for something with a deadline: `poll_until`, the one polling loop.

    state = poll_until(lambda: api.get(...), lambda s: s.done, deadline=end, interval=1.0)

`probe()` is called at once and then every `interval` seconds until `done(value)` holds or
the monotonic `deadline` has passed; the last value is returned either way, so the caller
tells "done" from "ran out of time" by looking at it. `clock` and `sleep` are injectable:
tests pass a fake clock, and a watcher passes `event.wait` as `sleep` so that it wakes up
as soon as the event is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    deadline: float | None,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call `probe` until `done` accepts its value or `deadline` passes; the last value."""
    while True:
        value = probe()
        if done(value) or (deadline is not None and clock() >= deadline):
            return value
        sleep(interval)
