"""The approval gate an `approval` action waits at: the engine's side of a manual approval.

The approval row is the request: people decide through `decide()` (CLI, API, page), which
is a compare-and-set on the row (exactly one decision wins).

A wait holds no thread (issue 12): under the engine, `wait()` looks at the row once and, while
it is Pending and not expired, raises `Parked`. The attempt stays InProgress; the row is the
state. The engine runs the action again when the row is decided or expires (or after a crash,
when a new engine takes the execution over); `open()` then finds the same row and `wait()`
returns the decision.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from conveyor.errors import Conflict, Forbidden, NotFound
from conveyor.model.status import ApprovalStatus
from conveyor.store.db import Store
from conveyor.store.records import ApprovalRecord


@dataclass
class Decision:
    status: str  # Approved | Rejected | Expired | Superseded
    by: str | None
    comment: str | None


class Parked(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The approval is still pending: the engine lets the action go and resumes it on an event."""


def ready(row: ApprovalRecord | None, now: float) -> bool:
    """Whether a parked approval has something to act on (decided, expired, or not opened)."""
    return row is None or row.status != ApprovalStatus.PENDING or now > row.expires_at


class ApprovalGate:
    def __init__(
        self, store: Store, attempt_id: str, execution_id: str, *, park: bool = False
    ) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.execution_id = execution_id
        self.park = park  # raise Parked instead of polling (the engine's mode)
        self.opened_now = False  # open() created the row (False: a resumed wait found it)

    def open(
        self,
        *,
        summary: str,
        digest: str | None,
        timeout_seconds: int,
        external_link: str | None = None,
    ) -> ApprovalRecord:
        """Create the pending approval (idempotent: a resumed wait finds the same one)."""
        token = secrets.token_hex(16)
        row = self.store.create_approval(
            self.attempt_id,
            self.execution_id,
            token=token,
            summary=summary,
            digest=digest,
            expires_at=time.time() + timeout_seconds,
            external_link=external_link,
        )
        self.opened_now = row.token == token
        return row

    def wait(self, cancel: threading.Event, poll: float = 0.2) -> Decision:
        while True:
            row = self.store.approval(self.attempt_id)
            if row is None:
                raise NotFound(f"approval for {self.attempt_id} disappeared")
            if row.status != ApprovalStatus.PENDING:
                return Decision(row.status, row.decided_by, row.comment)
            if time.time() > row.expires_at:
                try:
                    self.store.decide_approval(
                        self.attempt_id,
                        ApprovalStatus.EXPIRED,
                        by="engine",
                        comment="no decision before the approval timed out",
                    )
                except Conflict:
                    continue
                return Decision(ApprovalStatus.EXPIRED, "engine", "timed out")
            if self.park:
                raise Parked(self.attempt_id)
            if cancel.wait(poll):
                return Decision(ApprovalStatus.CANCELLED, None, None)


def decide(
    store: Store,
    execution_id: str,
    *,
    approve: bool,
    by: str,
    comment: str,
    digest: str | None = None,
    author: str | None = None,
    self_approval: bool = True,
) -> ApprovalRecord:
    """Approve or reject the pending approval of an execution. Exactly one decision wins."""
    done = store.approval_records(execution_id)
    pending = [a for a in done if a.status == ApprovalStatus.PENDING]
    if not pending:
        if done:
            last = done[-1]
            raise Conflict(
                f"execution {execution_id} has no pending approval: it was {last.status}"
                f" by {last.decided_by or 'the engine'}"
            )
        raise NotFound(f"execution {execution_id} has no approval waiting")
    row = pending[-1]
    if digest and row.digest and digest != row.digest:
        raise Conflict(
            f"the approval is bound to image {row.digest}, but you reviewed {digest}: "
            "reload the evidence and decide again"
        )
    if approve and not self_approval and author and author == by:
        raise Forbidden(f"'{by}' wrote this change and the pipeline sets selfApproval: false")
    return store.decide_approval(
        row.attempt_id,
        ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
        by=by,
        comment=comment,
    )
