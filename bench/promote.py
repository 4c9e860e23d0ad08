"""Benchmark: `image.promote` of a 50 MB multi-layer image, test -> prod, against plain skopeo.

1. Build a 50 MB image (busybox + 5 layers of 10 MB random data), push it to a private
   test registry (own state dir and ports: does not touch a running `conveyor up`).
2. First promotion: the `image.promote` action (registry checks + skopeo + verification)
   versus a plain `skopeo copy --all --preserve-digests` of the same digest, each into an
   EMPTY prod registry (wiped and restarted before every copy: a fresh repository in the
   same registry would be served by a cross-repository blob mount and copy nothing).
   Alternated, REPEAT times each; the ratio is median(action) / median(skopeo).
3. Second promotion of the same digest (under a new tag, so skopeo runs): bytes of blobs
   the source registry served during it (its access log), and time.

Writes bench/results/promote.json. Run: .venv/bin/python bench/promote.py [REPEAT]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.integration.testimages import (  # noqa: E402
    action_context,
    build_image,
    pipeline_with,
    remove_images,
)

from conveyor.actions.promote import Promote  # noqa: E402
from conveyor.adapters.containers import ContainerRuntime  # noqa: E402
from conveyor.model.pipeline import Action, Environment  # noqa: E402
from conveyor.platform.daemon import free_port  # noqa: E402
from conveyor.platform.local import LocalPlatform  # noqa: E402
from conveyor.settings import Settings  # noqa: E402

REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 3  # bench/promote.py [REPEAT]
SIZE_MB, LAYERS = 50, 5


def served_bytes(log: Path, since: int) -> tuple[int, int]:
    """(bytes of blob GETs answered, number of lines) in the registry's access log."""
    lines = log.read_text().splitlines()
    total = 0
    for line in lines[since:]:
        m = re.search(r'"GET /v2/\S+/blobs/\S+ HTTP/[\d.]+" 200 (\d+)', line)
        if m:
            total += int(m.group(1))
    return total, len(lines)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-promote-"))
    settings = Settings(state_dir=tmp / "state", database_url="sqlite://")
    platform = LocalPlatform(settings, registry_ports={"test": free_port(), "prod": free_port()})
    platform.up()
    try:
        runtime = ContainerRuntime(platform.container_env())
        test, prod = platform.registry_host("test"), platform.registry_host("prod")
        t0 = time.perf_counter()
        build_image(runtime, tmp, f"{test}/big:v1", "big", padding_mb=SIZE_MB, layers=LAYERS)
        build_push_s = time.perf_counter() - t0
        digest = platform.resolve_digest(f"{test}/big:v1")
        source = f"{test}/big@{digest}"
        envs = {"prod": Environment("prod", registry="prod")}
        action = Action("Promote", "image.promote")
        pipeline = pipeline_with(envs, action)

        action_s: list[float] = []
        around_s: list[float] = []  # the action's time outside its skopeo copy
        skopeo_s: list[float] = []
        details = {}
        prod_registry = next(r for r in platform.registries() if r.name == "prod")

        def empty_prod() -> None:
            prod_registry.stop()
            shutil.rmtree(prod_registry.storage, ignore_errors=True)
            prod_registry.start()

        for i in range(REPEAT):
            empty_prod()
            ctx = action_context(
                platform,
                pipeline,
                action,
                {"image": source, "to": "prod", "repository": "big", "tag": "v1"},
                tmp / f"w{i}",
            )
            t0 = time.perf_counter()
            result = Promote().run(ctx)
            action_s.append(time.perf_counter() - t0)
            details = result.details["promotion"]
            around_s.append(action_s[-1] - details["copy_seconds"])
            empty_prod()
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"docker://{source}",
                    f"docker://{prod}/big:v1",
                ],
                check=True,
            )
            skopeo_s.append(time.perf_counter() - t0)

        log = platform.state_dir / "logs" / "platform" / "registry-test.log"
        _, mark = served_bytes(log, 0)
        ctx = action_context(
            platform,
            pipeline,
            action,
            {"image": source, "to": "prod", "repository": "big", "tag": "v1-again"},
            tmp / "again",
        )
        t0 = time.perf_counter()
        again = Promote().run(ctx)
        again_s = time.perf_counter() - t0
        moved, _ = served_bytes(log, mark)

        out = {
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "image_bytes": details["bytes_total"],
            "blobs": details["blobs_total"],
            "build_and_push_s": round(build_push_s, 3),
            "repeat": REPEAT,
            "first_promotion_action_s": [round(x, 3) for x in action_s],
            "first_promotion_skopeo_s": [round(x, 3) for x in skopeo_s],
            "ratio_action_to_skopeo": round(
                statistics.median(action_s) / statistics.median(skopeo_s), 3
            ),
            "action_time_around_the_copy_s": [round(x, 3) for x in around_s],
            "first_promotion_bytes_copied": details["bytes_copied"],
            "second_promotion_s": round(again_s, 3),
            "second_promotion_bytes_served_by_source": moved,
            "second_promotion_bytes_copied_reported": again.details["promotion"]["bytes_copied"],
        }
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "promote.json").write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out, indent=2))
    finally:
        remove_images(
            ContainerRuntime(platform.container_env()), [f"{platform.registry_host('test')}/big:v1"]
        )
        platform.down()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
