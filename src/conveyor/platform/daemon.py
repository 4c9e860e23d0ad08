"""Detached processes of the local platform: start, find, stop — by pid file.

A daemon runs in a session of its own (it survives the `conveyor up` that started it),
writes its output to `state_dir/logs/platform/<name>.log`, and is known by
`state_dir/run/<name>.pid`. A pid file whose process is gone, or now belongs to another
program, counts as "not running" (the command line is checked, so a reused pid is not
mistaken for the daemon).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import Unavailable
from conveyor.timing import poll_until

# children started by this process, so that stopping one also reaps it (no zombie)
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Daemon:
    name: str
    run_dir: Path
    log_dir: Path
    marker: str  # a string the daemon's command line contains (identifies it)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @classmethod
    def of_platform(cls, state_dir: Path, name: str, marker: str) -> Daemon:
        """A daemon of the local platform: pid under state_dir/run, log under logs/platform."""
        return cls(
            name=name,
            run_dir=state_dir / "run",
            log_dir=state_dir / "logs" / "platform",
            marker=marker,
        )

    def pid(self) -> int | None:
        """The daemon's pid if it is running, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid, self.marker) else None

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(
                f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=dict(env) if env is not None else None,
            )
        _children[proc.pid] = proc
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_file)
        return proc.pid

    def exited(self) -> int | None:
        """The exit code if this process started the daemon and it has exited."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        proc = _children.get(pid)
        return None if proc is None else proc.poll()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the daemon (SIGTERM, then SIGKILL); True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and _alive(pid, self.marker):
            _reap(pid)
            time.sleep(0.05)
        if _alive(pid, self.marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.05)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_ready(self, ready: Callable[[], bool], wait: float, what: str, doing: str) -> None:
        """Wait up to `wait` seconds for `ready()` after `start`; Unavailable if the daemon
        exits first (with its log's tail) or time runs out. `what` names the daemon in the
        message ("registry 'local'") and `doing` says what it did not do ("listen on ...")."""

        def state() -> str:
            if self.exited() is not None:
                return "exited"
            return "ready" if ready() else ""

        last = poll_until(state, bool, deadline=time.monotonic() + wait, interval=0.05)
        if last == "ready":
            return
        if last == "exited":
            raise Unavailable(
                f"{what} exited right after starting; "
                f"its log ({self.log_file}) ends with:\n{self.log_tail()}"
            )
        raise Unavailable(f"{what} did not {doing} within {wait:.0f}s; see {self.log_file}")

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        _children.pop(pid, None)


def _alive(pid: int, marker: str) -> bool:
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in ("Z", "X"):
        return False
    return marker in cmdline


def port_free(host: str, port: int, wait: float = 0.0) -> bool:
    """True if nothing listens on host:port (we could bind it), checking for up to `wait` s.

    A process that just exited may hold its listening socket for a few milliseconds more.
    """
    end = time.monotonic() + wait
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return True
            except OSError:
                pass
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def require_free_port(host: str, port: int, taken: str, remedy: str) -> None:
    """Raise Unavailable `<taken> is already taken by <owner>; <remedy>` if host:port is in use."""
    if not port_free(host, port, wait=2.0):
        owner = port_owner(port)
        raise Unavailable(
            f"{taken} is already taken{' by ' + owner if owner else ' by another process'}; "
            f"{remedy}"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_owner(port: int) -> str:
    """Who listens on a TCP port, as `ss` tells (best effort, for error messages)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    line = out.strip().splitlines()[0] if out.strip() else ""
    if "users:((" in line:
        return line.split("users:((", 1)[1].rstrip(")")
    return ""
