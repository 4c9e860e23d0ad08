"""The seed pipeline's Build and Selenium stages inside the `build` image vs on the host
(issue 17.3: goal <= 1.1x for the seed Build).

Both ways run the same example (a copy of examples/ with free ports), the same commit, in one
state dir each, reuse off (so every run really builds), warm caches: the first run of each way
fills its caches and is reported apart; the next ROUNDS runs alternate host and container.

Run: `.venv/bin/python bench/seed_in_container.py [ROUNDS]` (default 2). Needs the `build`
image (`conveyor images build build`) and the tools of `conveyor demo`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "localhost/conveyor/build:latest"


def copy_examples(dest: Path, image: str | None, ports: tuple[int, int]) -> None:
    src = ROOT / "examples"
    ignore = shutil.ignore_patterns("node_modules", "dist", ".angular", ".venv", "reports")
    shutil.copytree(src / "webapp", dest / "webapp", ignore=ignore)
    shutil.copytree(src / "webapp-e2e", dest / "webapp-e2e", ignore=ignore)
    text = (src / "pipeline.yaml").read_text(encoding="utf-8")
    text = text.replace("    port: 8081\n", f"    port: {ports[0]}\n")
    text = text.replace("    port: 8080\n", f"    port: {ports[1]}\n")
    # the seed's own `environment:` lines (the build image) become this way's
    seed_line = f"          environment: {{image: {IMAGE}}}\n"
    if text.count(seed_line) != 2:
        raise SystemExit(f"bench: the seed pipeline no longer has two lines {seed_line!r}")
    text = text.replace(seed_line, f"          environment: {{image: {image or 'host'}}}\n")
    text = text.replace(
        "        namespace: Build\n", "        namespace: Build\n        reuse: false\n"
    )
    (dest / "pipeline.yaml").write_text(text, encoding="utf-8")


def run(way: dict[str, Any]) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--approve", "--json"],
        env=way["env"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"{way['name']}: demo failed\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    ex = json.loads(res.stdout)["runs"][-1]
    return {s["name"]: float(s["seconds"] or 0) for s in ex["stages"]}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    base = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    ways = []
    for i, (name, image) in enumerate((("host", None), ("container", IMAGE))):
        d = base / name
        copy_examples(d, image, (18191 + 10 * i, 18190 + 10 * i))
        env = {
            **os.environ,
            "CONVEYOR_HOME": str(d / "home"),
            "CONVEYOR_EXAMPLES": str(d),
            "CONVEYOR_REGISTRY_TEST_PORT": str(15201 + 10 * i),
            "CONVEYOR_REGISTRY_PROD_PORT": str(15202 + 10 * i),
            "CONVEYOR_SERVER_PORT": str(18299 + 10 * i),
            "CI": "true",
            "NO_COLOR": "1",
        }
        ways.append({"name": name, "env": env, "runs": []})
    try:
        for way in ways:
            print(f"{way['name']}: first run (fills the caches): {run(way)}", flush=True)
        for _ in range(rounds):
            for way in ways:
                way["runs"].append(run(way))
                print(f"{way['name']}: {way['runs'][-1]}", flush=True)
    finally:
        for way in ways:
            subprocess.run(
                [sys.executable, "-m", "conveyor", "down"], env=way["env"], capture_output=True
            )
        shutil.rmtree(base, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
    for stage in ("Build", "RunSeleniumTest"):
        host = statistics.median(r[stage] for r in ways[0]["runs"])
        cont = statistics.median(r[stage] for r in ways[1]["runs"])
        print(f"{stage:16} host {host:6.1f} s   container {cont:6.1f} s   {cont / host:.2f}x")


if __name__ == "__main__":
    main()
