"""Build the `ActionContext` the engine would give an action, for a test."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from conveyor.actions.base import ActionContext
from conveyor.model.pipeline import Action, Environment, Pipeline, Stage
from conveyor.ports import ApprovalGate, Platform, Registry, Services
from conveyor.settings import Settings
from conveyor.store.artifacts import ArtifactStore
from conveyor.testing.fakes import FakePlatform, FakeRegistry


class RecordingLog:
    """The action's log, kept in memory: `text` is what it wrote, secrets masked."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._secrets: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            for s in self._secrets:
                text = text.replace(s, "***")
            self._parts.append(text)

    def mask(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets.append(secret)

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)


def fake_services(
    state_dir: Path,
    *,
    platform: Platform | None = None,
    registry: Registry | None = None,
    secrets: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> Services:
    """Services for a test: a `FakePlatform` and a `FakeRegistry` (shared, unless given),
    a real artifact store under STATE_DIR, settings pointing at STATE_DIR."""
    settings = settings or Settings(state_dir=state_dir, database_url="sqlite://")
    if registry is None:
        registry = platform.registry if isinstance(platform, FakePlatform) else FakeRegistry()
    if platform is None:
        platform = FakePlatform(registry if isinstance(registry, FakeRegistry) else None)
    return Services(
        settings=settings,
        platform=platform,
        registry=registry,
        artifacts=ArtifactStore(state_dir / "artifacts"),
        secrets=dict(secrets or {}),
    )


def make_context(
    tmp_path: Path,
    action: Action,
    *,
    config: Mapping[str, object] | None = None,
    pipeline: Pipeline | None = None,
    environments: Mapping[str, Environment] | None = None,
    inputs: Mapping[str, Path] | None = None,
    services: Services | None = None,
    variables: Mapping[str, Mapping[str, str]] | None = None,
    revisions: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float | None = None,
    gate: ApprovalGate | None = None,
    on_pid: Callable[[int], None] | None = None,
) -> ActionContext:
    """The context of ACTION's first attempt, as the engine builds it.

    `config`: the resolved config (default: the action's own). `pipeline`: default, one
    stage holding the action, with `environments`. Each of the action's outputs gets an
    empty directory; `inputs` maps artifact names to directories. The log is a
    `RecordingLog`; `services` default to `fake_services(tmp_path / "state")`.
    """
    if pipeline is None:
        pipeline = Pipeline(
            "test-pipeline", (Stage("Stage", (action,)),), environments=dict(environments or {})
        )
    stage = next((s.name for s in pipeline.stages if action in s.actions), pipeline.stages[0].name)
    workdir = tmp_path / f"work-{secrets.token_hex(3)}"
    outputs: dict[str, Path] = {}
    for name in action.outputs:
        outputs[name] = workdir / "out" / name
        outputs[name].mkdir(parents=True)
    workdir.mkdir(parents=True, exist_ok=True)
    services = services or fake_services(tmp_path / "state")
    return ActionContext(
        execution_id=secrets.token_hex(6),
        pipeline=pipeline,
        stage=stage,
        action=action,
        attempt=1,
        config=dict(action.config if config is None else config),
        inputs=dict(inputs or {}),
        outputs=outputs,
        workdir=workdir,
        log=RecordingLog(),
        cancel=threading.Event(),
        deadline=None if timeout is None else time.monotonic() + timeout,
        state_dir=services.settings.state_dir,
        services=services,
        variables=dict(variables or {}),
        revisions=dict(revisions or {}),
        on_pid=on_pid,
        gate=gate,
    )
