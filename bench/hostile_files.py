"""Benchmark: how long the parsers take to refuse the adversarial probe's hostile files.

Before issue 12, 412 bytes of YAML aliases (7 levels) took 32 s and 2.45 GB in `conveyor
validate`, and a 200,000-key file 30-37 s. Each input here is loaded in-process with
`load_pipeline` (the path `conveyor validate` takes), 3 times; the median wall time and the
outcome are recorded, plus the median over the example pipeline as the baseline.

Writes bench/results/hostile_files.json. Run: .venv/bin/python bench/hostile_files.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from conveyor.actions.registry import ActionRegistry
from conveyor.errors import ConveyorError
from conveyor.spec.pipeline_file import load_pipeline

HERE = Path(__file__).resolve().parent
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
CASES = {
    "example pipeline (baseline)": (HERE.parent / "examples" / "pipeline.yaml").read_text(),
    "billion laughs, 9 levels": LAUGHS + "name: p\nstages: []\n",
    "control character": "name: p\x07\nstages: []\n",
    "flow nesting 1,200": "name: p\nstages: " + "[" * 1200 + "]" * 1200 + "\n",
    "block nesting 1,000": "name: p\nx:\n" + "".join("  " * (d + 1) + "k:\n" for d in range(1000)),
    "integer of 5,000 digits": "name: p\nx: " + "9" * 5000 + "\nstages: []\n",
    "200,000 keys": "name: p\nstages: []\nx:\n" + "".join(f"  k{i}: {i}\n" for i in range(200_000)),
}


def main() -> None:
    catalogue = ActionRegistry().catalogue()
    out: dict[str, object] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
    }
    for name, text in CASES.items():
        times = []
        outcome = "accepted"
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                load_pipeline("p.yaml", catalogue, text=text)
            except ConveyorError as e:
                outcome = str(e).splitlines()[0]
            times.append(time.perf_counter() - t0)
        out[name] = {
            "bytes": len(text.encode()),
            "median_s": statistics.median(times),
            "outcome": outcome,
        }
        print(f"{name:32} {statistics.median(times) * 1000:9.1f} ms  {outcome[:90]}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "hostile_files.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
