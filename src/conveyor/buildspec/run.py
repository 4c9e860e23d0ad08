"""Running a buildspec the way CodeBuild does, on this machine or in a podman container.

`run_buildspec(spec, sources, ...)` is used by the `build` action and by
`conveyor buildspec run`; it returns a `BuildResult` (phases with status and duration,
exported variables, collected artifacts, parsed reports, succeeded, message).

The parts, one module each: spec.py (the buildspec read and checked), shell.py (one
long-lived shell per build, fed over its stdin, per-command exit codes), secrets.py,
files.py (path patterns, copies), phases.py (CodeBuild's phase transitions), artifacts.py,
reports.py, cache.py, container.py (the shell inside `podman run`), batch.py.

How commands run (version 0.2): one shell for the whole build, so `cd`, `export` and shell
variables carry over between commands and phases. This was chosen over a generated script
with traps because a script cannot report each command's status and output boundaries
live, nor retry a phase, nor switch user (`run-as`) between phases. Version 0.1 runs every
command in a fresh shell (state does not carry over), with a warning.

Every secret value is replaced by `***` in every log line, report and exported variable.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from conveyor.buildspec.batch import run_batch
from conveyor.buildspec.cache import restore_cache, save_cache
from conveyor.buildspec.container import (
    BuildContainer,
    build_container,
    cache_mounts,
    wants_container,
)
from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.files import copy_tree
from conveyor.buildspec.phases import run_phases
from conveyor.buildspec.reports import collect_reports
from conveyor.buildspec.result import BuildResult, BuildStopped, Log
from conveyor.buildspec.secrets import resolve_secrets
from conveyor.buildspec.shell import ShellSession
from conveyor.buildspec.spec import Buildspec
from conveyor.errors import ConfigError
from conveyor.model.masking import Masker, StreamMasker


@dataclass(frozen=True)
class BuildOptions:
    """How one build runs (the keyword arguments of `run_buildspec`)."""

    artifact_dirs: Mapping[str, Path] | None = None
    cache_dir: Path | None = None
    secrets_file: Path | None = None
    secrets: Mapping[str, str] | None = None
    image: str | None = None
    container_env: Mapping[str, str] | None = None
    state_dir: Path | None = None
    copy_sources: bool = True
    project: str = "local"
    build_number: int = 1
    initiator: str = "conveyor"
    resolved_source_version: str = ""
    on_pid: Callable[[int], None] | None = None
    batch_identifier: str | None = None
    report_dir: Path | None = None


def run_buildspec(
    spec: Buildspec,
    sources: Mapping[str, Path],
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    log: Log | None = None,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    *,
    artifact_dirs: Mapping[str, Path] | None = None,
    cache_dir: Path | None = None,
    secrets_file: Path | None = None,
    secrets: Mapping[str, str] | None = None,
    image: str | None = None,
    container_env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    copy_sources: bool = True,
    project: str = "local",
    build_number: int = 1,
    initiator: str = "conveyor",
    resolved_source_version: str = "",
    on_pid: Callable[[int], None] | None = None,
    batch_identifier: str | None = None,
    report_dir: Path | None = None,
) -> BuildResult:
    """Run a buildspec against `sources` (name -> directory; the first is the primary).

    `env` holds project-level variables (they override the buildspec's env.variables).
    Artifacts go to `artifact_dirs[identifier]` (`'primary'` for the primary artifact),
    else under `workdir/artifacts/`. Raises ConfigError (missing secrets, bad input) and
    Unavailable (podman or the image missing); a failing build is a result, not an error.
    """
    options = BuildOptions(
        artifact_dirs,
        cache_dir,
        secrets_file,
        secrets,
        image,
        container_env,
        state_dir,
        copy_sources,
        project,
        build_number,
        initiator,
        resolved_source_version,
        on_pid,
        batch_identifier,
        report_dir,
    )
    if not wants_container(image):
        options = replace(options, image=None)  # `host` and '' run on this machine
    return _Build(spec, sources, env, log, cancel, deadline).run(workdir, options)


@dataclass
class _Build:
    """One call of `run_buildspec`: what stays the same for every build of a batch."""

    spec: Buildspec
    sources: Mapping[str, Path]
    env: Mapping[str, str] | None
    log: Log | None
    cancel: threading.Event | None
    deadline: float | None

    def run(self, workdir: Path | None, o: BuildOptions) -> BuildResult:
        if not self.sources:
            raise ConfigError(
                "no source directory given: a buildspec runs against at least one source"
            )
        workdir = (
            Path(workdir) if workdir else Path.cwd() / ".conveyor-build" / uuid.uuid4().hex[:8]
        )
        workdir.mkdir(parents=True, exist_ok=True)
        build_id = f"{o.project}:{uuid.uuid4()}"
        result = BuildResult(build_id=build_id, workdir=workdir, log_path=workdir / "build.log")
        if self.spec.batch is None or o.batch_identifier is not None:
            return self.single(self.spec, self.env, workdir, o, result)

        def run_one(child: Buildspec, env: Mapping[str, str], wd: Path, ident: str) -> BuildResult:
            dirs = {k: v / ident for k, v in (o.artifact_dirs or {}).items()}
            sub = replace(o, artifact_dirs=dirs, batch_identifier=ident)
            return _Build(child, self.sources, env, self.log, self.cancel, self.deadline).run(
                wd, sub
            )

        primary = Path(next(iter(self.sources.values())))
        return run_batch(
            self.spec, primary, self.env, workdir, self.log, result, run_one, image=o.image
        )

    def single(
        self,
        spec: Buildspec,
        env: Mapping[str, str] | None,
        workdir: Path,
        o: BuildOptions,
        result: BuildResult,
    ) -> BuildResult:
        secret_values = resolve_secrets(spec, o.secrets_file, o.secrets)
        masker = Masker(secret_values.values())
        assert result.log_path is not None
        with _build_log(result.log_path, masker, self.log) as emit:
            src_dirs = _prepare_sources(self.sources, workdir, o.copy_sources)
            src = next(iter(src_dirs.values()))
            build_env = dict(spec.env.variables)
            build_env.update(secret_values)
            build_env.update(env or {})
            build_env.update(codebuild_variables(result.build_id, src_dirs, env, o))
            container = self.container(spec, build_env, src_dirs, workdir, o)
            try:
                session = ShellSession(
                    spec.env.shell,
                    container.inside if container else {**os.environ, **build_env},
                    src,
                    emit,
                    self.cancel,
                    self.deadline,
                    o.on_pid,
                    container=container.argv if container else None,
                    process_env=container.env if container else None,
                )
                ctx = BuildContext(
                    spec,
                    session,
                    emit,
                    result,
                    workdir,
                    src,
                    masker,
                    container is not None,
                    dict(o.artifact_dirs or {}),
                    o.report_dir,
                )
                _announce(ctx, sorted(secret_values), o.image)
                return _phases(ctx, o.cache_dir)
            finally:
                if container is not None:
                    container.close()

    def container(
        self,
        spec: Buildspec,
        build_env: Mapping[str, str],
        src_dirs: Mapping[str, Path],
        workdir: Path,
        o: BuildOptions,
    ) -> BuildContainer | None:
        """The build's container (None: on the host), its podman service started."""
        if o.image is None:
            return None
        cached = cache_mounts(spec.cache.paths if spec.cache else (), o.cache_dir)
        return build_container(
            o.image,
            [workdir, *src_dirs.values()],
            next(iter(src_dirs.values())),
            build_env,
            o.container_env,
            (o.state_dir or workdir) / "podman",
            workdir / "podman-service.log",
            cached,
        )


def _phases(ctx: BuildContext, cache_dir: Path | None) -> BuildResult:
    """The cache restored, the phases run, the shell closed, the result finished."""
    try:
        restore_cache(ctx, cache_dir)
        run_phases(ctx)
    except BuildStopped as e:
        ctx.result.stopped = str(e)
    finally:
        ctx.session.close()
    return _finish(ctx, cache_dir)


@contextmanager
def _build_log(path: Path, masker: Masker, log: Log | None) -> Iterator[Log]:
    """The build's log: every line masked, written to `path` and passed on to `log`."""
    stream = StreamMasker(masker)  # a secret split over two writes is masked too
    lock = threading.Lock()
    with path.open("a", encoding="utf-8") as logfile:

        def emit(text: str, *, final: bool = False) -> None:
            with lock:
                text = stream.feed(text) + (stream.flush() if final else "")
                if not text:
                    return
                logfile.write(text)
                logfile.flush()
            if log:
                log(text)

        try:
            yield emit
        finally:
            emit("", final=True)


def _prepare_sources(sources: Mapping[str, Path], workdir: Path, copy: bool) -> dict[str, Path]:
    """The primary source at workdir/src, secondaries at workdir/src_<name> (or in place)."""
    src_dirs: dict[str, Path] = {}
    for i, name in enumerate(sources):
        given = Path(sources[name]).resolve()
        if not given.is_dir():
            raise ConfigError(f"source {name!r}: {given} is not a directory")
        if not copy:
            src_dirs[name] = given
            continue
        dest = workdir / ("src" if i == 0 else f"src_{name}")
        if dest.exists():
            shutil.rmtree(dest)
        copy_tree(given, dest)
        src_dirs[name] = dest
    return src_dirs


def codebuild_variables(
    build_id: str, src_dirs: Mapping[str, Path], env: Mapping[str, str] | None, o: BuildOptions
) -> dict[str, str]:
    """The CODEBUILD_* variables of a build, as CodeBuild sets them."""
    names = list(src_dirs)
    cb = {
        "CODEBUILD_SRC_DIR": str(src_dirs[names[0]]),
        "CODEBUILD_BUILD_ID": build_id,
        "CODEBUILD_BUILD_ARN": f"arn:conveyor:codebuild:local:000000000000:build/{build_id}",
        "CODEBUILD_BUILD_NUMBER": str(o.build_number),
        "CODEBUILD_BUILD_SUCCEEDING": "1",
        "CODEBUILD_INITIATOR": o.initiator,
        "CODEBUILD_RESOLVED_SOURCE_VERSION": o.resolved_source_version,
        "CODEBUILD_SOURCE_VERSION": o.resolved_source_version,
        "CODEBUILD_START_TIME": str(int(time.time() * 1000)),
        "CODEBUILD_BUILD_IMAGE": o.image or "host",
        "CODEBUILD_LOCAL": "true",
    }
    for name in names[1:]:
        cb[f"CODEBUILD_SRC_DIR_{name}"] = str(src_dirs[name])
    for k in ("CODEBUILD_RESOLVED_SOURCE_VERSION", "CODEBUILD_SOURCE_VERSION"):
        if env and k in env:
            cb[k] = env[k]  # a project variable (`--env`) may set the source version
    if o.batch_identifier:
        cb["CODEBUILD_BATCH_BUILD_IDENTIFIER"] = o.batch_identifier
    return cb


def _announce(ctx: BuildContext, secret_names: list[str], image: str | None) -> None:
    spec = ctx.spec
    ctx.note(
        f"Build {ctx.result.build_id}: buildspec {spec.file} "
        f"(version {spec.version}, shell {spec.env.shell}"
        f"{', image ' + image if image else ', on the host'})"
    )
    if spec.version == "0.1":
        ctx.note(
            "WARNING: buildspec version 0.1 runs each command in its own shell: "
            "`cd` and `export` "
            "do not carry over. Use version 0.2."
        )
        ctx.result.warnings.append("buildspec version 0.1: each command runs in its own shell")
    if spec.env.git_credential_helper:
        ctx.note(
            "env.git-credential-helper: accepted; locally git uses this machine's own credentials"
        )
    if secret_names:
        ctx.note(f"Secrets resolved locally: {', '.join(secret_names)} (values masked)")


def _finish(ctx: BuildContext, cache_dir: Path | None) -> BuildResult:
    """Succeeded or not, the message, the cache saved after a success."""
    result = ctx.result
    if result.stopped:
        result.succeeded = False
        result.message = result.message or f"build {result.stopped}"
        ctx.note(f"Build {result.stopped}")
        collect_reports(ctx, quiet=True)
        return result
    result.succeeded = not any(
        p.status in ("FAILED", "STOPPED", "TIMED_OUT") for p in result.phases
    )
    if result.succeeded:
        save_cache(ctx, cache_dir)
    if not result.succeeded and not result.message:
        failed = [p for p in result.phases if p.status == "FAILED"]
        result.message = failed[0].message if failed else "build failed"
    ctx.note(
        "Build complete: State "
        + ("SUCCEEDED" if result.succeeded else f"FAILED: {result.message}")
    )
    return result
