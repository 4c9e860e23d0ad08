"""What 1,000 waiting approvals cost the engine: memory (RSS), CPU while they wait, threads,
and how long another pipeline takes beside them (issue 12: waiting holds no worker).

A pipeline `gated` (executionMode PARALLEL: an approval, then a `true` step) is started N
times; the engine runs in this process until every approval is open and parked. Then, for
a window of W seconds, the bench reads the process's CPU time, its RSS (/proc/self/status)
and its thread count, runs one other pipeline (a `true` step) to its end, and finally
approves every waiting execution and times how long the engine takes to finish them all.

    .venv/bin/python bench/waiting_approvals.py                    # SQLite, 1,000, 20 s window
    .venv/bin/python bench/waiting_approvals.py --db postgresql --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

GATED = """name: gated
executionMode: PARALLEL
stages:
  - name: Gate
    actions: [{name: approve, type: approval, config: {timeout: 7d}}]
  - name: After
    actions: [{name: after, type: shell, config: {commands: ["true"]}}]
"""
OTHER = """name: other
stages:
  - name: Build
    actions: [{name: build, type: shell, config: {commands: ["true"]}}]
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(what: object, timeout: float) -> float:
    t0 = time.perf_counter()
    while not what():  # type: ignore[operator]
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"gave up after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - t0


def run(db_url: str | None, n: int, window: float, db: str) -> dict[str, object]:
    from conveyor.bootstrap import build
    from conveyor.engine.gate import decide
    from conveyor.settings import Settings
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        url = db_url or f"sqlite:///{home / 'c.db'}"
        app = build(Settings(state_dir=home / "state", database_url=url, poll_seconds=0.2))
        for name, text in (("gated", GATED), ("other", OTHER)):
            f = home / f"{name}.yaml"
            f.write_text(text)
            p = load_pipeline(f, app.registry.catalogue())
            doc, _ = load(f)
            app.store.save_pipeline(p.name, doc, str(f))
        eng = app.engine()
        rss0, threads0 = rss_mb(), threading.active_count()
        ids = [eng.start("gated") for _ in range(n)]
        stop = threading.Event()
        loop = threading.Thread(target=eng.run, args=(stop,), daemon=True)
        loop.start()
        try:
            open_s = wait(lambda: len(eng.quiet) == n, 900)
            steps = 0
            step = eng.step

            def counted() -> None:
                nonlocal steps
                steps += 1
                step()

            eng.step = counted  # type: ignore[method-assign]
            load0 = os.getloadavg()[0]
            cpu0, t0 = time.process_time(), time.perf_counter()
            time.sleep(window)
            cpu = time.process_time() - cpu0
            idle_wall = time.perf_counter() - t0
            rss, threads = rss_mb(), threading.active_count()
            other = eng.start("other")
            other_s = wait(
                lambda: app.store.execution(other, light=True).status == "Succeeded", 300
            )
            t1 = time.perf_counter()
            for ex in ids:
                decide(app.store, ex, approve=True, by="bench", comment="ok")
            decide_s = time.perf_counter() - t1
            finish_s = wait(
                lambda: app.store.count_executions(pipeline="gated", status="Succeeded") == n,
                900,
            )
        finally:
            stop.set()
            loop.join(30)
            eng.shutdown(wait=True, timeout=30)
            app.store.close()
    return {
        "database": db,
        "waiting": n,
        "all_open_and_parked_s": round(open_s, 2),
        "idle_window_s": round(idle_wall, 1),
        "cpu_while_waiting_percent": round(100 * cpu / idle_wall, 2),
        "engine_steps_per_s": round(steps / idle_wall, 1),
        "rss_mb_before": round(rss0, 1),
        "rss_mb_waiting": round(rss, 1),
        "rss_kb_per_waiting_approval": round((rss - rss0) * 1024 / n, 1),
        "threads_before": threads0,
        "threads_waiting": threads,
        "other_pipeline_s": round(other_s, 2),
        "approve_all_s": round(decide_s, 2),
        "all_finished_after_approval_s": round(finish_s, 2),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    from engine_overhead import fresh_pg, postgres_url

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="waiting approvals")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured while waiting")
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql or both (comma)")
    args = ap.parse_args()
    results = []
    for db in args.db.split(","):
        url = None
        if db == "postgresql":
            pg = postgres_url()
            if not pg:
                print("postgresql: not available, skipped")
                continue
            url = fresh_pg(pg)
        r = run(url, args.n, args.window, db)
        results.append(r)
        print(json.dumps(r, indent=2), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    (out / "waiting_approvals.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
