"""Benchmark: time from `deploy` start to the new version serving, podman driver.

A private platform (own state dir, registry ports and environment port) with two busybox
images v1 and v2. After a first deploy of v1, ROUNDS deploys alternate v2 / v1. For each:
- `serving_s`: from calling the deploy action until a client polling the environment's URL
  (every 10 ms, new connection each time) first gets the new version;
- `action_s`: the whole action, including draining and removing the old release;
- `ready_s`: the action's own measure of start -> new release ready.
A second client requests the URL in a loop during all deploys and counts failed requests.

Writes bench/results/deploy.json. Run: .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.integration.testimages import (  # noqa: E402
    action_context,
    build_image,
    pipeline_with,
    remove_images,
    write_manifests,
)

from conveyor.actions.deploy import Deploy  # noqa: E402
from conveyor.adapters.containers import ContainerRuntime  # noqa: E402
from conveyor.model.pipeline import Action, Environment  # noqa: E402
from conveyor.platform.daemon import free_port  # noqa: E402
from conveyor.platform.environment import PodmanEnvironment  # noqa: E402
from conveyor.platform.local import LocalPlatform  # noqa: E402
from conveyor.settings import Settings  # noqa: E402

ROUNDS = 6


def get(url: str) -> str | None:
    try:
        resp = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return resp.text.strip() if resp.status_code == 200 else None


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-deploy-"))
    settings = Settings(state_dir=tmp / "state", database_url="sqlite://")
    platform = LocalPlatform(settings, registry_ports={"test": free_port(), "prod": free_port()})
    platform.up()
    env = Environment("benchdeploy", registry="test", port=free_port())
    images: dict[str, str] = {}
    try:
        runtime = ContainerRuntime(platform.container_env())
        host = platform.registry_host("test")
        for v in ("v1", "v2"):
            build_image(runtime, tmp, f"{host}/webapp:{v}", v)
            images[v] = f"{host}/webapp@{platform.resolve_digest(f'{host}/webapp:{v}')}"
        src = tmp / "src"
        write_manifests(src, "webapp:latest")
        action = Action("Deploy", "deploy", environment=env.name, inputs=("app_src",))
        pipeline = pipeline_with({env.name: env}, action)

        def deploy(version: str, n: int) -> dict[str, float]:
            ctx = action_context(
                platform,
                pipeline,
                action,
                {"image": images[version], "timeout": 60},
                tmp / f"w{n}",
                inputs={"app_src": src},
            )
            result: dict[str, object] = {}
            t0 = time.perf_counter()
            worker = threading.Thread(target=lambda: result.update(r=Deploy().run(ctx)))
            worker.start()
            serving = None
            while serving is None:
                if get(url) == version:
                    serving = time.perf_counter() - t0
                    break
                if not worker.is_alive() and "r" not in result:
                    raise SystemExit(f"deploy {n} failed:\n{ctx.log.text}")  # type: ignore[attr-defined]
                time.sleep(0.01)
            worker.join()
            total = time.perf_counter() - t0
            dep = result["r"].details["deployment"]  # type: ignore[attr-defined]
            return {"serving_s": serving, "action_s": total, "ready_s": dep["ready_seconds"]}

        url = f"http://127.0.0.1:{env.port}/index.html"
        first = deploy("v1", 0)
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}

        def load() -> None:
            while not stop.is_set():
                if get(url) is None:
                    counts["failed"] += 1
                else:
                    counts["ok"] += 1

        loader = threading.Thread(target=load)
        loader.start()
        rounds = [deploy("v2" if i % 2 == 0 else "v1", i + 1) for i in range(ROUNDS)]
        stop.set()
        loader.join()
        out = {
            "rounds": ROUNDS,
            "first_deploy_s": round(first["action_s"], 3),
            "serving_s": [round(r["serving_s"], 3) for r in rounds],
            "serving_s_median": round(statistics.median(r["serving_s"] for r in rounds), 3),
            "action_s_median": round(statistics.median(r["action_s"] for r in rounds), 3),
            "ready_s_median": round(statistics.median(r["ready_s"] for r in rounds), 3),
            "requests_during_deploys": counts["ok"] + counts["failed"],
            "failed_requests": counts["failed"],
        }
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "deploy.json").write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out, indent=2))
    finally:
        PodmanEnvironment(platform, env).remove()
        host = platform.registry_host("test")
        remove_images(
            ContainerRuntime(platform.container_env()),
            [f"{host}/webapp:v1", f"{host}/webapp:v2", *images.values()],
        )
        platform.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
