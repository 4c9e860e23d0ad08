"""The engine: claims executions, plans, dispatches actions, records what happened.

Promises (DESIGN §4):
1. Persist before acting: an attempt row is committed InProgress before its code runs.
2. Requests are data: stop/abandon/retry rows (and approval rows) are acted on here.
3. Crash-safe: a lease per execution, renewed by a heartbeat. An engine that finds an
   expired lease takes the execution over: resumable waits (approvals) resume, other
   in-flight attempts fail with reason EngineCrashed (retryable), their processes killed.
4. Failed (ActionFailed) and errored (ToolError) are different reasons.

How it scales (issue 18) and why waiting is free (issue 12):
- actions run on a bounded pool of daemon worker threads (`max_workers`), never a thread
  per action; a worker runs the action's code and hands the result back, and the engine
  loop records every finished action of a step in one short transaction (workers write no
  status, so they never contend with the engine's writes);
- the engine keeps each execution's attempts in memory and re-reads them only when the
  execution's history count says someone else moved one;
- a waiting approval holds no worker: its action parks (`gate.Parked`), the attempt stays
  InProgress with the approval row as its state, and the execution goes quiet (skipped by
  the loop) until an event wakes it: the row decided or expired, a request (stop, abandon),
  or a takeover after a crash. Waits on a disabled transition or a busy stage never held a
  worker: they are a plan with nothing to start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import shutil
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.actions.base import ActionContext, ActionResult, BaseAction
from conveyor.actions.registry import ActionRegistry
from conveyor.adapters.process import kill_group
from conveyor.engine import reuse
from conveyor.engine.gate import ApprovalGate, Parked, ready
from conveyor.engine.hooks import Hooks
from conveyor.engine.logs import FileLog, log_path
from conveyor.errors import ActionError, ActionFailed, ConfigError, Conflict, ConveyorError
from conveyor.model import planner as pl
from conveyor.model import provenance
from conveyor.model.pipeline import Pipeline
from conveyor.model.status import (
    ACTIVE_EXECUTION,
    TERMINAL_EXECUTION,
    ActionStatus,
    ApprovalStatus,
    ExecutionReason,
    ExecutionStatus,
    Reason,
    StageStatus,
    StopMode,
)
from conveyor.model.variables import PIPELINE_NS, SYSTEM_NS, UnresolvedVariable, find_refs, resolve
from conveyor.ports import Services
from conveyor.settings import Settings
from conveyor.spec.pipeline_file import parse
from conveyor.spec.yamlfile import Lines
from conveyor.store.columns import LIGHT_ATTEMPT
from conveyor.store.db import Row, Store
from conveyor.store.planner_state import attempt_view, execution_state, stage_epochs
from conveyor.store.records import (
    ApprovalRecord,
    AttemptRecord,
    ExecutionRecord,
    RequestRecord,
)

log = logging.getLogger("conveyor.engine")
DEFAULT_TIMEOUT = 3600
GRACE = 10.0
SWEEP_SECONDS = 600.0
POOL_IDLE_SECONDS = 30.0  # a worker with nothing to do this long ends (the pool shrinks)
CHECK_SECONDS = 1.0  # how often what the engine knows of an execution's attempts is compared  # quiet executions are looked at anyway this often (a safety net)


@dataclass
class _InFlight:
    attempt_id: str
    execution_id: str
    cancel: threading.Event
    deadline: float | None
    abandon: bool = False
    timed_out_at: float | None = None


@dataclass
class _Work:
    """An attempt of an action as a worker holds it."""

    ex: ExecutionRecord
    pipeline: Pipeline
    stage: str
    action: Any
    row: AttemptRecord
    fl: _InFlight

    def started(
        self,
    ) -> tuple[ExecutionRecord, Pipeline, str, Any, AttemptRecord, _InFlight]:
        """Execution, pipeline, stage, action, attempt row, in-flight record."""
        return self.ex, self.pipeline, self.stage, self.action, self.row, self.fl


@dataclass
class _Job(_Work):
    """An action handed to a worker, with whether it resumes and the plan's view."""

    resumed: bool
    current: dict[str, dict[str, pl.AttemptView]]


@dataclass
class _Done(_Work):
    """A finished action, handed by its worker to the engine loop to record."""

    status: ActionStatus | None  # None: parked (an approval still waiting), nothing to record
    result: ActionResult
    artifacts: dict[str, str] = field(default_factory=dict)
    stored: list[tuple[str, int, int]] = field(default_factory=list)  # digest, files, size
    input_digest: str | None = None  # what its inputs hashed to (engine/reuse.py)


