"""The pipeline model: what a pipeline file means, as plain frozen values.

Names follow CodePipeline (Pipeline, Stage, Action, runOrder, namespace...) so that the
CodePipeline importer/exporter and the CloudFormation synthesizer are mappings.
Every element keeps `path`, its position in the source document, which the spec layer
turns into a line number for error messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Path = tuple[str | int, ...]


class ExecutionMode(StrEnum):
    SUPERSEDED = "SUPERSEDED"
    QUEUED = "QUEUED"
    PARALLEL = "PARALLEL"


@dataclass(frozen=True)
class Action:
    name: str
    type: str
    run_order: int = 1
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    namespace: str | None = None
    timeout_seconds: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    environment: str | None = None
    region: str | None = None
    path: Path = ()
    reuse: bool | None = None  # reuse an earlier identical attempt; None: the type's default


# the action types whose outputs follow from their inputs alone (no deploy, no outside
# read): `reuse: true` is accepted on these only
REUSABLE_TYPES = ("build", "shell")
REUSABLE_PREFIXES = ("test.",)


def reusable_type(type_name: str) -> bool:
    return type_name in REUSABLE_TYPES or type_name.startswith(REUSABLE_PREFIXES)


@dataclass(frozen=True)
class OnFailure:
    result: str = "FAIL"  # FAIL | RETRY | ROLLBACK
    retry_mode: str = "FAILED_ACTIONS"  # FAILED_ACTIONS | ALL_ACTIONS
    max_retries: int = 1


@dataclass(frozen=True)
class Stage:
    name: str
    actions: tuple[Action, ...]
    on_failure: OnFailure | None = None
    path: Path = ()

    def run_orders(self) -> list[int]:
        return sorted({a.run_order for a in self.actions})

    def action(self, name: str) -> Action:
        for a in self.actions:
            if a.name == name:
                return a
        raise KeyError(name)


@dataclass(frozen=True)
class GitFilter:
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trigger:
    """A CodePipeline V2 push trigger on one source action."""

    source_action: str
    branches: GitFilter = GitFilter()
    tags: GitFilter = GitFilter()
    file_paths: GitFilter = GitFilter()
    path: Path = ()


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None = None
    description: str = ""
    path: Path = ()
    allowed_pattern: str | None = None  # a regex a value given at start must match (fully)


@dataclass(frozen=True)
class Environment:
    """A named deploy target: its registry and how to deploy to it."""

    name: str
    registry: str = ""
    repository: str = ""
    driver: str = "podman"  # podman | kubernetes | eks
    port: int | None = None
    url: str | None = None
    namespace: str | None = None
    context: str | None = None
    cluster: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    path: Path = ()


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    execution_mode: ExecutionMode = ExecutionMode.SUPERSEDED
    variables: tuple[Variable, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    environments: Mapping[str, Environment] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    path: Path = ()

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def stage_index(self, name: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise KeyError(name)

    def all_actions(self) -> Iterator[tuple[Stage, Action]]:
        for s in self.stages:
            for a in s.actions:
                yield s, a

    def find_action(self, name: str) -> tuple[Stage, Action]:
        for s, a in self.all_actions():
            if a.name == name:
                return s, a
        raise KeyError(name)

    def source_actions(self) -> list[Action]:
        return [a for _, a in self.all_actions() if a.type.startswith("source.")]
