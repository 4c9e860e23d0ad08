"""`runtime-versions` of the install phase, checked against what the environment has."""

from __future__ import annotations

import re

from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.spec import Phase

_RUNTIMES: dict[str, tuple[str, str]] = {
    "nodejs": ("node --version", "node"),
    "python": ("python3 --version 2>&1", "python3"),
    "java": ("java -version 2>&1", "java"),
    "golang": ("go version", "go"),
    "ruby": ("ruby --version", "ruby"),
    "php": ("php --version", "php"),
    "dotnet": ("dotnet --version", "dotnet"),
}


def version_matches(requested: str, installed: str) -> bool:
    req = requested.strip().lower()
    if req in ("latest", ""):
        return True
    m = re.search(r"\d+(?:\.\d+)*", req.replace(".x", ""))
    if not m:
        return False
    want = m.group(0).split(".")
    have = installed.split(".")
    return have[: len(want)] == want


def check_runtimes(ctx: BuildContext, phase: Phase) -> str:
    problems = []
    for runtime, requested in phase.runtime_versions.items():
        if requested.startswith("$"):
            requested = ctx.session.expand(requested)
        known = _RUNTIMES.get(runtime)
        if known is None:
            problems.append(
                f"runtime {runtime} is not known to Conveyor's local runner "
                f"(known: {', '.join(sorted(_RUNTIMES))})"
            )
            continue
        cmd, binary = known
        rc, text = ctx.session.capture(cmd)
        m = re.search(r"(\d+(?:\.\d+)+)", text)
        if rc != 0 or not m:
            problems.append(
                f"runtime-versions: {runtime} {requested} requested but {binary!r} is not "
                "installed in this build environment"
            )
            continue
        installed = m.group(1)
        if version_matches(requested, installed):
            ctx.log(
                f"[Container] runtime-versions: {runtime} {requested} -> {installed} (installed)\n"
            )
        else:
            problems.append(
                f"runtime-versions: {runtime} {requested} requested but this environment "
                f"has {binary} {installed}; install that version or run in an image that has it"
            )
    for p in problems:
        ctx.log(f"[Container] {p}\n")
    return "; ".join(problems)
