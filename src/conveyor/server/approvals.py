"""Approval decisions as people make them (API, dashboard, CLI): who may decide, bound to
which digest, recorded in the audit log. The decision itself is `engine.gate.decide`, a
compare-and-set on the approval row: exactly one decision wins."""

from __future__ import annotations

from typing import Any

from conveyor.engine import gate
from conveyor.errors import Conflict, NotFound, ValidationFailed
from conveyor.errors import Problem as _Problem
from conveyor.model.pipeline import Pipeline
from conveyor.server.auth import User, require
from conveyor.server.views import PipelineCache
from conveyor.store.db import Row, Store


def latest_approval(store: Store, ex_id: str) -> Row:
    """The execution's pending approval, else its most recent one."""
    rows = store.approvals_for(ex_id)
    if not rows:
        raise NotFound(f"execution {ex_id} has no approval (it has not reached an approval action)")
    pending = [a for a in rows if a["status"] == "Pending"]
    return pending[-1] if pending else rows[-1]


def approval_config(pipeline: Pipeline, attempt_id: str) -> dict[str, Any]:
    """The approval action's config in the pipeline definition (variables unresolved)."""
    parts = attempt_id.split("/")
    try:
        return dict(pipeline.stage(parts[1]).action(parts[2]).config)
    except (KeyError, IndexError):
        return {}


def authors(ex: Row) -> set[str]:
    """Who wrote the change: the sources' author emails and the user who started it."""
    out = {
        str(r["AuthorEmail"]).lower()
        for r in (ex["revisions"] or {}).values()
        if isinstance(r, dict) and r.get("AuthorEmail")
    }
    if ex["actor"]:
        out.add(str(ex["actor"]).lower())
    return out


def is_author(user: User, ex: Row) -> bool:
    who = authors(ex)
    return user.name.lower() in who or bool(user.email and user.email.lower() in who)


def decide_as(
    store: Store,
    cache: PipelineCache,
    ex_id: str,
    user: User,
    *,
    approve: bool,
    comment: str,
    digest: str | None,
    require_digest: bool,
) -> Row:
    """Approve or reject an execution's pending approval as `user` and audit it.

    `require_digest`: the caller (API, page) must name the digest it showed; a mismatch is a
    Conflict. The CLI decides on what is pending and prints the digest it decided on.
    """
    require(user, "approver", "deciding an approval")
    ex = store.get_execution(ex_id)
    row = latest_approval(store, ex["id"])
    if row["status"] != "Pending":
        raise Conflict(
            f"the approval of execution {ex['id']} is no longer pending: {row['status']}"
            f" by {row['decided_by'] or 'the engine'}"
            + (f" ({row['comment']})" if row["comment"] else "")
        )
    if require_digest and row["digest"] and not digest:
        raise ValidationFailed(
            [
                _Problem(
                    "request",
                    None,
                    f"this approval is bound to image {row['digest']}: "
                    "send the digest you reviewed as 'digest'",
                )
            ]
        )
    cfg = approval_config(cache.of_execution(ex), row["attempt_id"])
    self_ok = bool(cfg.get("selfApproval", True))
    author = user.name if is_author(user, ex) else None
    decided = gate.decide(
        store,
        ex["id"],
        approve=approve,
        by=user.name,
        comment=comment,
        digest=digest,
        author=author,
        self_approval=self_ok,
    )
    store.audit(
        user.name,
        "approval.approve" if approve else "approval.reject",
        ex["id"],
        {"attempt": decided["attempt_id"], "digest": decided["digest"], "comment": comment},
    )
    return decided


def pending_list(store: Store) -> list[dict[str, Any]]:
    out = []
    for a in store.pending_approvals():
        parts = a["attempt_id"].split("/")
        try:
            ex = store.get_execution(a["execution_id"])
        except NotFound:
            continue
        out.append(
            {
                "execution_id": a["execution_id"],
                "pipeline": ex["pipeline"],
                "seq": ex["seq"],
                "stage": parts[1] if len(parts) > 1 else "",
                "action": parts[2] if len(parts) > 2 else "",
                "status": a["status"],
                "summary": a["summary"],
                "digest": a["digest"],
                "created_at": a["created_at"],
                "expires_at": a["expires_at"],
            }
        )
    return out
