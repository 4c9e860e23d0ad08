"""Action types, found through the entry-point group `conveyor.actions` (built-ins included)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from conveyor.actions.aws_mapping import EXPORT_METHOD, IMPORT_METHOD, SYNTH_METHOD, ProviderKey
from conveyor.actions.base import BaseAction
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action
from conveyor.model.validate import ActionTypeInfo, Catalogue

GROUP = "conveyor.actions"
# A type's AWS mapping (CodePipeline export/import, CloudFormation synthesis): a class under
# this group named as the type, else the same methods on the plugin class (see aws_mapping).
MAPPING_GROUP = "conveyor.aws_mappings"
# Built-ins the registry loads itself when no entry point provides them (an install whose
# metadata predates them, like an editable install made before they were added).
BUILTINS = {
    "source.s3": "conveyor.actions.source_s3:S3Source",
    "aws.*": "conveyor.actions.aws_passthrough:AwsPassthrough",
    "deploy.rollback": "conveyor.actions.rollback:RollbackDeploy",
}
BUILTIN_MAPPINGS = {
    "source.git": "conveyor.actions.source_git_aws:GitSourceAws",
    "source.s3": "conveyor.actions.source_s3_aws:S3SourceAws",
    "build": "conveyor.actions.build_aws:BuildAws",
    "deploy": "conveyor.actions.deploy_aws:DeployAws",
    "image.promote": "conveyor.actions.promote_aws:PromoteAws",
    "approval": "conveyor.actions.approval_aws:ApprovalAws",
    "shell": "conveyor.actions.shell_aws:ShellAws",
    "monitor": "conveyor.actions.monitor_aws:MonitorAws",
    "aws.*": "conveyor.actions.aws_passthrough:AwsPassthrough",
}
WHAT = {
    EXPORT_METHOD: "CodePipeline equivalent",
    SYNTH_METHOD: "AWS mapping",
    IMPORT_METHOD: "CodePipeline import",
}


class ActionRegistry:
    """Action types by name. Entry points are loaded when a type is first used: a command that
    validates or starts a pipeline imports the modules of the types it names, not all."""

    def __init__(self, types: Mapping[str, type[BaseAction]] | None = None) -> None:
        self._types: dict[str, type[BaseAction]] = dict(types) if types is not None else {}
        self._broken: dict[str, str] = {}
        self._entry_points: dict[str, EntryPoint] = {}
        self._builtins: dict[str, str] = {}
        self._mappings: dict[str, Any] = {}
        if types is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=GROUP)}
            self._builtins = {n: t for n, t in BUILTINS.items() if n not in self._entry_points}
        self._mapping_targets: dict[str, EntryPoint | str] = dict(BUILTIN_MAPPINGS)
        self._mapping_targets.update({ep.name: ep for ep in entry_points(group=MAPPING_GROUP)})

    def _key(self, name: str) -> str:
        """The registered name that answers for `name`: itself, or a `prefix.*` pattern."""
        if name in self._types or name in self._entry_points or name in self._builtins:
            return name
        for pattern in (*self._types, *self._entry_points, *self._builtins, *self._mapping_targets):
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

    # ------------------------------------------------------------------ AWS mappings
    def mapping(self, name: str, method: str) -> Any:
        """What provides `method` (see `aws_mapping`) for action type `name`: its class under
        `conveyor.aws_mappings`, else its plugin class. ConfigError names the type and what it
        lacks."""
        key = self._key(name)
        if key not in self._mappings:
            self._mappings[key] = self._load_mapping(key)
        found = self._mappings[key]
        if found is not None and callable(getattr(found, method, None)):
            return found
        try:
            cls = self.get(name)
        except ConfigError as e:
            raise ConfigError(f"action type '{name}' has no {WHAT[method]}: {e}") from None
        if callable(getattr(cls, method, None)):
            return cls
        raise ConfigError(
            f"action type '{name}' has no {WHAT[method]}: its plugin "
            f"{cls.__module__}.{cls.__qualname__} defines no `{method}` method and no "
            f"'{MAPPING_GROUP}' entry point provides one (see conveyor.actions.aws_mapping)"
        )

    def _load_mapping(self, key: str) -> Any:
        target = self._mapping_targets.get(key)
        if target is None:
            return None
        if isinstance(target, EntryPoint):
            return target.load()
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def importer(self, category: str, owner: str, provider: str) -> tuple[str, Any] | None:
        """The (type, mapping) that imports a CodePipeline action of this provider; a type
        naming exactly the provider wins over a wildcard (`*`) one."""
        candidates: list[tuple[int, str, Any]] = []
        for name in sorted({*self._mapping_targets, *self._types}):
            if name not in self._mappings:
                self._mappings[name] = self._load_mapping(name)
            found = self._mappings[name]
            if not callable(getattr(found, IMPORT_METHOD, None)):
                found = self._types.get(name)  # a registered plugin with its own method
            if not callable(getattr(found, IMPORT_METHOD, None)):
                continue
            keys: tuple[ProviderKey, ...] = getattr(found, "codepipeline_providers", ())
            for key in keys:
                wild = sum(k == "*" for k in key)
                if all(
                    k in ("*", v) for k, v in zip(key, (category, owner, provider), strict=True)
                ):
                    candidates.append((wild, name, found))
        if not candidates:
            return None
        _, name, found = min(candidates, key=lambda c: (c[0], c[1]))
        named = getattr(found, "imported_type", None)
        return (
            named({"category": category, "owner": owner, "provider": provider}) if named else name
        ), found

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
