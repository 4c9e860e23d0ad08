"""Action logs: one file per attempt under the state dir, secrets masked, followed live."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from conveyor.model.masking import Masker, StreamMasker


class FileLog:
    """A LogSink writing to a file; every registered secret is replaced by ***.

    Masking follows `conveyor.model.masking`: multi-line secrets and their encodings, even
    when split over several writes (the tail that may start a secret is held until the next
    write or `close`).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("a", encoding="utf-8", buffering=1)
        self._masker = Masker()
        self._stream = StreamMasker(self._masker)
        self._lock = threading.Lock()

    def mask(self, secret: str) -> None:
        with self._lock:
            self._masker.add(secret)

    def write(self, text: str) -> None:
        with self._lock:
            text = self._stream.feed(text)
            if text and not self._f.closed:
                self._f.write(text)

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.write(self._stream.flush())
            self._f.close()


def log_path(state_dir: Path, execution_id: str, stage: str, action: str, attempt: int) -> Path:
    return state_dir / "logs" / execution_id / f"{stage}.{action}.{attempt}.log"


def follow(path: Path, done: Callable[[], bool], poll: float = 0.2) -> Iterator[str]:
    """Yield a log's lines as they are written, until `done()` and the file is drained."""
    while not path.exists():
        if done():
            return
        time.sleep(poll)
    with path.open("r", encoding="utf-8", errors="replace") as f:
        while True:
            line = f.readline()
            if line:
                yield line
                continue
            if done():
                rest = f.read()
                if rest:
                    yield rest
                return
            time.sleep(poll)
