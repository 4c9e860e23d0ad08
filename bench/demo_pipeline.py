"""Commit-to-production wall time of the demo pipeline (approval automatic), per stage, cold
(empty npm cache) and warm, with the engine's own time separated from the tools' work.

    engine time = execution wall time - time during which at least one action was running

Run: `.venv/bin/python bench/demo_pipeline.py` (needs the ports of `conveyor up` free).
Each run uses a fresh state dir; "cold" also uses an empty npm cache.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def busy_time(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def run(label: str, npm_cache: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "CONVEYOR_HOME": str(Path(d) / "home"), "NO_COLOR": "1"}
        if npm_cache:
            env["npm_config_cache"] = npm_cache
        t0 = time.time()
        res = subprocess.run(
            [sys.executable, "-m", "conveyor", "demo", "--approve", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.time() - t0
        try:
            summary = json.loads(res.stdout[res.stdout.index("{\n") :])
            ex = summary["runs"][0]["execution"]
            sys.path.insert(0, str(ROOT / "src"))
            from conveyor.store.db import Store

            store = Store(f"sqlite:///{Path(d) / 'home' / 'conveyor.db'}")
            row = store.execution(ex)
            atts = store.attempts_for(ex)
            store.close()
        finally:
            subprocess.run(
                [sys.executable, "-m", "conveyor", "down"],
                env=env,
                capture_output=True,
                check=False,
            )
        if res.returncode != 0:
            raise SystemExit(f"{label}: demo failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    execution = row.ended_at - row.created_at
    busy = busy_time([(a.started_at, a.ended_at) for a in atts])
    approval = sum(a.ended_at - a.started_at for a in atts if a.type == "approval")
    stages = {s["name"]: round(s["seconds"], 2) for s in summary["runs"][0]["stages"]}
    return {
        "label": label,
        "demo_command_s": round(wall, 1),
        "commit_to_prod_s": round(execution, 1),
        "tools_s": round(busy, 1),
        "engine_s": round(execution - busy, 2),
        "engine_share_pct": round((execution - busy) / execution * 100, 2),
        "approval_wait_s": round(approval, 2),
        "stages_s": stages,
    }


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as cache:
        results.append(run("cold (empty npm cache)", cache))
    results.append(run("warm", None))
    results.append(run("warm", None))
    for r in results:
        print(
            f"{r['label']:24} commit->prod {r['commit_to_prod_s']:6.1f}s  tools {r['tools_s']:6.1f}s  "
            f"engine {r['engine_s']:5.2f}s ({r['engine_share_pct']:.2f}%)  stages {r['stages_s']}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    (out / "demo_pipeline.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
