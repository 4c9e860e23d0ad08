"""The engine's extension points. The composition root (`conveyor.bootstrap`) fills them with
the parts it builds (rollback, alerts) and hands them to the `Engine`; nothing registers
itself at import time.

A hook runs on the engine's loop; an exception it raises is logged, never propagated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.engine.engine import Engine
    from conveyor.model.pipeline import Pipeline
    from conveyor.store.records import ApprovalRecord, ExecutionRecord


@dataclass
class Hooks:
    """Extension points for other parts (rollback, notifications)."""

    # a failed execution's failing stage: before the execution's Failed status is written, so
    # whoever sees it Failed also sees what the hook started (a rollback execution)
    on_stage_failed: list[Callable[[Engine, ExecutionRecord, Pipeline, str], None]] = field(
        default_factory=list
    )
    on_execution_done: list[Callable[[Engine, ExecutionRecord, Pipeline], None]] = field(
        default_factory=list
    )
    on_approval_needed: list[
        Callable[[Engine, ExecutionRecord, Pipeline, ApprovalRecord], None]
    ] = field(default_factory=list)
