"""Conveyor's engine beside Prefect, in the same window, on the same shape (issue 18.5).

Both run 10 stages of 10 parallel no-op commands (`bash -c true`), one stage after the
other, and both are charged the same way:

    overhead per action = (wall time - time the commands themselves need) / actions

- Conveyor: `bench/engine_overhead.py --sizes 100 --db sqlite` (a pipeline of `shell`
  actions, the engine in-process, SQLite), run with Conveyor's own Python;
- Prefect: one flow whose stages each submit 10 tasks to a ThreadPoolTaskRunner of 10
  workers and wait for them; each task runs the command. Prefect's ephemeral API and its
  SQLite database (a temporary PREFECT_HOME), warmed by one flow run first.

The two alternate, --repeat times each (median), so that the machine's load is shared;
the load average is printed before and after. Prefect is an optional dependency (the
`bench` extra): install it apart from Conveyor's environment, e.g.

    python3 -m venv /tmp/prefect-venv && /tmp/prefect-venv/bin/pip install 'conveyor[bench]'
    # or just: /tmp/prefect-venv/bin/pip install 'prefect>=3.9'
    .venv/bin/python bench/prefect_overhead.py --prefect-python /tmp/prefect-venv/bin/python

Writes bench/results/prefect_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES, PARALLEL = 10, 10

PREFECT_RUN = r"""
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from prefect import flow, task
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

STAGES, PARALLEL, REPEAT = (int(x) for x in sys.argv[1:4])

@task
def noop() -> None:
    subprocess.run(["bash", "-c", "set -e\ntrue\n"], check=True, stdout=subprocess.DEVNULL)

@flow(task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL), log_prints=False)
def shape(stages: int) -> None:
    for _ in range(stages):
        wait([noop.submit() for _ in range(PARALLEL)])

def baseline() -> float:
    def one(_):
        subprocess.run(["bash", "-c", "set -e\ntrue\n"], check=True, stdout=subprocess.DEVNULL)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        t0 = time.perf_counter()
        for _ in range(STAGES):
            list(pool.map(one, range(PARALLEL)))
        return time.perf_counter() - t0

shape(1)  # warm-up: the ephemeral API server and its database
for _ in range(REPEAT):
    t0 = time.perf_counter()
    shape(STAGES)
    wall = time.perf_counter() - t0
    base = baseline()
    print(json.dumps({"wall_s": wall, "commands_s": base}), flush=True)
"""


def conveyor_once(python: str, tmp: Path) -> dict[str, float]:
    out = tmp / "engine_overhead.json"
    subprocess.run(
        [
            python,
            str(HERE / "engine_overhead.py"),
            "--sizes",
            str(STAGES * PARALLEL),
            "--db",
            "sqlite",
            "--repeat",
            "1",
            "--no-profile",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
    )
    r = json.loads(out.read_text())["results"][0]
    return {"wall_s": r["wall_s"], "commands_s": r["commands_s"]}


def per_action_ms(r: dict[str, float]) -> float:
    return (r["wall_s"] - r["commands_s"]) / (STAGES * PARALLEL) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefect-python", default=sys.executable, help="a Python with prefect")
    ap.add_argument("--conveyor-python", default=sys.executable, help="Conveyor's Python")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load0 = os.getloadavg()
    conveyor: list[dict[str, float]] = []
    prefect: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="prefect-home-") as home:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": "",
        }
        for _ in range(args.repeat):
            conveyor.append(conveyor_once(args.conveyor_python, Path(home)))
            t0 = time.perf_counter()
            res = subprocess.run(
                [args.prefect_python, "-c", PREFECT_RUN, str(STAGES), str(PARALLEL), "1"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if res.returncode != 0:
                raise SystemExit(
                    f"the Prefect run failed (is prefect installed for {args.prefect_python}?):"
                    f"\n{res.stderr[-2000:]}"
                )
            lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
            prefect.append(json.loads(lines[-1]))
            prefect[-1]["process_s"] = time.perf_counter() - t0
    load1 = os.getloadavg()
    c_ms = statistics.median(per_action_ms(r) for r in conveyor)
    p_ms = statistics.median(per_action_ms(r) for r in prefect)
    print(
        f"{STAGES}x{PARALLEL} no-op actions, median of {args.repeat}, alternated: "
        f"Conveyor {c_ms:.1f} ms per action, Prefect {p_ms:.1f} ms per task "
        f"({p_ms / c_ms:.1f}x); load {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "prefect_overhead.json").write_text(
        json.dumps(
            {
                "shape": [STAGES, PARALLEL],
                "conveyor_runs": conveyor,
                "prefect_runs": prefect,
                "conveyor_ms_per_action": round(c_ms, 2),
                "prefect_ms_per_task": round(p_ms, 2),
                "load": [load0, load1],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
