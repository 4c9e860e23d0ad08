"""The composition root: settings -> store, registry, services, engine. Nothing else builds them."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.actions.registry import ActionRegistry
from conveyor.engine.engine import Engine
from conveyor.engine.services import Services
from conveyor.errors import Unavailable
from conveyor.settings import Settings
from conveyor.store.db import Store


@dataclass
class App:
    settings: Settings
    store: Store
    registry: ActionRegistry
    services: Services

    def engine(self, **kw: object) -> Engine:
        from conveyor.engine import hooks

        eng = Engine(self.store, self.settings, self.registry, self.services, **kw)  # type: ignore[arg-type]
        hooks.install(eng)
        return eng


def platform_for(settings: Settings) -> object | None:
    try:
        from conveyor.platform.local import LocalPlatform
    except ImportError:
        return None
    return LocalPlatform(settings)


def build(settings: Settings | None = None) -> App:
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
