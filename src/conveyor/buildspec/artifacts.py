"""Artifacts: `artifacts` and `secondary-artifacts` collected after the build phase."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.files import excluded, match_files, missing_dir, static_prefix
from conveyor.buildspec.result import PRIMARY, CollectedArtifact, PhaseResult
from conveyor.buildspec.spec import ArtifactSpec
from conveyor.errors import ConfigError


def upload_artifacts(
    ctx: BuildContext,
) -> None:
    spec, result = ctx.spec, ctx.result
    assert spec.artifacts is not None
    start = time.monotonic()
    problems: list[str] = []
    dirs = ctx.artifact_dirs
    for art in (spec.artifacts.primary, *spec.artifacts.secondary):
        ident = art.identifier or PRIMARY
        dest = dirs.get(ident) or ctx.workdir / "artifacts" / ident
        try:
            collected = collect_artifact(ctx, art, dest)
        except ConfigError as e:
            problems.append(str(e))
            continue
        result.artifacts.append(collected)
        ctx.log(
            f"[Container] Artifact {ident}: {len(collected.files)} file(s) -> {collected.path}\n"
        )
    dur = time.monotonic() - start
    if problems:
        msg = "; ".join(problems)
        ctx.log(f"[Container] Phase complete: UPLOAD_ARTIFACTS State: FAILED: {msg}\n")
        result.phases.append(PhaseResult("UPLOAD_ARTIFACTS", "FAILED", dur, msg, 1))
        if not result.message:
            result.message = msg
    else:
        result.phases.append(PhaseResult("UPLOAD_ARTIFACTS", "SUCCEEDED", dur, "", 1))


def collect_artifact(ctx: BuildContext, art: ArtifactSpec, dest: Path) -> CollectedArtifact:
    ident = art.identifier or PRIMARY
    where = "artifacts" if art.identifier is None else f"artifacts.secondary-artifacts.{ident}"
    bases = ctx.bases(art.base_directory)
    if not bases or not all(b.is_dir() for b in bases):
        missing = art.base_directory if not bases else next(str(b) for b in bases if not b.is_dir())
        raise ConfigError(
            f"{where}: base-directory {art.base_directory!r} does not exist ({missing}); "
            "no matching artifact paths found"
        )
    dest.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, tuple[Path, str]] = {}  # destination rel path -> (source file, rel)
    unmatched: list[str] = []
    for pattern in art.files:
        pat = ctx.session.expand(pattern) if "$" in pattern else pattern
        hits = 0
        for base in bases:
            if os.path.isabs(pat):
                prefix = Path("/" + static_prefix(pat))
                pbase = prefix if prefix.is_dir() and prefix != Path(pat) else prefix.parent
                rels = match_files(Path("/"), pat.lstrip("/"))
                pairs = [(Path("/") / r, os.path.relpath("/" + r, pbase)) for r in rels]
            else:
                pairs = [(base / r, r) for r in match_files(base, pat)]
            for file, rel in pairs:
                if any(excluded(rel, x) for x in art.exclude_paths):
                    continue
                hits += 1
                target = os.path.basename(rel) if art.discard_paths else rel
                chosen[target] = (file, rel)
            if os.path.isabs(pat):
                break
        if hits == 0:
            unmatched.append(repr(pattern) + missing_dir(bases, pat))
    if unmatched:
        raise ConfigError(
            f"{where}: no matching artifact paths found for "
            + ", ".join(unmatched)
            + (
                f" (base-directory {art.base_directory!r})"
                if art.base_directory
                else " (relative to CODEBUILD_SRC_DIR)"
            )
        )
    for target, (file, _rel) in sorted(chosen.items()):
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        if file.is_symlink() and art.enable_symlinks:
            if out.exists() or out.is_symlink():
                out.unlink()
            out.symlink_to(os.readlink(file))
        elif file.is_file():
            shutil.copy2(file, out)
    name = ctx.session.expand(art.name) if art.name and "$" in art.name else art.name
    return CollectedArtifact(ident, name, dest, sorted(chosen))
