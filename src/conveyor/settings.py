"""Where Conveyor keeps its state and how it reaches its parts; read once, passed down.

`Settings.from_env()` is the one place environment variables are parsed. A bad value is one
line naming the variable, what it should be and how to fix it (exit 2); a CONVEYOR_HOME that
is not a directory is exit 3.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from conveyor.errors import ConfigError, Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    database_url: str
    server_host: str = "127.0.0.1"
    server_port: int = 8700
    lease_seconds: float = 6.0
    heartbeat_seconds: float = 1.0
    poll_seconds: float = 0.2
    secrets_file: Path | None = None
    metrics_token: str | None = None  # /metrics needs it, unless open on loopback without one
    extra: dict[str, str] = field(default_factory=dict)
    db_connect_timeout: float = 10.0  # seconds to reach PostgreSQL (and finish its handshake)
    db_statement_timeout: float = 60.0  # seconds any one PostgreSQL statement may take
    database_create_dirs: bool = False  # create a SQLite file's directory outside state_dir

    @property
    def server_url(self) -> str:
        return f"http://{self.server_host}:{self.server_port}"

    @classmethod
    def from_env(
        cls, state_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                return parse(raw.strip())
            except ValueError:
                problems.append(f"{name}={raw!r} is not {what}")
                return default

        port = get("CONVEYOR_SERVER_PORT", 8700, _port, "a port number (1-65535)")
        lease = get("CONVEYOR_LEASE_SECONDS", 6.0, _positive, "a positive number of seconds")
        connect = get(
            "CONVEYOR_DB_CONNECT_TIMEOUT", 10.0, _positive, "a positive number of seconds"
        )
        statement = get(
            "CONVEYOR_DB_STATEMENT_TIMEOUT", 60.0, _positive, "a positive number of seconds"
        )
        create_dirs = get("CONVEYOR_DATABASE_CREATE_DIRS", False, _flag, "1/true or 0/false")
        if problems:
            raise ConfigError("; ".join(problems) + ": fix or unset it")
        home = Path(state_dir or env.get("CONVEYOR_HOME") or ".conveyor").resolve()
        if home.exists() and not home.is_dir():
            raise Unavailable(
                f"the state directory {home} (CONVEYOR_HOME) is a file, not a directory: "
                "point CONVEYOR_HOME at a directory"
            )
        url = env.get("CONVEYOR_DATABASE_URL") or f"sqlite:///{home / 'conveyor.db'}"
        secrets = env.get("CONVEYOR_SECRETS_FILE")
        return cls(
            state_dir=home,
            database_url=url,
            server_host=env.get("CONVEYOR_SERVER_HOST", "127.0.0.1"),
            server_port=port,
            lease_seconds=lease,
            secrets_file=Path(secrets) if secrets else home / "secrets.env",
            metrics_token=env.get("CONVEYOR_METRICS_TOKEN") or None,
            db_connect_timeout=connect,
            db_statement_timeout=statement,
            database_create_dirs=create_dirs,
        )


def _port(raw: str) -> int:
    n = int(raw)
    if not 1 <= n <= 65535:
        raise ValueError(raw)
    return n


def _positive(raw: str) -> float:
    x = float(raw)
    if not x > 0 or x != x or x == float("inf"):
        raise ValueError(raw)
    return x


def _flag(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
