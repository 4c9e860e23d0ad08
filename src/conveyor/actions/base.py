"""The contract between the engine and an action type.

An action type is a class registered under the entry-point group `conveyor.actions`
(built-ins included). The engine builds an `ActionContext`, calls `run(ctx)` in a worker
thread, and records the returned `ActionResult`. Actions never touch the store: what they
want recorded (output variables, reports, a deployment, a promotion) goes in the result.

Raise `conveyor.errors.ActionFailed` for "the check said no" and `ActionError` (or any
`ConveyorError`) for "the tool broke"; the engine turns them into reasons `ActionFailed`
and `ToolError`. Any other exception is recorded as `ToolError` with its message.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action, Environment, Pipeline
from conveyor.model.report import Report  # re-exported: actions build their results with it

if TYPE_CHECKING:
    from conveyor.ports import ApprovalGate, Services


class ActionConfig(BaseModel):
    """Base of every action type's config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LogSink(Protocol):
    def write(self, text: str) -> None: ...

    def mask(self, secret: str) -> None: ...


@dataclass
class ActionContext:
    execution_id: str
    pipeline: Pipeline
    stage: str
    action: Action
    attempt: int
    config: Mapping[str, object]  # `#{ns.var}` already resolved; validate with `Config`
    inputs: Mapping[str, Path]  # artifact name -> directory (a private copy)
    outputs: Mapping[str, Path]  # artifact name -> empty directory to fill
    workdir: Path  # scratch directory of this attempt, kept for inspection
    log: LogSink
    cancel: threading.Event
    deadline: float | None  # time.monotonic() value, or None
    state_dir: Path
    services: Services  # the composition root's adapters (platform, registry, artifacts)
    variables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # resolved scope
    revisions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # source -> vars
    on_pid: Callable[[int], None] | None = None  # records a child process group (the engine's)
    gate: ApprovalGate | None = None  # for actions that wait for people (the engine's)

    @property
    def environment(self) -> Environment | None:
        name = self.action.environment
        return self.pipeline.environments.get(name) if name else None

    def required_environment(self, verb: str) -> Environment:
        """The action's environment; ConfigError when it names none (`verb`: "deploys to")."""
        env = self.environment
        if env is None:
            raise ConfigError(
                f"action '{self.action.name}' {verb} no environment: set `environment:` on "
                "the action"
            )
        return env

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


@dataclass
class ActionResult:
    succeeded: bool = True
    reason: str = ""
    message: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    reports: list[Report] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able: digest, provenance...
    # what the engine records, typed (no type name decides it): a source's fetched revision
    # (its variables, one row per source) and a deployment (the environment's history)
    revision: dict[str, str] | None = None
    deployment: dict[str, Any] | None = None


class ActionType(Protocol):
    """What the engine expects of an action type class."""

    type_name: ClassVar[str]
    Config: ClassVar[type[ActionConfig]]
    output_variables: ClassVar[frozenset[str] | None]
    needs_environment: ClassVar[bool]
    resumable: ClassVar[bool]  # survives an engine crash (an approval waiting)

    def run(self, ctx: ActionContext) -> ActionResult: ...


class BaseAction(abc.ABC):
    """Defaults for action types."""

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[ActionConfig]] = ActionConfig
    output_variables: ClassVar[frozenset[str] | None] = None
    needs_environment: ClassVar[bool] = False
    resumable: ClassVar[bool] = False

    @abc.abstractmethod
    def run(self, ctx: ActionContext) -> ActionResult:
        """Do the action's work; see the module docstring for errors."""

    @classmethod
    def extra_checks(
        cls, action: Action, config: ActionConfig
    ) -> Sequence[tuple[tuple[str | int, ...], str]]:
        """Checks beyond the config model (paths relative to the action)."""
        return ()
