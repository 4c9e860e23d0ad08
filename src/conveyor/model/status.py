"""Statuses (CodePipeline's API values), the allowed action transitions, and derivation.

Only actions carry a stored status. A stage's and an execution's status are computed
from their actions' latest attempts (plus the execution's requests: stop, supersede)
by the pure functions below; nothing else sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class ActionStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABANDONED = "Abandoned"


class StageStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class ExecutionStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    SUPERSEDED = "Superseded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


ACTIVE_EXECUTION = frozenset({ExecutionStatus.IN_PROGRESS, ExecutionStatus.STOPPING})

TERMINAL_EXECUTION = frozenset(
    {
        ExecutionStatus.STOPPED,
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.SUPERSEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
    }
)


class ApprovalStatus(StrEnum):
    """An approval request: Pending until decided (once) or expired."""

    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    SUPERSEDED = "Superseded"
    CANCELLED = "Cancelled"  # a decision only (the wait was cancelled): never stored


class StopMode(StrEnum):
    """How a stop request ends an execution: let running actions finish, or abandon them."""

    FINISH = "finish"
    ABANDON = "abandon"


class ExecutionReason(StrEnum):
    """Why an execution's status, stop mode or superseded-by changed (its history's reason)."""

    STARTED = "Started"
    DERIVED = "Derived"  # recomputed from its actions' latest attempts
    STOP_REQUESTED = "StopRequested"
    SUPERSEDED = "Superseded"  # a newer execution overtook it
    RETRIED = "Retried"
    AUTO_RETRY = "AutoRetry"  # a stage's onFailure: RETRY


class Reason(StrEnum):
    """Why an action ended as it did. `ActionFailed` and `ToolError` are kept apart on purpose."""

    STARTED = "Started"
    SUCCEEDED = "Succeeded"
    ACTION_FAILED = "ActionFailed"  # the check said no: tests failed, probe failed
    TOOL_ERROR = "ToolError"  # the tool broke: registry down, podman missing
    INVALID_CONFIG = "InvalidConfig"
    TIMEOUT = "Timeout"
    ENGINE_CRASHED = "EngineCrashed"
    ABANDONED = "Abandoned"
    REJECTED = "Rejected"
    APPROVED = "Approved"
    APPROVAL_EXPIRED = "ApprovalExpired"
    SUPERSEDED = "Superseded"
    RESUMED = "Resumed"


# The one table of allowed moves. `None` is "no attempt yet".
ALLOWED: Mapping[ActionStatus | None, frozenset[ActionStatus]] = {
    None: frozenset({ActionStatus.IN_PROGRESS}),
    ActionStatus.IN_PROGRESS: frozenset(
        {ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.ABANDONED}
    ),
    ActionStatus.SUCCEEDED: frozenset(),
    ActionStatus.FAILED: frozenset(),
    ActionStatus.ABANDONED: frozenset(),
}


class TransitionRefused(Exception):
    """A move not in ALLOWED (e.g. a second approver after the first)."""


def check_transition(current: ActionStatus | None, new: ActionStatus) -> None:
    if new not in ALLOWED[current]:
        raise TransitionRefused(f"an action cannot go from {current or 'not started'} to {new}")


# The allowed moves of an execution's stored status. The status is derived from the actions;
# this table says which derived changes can happen: an active execution may end any way, an
# ended one only comes back (InProgress) when a Failed or Stopped stage is retried.
EXECUTION_ALLOWED: Mapping[ExecutionStatus | None, frozenset[ExecutionStatus]] = {
    None: frozenset({ExecutionStatus.IN_PROGRESS}),
    ExecutionStatus.IN_PROGRESS: frozenset(ExecutionStatus) - {ExecutionStatus.IN_PROGRESS},
    ExecutionStatus.STOPPING: frozenset(ExecutionStatus) - {ExecutionStatus.STOPPING},
    ExecutionStatus.FAILED: frozenset({ExecutionStatus.IN_PROGRESS}),
    ExecutionStatus.STOPPED: frozenset({ExecutionStatus.IN_PROGRESS}),
    ExecutionStatus.SUCCEEDED: frozenset(),
    ExecutionStatus.SUPERSEDED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}


def check_execution_transition(current: ExecutionStatus | None, new: ExecutionStatus) -> None:
    if new not in EXECUTION_ALLOWED[current]:
        raise TransitionRefused(f"an execution cannot go from {current or 'not started'} to {new}")


@dataclass(frozen=True)
class Condition:
    """Status is three fields: status, reason, message."""

    status: str
    reason: str = ""
    message: str = ""


def derive_stage(
    action_names: Iterable[str],
    latest: Mapping[str, ActionStatus],
    *,
    stopping: bool = False,
) -> StageStatus | None:
    """The status of one stage from the latest attempt of each of its actions.

    `latest` holds only actions that have an attempt in the stage's current epoch.
    Returns None when the stage has not started.
    """
    names = list(action_names)
    statuses = [latest[n] for n in names if n in latest]
    if not statuses:
        return None
    if ActionStatus.IN_PROGRESS in statuses:
        return StageStatus.STOPPING if stopping else StageStatus.IN_PROGRESS
    if ActionStatus.FAILED in statuses:
        return StageStatus.FAILED
    if ActionStatus.ABANDONED in statuses:
        return StageStatus.STOPPED
    if len(statuses) == len(names):
        return StageStatus.SUCCEEDED
    return StageStatus.STOPPED if stopping else StageStatus.IN_PROGRESS


def derive_execution(
    stage_statuses: Iterable[StageStatus | None],
    *,
    stop_requested: bool = False,
    superseded: bool = False,
    cancelled: bool = False,
) -> ExecutionStatus:
    """The status of an execution from its stages' statuses (in pipeline order) and its flags."""
    stages = list(stage_statuses)
    if any(s == StageStatus.STOPPING for s in stages):
        return ExecutionStatus.STOPPING
    if any(s == StageStatus.IN_PROGRESS for s in stages):
        return ExecutionStatus.IN_PROGRESS
    if any(s == StageStatus.FAILED for s in stages):
        return ExecutionStatus.FAILED
    if stages and all(s == StageStatus.SUCCEEDED for s in stages):
        return ExecutionStatus.SUCCEEDED
    if cancelled:
        return ExecutionStatus.CANCELLED
    if superseded:
        return ExecutionStatus.SUPERSEDED
    if stop_requested or any(s == StageStatus.STOPPED for s in stages):
        return ExecutionStatus.STOPPED
    return ExecutionStatus.IN_PROGRESS
