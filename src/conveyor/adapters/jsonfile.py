"""Reading a JSON file someone wrote (a test report, a package.json): its data, or one line
that says which file, which line and what is wrong, raised as the caller's error class."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_json(path: Path, error: Callable[[str], Exception], fix: str = "") -> Any:
    """The JSON in `path`; `error(message)` if it cannot be read or parsed (`fix`: what to do)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(
            f"{path}:{e.lineno}: not valid JSON at column {e.colno} ({e.msg}){fix}"
        ) from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror}){fix}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: cannot be read ({e.reason}: not UTF-8 text){fix}") from None
