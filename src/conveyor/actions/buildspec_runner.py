"""Running a buildspec the way CodeBuild does, on this machine or in a podman container.

`run_buildspec(spec, sources, ...)` is used by the `build` action and by
`conveyor buildspec run`; it returns a `BuildResult` (phases with status and duration,
exported variables, collected artifacts, parsed reports, succeeded, message).

How commands run (version 0.2): one long-lived shell per build (`sh` unless `env.shell:
bash`), fed over its stdin. Each command is sent as `eval '<command>' </dev/null` followed
by a `printf` of a per-build random sentinel and `$?`; the reader streams every line to the
log (secrets masked) until it sees the sentinel, which gives per-command exit codes and
per-phase timings at the cost of one pipe round trip per command (see
bench/buildspec_overhead.py). `cd`, `export` and shell variables carry over between
commands and phases because it is one shell. Commands get /dev/null as stdin so they
cannot swallow the command stream. A command that ends the shell (`exit 99`, `set -e`
and a failure, a syntax error under dash) is reported with its exit status; an EXIT trap
has printed `export -p` and the working directory just before, and the next command runs
in a new shell restored to that state (exported variables and directory). This was chosen
over a generated script with traps because a script cannot report each command's status
and output boundaries live, nor retry a phase, nor switch user (`run-as`) between phases.

Version 0.1 runs every command in a fresh shell (state does not carry over), with a warning.

Phase transitions follow CodeBuild's "build phase transitions": a failure in install or
pre_build skips the later phases (no post_build, no artifact upload); a failure in build
still runs post_build and the artifact upload; a failure in post_build still uploads
artifacts. `finally` commands run after `commands` even when one fails. `on-failure:
CONTINUE` runs the next phase as if nothing failed (the build still fails); `ABORT` stops
the build at once (no post_build, no upload); `RETRY[-count][-regex]` reruns the phase (3
times by default; with a regex, only when the phase's output matches it).

Secrets (`env.parameter-store`, `env.secrets-manager`) are read from a secrets file of
`NAME=VALUE` lines (`#` comments, blank lines ignored, the value is the rest of the line,
surrounding quotes removed), looked up by the parameter name / secret id, then by the
variable name, then in the process environment under the same two names. A secrets-manager
reference `secret-id:json-key` whose value is a JSON object yields that key. Every value
is replaced by `***` in every log line.

Cache: `cache.paths` relative to the source are copied to `<cache_dir>/src/...` after a
successful build and copied back before the install phase of the next build of the same
action. Absolute paths are not copied on the host (the host's own directories already
persist between builds) and are not supported in a container.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import secrets as _random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conveyor.actions.base import Report
from conveyor.adapters import reports as report_files
from conveyor.errors import ConfigError, Unavailable, missing_tool
from conveyor.model.masking import Masker, StreamMasker
from conveyor.spec.buildspec import (
    PHASE_NAMES,
    ArtifactSpec,
    Buildspec,
    Command,
    Phase,
    batch_order,
    load_buildspec,
)

Log = Callable[[str], None]
PRIMARY = "primary"


# ---------------------------------------------------------------- results


@dataclass
class PhaseResult:
    name: str
    status: str  # SUCCEEDED | FAILED | SKIPPED | STOPPED | TIMED_OUT
    duration: float = 0.0
    message: str = ""
    attempts: int = 0


@dataclass
class CollectedArtifact:
    identifier: str  # 'primary' or the secondary artifact identifier
    name: str | None
    path: Path
    files: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    build_id: str
    succeeded: bool = False
    message: str = ""
    phases: list[PhaseResult] = field(default_factory=list)
    exported: dict[str, str] = field(default_factory=dict)
    artifacts: list[CollectedArtifact] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workdir: Path | None = None
    log_path: Path | None = None
    stopped: str = ""  # '' | 'cancelled' | 'timed out'
    batch: list[tuple[str, BuildResult]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (what `conveyor buildspec run --json` prints)."""
        return {
            "buildId": self.build_id,
            "succeeded": self.succeeded,
            "message": self.message,
            "phases": [
                {
                    "name": p.name,
                    "status": p.status,
                    "durationSeconds": round(p.duration, 3),
                    "attempts": p.attempts,
                    "message": p.message,
                }
                for p in self.phases
            ],
            "exportedVariables": dict(self.exported),
            "artifacts": [
                {"identifier": a.identifier, "name": a.name, "path": str(a.path), "files": a.files}
                for a in self.artifacts
            ],
            "reports": [
                {
                    "name": r.name,
                    "format": r.format,
                    "total": r.total,
                    "passed": r.passed,
                    "failed": r.failed,
                    "skipped": r.skipped,
                    "errors": r.errors,
                    "durationSeconds": r.duration_seconds,
                    "failures": r.failures,
                    "files": r.files,
                }
                for r in self.reports
            ],
            "warnings": list(self.warnings),
            "workdir": str(self.workdir) if self.workdir else None,
            "log": str(self.log_path) if self.log_path else None,
            "batch": [{"identifier": i, **b.summary()} for i, b in self.batch],
        }


class BuildStopped(Exception):
    """Internal: the build was cancelled or ran out of time."""


# ---------------------------------------------------------------- secrets


