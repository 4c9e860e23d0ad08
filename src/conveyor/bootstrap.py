"""The composition root: settings -> store, action registry, services (platform, registry
client, artifact store), the engine and its parts (rollback, alerts). Nothing else builds them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from conveyor.errors import Unavailable
from conveyor.settings import Settings

if TYPE_CHECKING:  # imported when built: `conveyor history` needs none of them
    from conveyor.actions.registry import ActionRegistry
    from conveyor.engine.engine import Engine
    from conveyor.engine.hooks import Hooks
    from conveyor.monitoring.alerts import Notifier
    from conveyor.platform.local import LocalPlatform
    from conveyor.ports import Services
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.sqlite_reader import SqliteReader


@dataclass
class App:
    settings: Settings
    store: Store
    registry: ActionRegistry

    @cached_property
    def services(self) -> Services:
        """The adapters actions use (built on first use: `conveyor validate` needs none)."""
        return build_services(self.settings)

    @cached_property
    def notifier(self) -> Notifier:
        """The alerts' sender; its thread lives while alerts are queued."""
        from conveyor.monitoring.alerts import Notifier

        return Notifier()

    def hooks(self) -> Hooks:
        """The engine's parts: rollback after a failed stage, and its alerts."""
        from conveyor.engine.hooks import Hooks
        from conveyor.engine.rollback import Rollbacks

        hooks = Hooks()
        Rollbacks(self.notifier).install(hooks)
        return hooks

    def engine(self, *, install_hooks: bool = True, max_workers: int = 32) -> Engine:
        """The engine; `install_hooks=False` for one that only starts executions (no rollback
        or alert hooks: `run --detach` hands the execution to a running engine)."""
        from conveyor.engine.engine import Engine
        from conveyor.engine.hooks import Hooks

        hooks = self.hooks() if install_hooks else Hooks()
        return Engine(
            self.store,
            self.settings,
            self.registry,
            self.services,
            max_workers=max_workers,
            hooks=hooks,
        )


def platform_for(settings: Settings) -> LocalPlatform:
    from conveyor.platform.local import LocalPlatform

    return LocalPlatform(settings)


def build_services(settings: Settings, artifacts: ArtifactStore | None = None) -> Services:
    """The adapters actions use: the local platform, one registry client, the artifact store."""
    from conveyor.adapters.registry import RegistryClient
    from conveyor.ports import Services
    from conveyor.store.artifacts import ArtifactStore

    return Services(
        settings=settings,
        platform=platform_for(settings),
        registry=RegistryClient(),
        artifacts=artifacts or ArtifactStore(settings.state_dir / "artifacts"),
    )


@dataclass
class Reader:
    """What a read-only command needs: the settings and a store to read (no engine, action
    registry or platform: each costs imports that `conveyor history` must not pay). On SQLite
    at the current schema, the store is a `SqliteReader` (no SQLAlchemy import either)."""

    settings: Settings
    store: Store | SqliteReader


def build_reader(settings: Settings | None = None) -> Reader:
    from conveyor.store.sqlite_reader import open_reader

    settings = settings or Settings.from_env()
    reader = open_reader(settings.database_url)
    if reader is not None:
        return Reader(settings, reader)
    from conveyor.store.db import Store

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return Reader(settings, Store.from_settings(settings))


def build(settings: Settings | None = None) -> App:
    from conveyor.actions.registry import ActionRegistry
    from conveyor.store.db import Store

    settings = settings or Settings.from_env()
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unavailable(
            f"cannot create the state directory {settings.state_dir} (CONVEYOR_HOME): "
            f"{e.strerror}; point CONVEYOR_HOME at a directory you can write"
        ) from None
    return App(settings, Store.from_settings(settings), ActionRegistry())
