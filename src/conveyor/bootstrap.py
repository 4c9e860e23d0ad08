"""The composition root: settings -> store, registry, services, engine. Nothing else builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.errors import Unavailable
from conveyor.settings import Settings

if TYPE_CHECKING:  # imported when built: `conveyor history` needs none of them
    from conveyor.actions.registry import ActionRegistry
    from conveyor.engine.engine import Engine
    from conveyor.engine.services import Services
    from conveyor.store.db import Store
    from conveyor.store.sqlite_reader import SqliteReader


@dataclass
class App:
    settings: Settings
    store: Store
    registry: ActionRegistry
    services: Services

    def engine(self, *, install_hooks: bool = True, **kw: object) -> Engine:
        """The engine; `install_hooks=False` for one that only starts executions (no rollback
        or alert hooks to import: `run --detach` hands the execution to a running engine)."""
        from conveyor.engine import hooks
        from conveyor.engine.engine import Engine

        eng = Engine(self.store, self.settings, self.registry, self.services, **kw)  # type: ignore[arg-type]
        if install_hooks:
            hooks.install(eng)
        return eng


def platform_for(settings: Settings) -> object | None:
    try:
        from conveyor.platform.local import LocalPlatform
    except ImportError:
        return None
    return LocalPlatform(settings)


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
    from conveyor.engine.services import Services
    from conveyor.store.db import Store

    settings = settings or Settings.from_env()
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unavailable(
            f"cannot create the state directory {settings.state_dir} (CONVEYOR_HOME): "
            f"{e.strerror}; point CONVEYOR_HOME at a directory you can write"
        ) from None
    store = Store.from_settings(settings)
    services = Services(settings=settings, platform=platform_for(settings))
    return App(settings, store, ActionRegistry(), services)
