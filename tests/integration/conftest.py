"""What the CLI tests share: a state dir with pipelines saved and an engine loop running, and
`run_cli`, which invokes `conveyor` in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner


@contextmanager
def engine_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelines: list[Mapping[str, Any]]
) -> Iterator[Any]:
    """CONVEYOR_HOME in tmp, `pipelines` saved, an engine loop running; yields (app, engine)."""
    from conveyor.bootstrap import build
    from conveyor.settings import Settings

    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "state"))
    app = build(Settings.from_env())
    for p in pipelines:
        app.store.save_pipeline(str(p["name"]), dict(p), None)
    stop = threading.Event()
    engine = app.engine()
    t = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield app, engine
    finally:
        stop.set()
        t.join(10)
        engine.shutdown(wait=True)
        app.store.close()


def run_cli(*args: str) -> Any:
    """`conveyor ARGS` in this process (click's runner); exceptions propagate."""
    from conveyor.cli.main import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def platform_settings(root: Path) -> Any:
    """Settings for a private local platform under `root`: a SQLite store, a fast engine
    (short lease, heartbeat and poll) and both registries on free loopback ports."""
    from conveyor.platform.daemon import free_port
    from conveyor.settings import Settings

    ports = {"test": free_port(), "prod": free_port()}
    return Settings(
        state_dir=root / "state",
        database_url=f"sqlite:///{root / 'state/c.db'}",
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.05,
        extra={f"registry_{k}_port": str(v) for k, v in ports.items()},
    )
