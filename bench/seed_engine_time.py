"""The engine's own time on the seed pipeline's shape (issue 18.3: keep it under 0.1 s).

examples/pipeline.yaml (six stages, nine actions, its runOrders, artifacts and namespaces)
with every action replaced by a `shell` action that sleeps 0.2 s, so that no registry,
podman or browser is needed (`bench/demo_pipeline.py` runs the real thing, on the default
ports of `conveyor up`). Run with the engine in this process, as `conveyor run` does:

    engine time = execution wall time - time during which at least one action was running

Median of --repeat runs, with the load average. Run: .venv/bin/python bench/seed_engine_time.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SLEEP = 0.2

from bench.demo_pipeline import busy_time  # noqa: E402 - the same measure of busy time


def seed_shape() -> dict[str, Any]:
    from conveyor.spec.yamlfile import load

    doc, _ = load(ROOT / "examples" / "pipeline.yaml")
    doc.pop("triggers", None)
    for stage in doc["stages"]:
        for action in stage["actions"]:
            for key in ("config", "environment", "timeout"):
                action.pop(key, None)
            action["type"] = "shell"
            action["config"] = {"commands": [f"sleep {SLEEP}"]}
    return dict(doc)


def run_once(home: Path, doc: dict[str, Any]) -> dict[str, float]:
    from conveyor.bootstrap import build
    from conveyor.settings import Settings
    from conveyor.spec.pipeline_file import parse
    from conveyor.spec.yamlfile import Lines

    settings = Settings(state_dir=home / "state", database_url=f"sqlite:///{home / 'c.db'}")
    app = build(settings)
    p = parse(doc, Lines("seed-shape"))
    app.store.save_pipeline(p.name, doc, "seed-shape")
    eng = app.engine()
    stop = threading.Event()
    ex = eng.start(p.name)
    eng.run(stop, until=lambda: app.store.active_fingerprint()[0] == 0)
    eng.shutdown()
    row = app.store.execution(ex)
    atts = app.store.attempts_for(ex)
    app.store.close()
    assert row.status == "Succeeded", row.message
    wall = row.ended_at - row.created_at
    busy = busy_time([(a.started_at, a.ended_at) for a in atts])
    return {"wall_s": wall, "tools_s": busy, "engine_s": wall - busy, "actions": len(atts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    doc = seed_shape()
    load0 = os.getloadavg()
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            runs.append(run_once(Path(d), doc))
        print(
            f"run {i + 1}: wall {runs[-1]['wall_s']:.2f}s, actions {runs[-1]['tools_s']:.2f}s, "
            f"engine {runs[-1]['engine_s']:.3f}s"
        )
    load1 = os.getloadavg()
    med = statistics.median(r["engine_s"] for r in runs)
    print(
        f"seed pipeline shape ({runs[0]['actions']:.0f} actions): engine time median {med:.3f}s "
        f"(load {load0[0]:.2f} -> {load1[0]:.2f})"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed_engine_time.json").write_text(
        json.dumps({"runs": runs, "engine_median_s": med, "load": [load0, load1]}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
