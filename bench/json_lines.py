"""Benchmark: `load_json` (CodePipeline JSON with the line of every key and item).

Issue 15 replaced a hand-written position scanner by ruamel, which reads JSON as the
flow-style YAML it is. Measured here: `load_json` on the largest corpus JSON pipeline
(2.5 KB) and on a synthetic 134 KB one (its stages repeated 100 times), median of N runs.
On this machine, loaded (2 cores, load 14), the old scanner took 0.18 ms and 13 ms, ruamel's
pure-Python parser 0.95 ms and 115 ms (the C parser, ruamel.yaml.clibz, is optional).

Writes bench/results/json_lines.json. Run: .venv/bin/python bench/json_lines.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from conveyor.spec.codepipeline import load_json

HERE = Path(__file__).resolve().parent
CORPUS = Path(os.environ.get("CONVEYOR_CORPUS") or HERE.parent.parent / "shared" / "corpus")
SAMPLE = "awsdocs__aws-codepipeline-user-guide__doc_source_pipelines-create.md.json"


def _median_ms(text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        load_json(text, "bench.json")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    path = CORPUS / "pipelines" / SAMPLE
    if not path.is_file():
        raise SystemExit(f"the corpus is not at {CORPUS}: set CONVEYOR_CORPUS")
    small = path.read_text()
    doc = json.loads(small)
    big = json.dumps(
        {"pipeline": {**doc["pipeline"], "stages": doc["pipeline"]["stages"] * 100}}, indent=2
    )
    out = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "median_ms": {
            f"{len(small) // 1024} KB corpus pipeline": round(_median_ms(small, 50), 2),
            f"{len(big) // 1024} KB synthetic pipeline": round(_median_ms(big, 5), 2),
        },
    }
    print(json.dumps(out, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "json_lines.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
