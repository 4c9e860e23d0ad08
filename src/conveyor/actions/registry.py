"""Action types, found through the entry-point group `conveyor.actions` (built-ins included)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
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
}


class _Types(Mapping[str, Any]):
    """A type table where a name ending in `.*` (e.g. `aws.*`) answers for every name with
    that prefix (`aws.Deploy.CodeDeploy`); iteration lists the names as registered."""

    def __init__(self, exact: Mapping[str, Any]) -> None:
        self.exact = dict(exact)

    def __getitem__(self, name: str) -> Any:
        if name in self.exact:
            return self.exact[name]
        for pattern, value in self.exact.items():
            if (
                pattern.endswith(".*")
                and name.startswith(pattern[:-1])
                and len(name) > len(pattern) - 1
            ):
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.exact)

    def __len__(self) -> int:
        return len(self.exact)


class ActionRegistry:
    def __init__(self, types: Mapping[str, type[BaseAction]] | None = None) -> None:
        self._types: dict[str, type[BaseAction]] = dict(types) if types is not None else {}
        self._broken: dict[str, str] = {}
        if types is None:
            self._discover()

    def _discover(self) -> None:
        for ep in entry_points(group=GROUP):
            try:
                cls = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break the others
                self._broken[ep.name] = f"{type(e).__name__}: {e}"
                continue
            self._types[ep.name] = cls
        for name, target in BUILTINS.items():
            if name not in self._types and name not in self._broken:
                module, _, attr = target.partition(":")
                self._types[name] = getattr(importlib.import_module(module), attr)

    def names(self) -> list[str]:
        return sorted(self._types)

    def get(self, name: str) -> type[BaseAction]:
        found: type[BaseAction] | None = _Types(self._types).get(name)
        if found is not None:
            return found
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
        infos: dict[str, ActionTypeInfo] = {}
        for name, cls in self._types.items():
            infos[name] = ActionTypeInfo(
                check_config=_checker(cls),
                output_variables=cls.output_variables,
                needs_environment=cls.needs_environment,
            )
        return Catalogue(_Types(infos))


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
