"""Running commands: live output, cancellation, deadlines, whole process groups.

Every child gets its own session (process group) so a stop or a timeout kills the whole
tree, and so the engine can record the group id and kill leftovers after a crash.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import missing_tool

Output = Callable[[str], None]


@dataclass
class Completed:
    returncode: int
    output: str
    timed_out: bool = False
    cancelled: bool = False
    duration: float = 0.0


def require(binary: str, package: str) -> str:
    """The full path of a binary, or Unavailable naming the Debian package."""
    found = shutil.which(binary)
    if not found:
        raise missing_tool(binary, package)
    return found


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@contextmanager
def _killed_on_error(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise


def run(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    on_output: Output | None = None,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    on_pid: Callable[[int], None] | None = None,
    stdin: str | None = None,
    keep_output: bool = True,
) -> Completed:
    """Run argv, streaming merged stdout/stderr line by line to `on_output`.

    Stops the whole process group when `cancel` is set or `deadline` (monotonic) passes.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        cwd=str(cwd) if cwd else None,
        env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if on_pid:
        on_pid(proc.pid)
    if stdin is not None and proc.stdin:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    chunks: list[str] = []
    state = {"timed_out": False, "cancelled": False}
    assert proc.stdout is not None
    stdout = proc.stdout
    fd = stdout.fileno()
    os.set_blocking(fd, False)
    pending = b""
    term_at: float | None = None  # when SIGTERM went to the group (a stop or a timeout)
    exited_at: float | None = None

    def emit(data: bytes) -> None:
        line = data.decode("utf-8", "replace")
        if keep_output:
            chunks.append(line)
        if on_output:
            on_output(line)

    # one thread reads the output and watches cancel/deadline (no helper threads per command)
    with selectors.DefaultSelector() as sel, _killed_on_error(proc):
        sel.register(fd, selectors.EVENT_READ)
        while True:
            if term_at is None:
                if cancel is not None and cancel.is_set():
                    state["cancelled"] = True
                elif deadline is not None and time.monotonic() > deadline:
                    state["timed_out"] = True
                if state["cancelled"] or state["timed_out"]:
                    kill_group(proc.pid, signal.SIGTERM)
                    term_at = time.monotonic()
            elif time.monotonic() - term_at > 2:
                kill_group(proc.pid)
            if not sel.select(0.05):
                if proc.poll() is not None:
                    # exited, but something left in its group holds the pipe open: a daemon
                    # left behind must not outlive its step (and one that left the group
                    # is not waited for past 10 s)
                    kill_group(proc.pid)
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 10:
                        break
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                emit(raw + b"\n")
    if pending:
        emit(pending)
    rc = proc.wait()
    kill_group(proc.pid)
    stdout.close()
    return Completed(
        returncode=rc,
        output="".join(chunks),
        timed_out=state["timed_out"],
        cancelled=state["cancelled"],
        duration=time.monotonic() - start,
    )


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in its own session, stderr merged into stdout.

    Without `log`, stdin and stdout are pipes: a long-lived child driven over its stdin (a
    build's shell). With `log`, a service: no stdin, its output appended to that file.
    `kill_group(p.pid)` stops it and everything it started.
    """
    out = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if out is not None else subprocess.PIPE,
            stdout=out if out is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()


def call(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion, its output captured as text; never raises on rc."""
    return subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check_output(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> str:
    """Run a short command and return its stdout; raise CalledProcessError on failure."""
    res = subprocess.run(
        list(argv),
        cwd=str(cwd) if cwd else None,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, list(argv), res.stdout, res.stderr)
    return res.stdout