def read_secrets_file(path: Path | None) -> dict[str, str]:
    """`NAME=VALUE` lines; `#` comments and blank lines ignored; quotes around VALUE removed."""
    out: dict[str, str] = {}
    if path is None or not path.is_file():
        return out
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{n}: expected NAME=VALUE, got {line[:40]!r}")
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def resolve_secrets(
    spec: Buildspec,
    secrets_file: Path | None,
    store: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The values of env.parameter-store and env.secrets-manager; ConfigError lists the missing."""
    table = dict(read_secrets_file(secrets_file))
    table.update(store or {})
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    missing: list[str] = []

    def lookup(ref: str, var: str) -> str | None:
        for k in (ref, var):
            if k in table:
                return table[k]
        for k in (ref, var):
            if k in environ:
                return environ[k]
        return None

    for var, ref in spec.env.parameter_store.items():
        v = lookup(ref, var)
        if v is None:
            missing.append(f"env.parameter-store.{var} (parameter {ref!r})")
        else:
            out[var] = v
    for var, ref in spec.env.secrets_manager.items():
        secret_id, json_key = _split_secret_ref(ref)
        v = lookup(secret_id, var)
        if v is None and ref != secret_id:
            v = lookup(ref, var)
        if v is None:
            missing.append(f"env.secrets-manager.{var} (secret {secret_id!r})")
            continue
        if json_key:
            try:
                data = json.loads(v)
                v = str(data[json_key])
            except (ValueError, KeyError, TypeError):
                missing.append(
                    f"env.secrets-manager.{var} (key {json_key!r} of secret {secret_id!r}: "
                    "the value is not a JSON object with that key)"
                )
                continue
        out[var] = v
    if missing:
        where = secrets_file or "the secrets file"
        raise ConfigError(
            "secrets not found: " + "; ".join(missing) + f". Add `NAME=VALUE` lines to "
            f"{where} (NAME = the parameter name or secret id, or the variable name), "
            "or set them in the environment"
        )
    return out


def _split_secret_ref(ref: str) -> tuple[str, str | None]:
    parts = ref.split(":")
    if ref.startswith("arn:") and len(parts) >= 7:
        sid, rest = ":".join(parts[:7]), parts[7:]
    else:
        sid, rest = parts[0], parts[1:]
    return sid, (rest[0] or None) if rest else None


# ---------------------------------------------------------------- the shell


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_NAME = "{container-name}"  # replaced by a fresh name at each start of a container shell
_NOT_FOUND = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found\s*$")


@dataclass
class _Outcome:
    rc: int
    output: list[str]
    shell_ended: bool = False


class ShellSession:
    """One shell process driven over stdin, with a sentinel after each command."""

    def __init__(
        self,
        shell: str,
        env: Mapping[str, str],
        cwd: Path,
        emit: Log,
        cancel: threading.Event | None,
        deadline: float | None,
        on_pid: Callable[[int], None] | None = None,
        container: list[str] | None = None,
        process_env: Mapping[str, str] | None = None,
    ) -> None:
        self.shell = shell
        self.env = dict(env)
        self.cwd = cwd
        self.emit = emit
        self.cancel = cancel
        self.deadline = deadline
        self.on_pid = on_pid
        self.container = container  # argv prefix `podman run ... IMAGE` or None
        self.process_env = process_env
        self.user: str | None = None
        self.token = f"__CONVEYOR_{_random.token_hex(8)}__"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: list[str] | None = None
        self.stopped = ""
        self.seq = 0
        self._dog: threading.Thread | None = None
        self._done = threading.Event()
        self.container_name: str | None = None

    # -- lifecycle

    def _remove_container(self) -> None:
        """`podman run --rm` cannot clean up when its process group was killed: remove it."""
        if self.container is None or self.container_name is None:
            return
        subprocess.run(
            [self.container[0], "rm", "-f", "-t", "0", self.container_name],
            env=dict(self.process_env or {}),
            capture_output=True,
            check=False,
        )
        self.container_name = None

    def _argv(self) -> list[str]:
        shell = "bash" if self.shell == "bash" else "sh"
        if self.container is not None:
            self.container_name = f"conveyor-build-{uuid.uuid4().hex[:12]}"
            argv = [self.container_name if a == _NAME else a for a in self.container]
            return [*argv, shell]
        if self.user:
            return ["runuser", "-u", self.user, "--", shell]
        return [shutil.which(shell) or shell]

    def start(self) -> None:
        if self.stopped:
            raise BuildStopped(self.stopped)
        env = dict(self.process_env if self.process_env is not None else self.env)
        try:
            self.proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=str(self.cwd),
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            raise missing_tool(str(e.filename or self._argv()[0]), self.shell) from None
        if self.on_pid:
            self.on_pid(self.proc.pid)
        self._done = threading.Event()
        self._dog = threading.Thread(target=self._watch, daemon=True)
        self._dog.start()
        t = self.token
        pre = (
            f'trap \'__cb_rc=$?; export __CB_PWD="$PWD"; printf "%s STATE\\n" {t}; export -p; '
            f'printf "%s EXIT %s\\n" {t} "$__cb_rc"\' EXIT\n'
        )
        if self.state is not None:
            pre += "{\n" + "\n".join(self.state) + "\n} >/dev/null 2>&1\n"
            pre += 'cd "$__CB_PWD" 2>/dev/null; unset __CB_PWD\n'
            if self.user:
                pre += (
                    'HOME=$(getent passwd "$(id -un)" | cut -d: -f6); '
                    "USER=$(id -un); LOGNAME=$USER; "
                    "export HOME USER LOGNAME\n"
                )
            self.state = None
        self._write(pre)

    def _watch(self) -> None:
        proc = self.proc
        while not self._done.wait(0.05):
            if self.cancel is not None and self.cancel.is_set():
                self.stopped = "cancelled"
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.stopped = "timed out"
            else:
                continue
            if proc is not None:
                _kill(proc.pid, signal.SIGTERM)
                if not self._done.wait(2):
                    _kill(proc.pid, signal.SIGKILL)
            return

    def _write(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self, mode: str = "keep") -> None:
        """Stop the shell. mode 'dump': save its state for the next shell; 'forget': drop any
        saved state (version 0.1); 'keep': leave a state saved by an `exit` as it is."""
        if mode == "forget":
            self.state = None
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if mode == "dump":
                self._write("exit 0\n")
                self._read(quiet=True)
            else:
                self._write("trap - EXIT; exit 0\n")
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._done.set()
        _kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        self.proc = None
        self._remove_container()

    def switch_user(self, user: str | None) -> None:
        """Run the next commands as `user` (None: the runner's own user), keeping the state."""
        if user == self.user:
            return
        if self.alive():
            self.close("dump")
        self.user = user

    # -- commands

    def set_env(self, name: str, value: str) -> None:
        self.env[name] = value
        if self.process_env is not None:
            self.process_env = {**self.process_env, name: value}
        if self.alive():
            self._write(f"export {name}={_sq(value)}\n")
        elif self.state is not None:
            self.state.append(f"export {name}={_sq(value)}")

    def run(self, text: str, *, quiet: bool = False) -> _Outcome:
        if not self.alive():
            if self.proc is not None:
                self.close()
            self.start()
        self.seq += 1
        self._write(
            f"eval {_sq(text)} </dev/null\nprintf '%s RC {self.seq} %s\\n' {self.token} \"$?\"\n"
        )
        return self._read(quiet=quiet)

    def _read(self, *, quiet: bool) -> _Outcome:
        assert self.proc is not None and self.proc.stdout is not None
        out: list[str] = []
        state: list[str] | None = None
        t = self.token
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if t not in line:
                if state is not None:
                    state.append(line.rstrip("\n"))
                    continue
                out.append(line)
                if not quiet:
                    self.emit(line if line.endswith("\n") else line + "\n")
                continue
            before, _, rest = line.partition(t)
            if before:
                out.append(before)
                if not quiet:
                    self.emit(before + "\n")
            parts = rest.split()
            if parts[:1] == ["RC"] and len(parts) >= 3:
                return _Outcome(int(parts[2]), out)
            if parts[:1] == ["STATE"]:
                state = []
            elif parts[:1] == ["EXIT"]:
                self.state = state
                rc = int(parts[1]) if len(parts) > 1 else 1
                self._reap()
                return _Outcome(rc, out, shell_ended=True)
        # EOF without a sentinel: killed (stop/timeout) or a trap replaced ours
        rc = self._reap()
        if self.stopped:
            raise BuildStopped(self.stopped)
        return _Outcome(rc if rc else 1, out, shell_ended=True)

    def _reap(self) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self._done.set()
        _kill(self.proc.pid, signal.SIGKILL)  # leftovers of the group
        self._remove_container()
        return rc

    def capture(self, text: str) -> tuple[int, str]:
        """Run quietly; the output as one string (no trailing newline handling)."""
        o = self.run(text, quiet=True)
        return o.rc, "".join(o.output)

    def value(self, name: str) -> str | None:
        rc, text = self.capture(
            f'if [ "${{{name}+set}}" = set ]; then printf "%s" "${{{name}}}"; else false; fi'
        )
        return text if rc == 0 else None

    def expand(self, expr: str) -> str:
        """A buildspec string evaluated by the build's shell (`$VAR`, `$(date ...)`)."""
        rc, text = self.capture('printf "%s" "' + expr.replace('"', '\\"') + '"')
        return text if rc == 0 else expr


def _kill(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ---------------------------------------------------------------- runtimes

_RUNTIMES: dict[str, tuple[str, str]] = {
    "nodejs": ("node --version", "node"),
    "python": ("python3 --version 2>&1", "python3"),
    "java": ("java -version 2>&1", "java"),
    "golang": ("go version", "go"),
    "ruby": ("ruby --version", "ruby"),
    "php": ("php --version", "php"),
    "dotnet": ("dotnet --version", "dotnet"),
}


def _version_matches(requested: str, installed: str) -> bool:
    req = requested.strip().lower()
    if req in ("latest", ""):
        return True
    m = re.search(r"\d+(?:\.\d+)*", req.replace(".x", ""))
    if not m:
        return False
    want = m.group(0).split(".")
    have = installed.split(".")
    return have[: len(want)] == want


# ---------------------------------------------------------------- globbing


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    p = pattern
    while i < len(p):
        if p.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif p[i] == "*":
            out += "[^/]*"
            i += 1
        elif p[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(p[i])
            i += 1
    return re.compile(out + r"\Z")


def _static_prefix(pattern: str) -> str:
    parts = []
    for part in pattern.strip("/").split("/"):
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return "/".join(parts)


def _walk(base: Path, follow: bool = False) -> Iterable[str]:
    for root, dirs, files in os.walk(base, followlinks=follow):
        rel = os.path.relpath(root, base)
        rel = "" if rel == "." else rel + "/"
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                yield rel + d
        for f in files:
            yield rel + f


def match_files(base: Path, pattern: str) -> list[str]:
    """Files under `base` matching a CodeBuild location (`**/*`, `dir/*`, `a/b.jar`, a dir)."""
    pattern = pattern.strip()
    if pattern.startswith("./"):
        pattern = pattern[2:]
    prefix = _static_prefix(pattern)
    if prefix == pattern.strip("/"):  # no glob: a file or a whole directory
        target = base / prefix
        if target.is_file() or target.is_symlink() and not target.is_dir():
            return [prefix]
        if target.is_dir():
            return [f"{prefix}/{f}" for f in _walk(target)]
        return []
    start = base / prefix if prefix else base
    if not start.is_dir():
        return []
    rx = _glob_regex(pattern.strip("/"))
    found = []
    for f in _walk(start):
        rel = f"{prefix}/{f}" if prefix else f
        if rx.match(rel):
            found.append(rel)
    return found


# ---------------------------------------------------------------- the run


@dataclass
class _Context:
    spec: Buildspec
    session: ShellSession
    log: Log
    result: BuildResult
    workdir: Path
    src: Path
    masker: Masker
    is_container: bool
    artifact_dirs: Mapping[str, Path] = field(default_factory=dict)
    report_dir: Path | None = None
    cache_root: Path | None = None


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
    if not sources:
        raise ConfigError("no source directory given: a buildspec runs against at least one source")
    workdir = Path(workdir) if workdir else Path.cwd() / ".conveyor-build" / uuid.uuid4().hex[:8]
    workdir.mkdir(parents=True, exist_ok=True)
    build_id = f"{project}:{uuid.uuid4()}"
    result = BuildResult(build_id=build_id, workdir=workdir, log_path=workdir / "build.log")

    if spec.batch is not None and batch_identifier is None:
        return _run_batch(
            spec,
            sources,
            env,
            workdir,
            log,
            cancel,
            deadline,
            result,
            artifact_dirs=artifact_dirs,
            cache_dir=cache_dir,
            secrets_file=secrets_file,
            secrets=secrets,
            image=image,
            container_env=container_env,
            state_dir=state_dir,
            copy_sources=copy_sources,
            project=project,
            build_number=build_number,
            initiator=initiator,
            resolved_source_version=resolved_source_version,
            on_pid=on_pid,
        )

    secret_values = resolve_secrets(spec, secrets_file, secrets)
    masker = Masker(secret_values.values())
    stream = StreamMasker(masker)  # a secret split over two writes is masked too
    logfile = result.log_path.open("a", encoding="utf-8")  # type: ignore[union-attr]
    lock = threading.Lock()

    def emit(text: str, *, final: bool = False) -> None:
        with lock:
            text = stream.feed(text) + (stream.flush() if final else "")
            if not text:
                return
            logfile.write(text)
            logfile.flush()
        if log:
            log(text)

    def note(text: str) -> None:
        emit(f"[Container] {text}\n")

    try:
        # sources: the primary at workdir/src, secondaries at workdir/src_<name>
        names = list(sources)
        src_dirs: dict[str, Path] = {}
        for i, name in enumerate(names):
            given = Path(sources[name]).resolve()
            if not given.is_dir():
                raise ConfigError(f"source {name!r}: {given} is not a directory")
            if copy_sources:
                dest = workdir / ("src" if i == 0 else f"src_{name}")
                if dest.exists():
                    shutil.rmtree(dest)
                _copy_tree(given, dest)
                src_dirs[name] = dest
            else:
                src_dirs[name] = given
        src = src_dirs[names[0]]
        start_ms = int(time.time() * 1000)
        cb = {
            "CODEBUILD_SRC_DIR": str(src),
            "CODEBUILD_BUILD_ID": build_id,
            "CODEBUILD_BUILD_ARN": f"arn:conveyor:codebuild:local:000000000000:build/{build_id}",
            "CODEBUILD_BUILD_NUMBER": str(build_number),
            "CODEBUILD_BUILD_SUCCEEDING": "1",
            "CODEBUILD_INITIATOR": initiator,
            "CODEBUILD_RESOLVED_SOURCE_VERSION": resolved_source_version,
            "CODEBUILD_SOURCE_VERSION": resolved_source_version,
            "CODEBUILD_START_TIME": str(start_ms),
            "CODEBUILD_BUILD_IMAGE": image or "host",
            "CODEBUILD_LOCAL": "true",
        }
        for name in names[1:]:
            cb[f"CODEBUILD_SRC_DIR_{name}"] = str(src_dirs[name])
        for k in ("CODEBUILD_RESOLVED_SOURCE_VERSION", "CODEBUILD_SOURCE_VERSION"):
            if env and k in env:
                cb[k] = env[k]  # a project variable (`--env`) may set the source version
        if batch_identifier:
            cb["CODEBUILD_BATCH_BUILD_IDENTIFIER"] = batch_identifier
        build_env: dict[str, str] = {}
        build_env.update(spec.env.variables)
        build_env.update(secret_values)
        build_env.update(env or {})
        build_env.update(cb)

        container: list[str] | None = None
        process_env: dict[str, str] | None = None
        if image:
            container, process_env = _container_argv(
                image,
                workdir,
                list(src_dirs.values()),
                src,
                build_env,
                container_env,
                state_dir,
                workdir,
            )
        else:
            host = dict(os.environ)
            host.update(build_env)
            build_env = host

        session = ShellSession(
            spec.env.shell,
            build_env,
            src,
            emit,
            cancel,
            deadline,
            on_pid,
            container=container,
            process_env=process_env,
        )
        ctx = _Context(
            spec,
            session,
            emit,
            result,
            workdir,
            src,
            masker,
            image is not None,
            dict(artifact_dirs or {}),
            report_dir,
        )
        note(
            f"Build {build_id}: buildspec {spec.file} "
            f"(version {spec.version}, shell {spec.env.shell}"
            f"{', image ' + image if image else ', on the host'})"
        )
        if spec.version == "0.1":
            note(
                "WARNING: buildspec version 0.1 runs each command in its own shell: "
                "`cd` and `export` "
                "do not carry over. Use version 0.2."
            )
            result.warnings.append("buildspec version 0.1: each command runs in its own shell")
        if spec.env.git_credential_helper:
            note(
                "env.git-credential-helper: accepted; locally git uses this machine's "
                "own credentials"
            )
        if secret_values:
            note(f"Secrets resolved locally: {', '.join(sorted(secret_values))} (values masked)")
        try:
            _restore_cache(ctx, cache_dir)
            _run_phases(ctx)
        except BuildStopped as e:
            result.stopped = str(e)
        finally:
            session.close()
        if result.stopped:
            result.succeeded = False
            result.message = result.message or f"build {result.stopped}"
            note(f"Build {result.stopped}")
            _collect_reports(ctx, quiet=True)
            return result
        result.succeeded = not any(
            p.status in ("FAILED", "STOPPED", "TIMED_OUT") for p in result.phases
        )
        if result.succeeded:
            _save_cache(ctx, cache_dir)
        if not result.succeeded and not result.message:
            failed = [p for p in result.phases if p.status == "FAILED"]
            result.message = failed[0].message if failed else "build failed"
        note(
            f"Build complete: State {'SUCCEEDED' if result.succeeded else 'FAILED'}"
            + ("" if result.succeeded else f": {result.message}")
        )
        return result
    finally:
        emit("", final=True)
        logfile.close()


def _run_phases(ctx: _Context) -> None:
    spec, session, result = ctx.spec, ctx.session, ctx.result
    ctx_artifacts = spec.artifacts

    def note(text: str) -> None:
        ctx.log(f"[Container] {text}\n")

    skip_rest = False
    aborted = False
    upload = True
    for name in PHASE_NAMES:
        phase = spec.phase(name)
        if phase is None:
            continue
        if skip_rest:
            result.phases.append(
                PhaseResult(name.upper(), "SKIPPED", message="skipped: an earlier phase failed")
            )
            continue
        started = time.monotonic()
        try:
            pr = _run_phase(ctx, phase)
        except BuildStopped as e:
            status = "TIMED_OUT" if str(e) == "timed out" else "STOPPED"
            result.phases.append(
                PhaseResult(name.upper(), status, time.monotonic() - started, f"build {e}")
            )
            raise
        result.phases.append(pr)
        if pr.status == "SUCCEEDED":
            continue
        session.set_env("CODEBUILD_BUILD_SUCCEEDING", "0")
        if not result.message:
            result.message = pr.message
        policy = phase.on_failure.mode if phase.on_failure else None
        if policy == "CONTINUE":
            note(f"Phase {name.upper()} failed; on-failure: CONTINUE, going on to the next phase")
            continue
        if policy == "ABORT":
            note(f"Phase {name.upper()} failed; on-failure: ABORT, stopping the build")
            skip_rest, aborted, upload = True, True, False
            continue
        if name in ("install", "pre_build"):
            skip_rest, upload = True, False
        # build -> post_build still runs; post_build -> upload still happens
    # exported variables: their values at the end of the last phase
    for var in spec.env.exported_variables:
        try:
            v = session.value(var)
        except BuildStopped:
            raise
        if v is None:
            result.warnings.append(f"exported variable {var} is not set at the end of the build")
            note(f"WARNING: exported variable {var} is not set at the end of the build")
        elif ctx.masker.contains(v):
            # an output variable is shown to every viewer: a secret never becomes one
            msg = (
                f"exported variable {var} holds a secret value (or one of its encodings): "
                "not exported; pass the secret itself to the actions that need it"
            )
            result.warnings.append(msg)
            note(f"WARNING: {msg}")
        else:
            result.exported[var] = v
    if ctx_artifacts is not None:
        if upload and not aborted:
            _upload_artifacts(ctx)
        else:
            result.phases.append(
                PhaseResult(
                    "UPLOAD_ARTIFACTS",
                    "SKIPPED",
                    message="skipped: the build failed before the build phase ended",
                )
            )
    _collect_reports(ctx)


def _run_phase(ctx: _Context, phase: Phase) -> PhaseResult:
    session = ctx.session
    name = phase.name.upper()
    user = phase.run_as or ctx.spec.run_as
    start = time.monotonic()
    attempts = 0
    ctx.log(f"[Container] Entering phase {name}\n")
    while True:
        attempts += 1
        try:
            if user is not None:
                _prepare_user(ctx, user)
            session.switch_user(None if user is None or user == _whoami() else user)
        except ConfigError as e:
            return PhaseResult(name, "FAILED", time.monotonic() - start, str(e), attempts)
        ok, message, output = _run_block(ctx, phase)
        if ok:
            dur = time.monotonic() - start
            ctx.log(f"[Container] Phase complete: {name} State: SUCCEEDED ({dur:.2f}s)\n")
            return PhaseResult(name, "SUCCEEDED", dur, "", attempts)
        of = phase.on_failure
        if of is not None and of.mode == "RETRY" and attempts <= of.retries:
            matched = of.pattern is None or re.search(of.pattern, "".join(output))
            ctx.log(
                f"[Container] Phase {name} failed ({message}); on-failure {of}: "
                + (f"retry {attempts} of {of.retries}\n" if matched else "no match, no retry\n")
            )
            if matched:
                continue
        dur = time.monotonic() - start
        ctx.log(f"[Container] Phase complete: {name} State: FAILED ({dur:.2f}s): {message}\n")
        return PhaseResult(name, "FAILED", dur, f"phase {name}: {message}", attempts)


def _whoami() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _prepare_user(ctx: _Context, user: str) -> None:
    if ctx.is_container:
        raise ConfigError(
            f"run-as: {user}: running as another user is not supported inside a container "
            "image yet; drop run-as or run on the host"
        )
    if user == "root" and os.geteuid() == 0:
        return
    try:
        import pwd

        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"run-as: user {user!r} does not exist on this machine; create it "
            f"(useradd {user}) or remove run-as"
        ) from None
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid():
            return
        raise ConfigError(f"run-as: {user}: running as another user needs root (runuser)")
    if shutil.which("runuser") is None:
        raise missing_tool("runuser", "util-linux")
    # CodeBuild grants the run-as user access to the sources: give it this build's copies
    for d in {ctx.workdir, ctx.src}:
        subprocess.run(
            ["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(d)],
            check=False,
            capture_output=True,
        )


def _run_block(ctx: _Context, phase: Phase) -> tuple[bool, str, list[str]]:
    session = ctx.session
    output: list[str] = []
    failure = ""
    if phase.name == "install" and phase.runtime_versions:
        failure = _check_runtimes(ctx, phase)
    blocks: list[tuple[str, tuple[Command, ...]]] = [
        ("commands", phase.commands),
        ("finally", phase.finally_),
    ]
    for block, commands in blocks:
        if block == "commands" and failure:
            continue
        for cmd in commands:
            unset = _unset_source_dir(ctx, cmd.text)
            if unset:
                ctx.log(f"[Container] {unset}\n")
                failure = failure or unset
                break
            ctx.log(f"[Container] Running command {cmd.text}\n")
            o = session.run(cmd.text)
            output.extend(o.output[-400:])
            if ctx.spec.version == "0.1":
                session.close("forget")
            elif o.shell_ended and o.rc == 0:
                ctx.log(
                    "[Container] (the command ended the shell; the next command runs in a new "
                    "shell with the same exported variables and directory)\n"
                )
            if o.rc != 0:
                msg = f"command {_short(cmd.text)!r} exited with status {o.rc}"
                cause = _first_error(o.output)
                if cause:
                    msg += f": {cause}"
                missing = _missing_command(o.output)
                if o.rc == 127 and missing == "source" and ctx.spec.env.shell == "sh":
                    msg = (
                        f"`source` is not a command of sh, this buildspec's shell (in "
                        f"{_short(cmd.text)!r}): write `. FILE` instead, or set `env.shell: bash`"
                    )
                elif o.rc == 127 and missing:
                    msg = (
                        f"command not found: {missing!r} (in {_short(cmd.text)!r}); "
                        "install it in the "
                        "install phase or run the build in an image that has it"
                    )
                ctx.log(
                    f"[Container] Command did not exit successfully {cmd.text} exit status {o.rc}\n"
                )
                if o.rc == 127 and missing:
                    ctx.log(f"[Container] {msg}\n")
                if not failure:
                    failure = msg
                break
    return (not failure), failure, output


_SRC_DIR_REF = re.compile(r"\$\{?(CODEBUILD_SRC_DIR_\w+)")


def _unset_source_dir(ctx: _Context, text: str) -> str:
    """A command's `$CODEBUILD_SRC_DIR_x` that no source sets (`cd` would go to $HOME)."""
    for name in dict.fromkeys(_SRC_DIR_REF.findall(text)):
        if name in ctx.session.env or ctx.session.value(name) is not None:
            continue
        known = sorted(
            k.removeprefix("CODEBUILD_SRC_DIR_")
            for k in ctx.session.env
            if k.startswith("CODEBUILD_SRC_DIR_")
        )
        return (
            f"${name} is not set (in {_short(text)!r}): no secondary source is named "
            f"'{name.removeprefix('CODEBUILD_SRC_DIR_')}' (secondary sources: "
            f"{', '.join(known) or 'none'}); name it with `--source "
            f"{name.removeprefix('CODEBUILD_SRC_DIR_')}=DIR` or the action's input artifact"
        )
    return ""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRORISH = (
    re.compile(r"\bTS\d{3,5}:.*"),  # a TypeScript compiler error says it best
    re.compile(r"(?:\berror\b|\bERROR\b|ERR!|\bError:|\bfatal:|\bdenied\b|refused|not found).*"),
)


def _first_error(lines: list[str], limit: int = 160) -> str:
    """The line of a failed command's output that most likely says why (ANSI colours removed)."""
    clean = [_ANSI.sub("", line).strip() for line in lines]
    for pattern in _ERRORISH:
        for line in clean:
            m = pattern.search(line)
            if m:
                text = line if pattern is _ERRORISH[1] else m.group(0)
                text = text.strip("✘[] ")
                return text if len(text) <= limit else text[: limit - 1] + "…"
    return ""


def _short(text: str, limit: int = 80) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit and "\n" not in text.strip() else first[: limit - 3] + "..."


def _missing_command(lines: list[str]) -> str | None:
    for line in reversed(lines):
        m = _NOT_FOUND.search(line.rstrip())
        if m:
            return m.group(1)
    return None


def _check_runtimes(ctx: _Context, phase: Phase) -> str:
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
        if _version_matches(requested, installed):
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


# ---------------------------------------------------------------- artifacts


def _bases(ctx: _Context, base_directory: str | None) -> list[Path]:
    if not base_directory:
        return [ctx.src]
    expanded = ctx.session.expand(base_directory) if "$" in base_directory else base_directory
    root = Path(expanded) if os.path.isabs(expanded) else ctx.src / expanded
    if any(ch in expanded for ch in "*?["):
        parent = root.parent
        return sorted(p for p in parent.glob(root.name) if p.is_dir()) if parent.is_dir() else []
    return [root]


def _upload_artifacts(
    ctx: _Context,
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
            collected = _collect_artifact(ctx, art, dest)
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


def _collect_artifact(ctx: _Context, art: ArtifactSpec, dest: Path) -> CollectedArtifact:
    ident = art.identifier or PRIMARY
    where = "artifacts" if art.identifier is None else f"artifacts.secondary-artifacts.{ident}"
    bases = _bases(ctx, art.base_directory)
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
                prefix = Path("/" + _static_prefix(pat))
                pbase = prefix if prefix.is_dir() and prefix != Path(pat) else prefix.parent
                rels = match_files(Path("/"), pat.lstrip("/"))
                pairs = [(Path("/") / r, os.path.relpath("/" + r, pbase)) for r in rels]
            else:
                pairs = [(base / r, r) for r in match_files(base, pat)]
            for file, rel in pairs:
                if any(_excluded(rel, x) for x in art.exclude_paths):
                    continue
                hits += 1
                target = os.path.basename(rel) if art.discard_paths else rel
                chosen[target] = (file, rel)
            if os.path.isabs(pat):
                break
        if hits == 0:
            unmatched.append(repr(pattern) + _missing_dir(bases, pat))
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


def _missing_dir(bases: Sequence[Path], pattern: str) -> str:
    """' (directory X does not exist)' when a pattern's fixed leading directory is missing."""
    pattern = pattern.strip().removeprefix("./")
    prefix = _static_prefix(pattern)
    if not prefix or os.path.isabs(pattern):
        return ""
    if prefix == pattern.strip("/"):
        prefix = os.path.dirname(prefix)  # a plain file name: its directory
        if not prefix:
            return ""
    for base in bases:
        if not (base / prefix).is_dir():
            return f" (directory {prefix} does not exist in {base})"
    return ""


def _excluded(rel: str, pattern: str) -> bool:
    return bool(_glob_regex(pattern.strip("/")).match(rel)) or fnmatch.fnmatch(rel, pattern)


# ---------------------------------------------------------------- reports


def _collect_reports(ctx: _Context, quiet: bool = False) -> None:
    spec, result = ctx.spec, ctx.result
    report_root = ctx.report_dir or ctx.workdir / "reports"
    for rs in spec.reports:
        try:
            alive = ctx.session.proc is not None or not ctx.session.stopped
            bases = _bases(ctx, rs.base_directory) if alive else [ctx.src]
        except BuildStopped:
            bases = [ctx.src]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", rs.group.rsplit("/", 1)[-1])
        dest = report_root / safe
        files: list[Path] = []
        for base in bases:
            if not base.is_dir():
                continue
            for pattern in rs.files:
                for rel in match_files(base, pattern):
                    src_file = base / rel
                    if not src_file.is_file():
                        continue
                    target = dest / (os.path.basename(rel) if rs.discard_paths else rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src_file, target)
                    _mask_file(target, ctx.masker)
                    files.append(target)
        if not files:
            gone = [b for b in bases if not b.is_dir()]
            msg = f"report group {rs.group}: no report files matched {', '.join(rs.files)}" + (
                f" in {rs.base_directory}" if rs.base_directory else ""
            )
            if rs.base_directory and (gone or not bases):
                msg += f" (base-directory {gone[0] if gone else rs.base_directory} does not exist)"
            else:
                msg += "".join(_missing_dir(bases, p) for p in rs.files[:1])
            if not quiet:
                ctx.log(f"[Container] WARNING: {msg}\n")
            result.warnings.append(msg)
            continue
        try:
            report, problems = report_files.parse_report(
                rs.group,
                rs.file_format,
                files,
                display=lambda p: os.path.relpath(p, report_root.parent),
            )
        except report_files.UnsupportedReportFormat as e:
            ctx.log(f"[Container] WARNING: {e}\n")
            result.warnings.append(str(e))
            continue
        for p in problems:
            ctx.log(f"[Container] WARNING: {p}\n")
            result.warnings.append(p)
        report.failures = [
            {k: ctx.masker.mask(str(v)) for k, v in f.items()} for f in report.failures
        ]
        result.reports.append(report)
        ctx.log(
            f"[Container] Report {rs.group} ({report.format}): {report.total} tests, "
            f"{report.passed} "
            f"passed, {report.failed} failed, {report.errors} errors, {report.skipped} skipped\n"
        )


def _mask_file(path: Path, masker: Masker) -> None:
    """Mask secrets in a copied text report (the copy others read), in place."""
    if not masker:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return  # a screenshot or another binary file
    masked = masker.mask(text)
    if masked != text:
        path.write_text(masked, encoding="utf-8")


# ---------------------------------------------------------------- cache


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a directory tree preserving symlinks (cp -a when available: much faster)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("cp"):
        dest.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{src}/.", str(dest)],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode == 0:
            return
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)


def _cache_entries(ctx: _Context) -> tuple[list[str], list[str]]:
    assert ctx.spec.cache is not None
    rel: list[str] = []
    absolute: list[str] = []
    for p in ctx.spec.cache.paths:
        (absolute if os.path.isabs(p) else rel).append(p)
    return rel, absolute


def _cache_root(ctx: _Context, cache_dir: Path) -> Path:
    spec = ctx.spec
    assert spec.cache is not None
    if spec.cache.key:
        key = ctx.session.expand(spec.cache.key)
        return cache_dir / "keys" / re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:120]
    return cache_dir


def _restore_cache(ctx: _Context, cache_dir: Path | None) -> None:
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
                "not cached in a container"
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
        prefix = _static_prefix(p)
        cached = root / prefix if prefix else root
        if cached.exists():
            target = ctx.src / prefix if prefix else ctx.src
            if cached.is_dir():
                _copy_tree(cached, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cached, target)
            restored.append(prefix or ".")
    ctx.log(
        f"[Container] cache: restored {', '.join(restored) or 'nothing'} in "
        f"{time.monotonic() - start:.2f}s\n"
    )


def _save_cache(ctx: _Context, cache_dir: Path | None) -> None:
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
        prefix = _static_prefix(p)
        source = ctx.src / prefix if prefix else ctx.src
        if not source.exists():
            continue
        target = root / prefix if prefix else root
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        if source.is_dir():
            _copy_tree(source, tmp)
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


# ---------------------------------------------------------------- containers


def _container_argv(
    image: str,
    workdir: Path,
    source_dirs: list[Path],
    src: Path,
    build_env: Mapping[str, str],
    container_env: Mapping[str, str] | None,
    state_dir: Path | None,
    scratch: Path,
) -> tuple[list[str], dict[str, str]]:
    podman = shutil.which("podman")
    if podman is None:
        raise missing_tool("podman", "podman")
    penv = dict(os.environ)
    if container_env:
        penv.update(container_env)
    if "CONTAINERS_CONF" not in penv:
        conf_dir = (state_dir or scratch) / "podman"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conf = conf_dir / "containers.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
            '[engine]\nruntime = "runc"\n',
            encoding="utf-8",
        )
        penv["CONTAINERS_CONF"] = str(conf)
    exists = subprocess.run(
        [podman, "image", "exists", image], env=penv, capture_output=True, check=False
    )
    if exists.returncode != 0:
        host = image.split("/", 1)[0]
        if host.startswith(("127.0.0.1", "localhost")) and "/" in image:
            pull = subprocess.run(
                [podman, "pull", "--tls-verify=false", image],
                env=penv,
                capture_output=True,
                text=True,
                check=False,
            )
            if pull.returncode != 0:
                raise Unavailable(
                    f"image {image}: cannot pull it from {host}: {pull.stderr.strip()[-300:]}"
                )
        else:
            raise Unavailable(
                f"image {image} is not available locally (this machine cannot pull from "
                "public registries): build it with `podman build -t " + image + " ...` or "
                "push it to the local registry first"
            )
    argv = [
        podman,
        "run",
        "--rm",
        "-i",
        "--network",
        "host",
        "--name",
        _NAME,
    ]
    mounts = {workdir.resolve(), *[d.resolve() for d in source_dirs]}
    for m in sorted(mounts):
        argv += ["-v", f"{m}:{m}"]
    argv += ["-w", str(src)]
    for k, v in build_env.items():
        penv[k] = v
        argv += ["--env", k]
    argv.append(image)
    return argv, penv


# ---------------------------------------------------------------- batch


def _run_batch(
    spec: Buildspec,
    sources: Mapping[str, Path],
    env: Mapping[str, str] | None,
    workdir: Path,
    log: Log | None,
    cancel: threading.Event | None,
    deadline: float | None,
    result: BuildResult,
    **kw: Any,
) -> BuildResult:
    assert spec.batch is not None
    batch = spec.batch
    primary = Path(next(iter(sources.values())))

    def say(text: str) -> None:
        if log:
            log(f"[Batch] {text}\n")

    say(f"batch {batch.kind}: {len(batch.builds)} build(s), run one after the other")
    states: dict[str, str] = {}
    stop = False
    artifact_dirs: Mapping[str, Path] = kw.pop("artifact_dirs", None) or {}
    for b in batch_order(batch):
        if stop:
            states[b.identifier] = "SKIPPED"
            result.phases.append(
                PhaseResult(b.identifier, "SKIPPED", message="skipped: an earlier build failed")
            )
            continue
        failed_deps = [d for d in b.depend_on if states.get(d) != "SUCCEEDED"]
        if failed_deps:
            states[b.identifier] = "SKIPPED"
            result.phases.append(
                PhaseResult(
                    b.identifier,
                    "SKIPPED",
                    message=f"skipped: depends on {', '.join(failed_deps)} which did not succeed",
                )
            )
            continue
        if b.buildspec:
            child = load_buildspec(primary / b.buildspec, name=b.buildspec)
            child = replace(child, batch=None)
        else:
            child = replace(spec, batch=None)
        if b.image:
            say(
                f"{b.identifier}: env.image {b.image} is a CodeBuild image; the build runs "
                + ("in " + kw["image"] if kw.get("image") else "on the host")
            )
        child_env = {**(env or {}), **b.variables}
        dirs = {k: v / b.identifier for k, v in artifact_dirs.items()}
        say(f"{b.identifier}: starting ({b.buildspec or spec.file})")
        sub = run_buildspec(
            child,
            sources,
            child_env,
            workdir / "batch" / b.identifier,
            log,
            cancel,
            deadline,
            artifact_dirs=dirs,
            batch_identifier=b.identifier,
            **kw,
        )
        result.batch.append((b.identifier, sub))
        status = "SUCCEEDED" if sub.succeeded else ("STOPPED" if sub.stopped else "FAILED")
        states[b.identifier] = status
        total = sum(p.duration for p in sub.phases)
        result.phases.append(PhaseResult(b.identifier, status, total, sub.message, 1))
        result.exported.update(sub.exported)
        result.artifacts.extend(sub.artifacts)
        result.reports.extend(sub.reports)
        result.warnings.extend(f"{b.identifier}: {w}" for w in sub.warnings)
        say(f"{b.identifier}: {status}")
        if sub.stopped:
            result.stopped = sub.stopped
            stop = True
        elif (
            not sub.succeeded
            and not b.ignore_failure
            and (batch.kind == "build-list" or batch.fast_fail)
        ):
            stop = batch.kind == "build-list" or batch.fast_fail
    bad = [
        i
        for i, s in states.items()
        if s != "SUCCEEDED"
        and not next(b for b in batch.builds if b.identifier == i).ignore_failure
    ]
    result.succeeded = not bad and not result.stopped
    result.message = "" if result.succeeded else f"batch builds did not succeed: {', '.join(bad)}"
    return result