@dataclass
class _Known:
    """An execution's attempts as this engine last read or wrote them."""

    moves: int  # the execution's history count these rows reflect
    listed: list[AttemptRecord] = field(default_factory=list)  # the rows, in order
    views: list[pl.AttemptView] = field(default_factory=list)  # their planner views, aligned
    index: dict[str, int] = field(default_factory=dict)  # attempt id -> position
    checked: float = field(default_factory=time.monotonic)  # when `moves` was last compared
    # the planner's views, kept stage by stage: a move recomputes its own stage only
    latest: dict[tuple[str, str], pl.AttemptView] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # stages whose attempts moved
    current: dict[str, dict[str, pl.AttemptView]] = field(default_factory=dict)
    statuses: dict[str, StageStatus | None] = field(default_factory=dict)
    basis: tuple[Any, ...] | None = None  # (pipeline, epochs, stopping) they were made under
    by_name: dict[str, Any] = field(default_factory=dict)  # stage name -> Stage

    def add(self, row: AttemptRecord) -> None:
        self.index[row.id] = len(self.listed)
        self.listed.append(row)
        self._seen(attempt_view(row))

    def update(self, att_id: str, values: Row) -> bool:
        """Apply a move this engine made; False when the attempt is not known here."""
        i = self.index.get(att_id)
        if i is None:
            return False
        self.listed[i] = dataclasses.replace(self.listed[i], **values)
        self._seen(attempt_view(self.listed[i]), i)
        return True

    def _seen(self, v: pl.AttemptView, i: int | None = None) -> None:
        if i is None:
            self.views.append(v)
        else:
            self.views[i] = v
        key = (v.stage, v.action)
        old = self.latest.get(key)
        if old is None or v.attempt >= old.attempt:
            self.latest[key] = v
        self.dirty.add(v.stage)

    def state(self, pipeline: Pipeline, ex: ExecutionRecord) -> pl.ExecutionState:
        """The execution's state with its per-stage views brought up to date: only the stages
        whose attempts moved since the last call are looked at again."""
        epochs = stage_epochs(ex)
        stopping = bool(ex.stop_mode)
        basis = (id(pipeline), tuple(sorted(epochs.items())), stopping)
        if basis != self.basis:
            self.basis, self.dirty = basis, {s.name for s in pipeline.stages}
            self.by_name = {s.name: s for s in pipeline.stages}
        for name in self.dirty:
            stage = self.by_name.get(name)
            if stage is not None:  # else an attempt of a stage the pipeline no longer has
                per = pl.stage_current(stage, self.latest, epochs.get(name, pl.StageEpoch()))
                self.current[name] = per
                self.statuses[name] = pl.stage_status(stage, per, stopping=stopping)
        self.dirty.clear()
        return pl.ExecutionState(
            attempts=tuple(self.views),
            stage_epochs=epochs,
            stop_requested=stopping,
            superseded=bool(ex.superseded_by),
            current=self.current,
            statuses=[self.statuses.get(s.name) for s in pipeline.stages],
        )


