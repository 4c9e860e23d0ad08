"""Extension hooks installed on every engine (rollback, alerts). Parts register here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

INSTALLERS: list[Callable[[Any], None]] = []


def install(engine: Any) -> None:
    _load_builtin()
    for fn in INSTALLERS:
        fn(engine)


def _load_builtin() -> None:
    with contextlib.suppress(ImportError):
        import conveyor.engine.rollback  # noqa: F401 - registers its installer
