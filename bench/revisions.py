"""What one row per source revision costs the store (issue 14: lost revisions).

On SQLite (a temporary file) with N executions of a two-source pipeline, each source's
revision recorded through `Store.record_revision` (insert the row, rewrite the execution's
column under its lock):

  - record_revision: p50/p95 per call;
  - list_executions(limit=50, light=True), the history list that merges the rows: p50/p95;
  - execution(light=True): p50/p95.

Run: `.venv/bin/python bench/revisions.py [N]` (default 2,000 executions).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from conveyor.store.db import Store  # noqa: E402 - after the path set-up above


def _pcts(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p50 {statistics.median(samples) * 1000:.2f} ms, p95 {q[18] * 1000:.2f} ms"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'b.db'}")
        ids = [
            store.create_execution("p", {"name": "p"}, variables={}, trigger={}) for _ in range(n)
        ]
        record: list[float] = []
        for ex in ids:
            for pos, name in enumerate(("app", "tests")):
                t0 = time.perf_counter()
                store.record_revision(ex, name, {"CommitId": name * 10}, position=pos)
                record.append(time.perf_counter() - t0)
        lists: list[float] = []
        gets: list[float] = []
        for i in range(200):
            t0 = time.perf_counter()
            rows = store.list_executions(limit=50, light=True)
            lists.append(time.perf_counter() - t0)
            assert all(set(r.revisions) == {"app", "tests"} for r in rows)
            t0 = time.perf_counter()
            store.execution(ids[i % n], light=True)
            gets.append(time.perf_counter() - t0)
        store.close()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, SQLite, N={n}")
    print(f"record_revision           {_pcts(record)}")
    print(f"list_executions(50,light) {_pcts(lists)}")
    print(f"execution(light)          {_pcts(gets)}")


if __name__ == "__main__":
    main()
