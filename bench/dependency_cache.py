"""Benchmark: the example's dependency cache (issue 18.2), on the real Angular application.

The INSTALL phase of examples/webapp/buildspec.yml runs twice against fresh copies of the
application (no node_modules), with one cache directory, as two Builds of the same
package-lock.json would: the first misses (npm ci), the second restores node_modules for
that lock file's hash. Two variants of the second run:

- `install`: the example as it is: on a hit, `npm install --prefer-offline` checks the
  restored tree against the lock file;
- `ci`: the cache restored, then `npm ci --prefer-offline` anyway (it deletes node_modules:
  only ~/.npm helps).

Printed and written to bench/results/dependency_cache.json: each run's INSTALL seconds, the
cache restore and save seconds from the runner's log, the second/first ratio (goal: <= 0.2
for INSTALL), and the load average. Run: .venv/bin/python bench/dependency_cache.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import Command, load_buildspec

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "examples" / "webapp"
SKIP = {"node_modules", "dist", ".angular", "reports"}


def fresh_copy(dest: Path) -> Path:
    shutil.copytree(APP, dest, ignore=lambda d, names: [n for n in names if n in SKIP])
    return dest


def install_only(variant: str) -> object:
    spec = load_buildspec(APP / "buildspec.yml")
    install = spec.phase("install")
    assert install is not None
    commands = install.commands
    if variant == "ci":
        commands = (
            *commands[:-1],
            Command("npm ci --no-audit --no-fund --prefer-offline", commands[-1].line),
        )
    return dataclasses.replace(
        spec,
        phases=(dataclasses.replace(install, commands=commands),),
        artifacts=None,
        reports=(),
    )


def one_build(tmp: Path, n: int, spec: object, cache: Path) -> dict[str, float]:
    src = fresh_copy(tmp / f"src{n}")
    lines: list[str] = []
    t0 = time.perf_counter()
    result = run_buildspec(
        spec,  # type: ignore[arg-type]
        {"src": src},
        {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]},
        tmp / f"work{n}",
        lines.append,
        copy_sources=False,
        cache_dir=cache,
    )
    total = time.perf_counter() - t0
    assert result.succeeded, result.message + "".join(lines)[-2000:]
    log = "".join(lines)
    restored = re.search(r"cache: restored .* in ([\d.]+)s", log)
    saved = re.search(r"cache: saved .* in ([\d.]+)s", log)
    return {
        "install_s": round(next(p.duration for p in result.phases if p.name == "INSTALL"), 2),
        "restore_s": float(restored.group(1)) if restored else 0.0,
        "save_s": float(saved.group(1)) if saved else 0.0,
        "total_s": round(total, 2),
        "hit": float("dependency cache hit" in log),
    }


def main() -> None:
    if shutil.which("npm") is None:
        print("npm is not installed: nothing to measure")
        return
    out: dict[str, object] = {"load_before": os.getloadavg()}
    for variant in ("install", "ci"):
        with tempfile.TemporaryDirectory(prefix="depcache-") as d:
            tmp = Path(d)
            spec = install_only(variant)
            cache = tmp / "cache"
            first = one_build(tmp, 1, spec, cache)
            second = one_build(tmp, 2, spec, cache)
            ratio = second["install_s"] / first["install_s"] if first["install_s"] else 0.0
            with_restore = (second["install_s"] + second["restore_s"]) / first["install_s"]
            out[variant] = {
                "first": first,
                "second": second,
                "install_ratio": round(ratio, 3),
                "install_plus_restore_ratio": round(with_restore, 3),
            }
            print(
                f"{variant:8s} INSTALL {first['install_s']:.1f}s -> {second['install_s']:.1f}s "
                f"({ratio:.2f}x; with the restore {with_restore:.2f}x); restore "
                f"{second['restore_s']:.1f}s, save {first['save_s']:.1f}s / "
                f"{second['save_s']:.1f}s"
            )
    out["load_after"] = os.getloadavg()
    print(f"load average before {out['load_before']}, after {out['load_after']}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "dependency_cache.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
