"""The build cache: `cache.paths` relative to the source are copied to
`<cache_dir>/src/...` after a successful build and copied back before the install phase of
the next build of the same action. Absolute paths are not copied on the host (the host's own
directories already persist between builds); in a container they are mounted from
`<cache_dir>/abs/...` (see container.py), so they persist the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.files import copy_tree, static_prefix


def _cache_entries(ctx: BuildContext) -> tuple[list[str], list[str]]:
    assert ctx.spec.cache is not None
    rel: list[str] = []
    absolute: list[str] = []
    for p in ctx.spec.cache.paths:
        (absolute if os.path.isabs(p) else rel).append(p)
    return rel, absolute


def _cache_root(ctx: BuildContext, cache_dir: Path) -> Path:
    spec = ctx.spec
    assert spec.cache is not None
    if spec.cache.key:
        key = ctx.session.expand(spec.cache.key)
        return cache_dir / "keys" / re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:120]
    return cache_dir


def restore_cache(ctx: BuildContext, cache_dir: Path | None) -> None:
    spec = ctx.spec
    if spec.cache is None or not spec.cache.paths:
        return
    if cache_dir is None:
        ctx.log("[Container] cache: no cache directory for this build; cache.paths ignored\n")
        return
    rel, absolute = _cache_entries(ctx)
    if absolute:
        ctx.log(
            "[Container] cache: absolute paths ("
            + ", ".join(absolute)
            + ") are "
            + (
                "mounted from the cache directory in the container"
                if ctx.is_container
                else "not copied: on the host they persist between builds anyway"
            )
            + "\n"
        )
    ctx.cache_root = _cache_root(ctx, cache_dir)
    if spec.cache.action == "save":
        return
    root = ctx.cache_root / "src"
    if not root.is_dir():
        ctx.log("[Container] cache: empty (first build of this action on this machine)\n")
        return
    start = time.monotonic()
    restored = []
    for p in rel:
        prefix = static_prefix(p)
        cached = root / prefix if prefix else root
        if cached.exists():
            target = ctx.src / prefix if prefix else ctx.src
            if cached.is_dir():
                copy_tree(cached, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cached, target)
            restored.append(prefix or ".")
    ctx.log(
        f"[Container] cache: restored {', '.join(restored) or 'nothing'} in "
        f"{time.monotonic() - start:.2f}s\n"
    )


def save_cache(ctx: BuildContext, cache_dir: Path | None) -> None:
    spec = ctx.spec
    if spec.cache is None or cache_dir is None or spec.cache.action == "restore":
        return
    rel, _ = _cache_entries(ctx)
    if not rel:
        return
    start = time.monotonic()
    root = (ctx.cache_root or cache_dir) / "src"
    if spec.cache.key and root.is_dir():  # a keyed entry is never updated (as on CodeBuild)
        ctx.log("[Container] cache: kept the existing entry of this key\n")
        return
    saved = []
    for p in rel:
        prefix = static_prefix(p)
        source = ctx.src / prefix if prefix else ctx.src
        if not source.exists():
            continue
        target = root / prefix if prefix else root
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        if source.is_dir():
            copy_tree(source, tmp)
        else:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        tmp.rename(target)
        saved.append(prefix or ".")
    ctx.log(
        f"[Container] cache: saved {', '.join(saved) or 'nothing'} "
        f"in {time.monotonic() - start:.2f}s\n"
    )
