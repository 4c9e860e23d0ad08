"""API and dashboard latency with 10,000 executions in the store, and the time from an
approval to the next action starting.

1. Latency (p50/p95 over N sequential requests, after a warm-up) against a real uvicorn server
   on loopback, on SQLite and on PostgreSQL when CONVEYOR_BENCH_PG_URL is set (a server URL;
   a fresh database is made in it and dropped afterwards):
     - GET /api/v1/executions?limit=50                       the execution list
     - GET /api/v1/executions?pipeline=..&status=Failed     the list, filtered
     - GET /api/v1/pipelines/NAME                           the pipeline (stages, transitions)
     - GET /api/v1/executions/ID                            an execution with stages and actions
     - GET /pipelines/NAME                                  the dashboard's pipeline view (HTML)
     - GET /executions?page=2                               the dashboard's history page (HTML)
   Target: p95 < 50 ms. Each database is measured twice: as shipped, and with the two indexes
   suggested to the store's owner (executions by created_at, and by pipeline + created_at),
   which the newest-first lists need once there are thousands of executions.
2. Approval -> next action (SQLite, default engine settings: poll 0.2 s): start the pipeline
   shell -> approval -> shell, wait for the approval, POST the approval over HTTP, and measure
   until the next action's attempt row is written (its `started_at`). Target: < 1 s.

Run: `.venv/bin/python bench/api_latency.py` (writes bench/results/api_latency.json).
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

N_EXECUTIONS = int(os.environ.get("BENCH_EXECUTIONS", "10000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
APPROVALS = int(os.environ.get("BENCH_APPROVALS", "10"))
STAGES = ["Source", "Build", "DeployTest", "E2E", "Approval", "DeployProd"]


def definition(name: str) -> dict[str, Any]:
    stages = []
    for s in STAGES:
        if s == "Approval":
            actions = [{"name": "ProdApproval", "type": "approval", "config": {"timeout": "1h"}}]
        else:
            actions = [{"name": f"{s}Action", "type": "shell", "config": {"commands": ["true"]}}]
        stages.append({"name": s, "actions": actions})
    return {"name": name, "stages": stages}


def seed(store: Any, name: str, n: int) -> None:
    """n finished executions, each with one attempt per action (as the engine leaves them)."""
    from sqlalchemy import insert

    from conveyor.store import tables as t

    d = definition(name)
    store.save_pipeline(name, d, None)
    rnd = random.Random(7)
    t0 = time.time() - n * 60
    batch_ex: list[dict[str, Any]] = []
    batch_att: list[dict[str, Any]] = []

    def flush() -> None:
        with store.tx() as c:
            if batch_ex:
                c.execute(insert(t.executions), batch_ex)
            if batch_att:
                c.execute(insert(t.attempts), batch_att)
        batch_ex.clear()
        batch_att.clear()

    for i in range(n):
        ex_id = uuid.uuid4().hex[:12]
        start = t0 + i * 60
        failed_at = rnd.choice([None] * 8 + ["E2E", "Build"])
        status = "Failed" if failed_at else "Succeeded"
        batch_ex.append(
            dict(
                id=ex_id,
                pipeline=name,
                seq=i + 1,
                kind="standard",
                status=status,
                message="",
                definition=d,
                variables={},
                trigger={"type": "Webhook"},
                stage_epochs={},
                revisions={
                    "Source": {
                        "CommitId": uuid.uuid4().hex + uuid.uuid4().hex[:8],
                        "BranchName": "main",
                        "AuthorEmail": "dev@example.com",
                        "CommitMessage": f"change {i}",
                    }
                },
                actor="bench",
                created_at=start,
                ended_at=start + 50,
            )
        )
        for k, s in enumerate(STAGES):
            a = d["stages"][k]["actions"][0]
            st = "Failed" if s == failed_at else "Succeeded"
            batch_att.append(
                dict(
                    id=f"{ex_id}/{s}/{a['name']}/1",
                    execution_id=ex_id,
                    stage=s,
                    action=a["name"],
                    attempt=1,
                    epoch=0,
                    type=a["type"],
                    status=st,
                    reason="ActionFailed" if st == "Failed" else "Succeeded",
                    message="",
                    started_at=start + k * 8,
                    ended_at=start + k * 8 + 7,
                    variables={},
                    artifacts={},
                    details={},
                    reports=[],
                    log_path="",
                )
            )
            if st == "Failed":
                break
        if len(batch_ex) >= 1000:
            flush()
    flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 2),
        "p95_ms": round(q[94] * 1000, 2),
        "max_ms": round(s[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(s) * 1000, 2),
        "n": len(s),
    }


def session_cookie(client: Any, token: str) -> None:
    r = client.get("/login")
    csrf = r.cookies.get("conveyor_login_csrf") or client.cookies.get("conveyor_login_csrf")
    r = client.post(
        "/login", data={"token": token, "csrf": csrf, "next": "/"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text


SUGGESTED_INDEXES = (
    "CREATE INDEX ix_executions_created ON executions (created_at)",
    "CREATE INDEX ix_executions_pipeline_created ON executions (pipeline, created_at)",
)


def latency(db_url: str, label: str, suggested_indexes: bool) -> dict[str, Any]:
    import httpx

    from conveyor.server.app import create_app
    from conveyor.server.auth import ensure_admin
    from conveyor.settings import Settings
    from conveyor.store.db import Store

    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        url = db_url or f"sqlite:///{home / 'c.db'}"
        settings = Settings(state_dir=home / "state", database_url=url)
        store = Store(url)
        t0 = time.perf_counter()
        seed(store, "bench", N_EXECUTIONS)
        seeded = time.perf_counter() - t0
        if suggested_indexes:
            from sqlalchemy import text

            with store.tx() as c:
                for ddl in SUGGESTED_INDEXES:
                    c.execute(text(ddl))
        token = ensure_admin(store)
        assert token
        latest = store.list_executions("bench", limit=1)[0].id
        app = create_app(settings, store)
        routes = {
            "api_execution_list": "/api/v1/executions?limit=50",
            "api_execution_list_filtered": (
                "/api/v1/executions?pipeline=bench&status=Failed&limit=50"
            ),
            "api_pipeline": "/api/v1/pipelines/bench",
            "api_execution_detail": f"/api/v1/executions/{latest}",
            "page_pipeline_view": "/pipelines/bench",
            "page_history": "/executions?page=2",
        }
        out: dict[str, Any] = {
            "database": label,
            "indexes": "with suggested indexes" if suggested_indexes else "as shipped",
            "executions": store.count_executions(),
            "seed_seconds": round(seeded, 2),
        }
        with (
            Server(app) as base,
            httpx.Client(
                base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
            ) as c,
        ):
            session_cookie(c, token)
            for name, path in routes.items():
                for _ in range(20):
                    assert c.get(path).status_code == 200, path
                samples = []
                for _ in range(REQUESTS):
                    t = time.perf_counter()
                    r = c.get(path)
                    samples.append(time.perf_counter() - t)
                    assert r.status_code == 200
                out[name] = percentiles(samples)
        store.close()
        return out


def approval_to_next_action() -> dict[str, Any]:
    import httpx

    from conveyor import bootstrap
    from conveyor.server.app import create_app
    from conveyor.server.auth import ensure_admin
    from conveyor.settings import Settings

    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        settings = Settings(state_dir=home / "state", database_url=f"sqlite:///{home / 'c.db'}")
        built = bootstrap.build(settings)
        built.store.save_pipeline(
            "gate",
            {
                "name": "gate",
                "executionMode": "PARALLEL",
                "stages": [
                    {
                        "name": "Build",
                        "actions": [
                            {"name": "Make", "type": "shell", "config": {"commands": ["true"]}}
                        ],
                    },
                    {
                        "name": "Approval",
                        "actions": [
                            {"name": "Gate", "type": "approval", "config": {"timeout": "1h"}}
                        ],
                    },
                    {
                        "name": "Prod",
                        "actions": [
                            {"name": "Ship", "type": "shell", "config": {"commands": ["true"]}}
                        ],
                    },
                ],
            },
            None,
        )
        token = ensure_admin(built.store)
        engine = built.engine()
        stop = threading.Event()
        th = threading.Thread(target=engine.run, args=(stop,), daemon=True)
        th.start()
        app = create_app(settings, built.store, engine=engine)
        to_next, http = [], []
        try:
            with (
                Server(app) as base,
                httpx.Client(
                    base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
                ) as c,
            ):
                for _ in range(APPROVALS):
                    ex = c.post("/api/v1/pipelines/gate/executions").json()["id"]
                    while not [
                        a for a in built.store.approval_records(ex) if a.status == "Pending"
                    ]:
                        time.sleep(0.01)
                    time.sleep(
                        random.uniform(0, 0.2)
                    )  # decide at a random point of the engine's poll cycle
                    t0 = time.time()
                    r = c.post(f"/api/v1/approvals/{ex}/approve", json={"comment": "bench"})
                    http.append(time.time() - t0)
                    assert r.status_code == 200, r.text
                    while True:
                        nxt = [a for a in built.store.attempts_for(ex) if a.stage == "Prod"]
                        if nxt:
                            to_next.append(nxt[0].started_at - t0)
                            break
                        time.sleep(0.005)
        finally:
            stop.set()
            th.join(10)
            engine.shutdown(wait=True)
            built.store.close()
        return {
            "approval_http": percentiles(http),
            "approval_to_next_action_start": percentiles(to_next),
            "engine_poll_seconds": settings.poll_seconds,
        }


def fresh_pg(url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with eng.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return url.rsplit("/", 1)[0] + "/" + name, name


def drop_pg(url: str, name: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with eng.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    eng.dispose()


def main() -> None:
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "executions": N_EXECUTIONS,
        "requests_per_route": REQUESTS,
        "target": {"p95_ms": 50, "approval_to_next_action_s": 1.0},
        "latency": [],
    }
    for idx in (False, True):
        results["latency"].append(latency("", "sqlite", idx))
    pg = os.environ.get("CONVEYOR_BENCH_PG_URL")
    if pg:
        for idx in (False, True):
            url, name = fresh_pg(pg)
            try:
                results["latency"].append(latency(url, "postgresql", idx))
            finally:
                drop_pg(pg, name)
    else:
        results["postgresql"] = (
            "skipped: set CONVEYOR_BENCH_PG_URL (e.g. from scripts/postgres.sh start)"
        )
    results["approval"] = approval_to_next_action()
    out = ROOT / "bench" / "results" / "api_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for block in results["latency"]:
        print(
            f"{block['database']} ({block['indexes']}): {block['executions']} executions"
            f" (seeded in {block['seed_seconds']} s)"
        )
        for k, v in block.items():
            if isinstance(v, dict):
                ok = "ok" if v["p95_ms"] < 50 else "OVER TARGET"
                print(f"  {k:<30} p50 {v['p50_ms']:>7.2f} ms  p95 {v['p95_ms']:>7.2f} ms  ({ok})")
    a = results["approval"]["approval_to_next_action_start"]
    print(
        f"approval -> next action start: p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms,"
        f" max {a['max_ms']:.0f} ms"
        f" over {a['n']} approvals (target < 1000 ms)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
