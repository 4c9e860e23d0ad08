"""Engine overhead per action: a pipeline of N actions doing nothing (`true`), S stages x P
parallel actions, run end to end on SQLite and on PostgreSQL.

    overhead per action = (wall time - time the commands themselves need) / actions

"Time the commands need" is measured in the same run: per stage, the wall time of starting
P `bash -c true` processes concurrently from threads (what a runner with zero bookkeeping
would spend), times S stages. The report also gives the 1,000-to-100 wall ratio (10x the
work; linear is 10x), the machine's load average before and after each run, and the top of
a cProfile of the engine loop (the thread that plans and records), from one more run of
`--profile-size` actions (a profiler slows what it watches: the figures come from runs
without it).

    .venv/bin/python bench/engine_overhead.py                 # 100 and 1,000 actions, median of 3
    .venv/bin/python bench/engine_overhead.py --sizes 100,1000,10000 --db sqlite
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PARALLEL = 10


def pipeline_yaml(stages: int, parallel: int) -> str:
    lines = ["name: overhead", "stages:"]
    for s in range(stages):
        lines.append(f"  - name: S{s}")
        lines.append("    actions:")
        for a in range(parallel):
            lines.append(f'      - {{name: a{a}, type: shell, config: {{commands: ["true"]}}}}')
    return "\n".join(lines) + "\n"


def command_baseline(stages: int, parallel: int) -> float:
    def one() -> None:
        subprocess.run(["bash", "-c", "set -e\ntrue\n"], check=True, stdout=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        t0 = time.perf_counter()
        for _ in range(stages):
            list(pool.map(lambda _: one(), range(parallel)))
        return time.perf_counter() - t0


def run_once(
    db_url: str | None, stages: int, parallel: int, profile: bool = False
) -> tuple[dict[str, float], str]:
    from conveyor.bootstrap import build
    from conveyor.settings import Settings
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    top = ""
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        url = db_url or f"sqlite:///{home / 'c.db'}"
        settings = Settings(state_dir=home / "state", database_url=url, poll_seconds=0.2)
        app = build(settings)
        f = home / "p.yaml"
        f.write_text(pipeline_yaml(stages, parallel))
        t_parse = time.perf_counter()
        if stages * parallel <= 5000:
            p = load_pipeline(f, app.registry.catalogue())
            parse_s = time.perf_counter() - t_parse
            doc, _ = load(f)
        else:  # past the pipeline file's 50,000-value limit (spec/limits.py): the same pipeline,
            # given as data (as the API or a generator would)
            import yaml

            from conveyor.spec.pipeline_file import parse
            from conveyor.spec.yamlfile import Lines

            doc = yaml.safe_load(f.read_text())
            p = parse(doc, Lines(str(f)))
            parse_s = float("nan")
        app.store.save_pipeline(p.name, doc, str(f))
        eng = app.engine(max_workers=max(parallel, 4))
        stop = threading.Event()
        prof = cProfile.Profile() if profile else None
        load0 = os.getloadavg()[0]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        ex = eng.start(p.name)
        if prof:
            prof.enable()
        # the only execution has ended when none is active (one cheap row per check)
        eng.run(stop, until=lambda: app.store.active_fingerprint()[0] == 0)
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        status = app.store.execution(ex).status
        eng.shutdown()
        app.store.close()
        assert status == "Succeeded", status
        if prof:
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(
                os.environ.get("BENCH_SORT", "cumulative")
            ).print_stats(25)
            top = buf.getvalue()
    base = command_baseline(stages, parallel)
    n = stages * parallel
    return {
        "actions": n,
        "stages": stages,
        "parallel": parallel,
        "wall_s": round(wall, 3),
        "commands_s": round(base, 3),
        "overhead_ms_per_action": round((wall - base) / n * 1000, 2),
        "process_cpu_s": round(cpu, 2),
        "parse_s": round(parse_s, 3),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }, top


def postgres_url() -> str | None:
    url = os.environ.get("CONVEYOR_BENCH_PG_URL") or os.environ.get("CONVEYOR_TEST_PG_URL")
    if url:
        return url
    try:
        return subprocess.run(
            ["bash", str(ROOT / "scripts/postgres.sh"), "start"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def fresh_pg(url: str) -> str:
    import uuid

    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with eng.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="action counts (10 parallel per stage)")
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size up to 1,000 (median)")
    ap.add_argument("--profile-size", type=int, default=1000, help="actions of the profiled run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine_overhead.json"))
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    dbs = args.db.split(",")
    results = []
    profiles: dict[str, str] = {}
    pg = postgres_url() if "postgresql" in dbs else None
    for db in dbs:
        if db == "postgresql" and not pg:
            print("postgresql: not available, skipped")
            continue
        if not args.no_profile:
            url = fresh_pg(pg) if db == "postgresql" and pg else None
            n = args.profile_size
            profiles[db] = run_once(url, n // PARALLEL, PARALLEL, True)[1]
        for n in sizes:
            runs = []
            for _ in range(args.repeat if n <= 1000 else 1):
                url = fresh_pg(pg) if db == "postgresql" and pg else None
                runs.append(run_once(url, n // PARALLEL, PARALLEL)[0])
            # the median run by wall time (a shared machine's load comes and goes)
            r = sorted(runs, key=lambda x: x["wall_s"])[len(runs) // 2]
            r["database"] = db
            r["runs_wall_s"] = [x["wall_s"] for x in runs]
            results.append(r)
            print(
                f"{db:10} {r['actions']:6} actions: wall {r['wall_s']:.2f}s, commands"
                f" {r['commands_s']:.2f}s, overhead {r['overhead_ms_per_action']:.2f} ms/action,"
                f" engine process CPU {r['process_cpu_s']:.1f}s, parse {r['parse_s']:.2f}s"
                f" (load {r['load_before']:.2f} -> {r['load_after']:.2f}; walls {r['runs_wall_s']})",
                flush=True,
            )
    ratios = {}
    for db in dbs:
        by_n = {r["actions"]: r for r in results if r["database"] == db}
        if 100 in by_n and 1000 in by_n:
            ratios[db] = round(by_n[1000]["wall_s"] / by_n[100]["wall_s"], 2)
            print(f"{db:10} 1000-to-100 wall ratio {ratios[db]:.2f}x (linear: 10x)")
    for db, top in profiles.items():
        print(f"\n--- profile of the engine loop, {db}, {args.profile_size} actions (top 25)")
        print("\n".join(top.splitlines()[:45]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    out.write_text(
        json.dumps({"machine": machine, "results": results, "ratio_1000_to_100": ratios}, indent=2)
    )


if __name__ == "__main__":
    main()
