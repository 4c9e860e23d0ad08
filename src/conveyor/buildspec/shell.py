"""One shell per build, driven over its stdin, with a sentinel after each command.

Each command is sent as `eval '<command>' </dev/null` followed by a `printf` of a per-build
random sentinel and `$?`; the reader streams every line to the log until it sees the
sentinel, which gives per-command exit codes and per-phase timings at the cost of one pipe
round trip per command (see bench/buildspec_overhead.py). `cd`, `export` and shell variables
carry over between commands and phases because it is one shell. Commands get /dev/null as
stdin so they cannot swallow the command stream. A command that ends the shell (`exit 99`,
`set -e` and a failure, a syntax error under dash) is reported with its exit status; an EXIT
trap has printed `export -p` and the working directory just before, and the next command
runs in a new shell restored to that state (exported variables and directory).

The shell runs on the host, as another user (`runuser`, for `run-as`), or inside a container
(`container` is the `podman run ... IMAGE` prefix; see container.py).
"""

from __future__ import annotations

import contextlib
import secrets as _random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.adapters import process, tool_errors
from conveyor.buildspec.result import BuildStopped, Log
from conveyor.errors import Unavailable, missing_tool
from conveyor.timing import poll_until

CONTAINER_NAME = "{container-name}"  # replaced by a fresh name at each start of a container


class ContainerFailed(Unavailable):
    """The build's container did not start (podman's own error line in the message)."""


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass
class Outcome:
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
        process.call(
            [self.container[0], "rm", "-f", "-t", "0", self.container_name],
            env=dict(self.process_env or {}),
        )
        self.container_name = None

    def _argv(self) -> list[str]:
        shell = "bash" if self.shell == "bash" else "sh"
        if self.container is not None:
            self.container_name = f"conveyor-build-{uuid.uuid4().hex[:12]}"
            argv = [self.container_name if a == CONTAINER_NAME else a for a in self.container]
            return [*argv, shell]
        if self.user:
            return ["runuser", "-u", self.user, "--", shell]
        return [shutil.which(shell) or shell]

    def start(self) -> None:
        if self.stopped:
            raise BuildStopped(self.stopped)
        env = dict(self.process_env if self.process_env is not None else self.env)
        try:
            self.proc = process.spawn(self._argv(), cwd=self.cwd, env=env)
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
        if self.container is not None:
            self._handshake()

    def _handshake(self) -> None:
        """Wait for the container's shell to answer; ContainerFailed with podman's own line."""
        assert self.proc is not None and self.proc.stdout is not None
        self._write(f"printf '%s READY\\n' {self.token}\n")
        said: list[str] = []
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if f"{self.token} READY" in line:
                return
            said.append(line)
        self._reap()
        if self.stopped:
            raise BuildStopped(self.stopped)
        image = self.container[-1] if self.container else "?"
        raise ContainerFailed(
            tool_errors.describe(
                "podman", f"the build container (image {image}) did not start", "".join(said)
            )
        )

    def _watch(self) -> None:
        """Stop the shell's whole group when the build is cancelled or its deadline passes."""
        proc = self.proc
        done = self._done

        def reason() -> str:
            if done.is_set():
                return "finished"
            if self.cancel is not None and self.cancel.is_set():
                return "cancelled"
            if self.deadline is not None and time.monotonic() > self.deadline:
                return "timed out"
            return ""

        why = poll_until(reason, bool, deadline=None, interval=0.05, sleep=done.wait)
        if why == "finished":
            return
        self.stopped = why
        if proc is not None:
            process.kill_group(proc.pid, signal.SIGTERM)
            if not done.wait(2):
                process.kill_group(proc.pid)

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
        process.kill_group(proc.pid)
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
            self._write(f"export {name}={shell_quote(value)}\n")
        elif self.state is not None:
            self.state.append(f"export {name}={shell_quote(value)}")

    def run(self, text: str, *, quiet: bool = False) -> Outcome:
        if not self.alive():
            if self.proc is not None:
                self.close()
            self.start()
        self.seq += 1
        self._write(
            f"eval {shell_quote(text)} </dev/null\nprintf '%s RC {self.seq} %s\\n' {self.token} \"$?\"\n"
        )
        return self._read(quiet=quiet)

    def _read(self, *, quiet: bool) -> Outcome:
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
                return Outcome(int(parts[2]), out)
            if parts[:1] == ["STATE"]:
                state = []
            elif parts[:1] == ["EXIT"]:
                self.state = state
                rc = int(parts[1]) if len(parts) > 1 else 1
                self._reap()
                return Outcome(rc, out, shell_ended=True)
        # EOF without a sentinel: killed (stop/timeout) or a trap replaced ours
        rc = self._reap()
        if self.stopped:
            raise BuildStopped(self.stopped)
        return Outcome(rc if rc else 1, out, shell_ended=True)

    def _reap(self) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill_group(self.proc.pid)
            rc = self.proc.wait()
        self._done.set()
        process.kill_group(self.proc.pid)  # leftovers of the group
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
