"""Action types, found through the entry-point group `conveyor.actions` (built-ins included)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from conveyor.actions.base import BaseAction
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action
from conveyor.model.validate import ActionTypeInfo, Catalogue

GROUP = "conveyor.actions"
# Built-ins the registry loads itself when no entry point provides them (an install whose
# metadata predates them, like an editable install made before they were added).
BUILTINS = {
    "source.s3": "conveyor.actions.source_s3:S3Source",
    "aws.*": "conveyor.actions.aws_passthrough:AwsPassthrough",
    "deploy.rollback": "conveyor.actions.rollback:RollbackDeploy",
}


class ActionRegistry:
    """Action types by name. Entry points are loaded when a type is first used: a command that
    validates or starts a pipeline imports the modules of the types it names, not all."""

    def __init__(self, types: Mapping[str, type[BaseAction]] | None = None) -> None:
        self._types: dict[str, type[BaseAction]] = dict(types) if types is not None else {}
        self._broken: dict[str, str] = {}
        self._entry_points: dict[str, EntryPoint] = {}
        self._builtins: dict[str, str] = {}
        if types is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=GROUP)}
            self._builtins = {n: t for n, t in BUILTINS.items() if n not in self._entry_points}

    def _key(self, name: str) -> str:
        """The registered name that answers for `name`: itself, or a `prefix.*` pattern."""
        if name in self._types or name in self._entry_points or name in self._builtins:
            return name
        for pattern in (*self._types, *self._entry_points, *self._builtins):
            if (
                pattern.endswith(".*")
                and name.startswith(pattern[:-1])
                and len(name) > len(pattern) - 1
            ):
                return pattern
        return name

    def _load(self, name: str) -> None:
        if name in self._types:
            return
        ep = self._entry_points.pop(name, None)
        target = self._builtins.pop(name, None)
        if ep is None and target is None:
            return
        try:
            if ep is not None:
                self._types[name] = ep.load()
            else:
                assert target is not None
                module, _, attr = target.partition(":")
                self._types[name] = getattr(importlib.import_module(module), attr)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the others
            self._broken[name] = f"{type(e).__name__}: {e}"

    def names(self) -> list[str]:
        for name in [*self._entry_points, *self._builtins]:
            self._load(name)
        return sorted(self._types)

    def get(self, name: str) -> type[BaseAction]:
        key = self._key(name)
        self._load(key)
        if key in self._types:
            return self._types[key]
        if name in self._broken:
            raise ConfigError(
                f"action type '{name}' is installed but failed to load: {self._broken[name]}"
            )
        raise ConfigError(f"unknown action type '{name}' (known: {', '.join(self.names())})")

    def register(self, name: str, cls: type[BaseAction]) -> None:
        self._types[name] = cls

    def config(self, action: Action) -> Any:
        """The action's validated config model (variables unresolved)."""
        return self.get(action.type).Config.model_validate(dict(action.config))

    def catalogue(self) -> Catalogue:
        return Catalogue(_Infos(self))

    def info(self, name: str) -> ActionTypeInfo | None:
        """What validation knows of a type (None if unknown or broken)."""
        name = self._key(name)
        self._load(name)
        cls = self._types.get(name)
        if cls is None:
            return None
        return ActionTypeInfo(
            check_config=_checker(cls),
            output_variables=cls.output_variables,
            needs_environment=cls.needs_environment,
        )


class _Infos(Mapping[str, ActionTypeInfo]):
    """The catalogue's types: names without loading, a type's info loaded when asked for."""

    def __init__(self, registry: ActionRegistry) -> None:
        self._registry = registry
        self._cache: dict[str, ActionTypeInfo] = {}

    def _names(self) -> list[str]:
        r = self._registry
        return sorted(set(r._types) | ((set(r._entry_points) | set(r._builtins)) - set(r._broken)))

    def __getitem__(self, name: str) -> ActionTypeInfo:
        if name not in self._cache:
            info = self._registry.info(name)
            if info is None:
                raise KeyError(name)
            self._cache[name] = info
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _checker(cls: type[BaseAction]) -> Any:
    def check(action: Action) -> list[tuple[tuple[str | int, ...], str]]:
        try:
            cfg = cls.Config.model_validate(dict(action.config))
        except ValidationError as e:
            out: list[tuple[tuple[str | int, ...], str]] = []
            for err in e.errors():
                loc = ("config", *err["loc"])
                key = ".".join(str(x) for x in err["loc"])
                if err["type"] == "missing":
                    out.append((("config",), f"missing required config key '{key}'"))
                elif err["type"] == "extra_forbidden":
                    allowed = sorted(f.alias or n for n, f in cls.Config.model_fields.items())
                    out.append((loc, f"unknown config key '{key}' (allowed: {', '.join(allowed)})"))
                else:
                    out.append((loc, f"config '{key}': {err['msg']}"))
            return out
        return list(cls.extra_checks(action, cfg))

    return check
