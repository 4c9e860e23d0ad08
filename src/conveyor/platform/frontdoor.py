"""An environment's front door: a small TCP reverse proxy on its fixed port, run by Conveyor.

Why our own proxy and not nginx/haproxy: the requirement is zero failed requests while
the release behind it changes, and the switch must be confirmed before the old release is
stopped. This proxy reads its upstream from a file (`frontdoor.json`, replaced atomically
by `FrontDoor.switch`), and writes back what it is doing (`frontdoor.state.json`: the
generation of the config it applied and the open connections per upstream). So a deploy
(1) starts the new release beside the old one, (2) switches and *waits for the proxy's
acknowledgement*, (3) waits until no connection to the old release is open, and only then
(4) stops the old release. nginx or haproxy reload gracefully too, but would add a Debian
package to install and give no such acknowledgement or connection count without parsing
their status pages. One Python process per environment, about 20 MB.

Behaviour: each new connection goes to the current upstream; a connection already open
stays with the upstream it started with until it closes. Connecting to the upstream is
retried (it carries no request bytes yet, so a retry is safe); before any release is
deployed, or when the upstream never answers, the client gets an HTTP 502/503 saying so.

Run as `python -m conveyor.platform.frontdoor --listen 127.0.0.1:8080 --config FILE
--state FILE` (the platform does, detached, pid file in `state_dir/run/`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import Unavailable
from conveyor.platform.daemon import Daemon, require_free_port

# -- the proxy process ---------------------------------------------------------------------


class Proxy:
    def __init__(self, config: Path, state: Path) -> None:
        self.config = config
        self.state = state
        self.generation = -1
        self.upstream: str | None = None
        self.release: str | None = None
        self.active: Counter[str] = Counter()
        self.served = 0
        self.failed = 0
        self._stamp: tuple[int, int, int] | None = None
        self._dirty = True

    def reload(self) -> None:
        """Apply the config file if it changed (a stat per call: cheap)."""
        try:
            st = self.config.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.config.read_text())
        except (OSError, ValueError):
            return  # a half-written file cannot happen (atomic rename); ignore garbage
        self._stamp = stamp
        self.generation = int(data.get("generation", 0))
        self.upstream = data.get("upstream") or None
        self.release = data.get("release")
        self._dirty = True

    def write_state(self) -> None:
        body = {
            "pid": os.getpid(),
            "generation": self.generation,
            "upstream": self.upstream,
            "release": self.release,
            "active": {k: v for k, v in self.active.items() if v},
            "served": self.served,
            "failed": self.failed,
            "time": time.time(),
        }
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.state)
        self._dirty = False

    async def housekeeping(self) -> None:
        while True:
            self.reload()
            if self._dirty:
                self.write_state()
            await asyncio.sleep(0.02)

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.reload()
        upstream = self.upstream
        if upstream is None:
            await _answer(cwriter, 503, "no release is deployed in this environment yet")
            return
        self.active[upstream] += 1
        self._dirty = True
        try:
            conn = None
            for attempt in range(10):
                host, _, port = upstream.rpartition(":")
                try:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 3)
                    break
                except (TimeoutError, OSError):
                    await asyncio.sleep(0.05 * (attempt + 1))
                    self.reload()
                    if self.upstream and self.upstream != upstream:  # switched meanwhile
                        self.active[upstream] -= 1
                        upstream = self.upstream
                        self.active[upstream] += 1
            if conn is None:
                self.failed += 1
                await _answer(
                    cwriter,
                    502,
                    f"the release behind this front door ({upstream}) does not accept connections",
                )
                return
            ureader, uwriter = conn
            await _splice(creader, cwriter, ureader, uwriter)
            self.served += 1
        finally:
            self.active[upstream] -= 1
            self._dirty = True
            with contextlib.suppress(Exception):
                cwriter.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _splice(
    creader: asyncio.StreamReader,
    cwriter: asyncio.StreamWriter,
    ureader: asyncio.StreamReader,
    uwriter: asyncio.StreamWriter,
) -> None:
    up = asyncio.create_task(_pipe(creader, uwriter))
    down = asyncio.create_task(_pipe(ureader, cwriter))
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down not in done and up.exception() is None:
            await down  # the client finished sending: wait for the whole answer
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            uwriter.close()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(Exception):
        writer.write(head + body)
        await writer.drain()
        writer.close()


async def serve(listen: str, config: Path, state: Path) -> None:
    proxy = Proxy(config, state)
    proxy.reload()
    proxy.write_state()
    host, _, port = listen.rpartition(":")
    server = await asyncio.start_server(
        proxy.handle, host, int(port), reuse_address=True, backlog=512
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keeper = asyncio.create_task(proxy.housekeeping())
    print(f"front door listening on {listen}, config {config}", flush=True)
    await stop.wait()
    server.close()
    end = time.monotonic() + 5
    while sum(proxy.active.values()) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    keeper.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conveyor-frontdoor")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.config, args.state))
    return 0


# -- the controller (used by the platform and the podman deploy driver) --------------------


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by the proxy or its controller; {} if absent or half-written."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class FrontDoor:
    environment: str
    host: str
    port: int
    state_dir: Path

    @property
    def directory(self) -> Path:
        return self.state_dir / "environments" / self.environment

    @property
    def config_file(self) -> Path:
        return self.directory / "frontdoor.json"

    @property
    def state_file(self) -> Path:
        return self.directory / "frontdoor.state.json"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def daemon(self) -> Daemon:
        return Daemon.of_platform(
            self.state_dir, f"frontdoor-{self.environment}", str(self.config_file)
        )

    def read_config(self) -> dict[str, Any]:
        return _read_json(self.config_file)

    def read_state(self) -> dict[str, Any]:
        return _read_json(self.state_file)

    def running(self) -> bool:
        return self.daemon.pid() is not None

    def ensure_running(self, wait: float = 10.0) -> bool:
        """Start the proxy unless it runs; True if started. A port taken -> Unavailable."""
        daemon = self.daemon
        if daemon.pid() is not None:
            return False
        require_free_port(
            self.host,
            self.port,
            f"environment '{self.environment}': its port {self.address}",
            f"stop that process or set another `port` for environment '{self.environment}' "
            "in the pipeline file",
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            self._write_config({"generation": 0, "upstream": None, "release": None})
        self.state_file.unlink(missing_ok=True)
        daemon.start(
            [
                sys.executable,
                "-m",
                "conveyor.platform.frontdoor",
                "--listen",
                self.address,
                "--config",
                str(self.config_file),
                "--state",
                str(self.state_file),
            ]
        )
        daemon.wait_ready(
            lambda: self.state_file.exists() and self.health()[0],
            wait,
            f"the front door of '{self.environment}'",
            f"listen on {self.address}",
        )
        return True

    def health(self) -> tuple[bool, str]:
        if self.daemon.pid() is None:
            return False, "not running"
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError as exc:
            return False, f"not accepting connections: {exc}"
        state = self.read_state()
        up = state.get("upstream")
        rel = state.get("release")
        return True, f"-> {up} (release {rel})" if up else "no release deployed"

    def switch(self, upstream: str | None, release: str | None, wait: float = 10.0) -> None:
        """Point new connections at `upstream`; return once the proxy has applied it."""
        generation = int(self.read_config().get("generation", 0)) + 1
        self._write_config({"generation": generation, "upstream": upstream, "release": release})
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if int(self.read_state().get("generation", -1)) >= generation:
                return
            time.sleep(0.01)
        raise Unavailable(
            f"the front door of '{self.environment}' did not apply the switch to "
            f"{upstream} within {wait:.0f}s (is it running? see "
            f"{self.daemon.log_file})"
        )

    def drain(self, upstream: str, wait: float = 30.0) -> bool:
        """Wait until no connection to `upstream` is open; False if some still are at the end."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not int(self.read_state().get("active", {}).get(upstream, 0)):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> bool:
        return self.daemon.stop()

    def _write_config(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.config_file)


if __name__ == "__main__":
    sys.exit(main())
