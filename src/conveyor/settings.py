"""Where Conveyor keeps its state and how it reaches its parts; read once, passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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

    @property
    def server_url(self) -> str:
        return f"http://{self.server_host}:{self.server_port}"

    @classmethod
    def from_env(cls, state_dir: str | Path | None = None) -> Settings:
        home = Path(state_dir or os.environ.get("CONVEYOR_HOME") or ".conveyor").resolve()
        url = os.environ.get("CONVEYOR_DATABASE_URL") or f"sqlite:///{home / 'conveyor.db'}"
        secrets = os.environ.get("CONVEYOR_SECRETS_FILE")
        return cls(
            state_dir=home,
            database_url=url,
            server_host=os.environ.get("CONVEYOR_SERVER_HOST", "127.0.0.1"),
            server_port=int(os.environ.get("CONVEYOR_SERVER_PORT", "8700")),
            lease_seconds=float(os.environ.get("CONVEYOR_LEASE_SECONDS", "6")),
            secrets_file=Path(secrets) if secrets else home / "secrets.env",
            metrics_token=os.environ.get("CONVEYOR_METRICS_TOKEN") or None,
        )
