"""How fast the `conveyor` command answers, against bare Python on the same machine (issue 19).

Each command runs as a fresh process (as a user or a script runs it), ROUNDS times, in turns so
that a burst of load on a shared machine hits every command alike; the figures are the median
and the minimum wall time, the median CPU time (user + system: steadier than wall time when
others load the machine), and the difference to `python -c pass`.

    --version, --help                          goal: <= 150 ms above bare Python
    history, status, status EXECUTION (SQLite) goal: <= 300 ms
    validate examples/pipeline.yaml            (reported)
    run --detach                               goal: <= 400 ms (the background engine it
                                               starts is not waited for)

The state dir is a fresh temporary one with a pipeline applied and a few executions, so
`history` and `status` read real rows, and an engine runs (as after `conveyor up`) so that
`run --detach` hands over to it; no platform part is started (the default ports belong to the
demo). `python -X importtime -m conveyor CMD` shows where the time of one command goes.

Run: `.venv/bin/python bench/cli_startup.py` (writes bench/results/cli_startup.json).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
GOALS_ABOVE_PYTHON = {"--version": 0.150, "--help": 0.150}
GOALS_ABSOLUTE = {
    "history": 0.300,
    "status": 0.300,
    "status EXECUTION": 0.300,
    "run --detach": 0.400,
}

PIPELINE = """\
name: bench
stages:
  - name: Only
    actions:
      - name: Wait
        type: approval
        config: {timeout: 1h}
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall time, CPU time) of one run: on a loaded machine the CPU time (user + system of
    the command and its children) says more about the command than the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> None:
    python = sys.executable
    conveyor = [python, "-m", "conveyor"]
    home = Path(tempfile.mkdtemp(prefix="conveyor-cli-bench-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "CONVEYOR_HOME": str(home),
        "NO_COLOR": "1",
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    pipeline = home / "pipeline.yaml"
    pipeline.write_text(PIPELINE)
    # an engine runs (as after `conveyor up`), so `run --detach` hands its execution over;
    # the pipeline parks at an approval, so the engine has little to do while we measure
    subprocess.run([*conveyor, "pipeline", "apply", str(pipeline)], env=env, check=True)
    engine = subprocess.Popen(
        [*conveyor, "engine"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(2)  # the engine has registered its lease
        out = subprocess.run(
            [*conveyor, "run", "--detach", str(pipeline)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        ex_id = out.stdout.strip().splitlines()[-1]
        cases: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            "--version": [*conveyor, "--version"],
            "--help": [*conveyor, "--help"],
            "history": [*conveyor, "history"],
            "status": [*conveyor, "status"],
            "status EXECUTION": [*conveyor, "status", ex_id],
            "validate examples/pipeline.yaml": [*conveyor, "validate", "examples/pipeline.yaml"],
            "run --detach": [*conveyor, "run", "--detach", str(pipeline)],
        }
        samples: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(ROUNDS):
            for name, argv in cases.items():
                wall, used = timed(argv, env)
                samples[name].append(wall)
                cpu[name].append(used)
    finally:
        engine.terminate()
        engine.wait(30)
        shutil.rmtree(home, ignore_errors=True)

    bare = statistics.median(samples["python -c pass"])
    results = {}
    print(f"{'command':34} {'median':>8} {'min':>8} {'cpu':>8} {'above python':>13}  goal")
    for name, xs in samples.items():
        med, low = statistics.median(xs), min(xs)
        above = med - bare
        goal = ""
        met = None
        if name in GOALS_ABOVE_PYTHON:
            met = above <= GOALS_ABOVE_PYTHON[name]
            goal = f"<= {GOALS_ABOVE_PYTHON[name] * 1000:.0f} ms above python"
        elif name in GOALS_ABSOLUTE:
            met = med <= GOALS_ABSOLUTE[name]
            goal = f"<= {GOALS_ABSOLUTE[name] * 1000:.0f} ms"
        mark = "" if met is None else (" ok" if met else " MISSED")
        print(
            f"{name:34} {med * 1000:7.0f}ms {low * 1000:7.0f}ms "
            f"{statistics.median(cpu[name]) * 1000:6.0f}ms "
            f"{above * 1000:11.0f}ms  {goal}{mark}"
        )
        results[name] = {
            "median_s": round(med, 4),
            "min_s": round(low, 4),
            "cpu_median_s": round(statistics.median(cpu[name]), 4),
            "above_python_s": round(above, 4),
            "goal": goal or None,
            "met": met,
        }
    out = ROOT / "bench" / "results" / "cli_startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.platform()}, {os.cpu_count()} cores, load {load[0]:.2f}",
                "python": platform.python_version(),
                "rounds": ROUNDS,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"load average {load[0]:.2f}; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
