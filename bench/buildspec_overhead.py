"""Benchmark: buildspec runner overhead per command, and the cache's effect on an npm build.

1. Overhead: N trivial commands (`:`) run by the runner (one shell, a sentinel per command)
   versus the same N commands in one `bash -c` / `sh -c`. Target: under 5 ms per command.
2. Cache: a buildspec that runs `npm install` with one small dependency (is-number, from the
   npm registry) and caches `node_modules/**/*`, run twice with an unchanged lock file; the
   second run's install phase as a ratio of the first. A second variant runs `npm ci` with
   npm's own cache directory inside the source (`.npm/**/*`) cached.

Writes bench/results/buildspec_overhead.json. Run: .venv/bin/python bench/buildspec_overhead.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import parse_buildspec

HERE = Path(__file__).resolve().parent
N = 500


def overhead(tmp: Path, shell: str) -> dict[str, float]:
    src = tmp / f"src-{shell}"
    src.mkdir()
    spec = parse_buildspec(
        f"version: 0.2\nenv:\n  shell: {shell}\nphases:\n  build:\n    commands:\n"
        + "".join("      - ':'\n" for _ in range(N))
    )
    t0 = time.perf_counter()
    result = run_buildspec(
        spec, {"src": src}, None, tmp / f"work-{shell}", None, copy_sources=False
    )
    runner = time.perf_counter() - t0
    assert result.succeeded, result.message
    build_phase = result.phases[0].duration
    t0 = time.perf_counter()
    subprocess.run([shell, "-c", "\n".join([":"] * N)], check=True)
    plain = time.perf_counter() - t0
    return {
        "commands": N,
        "runner_total_s": round(runner, 3),
        "runner_build_phase_s": round(build_phase, 3),
        "plain_shell_s": round(plain, 4),
        "overhead_ms_per_command": round((build_phase - plain) / N * 1000, 3),
        "fixed_cost_s": round(runner - build_phase, 3),
    }


def npm_cache(tmp: Path, variant: str) -> dict[str, object]:
    npm = shutil.which("npm")
    if npm is None:
        return {"skipped": "npm is not installed"}
    proj = tmp / f"npm-{variant}"
    proj.mkdir()
    (proj / "package.json").write_text(
        json.dumps(
            {
                "name": "bench",
                "version": "1.0.0",
                "private": True,
                "dependencies": {"is-number": "7.0.0"},
            }
        )
    )
    # make the lock file once (not timed), like a committed package-lock.json
    subprocess.run(
        [npm, "install", "--package-lock-only", "--no-audit", "--no-fund"],
        cwd=proj,
        check=True,
        capture_output=True,
    )
    if variant == "install-node_modules":
        text = (
            "version: 0.2\nphases:\n  install:\n    commands:\n"
            "      - npm install --no-audit --no-fund\n"
            "  build:\n    commands:\n      - node -e \"console.log(require('is-number')(5))\"\n"
            "cache:\n  paths:\n    - 'node_modules/**/*'\n"
        )
    else:
        text = (
            "version: 0.2\nenv:\n  variables:\n    npm_config_cache: .npm\n"
            "phases:\n  install:\n    commands:\n"
            "      - npm ci --prefer-offline --no-audit --no-fund\n"
            "  build:\n    commands:\n      - node -e \"console.log(require('is-number')(5))\"\n"
            "cache:\n  paths:\n    - '.npm/**/*'\n"
        )
    spec = parse_buildspec(text)
    cache = tmp / f"cache-{variant}"
    runs = []
    for i in range(2):
        t0 = time.perf_counter()
        r = run_buildspec(
            spec, {"src": proj}, None, tmp / f"w-{variant}-{i}", None, cache_dir=cache
        )
        total = time.perf_counter() - t0
        if not r.succeeded:
            return {"failed": r.message}
        install = next(p.duration for p in r.phases if p.name == "INSTALL")
        runs.append({"total_s": round(total, 3), "install_phase_s": round(install, 3)})
    return {
        "first": runs[0],
        "second": runs[1],
        "install_ratio_second_to_first": round(
            runs[1]["install_phase_s"] / runs[0]["install_phase_s"], 3
        ),
        "total_ratio_second_to_first": round(runs[1]["total_s"] / runs[0]["total_s"], 3),
    }


def main() -> int:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sh, bash = overhead(tmp, "sh"), overhead(tmp, "bash")
        results["overhead_sh"] = sh
        results["overhead_bash"] = bash
        results["npm_install_cache_node_modules"] = npm_cache(tmp, "install-node_modules")
        results["npm_ci_cache_npm_dir"] = npm_cache(tmp, "ci-npm-cache")
    out = HERE / "results" / "buildspec_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    ok = all(r["overhead_ms_per_command"] < 5 for r in (sh, bash))
    print(f"target < 5 ms/command: {'met' if ok else 'NOT met'}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
