"""Engine overhead per action: a pipeline of N actions doing nothing (`true`), S stages x P
parallel actions, run end to end on SQLite and on PostgreSQL.

    overhead per action = (wall time - time the commands themselves need) / actions

"Time the commands need" is measured in the same run: per stage, the wall time of starting
P `bash -c true` processes concurrently from threads (what a runner with zero bookkeeping
would spend), times S stages. Run: `.venv/bin/python bench/engine_overhead.py`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def run_once(db_url: str | None, stages: int, parallel: int) -> dict[str, float]:
    from conveyor.bootstrap import build
    from conveyor.settings import Settings
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        url = db_url or f"sqlite:///{home / 'c.db'}"
        settings = Settings(state_dir=home / "state", database_url=url, poll_seconds=0.2)
        app = build(settings)
        f = home / "p.yaml"
        f.write_text(pipeline_yaml(stages, parallel))
        p = load_pipeline(f, app.registry.catalogue())
        doc, _ = load(f)
        app.store.save_pipeline(p.name, doc, str(f))
        eng = app.engine(max_workers=max(parallel, 4))
        stop = threading.Event()
        t0 = time.perf_counter()
        ex = eng.start(p.name)
        eng.run(
            stop,
            until=lambda: app.store.get_execution(ex)["status"] not in ("InProgress", "Stopping"),
        )
        wall = time.perf_counter() - t0
        status = app.store.get_execution(ex)["status"]
        eng.shutdown()
        app.store.close()
        assert status == "Succeeded", status
    base = command_baseline(stages, parallel)
    n = stages * parallel
    return {
        "actions": n,
        "stages": stages,
        "parallel": parallel,
        "wall_s": round(wall, 3),
        "commands_s": round(base, 3),
        "overhead_ms_per_action": round((wall - base) / n * 1000, 2),
    }


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
    results = []
    pg = postgres_url()
    for stages, parallel in ((10, 10), (100, 10)):
        for db in ("sqlite", "postgresql"):
            if db == "postgresql" and not pg:
                print("postgresql: not available, skipped")
                continue
            r = run_once(fresh_pg(pg) if db == "postgresql" and pg else None, stages, parallel)
            r["database"] = db
            results.append(r)
            print(
                f"{db:10} {r['actions']:5} actions: wall {r['wall_s']:.2f}s, commands {r['commands_s']:.2f}s, "
                f"overhead {r['overhead_ms_per_action']:.1f} ms/action"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    (out / "engine_overhead.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