class _Pool:
    """A bounded pool of daemon worker threads, started as work needs them.

    Daemon threads, as before: a process that exits (kill, Ctrl-C, the end of `conveyor run`)
    does not wait for a running action; its lease expires and the next engine fails it.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._q: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.submitted = 0
        self.finished = 0

    def submit(self, fn: Callable[[], None]) -> None:
        with self._cv:
            self.submitted += 1
            self._q.put(fn)
            busy = self.submitted - self.finished
            if busy > len(self._threads) and len(self._threads) < self.size:
                t = threading.Thread(
                    target=self._work, name=f"conveyor-worker-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        while True:
            try:
                fn = self._q.get(timeout=POOL_IDLE_SECONDS)
            except queue.Empty:
                with self._cv:  # submit() puts under this lock: no task is left behind
                    if self._q.empty():
                        self._threads.remove(threading.current_thread())
                        return
                continue
            try:
                fn()
            except Exception:  # noqa: BLE001 - a worker survives anything a task raises
                log.error("worker: %s", traceback.format_exc())
            finally:
                with self._cv:
                    self.finished += 1
                    self._cv.notify_all()

    def idle(self) -> bool:
        with self._cv:
            return self.submitted == self.finished

    def join(self, timeout: float | None) -> bool:
        """Wait until every submitted task finished; False when `timeout` passed first."""
        with self._cv:
            return self._cv.wait_for(lambda: self.submitted == self.finished, timeout)

    @property
    def threads(self) -> int:
        return len(self._threads)


def pipeline_of(definition: Mapping[str, Any], name: str = "<stored pipeline>") -> Pipeline:
    return parse(dict(definition), Lines(name))


def _state(
    ex: ExecutionRecord,
    attempts: list[AttemptRecord],
    known: _Known | None = None,
    pipeline: Pipeline | None = None,
) -> pl.ExecutionState:
    """The planner's state of the engine's own rows (`service.queries.state_of` reads any
    rows): their views are kept up to date as the engine moves them (no walk over every
    attempt per tick)."""
    if known is not None and known.listed is attempts:
        if pipeline is not None:
            return known.state(pipeline, ex)
        return execution_state(ex, known.views)
    return execution_state(ex, map(attempt_view, attempts))


class Engine:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        registry: ActionRegistry,
        services: Services,
        *,
        max_workers: int = 32,
        hooks: Hooks | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.registry = registry
        self.services = services
        self.artifacts = services.artifacts
        self.hooks = hooks or Hooks()
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.pool = _Pool(max_workers)
        # attempts handed to the pool and not recorded yet (parked approvals are not here)
        self.inflight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pipelines: dict[str, Pipeline] = {}
        self._auto_retried: set[tuple[str, str, int]] = set()
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._pids: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._disabled: dict[str, dict[str, str]] | None = None  # per step
        self._active_per_pipeline: dict[str, int] = {}
        self._active_keys: list[tuple[str, str]] | None = None
        self._active_mark: tuple[int, float] = (0, 0.0)
        self._record_lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self.quiet: set[str] = set()  # executions only waiting for an event (parked approvals)
        self._requested: set[str] = set()
        self._renewed = 0.0
        self._sweep_at = time.monotonic() + SWEEP_SECONDS

    # ---- starting executions ----------------------------------------------------------------
    def start(
        self,
        pipeline_name: str,
        *,
        variables: Mapping[str, str] | None = None,
        trigger: Mapping[str, Any] | None = None,
        revisions: Mapping[str, Any] | None = None,
        actor: str | None = None,
        kind: str = "standard",
    ) -> str:
        row = self.store.pipeline_record(pipeline_name)
        pipeline = pipeline_of(row.definition, pipeline_name)
        from conveyor.model.variables import start_values

        resolved, refused = start_values(pipeline_name, pipeline.variables, variables or {})
        if refused:
            raise ConfigError(refused)
        ex_id = self.store.create_execution(
            pipeline_name,
            row.definition,
            variables=resolved,
            trigger=dict(trigger or {"type": "StartPipelineExecution", "by": actor or "cli"}),
            revisions=dict(revisions or {}),
            kind=kind,
            actor=actor,
        )
        self._wake.set()
        return ex_id

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event, until: Callable[[], bool] | None = None) -> None:
        """Drive executions until `stop` is set or `until()` is true."""
        self.store.register_engine(self.worker)
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(beat_stop,), daemon=True)
        beat.start()
        try:
            while not stop.is_set():
                self.step()
                if until is not None and until():
                    break
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()
        finally:
            beat_stop.set()
            self.store.unregister_engine(self.worker)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Wait (up to `timeout` s) for the actions this engine started and record them;
        never blocks process exit."""
        if wait:
            self.pool.join(timeout)
            self._record_done()

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            try:
                self.store.renew(self.worker, self.settings.lease_seconds)
            except ConveyorError as e:
                log.warning("heartbeat failed: %s", e)

    def step(self) -> None:
        """One pass over every execution that may need work (quiet ones only on an event)."""
        now = time.time()
        if now - self._renewed > self.settings.heartbeat_seconds / 2:
            self.store.renew(self.worker, self.settings.lease_seconds)
            self._renewed = now
        self._record_done()
        # requests (a retry) and this engine's status changes reset _active_keys; a new
        # execution moves the fingerprint
        mark, requested, ready_now, disabled = self.store.step_view(
            now, ready_approvals=bool(self.quiet)
        )
        if mark != self._active_mark or self._active_keys is None:
            self._active_keys = self.store.active_execution_keys()
            self._active_mark = mark
        keys = self._active_keys
        ids = [k[0] for k in keys]
        self._active_per_pipeline = {}
        for _, name in keys:
            self._active_per_pipeline[name] = self._active_per_pipeline.get(name, 0) + 1
        self._disabled = disabled
        self._requested = requested
        if self._requested:
            self._active_keys = None
        if time.monotonic() > self._sweep_at:
            self.quiet.clear()
            self._sweep_at = time.monotonic() + SWEEP_SECONDS
        if self.quiet:
            self.quiet &= set(ids)
            self.quiet -= self._requested
            self.quiet -= ready_now
        active = set(ids)
        todo = [i for i in ids if i not in self.quiet]
        todo += sorted(self._requested - active)
        for ex in self.store.executions_by_id(todo):
            if ex.status not in ACTIVE_EXECUTION and ex.id not in self._requested:
                continue  # it ended since the list was read
            try:
                self._tick(ex, in_step=True)
            except ConveyorError as e:
                log.error("execution %s: %s", ex.id, e.message)
            except Exception:  # noqa: BLE001 - one bad execution must not stop the others
                log.error("execution %s: %s", ex.id, traceback.format_exc())

    def pipeline(self, ex: ExecutionRecord) -> Pipeline:
        p = self._pipelines.get(ex.id)
        if p is None:
            definition = ex.definition or self.store.execution_definition(ex.id)
            p = pipeline_of(definition, ex.pipeline)
            self._pipelines[ex.id] = p
        return p

    # ---- one execution -------------------------------------------------------------------------
    def _tick(self, ex: ExecutionRecord, *, in_step: bool = False) -> None:
        """One execution's turn. `in_step`: step() has read the requests, the active set and
        recorded finished actions; a caller driving one execution (the rollback helper)
        leaves it False and the tick does those itself."""
        if not in_step:
            self._disabled = None
            self._record_done()
            self._requested.add(ex.id)
            self._active_keys = None
            self._active_per_pipeline = {}
        owner, expires = ex.lease_owner, ex.lease_expires
        fresh = (
            owner == self.worker and (expires or 0) > time.time() + self.settings.lease_seconds / 2
        )
        if not fresh:
            if not self.store.claim(ex.id, self.worker, self.settings.lease_seconds):
                return
            ex = self.store.execution(ex.id, light=True)
            if owner != self.worker:
                self._known.pop(ex.id, None)
        pipeline = self.pipeline(ex)
        if owner and owner != self.worker and expires is not None:
            self._recover(ex, pipeline, owner)
        if ex.id in self._requested and self._handle_requests(ex, pipeline):
            ex = self.store.execution(ex.id, light=True)
        self._watch_deadlines(ex)
        attempts = self._attempts(ex.id)
        parked_only = self._resume_orphans(ex, pipeline, attempts)
        state = _state(ex, attempts, self._known.get(ex.id), pipeline)
        status = pl.execution_status(pipeline, state)

        if status == ExecutionStatus.IN_PROGRESS:
            around, others = self._neighbourhood(ex, pipeline)
            plan = pl.plan(pipeline, state, around)
            newer = [(e, s) for e, s in others if e.seq > ex.seq and e.kind != "rollback"]
            if plan.waiting and pl.should_supersede(
                pipeline.execution_mode,
                pipeline,
                state,
                [pl.progress(pipeline, s) for _, s in newer],
            ):
                winner = max((e for e, _ in newer), key=lambda e: e.seq)
                self.store.change_execution(
                    ex.id, superseded_by=winner.id, reason=ExecutionReason.SUPERSEDED
                )
                ex = self.store.execution(ex.id, light=True)
                state = _state(ex, attempts, self._known.get(ex.id), pipeline)
                status = pl.execution_status(pipeline, state)
            else:
                if plan.waiting and pipeline.execution_mode.value == "SUPERSEDED":
                    self._supersede_stale_approval(ex, pipeline, plan, around)
                if plan.start:
                    self._dispatch_all(ex, pipeline, plan.start, state)
                    # the stage now has attempts in progress: the execution stays InProgress
                    attempts = self._attempts(ex.id, check=False)
                elif parked_only and not self._has_inflight(ex.id):
                    self.quiet.add(ex.id)
                if (plan.waiting or None) != ex.waiting:
                    self.store.change_execution(ex.id, waiting=plan.waiting)

        if status == ExecutionStatus.FAILED and self._auto_retry(ex, pipeline, state):
            return
        self._save_status(ex, pipeline, status, attempts)

    def _save_status(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        status: ExecutionStatus,
        attempts: list[AttemptRecord],
    ) -> None:
        values: dict[str, Any] = {}
        if status.value != ex.status:
            values["status"] = status
            values["message"] = _execution_message(status, attempts, ex)
        if status in TERMINAL_EXECUTION:
            if not ex.ended_at:
                values["ended_at"] = time.time()
            values["waiting"] = None
        elif ex.ended_at:
            values["ended_at"] = None
        ending = status in TERMINAL_EXECUTION and not self._has_inflight(ex.id)
        if ending and status == ExecutionStatus.FAILED and "status" in values:
            self._stage_failed(ex, pipeline, attempts, values)
        if values:
            self.store.change_execution(ex.id, **values)
            if "status" in values:
                self._active_keys = None  # the set of active executions moved
        if ending:
            self.store.release(ex.id, self.worker)
            self._pipelines.pop(ex.id, None)
            self._known.pop(ex.id, None)
            self.quiet.discard(ex.id)
            if "status" in values:
                done = self.store.execution(ex.id)
                for hook in self.hooks.on_execution_done:
                    _safe_hook(hook, self, done, pipeline)

    def _stage_failed(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        attempts: list[AttemptRecord],
        values: dict[str, Any],
    ) -> None:
        """The on_stage_failed hooks, before the Failed status is written: whoever sees the
        execution Failed also sees what they started (a rollback), so `conveyor run` keeps
        its engine running until that ends too."""
        failed = next(
            (a.stage for a in reversed(attempts) if a.status == ActionStatus.FAILED), None
        )
        if failed and self.hooks.on_stage_failed:
            ending = dataclasses.replace(self.store.execution(ex.id), **values)
            for h in self.hooks.on_stage_failed:
                _safe_hook(h, self, ending, pipeline, failed)

    def _has_inflight(self, ex_id: str) -> bool:
        with self._lock:
            return any(f.execution_id == ex_id for f in self.inflight.values())

    def _neighbourhood(
        self, ex: ExecutionRecord, pipeline: Pipeline
    ) -> tuple[pl.Neighbourhood, list[tuple[ExecutionRecord, pl.ExecutionState]]]:
        # a rollback is the way out of an incident: a release freeze does not hold it
        if self._disabled is None:  # read once per step: a freeze holds from the next step
            self._disabled = self.store.disabled_transitions_all()
        disabled = {} if ex.kind == "rollback" else self._disabled.get(ex.pipeline, {})
        if pipeline.execution_mode.value == "PARALLEL" and not disabled:
            return pl.Neighbourhood(), []
        others_rows = (
            [o for o in self.store.active_executions(ex.pipeline, light=True) if o.id != ex.id]
            if self._active_per_pipeline.get(ex.pipeline, 2) > 1
            or ex.status not in ACTIVE_EXECUTION
            else []
        )
        others = [(o, _state(o, self._attempts(o.id), self._known.get(o.id))) for o in others_rows]
        occupied: dict[str, str] = {}
        older_waiting: set[str] = set()
        for o, st in others:
            try:
                op = self.pipeline(o)
            except ConveyorError:
                continue
            stage = pl.active_stage(op, st)
            if stage:
                occupied[stage] = o.id
            elif o.seq < ex.seq:
                p = pl.progress(op, st)
                if p < len(op.stages):
                    older_waiting.add(op.stages[p].name)
        return pl.Neighbourhood(disabled, occupied, frozenset(older_waiting)), others

    def _supersede_stale_approval(
        self, ex: ExecutionRecord, pipeline: Pipeline, plan: pl.Plan, around: pl.Neighbourhood
    ) -> None:
        """A newer execution at the gate supersedes the older execution's pending approval."""
        holder = around.occupied.get(plan.next_stage or "")
        if not holder:
            return
        h = self.store.execution(holder, light=True)
        if h.seq > ex.seq:
            return
        running = [a for a in self._attempts(holder) if a.status == ActionStatus.IN_PROGRESS]
        if not running or any(a.type != "approval" for a in running):
            return
        for a in running:
            try:
                self.store.decide_approval(
                    a.id,
                    ApprovalStatus.SUPERSEDED,
                    by="engine",
                    comment=f"superseded by newer execution {ex.id}",
                )
            except ConveyorError:
                continue
            with contextlib.suppress(Conflict):
                self.store.transition(
                    a.id,
                    ActionStatus.ABANDONED,
                    reason=Reason.SUPERSEDED,
                    message=f"a newer execution ({ex.id}) reached this approval",
                )
        self._known.pop(holder, None)
        self.quiet.discard(holder)  # its wait ended: its status is derived on the next step
        self.store.change_execution(holder, superseded_by=ex.id, reason=ExecutionReason.SUPERSEDED)
        self._wake.set()

    # ---- requests --------------------------------------------------------------------------------
    def _handle_requests(self, ex: ExecutionRecord, pipeline: Pipeline) -> bool:
        """Act on pending requests; True when there were any (the row changed)."""
        pending = self.store.pending_requests(ex.id)
        for req in pending:
            kind = req.kind
            outcome = "done"
            try:
                if kind in ("stop", "abandon"):
                    outcome = self._stop(ex, kind == "abandon", req)
                elif kind == "retry":
                    outcome = self._retry(ex, pipeline, req)
                else:
                    outcome = f"unknown request kind '{kind}'"
            except ConveyorError as e:
                outcome = f"refused: {e.message}"
            self.store.handle_request(req.id, outcome)
            ex = self.store.execution(ex.id, light=True)
        return bool(pending)

    def _stop(self, ex: ExecutionRecord, abandon: bool, req: RequestRecord) -> str:
        if ex.status not in ACTIVE_EXECUTION:
            raise Conflict(f"execution {ex.id} is {ex.status}: nothing to stop")
        mode = StopMode.ABANDON if abandon else StopMode.FINISH
        self.store.change_execution(
            ex.id,
            stop_mode=mode,
            reason=ExecutionReason.STOP_REQUESTED,
            actor=req.actor or "engine",
            message=f"stop requested by {req.actor or 'someone'}: {req.payload.get('reason', '')}".strip(),
        )
        if abandon:
            with self._lock:
                mine = [f for f in self.inflight.values() if f.execution_id == ex.id]
            for f in mine:
                f.abandon = True
                f.cancel.set()
            held = {f.attempt_id for f in mine}
            for a in self.store.attempts_for(ex.id, light=True):
                if a.status == ActionStatus.IN_PROGRESS and a.id not in held:
                    self._kill(a)
                    self._try_transition(
                        a.id,
                        ActionStatus.ABANDONED,
                        Reason.ABANDONED,
                        f"abandoned by {req.actor or 'a stop request'}",
                    )
                    with contextlib.suppress(ConveyorError):  # NotFound: it waits for no one
                        self.store.decide_approval(
                            a.id,
                            ApprovalStatus.REJECTED,
                            by=req.actor or "engine",
                            comment="execution stopped",
                        )
        return f"stopping ({mode})"

    def _retry(self, ex: ExecutionRecord, pipeline: Pipeline, req: RequestRecord) -> str:
        if ex.status not in (ExecutionStatus.FAILED, ExecutionStatus.STOPPED):
            raise Conflict(
                f"execution {ex.id} is {ex.status}: only a Failed or Stopped execution "
                "can be retried"
            )
        attempts = self.store.attempts_for(ex.id, light=True)
        state = _state(ex, attempts, self._known.get(ex.id))
        statuses = pl.stage_statuses(pipeline, state)
        stage_name = req.payload.get("stage")
        if not stage_name:
            for s, st in zip(pipeline.stages, statuses, strict=True):
                if st is not None and st in (StageStatus.FAILED, StageStatus.STOPPED):
                    stage_name = s.name
                    break
            else:
                for s, st in zip(pipeline.stages, statuses, strict=True):
                    if st is None or st != StageStatus.SUCCEEDED:
                        stage_name = s.name
                        break
        if not stage_name:
            raise Conflict("nothing to retry: every stage succeeded")
        failed_only = bool(req.payload.get("failed_only", False))
        epochs = dict(ex.stage_epochs or {})
        cur = epochs.get(stage_name, {"epoch": 0, "failed_only": False})
        epochs[stage_name] = {"epoch": cur["epoch"] + 1, "failed_only": failed_only}
        self.store.change_execution(
            ex.id,
            stage_epochs=epochs,
            stop_mode=None,
            superseded_by=None,
            status=ExecutionStatus.IN_PROGRESS,
            reason=ExecutionReason.RETRIED,
            actor=req.actor or "engine",
            ended_at=None,
            message=f"retrying stage {stage_name} ({'failed actions' if failed_only else 'all actions'})",
        )
        return f"retrying {stage_name}"

    def _auto_retry(
        self, ex: ExecutionRecord, pipeline: Pipeline, state: pl.ExecutionState
    ) -> bool:
        """Stage `onFailure: {result: RETRY}`: one automatic retry of the failed stage."""
        for s, st in zip(pipeline.stages, pl.stage_statuses(pipeline, state), strict=True):
            if (
                st is not None
                and st == StageStatus.FAILED
                and s.on_failure
                and s.on_failure.result == "RETRY"
            ):
                epoch = (ex.stage_epochs or {}).get(s.name, {}).get("epoch", 0)
                key = (ex.id, s.name, epoch)
                if epoch >= s.on_failure.max_retries or key in self._auto_retried:
                    return False
                self._auto_retried.add(key)
                self.store.add_request(
                    ex.id,
                    "retry",
                    {"stage": s.name, "failed_only": s.on_failure.retry_mode == "FAILED_ACTIONS"},
                    actor="engine (onFailure: RETRY)",
                )
                self.store.change_execution(
                    ex.id, status=ExecutionStatus.FAILED, reason=ExecutionReason.AUTO_RETRY
                )
                self._wake.set()
                return True
        return False

    # ---- crash recovery ------------------------------------------------------------------------
    def _recover(self, ex: ExecutionRecord, pipeline: Pipeline, dead: str) -> None:
        for a in self._attempts(ex.id):
            if a.status != ActionStatus.IN_PROGRESS:
                continue
            cls = self._type(a.type)
            if cls is not None and cls.resumable and not ex.stop_mode:
                self.store.note_attempt(a.id, worker=self.worker)
                continue  # resumed by _resume_orphans
            self._kill(a)
            self._try_transition(
                a.id,
                ActionStatus.FAILED,
                Reason.ENGINE_CRASHED,
                f"the engine running this action ({dead}) stopped before it finished; "
                f"retry with `conveyor retry {ex.id}`",
            )

    def _resume_orphans(
        self, ex: ExecutionRecord, pipeline: Pipeline, attempts: list[AttemptRecord]
    ) -> bool:
        """Resumable attempts (approvals) in progress with no worker here: take over their
        wait, and run them again once their approval was decided or expired (a parked wait
        holds no worker). True when every attempt in progress is such a parked wait."""
        running = [a for a in attempts if a.status == ActionStatus.IN_PROGRESS]
        if not running:
            return False
        approvals: dict[str, ApprovalRecord] | None = None
        parked = 0
        for a in running:
            with self._lock:
                if a.id in self.inflight:
                    continue
            cls = self._type(a.type)
            if cls is None or not cls.resumable:
                continue
            owner = a.worker
            if owner != self.worker and self._worker_alive(owner):
                continue
            takeover = owner != self.worker
            if takeover:
                self.store.note_attempt(a.id, worker=self.worker)
                a = dataclasses.replace(a, worker=self.worker)
                known = self._known.get(ex.id)
                if known is not None:
                    known.update(a.id, {"worker": self.worker})
            if approvals is None:
                approvals = {r.attempt_id: r for r in self.store.approval_records(ex.id)}
            if not ready(approvals.get(a.id), time.time()):
                parked += 1
                if takeover:
                    _append_log(a, f"[conveyor] resumed by engine {self.worker}\n")
                continue
            action = pipeline.stage(a.stage).action(a.action)
            self._launch(ex, pipeline, a.stage, action, a, resumed=True, banner=takeover)
        return parked == len(running)

    def _worker_alive(self, worker: str | None) -> bool:
        if not worker:
            return False
        return any(e.worker == worker for e in self.store.live_engines(self.settings.lease_seconds))

    def _kill(self, attempt: AttemptRecord) -> None:
        if attempt.pgid:
            kill_group(int(attempt.pgid))

    def _type(self, name: str) -> type[BaseAction] | None:
        try:
            return self.registry.get(name)
        except ConveyorError:
            return None

    # ---- deadlines -------------------------------------------------------------------------------
    def _watch_deadlines(self, ex: ExecutionRecord) -> None:
        now = time.monotonic()
        with self._lock:
            mine = [f for f in self.inflight.values() if f.execution_id == ex.id]
        for f in mine:
            if f.deadline is not None and now > f.deadline and not f.cancel.is_set():
                f.timed_out_at = now
                f.cancel.set()
            elif f.timed_out_at is not None and now - f.timed_out_at > GRACE:
                # the action ignores cancellation: record the timeout anyway
                self._try_transition(
                    f.attempt_id,
                    ActionStatus.FAILED,
                    Reason.TIMEOUT,
                    "the action did not stop within 10 s of its timeout",
                )

    # ---- dispatching -------------------------------------------------------------------------------
    def _dispatch_all(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        start: tuple[tuple[str, str], ...],
        state: pl.ExecutionState,
    ) -> None:
        """Persist every action of the plan InProgress (one transaction), then run them."""
        todo = []
        for stage_name, action_name in start:
            action = pipeline.stage(stage_name).action(action_name)
            epoch = (ex.stage_epochs or {}).get(stage_name, {}).get("epoch", 0)
            timeout = action.timeout_seconds
            if timeout is None:
                cls = self._type(action.type)
                timeout = (
                    getattr(cls, "default_timeout", DEFAULT_TIMEOUT) if cls else DEFAULT_TIMEOUT
                )
            todo.append((stage_name, action_name, action.type, epoch, time.time() + timeout))
        state_dir, ex_id = self.settings.state_dir, ex.id
        rows = self.store.start_attempts(
            ex_id,
            todo,
            worker=self.worker,
            log_path=lambda st, a, n: str(log_path(state_dir, ex_id, st, a, n)),
        )
        self._remember(ex_id, rows)
        current = dict(pl.current_attempts(pipeline, state))  # a snapshot for the workers
        for row in rows:
            action = pipeline.stage(row.stage).action(row.action)
            self._launch(ex, pipeline, row.stage, action, row, resumed=False, current=current)

    def _launch(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        stage_name: str,
        action: Any,
        row: AttemptRecord,
        *,
        resumed: bool,
        banner: bool = False,
        current: dict[str, dict[str, pl.AttemptView]] | None = None,
    ) -> None:
        remaining = (row.deadline - time.time()) if row.deadline else None
        deadline = time.monotonic() + remaining if remaining is not None else None
        fl = _InFlight(row.id, ex.id, threading.Event(), deadline)
        with self._lock:
            self.inflight[row.id] = fl
        if current is None:
            current = pl.current_attempts(
                pipeline,
                _state(ex, self._attempts(ex.id), self._known.get(ex.id), pipeline),
            )
        self.quiet.discard(ex.id)
        job = _Job(ex, pipeline, stage_name, action, row, fl, resumed, current)
        self.pool.submit(lambda: self._execute(job, banner))

    def _execute(self, job: _Job, banner: bool) -> None:
        """Run one action on a worker; the engine loop records the outcome (`_record_done`)."""
        ex, pipeline, stage_name, action, row, fl = job.started()
        logf = FileLog(
            Path(row.log_path)
            if row.log_path
            else log_path(self.settings.state_dir, ex.id, stage_name, action.name, row.attempt)
        )
        workdir = (
            self.settings.state_dir / "work" / ex.id / f"{stage_name}.{action.name}.{row.attempt}"
        )
        result: ActionResult
        artifacts: dict[str, str] = {}
        stored_rows: list[tuple[str, int, int]] = []
        key: str | None = None
        try:
            if banner:
                logf.write(f"[conveyor] resumed by engine {self.worker}\n")
            cls = self.registry.get(action.type)
            digests: dict[str, str] = {}
            ctx = self._context(job, logf, workdir, digests)
            key, hit = self._reuse(ex, pipeline, stage_name, action, cls, ctx, digests)
            if hit is not None:
                result, artifacts = hit.result, hit.artifacts
                logf.write(f"[conveyor] {result.message} (inputs {key})\n")
            else:
                result = cls().run(ctx)
            if result.succeeded and hit is None:
                for name, d in ctx.outputs.items():
                    stored = self.artifacts.put(d)
                    stored_rows.append((stored.digest, stored.files, stored.size))
                    artifacts[name] = stored.digest
        except Parked:
            logf.close()
            self._finish(_Done(ex, pipeline, stage_name, action, row, fl, None, ActionResult()))
            return
        except ActionFailed as e:
            result = ActionResult(False, Reason.ACTION_FAILED, e.message)
        except UnresolvedVariable as e:
            result = ActionResult(False, Reason.INVALID_CONFIG, f"unresolved variable {e.args[0]}")
        except ActionError as e:
            result = ActionResult(False, Reason.TOOL_ERROR, e.message)
        except ConveyorError as e:
            result = ActionResult(False, Reason.TOOL_ERROR, e.message)
        except Exception as e:  # noqa: BLE001 - an action's bug is recorded, not raised
            logf.write(traceback.format_exc())
            result = ActionResult(False, Reason.TOOL_ERROR, f"{type(e).__name__}: {e}")
        timed_out = fl.timed_out_at is not None or (
            not result.succeeded
            and fl.deadline is not None
            and time.monotonic() >= fl.deadline - 0.05
        )
        if timed_out and not fl.abandon:
            result = ActionResult(
                False,
                Reason.TIMEOUT,
                f"timed out after {action.timeout_seconds or DEFAULT_TIMEOUT} s"
                + (f": {result.message}" if result.message else ""),
            )
            status = ActionStatus.FAILED
        elif fl.abandon:
            status = ActionStatus.ABANDONED
            result = ActionResult(False, Reason.ABANDONED, "abandoned by a stop request")
        else:
            status = ActionStatus.SUCCEEDED if result.succeeded else ActionStatus.FAILED
        reason = result.reason or (Reason.SUCCEEDED if result.succeeded else Reason.ACTION_FAILED)
        if reason == "Reused":
            reason = Reason.SUCCEEDED  # the message and details say where it came from
        logf.write(
            f"[conveyor] {status.value}: {reason}{': ' + result.message if result.message else ''}\n"
        )
        logf.close()
        result = ActionResult(
            result.succeeded,
            str(reason),
            result.message or "",
            dict(result.variables),
            result.reports,
            result.details,
            revision=result.revision,
            deployment=result.deployment,
        )
        done = _Done(ex, pipeline, stage_name, action, row, fl, status, result, artifacts)
        done.stored, done.input_digest = stored_rows, key
        self._finish(done)

    def _note_pid(self, att_id: str, pgid: int) -> None:
        """A worker's child process group, written by the engine loop (workers do not write)."""
        self._pids.put((att_id, pgid))
        self._wake.set()

    def _finish(self, done: _Done) -> None:
        self._done.put(done)
        self._wake.set()

    def _record_done(self) -> None:
        """Record every action the workers finished since the last call: one transaction."""
        with self._record_lock:
            pids: dict[str, int] = {}
            while True:
                try:
                    att_id, pgid = self._pids.get_nowait()
                except queue.Empty:
                    break
                pids[att_id] = pgid
            batch: list[_Done] = []
            while True:
                try:
                    batch.append(self._done.get_nowait())
                except queue.Empty:
                    break
            if not batch and not pids:
                return
            ended = [d for d in batch if d.status is not None]
            try:
                for d in ended:
                    for digest, files, size in d.stored:
                        self.store.record_artifact(digest, files, size)
                outcomes = self.store.record_finished(
                    pids,
                    [
                        (
                            d.row.id,
                            d.status,
                            {
                                "reason": d.result.reason,
                                "message": d.result.message,
                                "variables": dict(d.result.variables),
                                "artifacts": d.artifacts,
                                "details": _jsonable(d.result.details),
                                "reports": [_jsonable(r.__dict__) for r in d.result.reports],
                                "input_digest": d.input_digest,
                            },
                        )
                        for d in ended
                        if d.status is not None
                    ],
                )
            except ConveyorError as e:
                log.error("could not record %d finished actions: %s", len(ended), e.message)
                outcomes = [None] * len(ended)
            for d, out in zip(ended, outcomes, strict=True):
                # None: someone else (a stop, a timeout, a recovery) recorded the end first
                if out is None:
                    self._known.pop(d.ex.id, None)
                    continue
                k = self._known.get(d.ex.id)
                if k is not None and k.update(d.row.id, _light(out)):
                    k.moves += 1
                if d.status == ActionStatus.SUCCEEDED:
                    try:
                        self._after_success(d.ex, d.pipeline, d.stage, d.action, d.result)
                    except ConveyorError as e:
                        log.error("could not record %s: %s", d.row.id, e.message)
            with self._lock:
                for d in batch:
                    self.inflight.pop(d.row.id, None)
            # no wake here: the step that called this ticks the executions right after

    def _after_success(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        stage_name: str,
        action: Any,
        result: ActionResult,
    ) -> None:
        if result.revision is not None:
            # one row per source: two sources finishing together both keep their revision
            names = [a.name for a in pipeline.source_actions()]
            self.store.record_revision(
                ex.id,
                action.name,
                dict(result.revision),
                position=names.index(action.name) if action.name in names else len(names),
            )
        dep = result.deployment
        if dep is not None and dep.get("environment"):
            revs = self.store.execution(ex.id, light=True).revisions or {}
            commit = self._deployed_commit(pipeline, action.name, ex, revs) or dep.get("commit")
            self.store.record_deployment(
                environment=dep["environment"],
                pipeline=ex.pipeline,
                execution_id=ex.id,
                kind=dep.get("kind", "rollback" if ex.kind == "rollback" else "deploy"),
                image=dep.get("image"),
                digest=dep.get("digest"),
                commit=commit,
                url=dep.get("url"),
                actor=ex.actor or "engine",
                details=_jsonable({**dep, "commit": commit, "revisions": dict(revs)}),
            )

    @staticmethod
    def _deployed_commit(
        pipeline: Pipeline, action_name: str, ex: ExecutionRecord, revisions: Mapping[str, Any]
    ) -> str | None:
        """The commit a deployment's image was built from: its lineage's source, else the
        headline source (a rollback's generated pipeline has no source action)."""
        if ex.kind == "rollback":
            return (ex.trigger or {}).get("commit")  # the release rolled back to
        commit = provenance.commit_of(revisions, provenance.source_of(pipeline, action_name))
        if commit is None:
            commit = provenance.commit_of(
                revisions, provenance.headline_source(pipeline, ex.trigger)
            )
        return commit

    def _context(
        self, job: _Job, logf: FileLog, workdir: Path, digests: dict[str, str] | None = None
    ) -> ActionContext:
        """What the action sees; `job.current` is the plan's view of the attempts that count.
        `digests` receives the input artifacts' digests (input name -> digest)."""
        ex, pipeline, stage_name, action, row, fl = job.started()
        current = job.current
        scope: dict[str, dict[str, str]] = {
            PIPELINE_NS: dict(ex.variables or {}),
            SYSTEM_NS: {"PipelineExecutionId": ex.id, "PipelineName": ex.pipeline},
        }
        wanted_ns = {ns for _, ns, _ in find_refs(dict(action.config))}
        needed: list[str] = []
        by_name: dict[str, Any] = {}
        if wanted_ns or action.inputs:
            by_name = {a.name: a for _, a in pipeline.all_actions()}
            for st in pipeline.stages:
                for name, view in current[st.name].items():
                    producer = by_name[name]
                    if view.status == ActionStatus.SUCCEEDED and (
                        producer.namespace in wanted_ns
                        or set(producer.outputs) & set(action.inputs)
                    ):
                        needed.append(f"{ex.id}/{st.name}/{name}/{view.attempt}")
        produced: dict[str, str] = {}
        for a_row in self.store.attempts_by_id(needed).values():
            ns = by_name[a_row.action].namespace
            if ns:
                scope[ns] = {k: str(v) for k, v in (a_row.variables or {}).items()}
            produced.update(a_row.artifacts or {})
        config = resolve(dict(action.config), scope)
        if workdir.exists() and not job.resumed:
            shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        inputs: dict[str, Path] = {}
        for name in action.inputs:
            if name not in produced:
                raise ActionError(
                    f"input artifact '{name}' was not produced (its action did not succeed)"
                )
            inputs[name] = self.artifacts.get(produced[name], workdir / "in" / name)
            if digests is not None:
                digests[name] = produced[name]
        outputs: dict[str, Path] = {}
        for name in action.outputs:
            d = workdir / "out" / name
            d.mkdir(parents=True, exist_ok=True)
            outputs[name] = d
        return ActionContext(
            execution_id=ex.id,
            pipeline=pipeline,
            stage=stage_name,
            action=action,
            attempt=row.attempt,
            config=config,
            inputs=inputs,
            outputs=outputs,
            workdir=workdir,
            log=logf,
            cancel=fl.cancel,
            deadline=fl.deadline,
            state_dir=self.settings.state_dir,
            services=self.services,
            variables=scope,
            revisions=dict(ex.revisions or {}),
            on_pid=lambda pid: self._note_pid(row.id, pid),
            # a resumable type's wait parks (the engine resumes it); any other polls in place
            gate=ApprovalGate(
                self.store,
                row.id,
                ex.id,
                park=bool(getattr(self._type(action.type), "resumable", False)),
            ),
        )

    def _reuse(
        self,
        ex: ExecutionRecord,
        pipeline: Pipeline,
        stage_name: str,
        action: Any,
        cls: type[BaseAction],
        ctx: ActionContext,
        digests: Mapping[str, str],
    ) -> tuple[str | None, reuse.Reused | None]:
        """The action's input digest (None when reuse is off for it) and, when an earlier
        Succeeded attempt of this pipeline had the same one and its outputs are whole, what
        it produced (engine/reuse.py)."""
        if not reuse.enabled(ex.trigger, action, cls, ctx.config):
            return None, None
        extra_of = getattr(cls(), "reuse_inputs", None)
        try:
            extra = extra_of(ctx) if callable(extra_of) else {}
        except ConveyorError as e:  # the action itself will say it properly when it runs
            ctx.log.write(f"[conveyor] not reusing: {e.message}\n")
            return None, None
        key = reuse.input_digest(pipeline, stage_name, action, ctx.config, digests, extra)
        candidates = self.store.reusable_attempts(ex.pipeline, stage_name, action.name, key)
        if not candidates:
            return key, None
        return key, reuse.find(
            candidates,
            self.artifacts,
            self.settings.state_dir,
            ctx.workdir,
            self._image_present,
            ctx.log.write,
        )

    def _image_present(self, uri: str) -> bool:
        from conveyor.adapters.registry import ImageRef

        ref = ImageRef.parse(uri)
        if not ref.digest:
            return False
        return self.services.registry.has_manifest(ref.host, ref.repository, ref.digest)

    def _try_transition(self, att_id: str, to: ActionStatus, reason: str, message: str) -> None:
        with contextlib.suppress(Conflict):
            self.store.transition(att_id, to, reason=str(reason), message=message)
        self._known.pop(att_id.split("/", 1)[0], None)
        self._wake.set()

    # ---- the attempts this engine knows ------------------------------------------------------
    def _attempts(self, ex_id: str, *, check: bool = True) -> list[AttemptRecord]:
        """The execution's attempts (light), re-read only when its history count moved."""
        k = self._known.get(ex_id)
        # this engine writes the attempts of the executions it holds and updates what it
        # knows as it does; the count is compared now and then for anyone else's writes
        if k is None or (check and time.monotonic() - k.checked > CHECK_SECONDS):
            moves = self.store.history_count(ex_id)
            if k is None or k.moves != moves:
                k = _Known(moves)
                for r in self.store.attempts_for(ex_id, light=True):
                    k.add(r)
                self._known[ex_id] = k
            k.checked = time.monotonic()
        return k.listed

    def _remember(self, ex_id: str, rows: list[AttemptRecord]) -> None:
        """Attempts this engine just started (one history row each)."""
        k = self._known.get(ex_id)
        if k is None:
            return
        for r in rows:
            k.add(r)  # a new attempt: its payloads are empty, as in a light read
        k.moves += len(rows)

    # ---- queries used by the CLI and the server -----------------------------------------------------
    def wake(self) -> None:
        self._wake.set()


def _execution_message(
    status: ExecutionStatus, attempts: list[AttemptRecord], ex: ExecutionRecord
) -> str:
    if status == ExecutionStatus.SUCCEEDED:
        return ""
    if status == ExecutionStatus.SUPERSEDED:
        return f"superseded by execution {ex.superseded_by}"
    bad = [a for a in attempts if a.status in (ActionStatus.FAILED, ActionStatus.ABANDONED)]
    if bad:
        a = bad[-1]
        return f"{a.stage}/{a.action}: {a.reason}: {a.message}"
    return str(ex.message or "")


def _light(row: Row) -> Row:
    return {k: v for k, v in row.items() if k in LIGHT_ATTEMPT}


def _append_log(attempt: AttemptRecord, text: str) -> None:
    if attempt.log_path:
        with contextlib.suppress(OSError), Path(attempt.log_path).open("a") as f:
            f.write(text)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, Path):
        return str(v)
    return str(v)


def _safe_hook(hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception:  # noqa: BLE001 - a hook must not break the engine
        log.error("hook %s failed: %s", getattr(hook, "__name__", hook), traceback.format_exc())
