"""Running commands: live output, cancellation, deadlines, whole process groups.

Every child gets its own session (process group) so a stop or a timeout kills the whole
tree, and so the engine can record the group id and kill leftovers after a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    finished = threading.Event()

    def watchdog() -> None:
        while not finished.wait(0.05):
            if cancel is not None and cancel.is_set():
                state["cancelled"] = True
            elif deadline is not None and time.monotonic() > deadline:
                state["timed_out"] = True
            else:
                continue
            kill_group(proc.pid, signal.SIGTERM)
            if not finished.wait(2):
                kill_group(proc.pid)
            return

    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    assert proc.stdout is not None
    stdout = proc.stdout

    def reader() -> None:
        for raw in iter(stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if keep_output:
                chunks.append(line)
            if on_output:
                on_output(line)

    pump = threading.Thread(target=reader, daemon=True)
    pump.start()
    rc = proc.wait()
    finished.set()
    # a daemon left in the group (e.g. a backgrounded server) must not outlive its step,
    # nor hold the pipe open
    kill_group(proc.pid)
    pump.join(10)
    stdout.close()
    return Completed(
        returncode=rc,
        output="".join(chunks),
        timed_out=state["timed_out"],
        cancelled=state["cancelled"],
        duration=time.monotonic() - start,
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
