"""What every request handler of one app shares: built once by `create_app`, kept in
`app.state.ctx`, never global."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from conveyor.server.auth import Signer
from conveyor.service import commands
from conveyor.service.queries import PipelineCache
from conveyor.service.users import User, Users
from conveyor.settings import Settings

if TYPE_CHECKING:  # types only: the server reaches the engine and store through the service
    from conveyor.engine.engine import Engine
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.records import ApprovalRecord


@dataclass
class Context:
    settings: Settings
    store: Store
    users: Users
    signer: Signer
    artifacts: ArtifactStore
    cache: PipelineCache = field(default_factory=PipelineCache)
    engine: Engine | None = None  # the engine running in this process, if any (to wake it)
    _starter: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def starter(self) -> Engine:
        """The engine that starts executions: the running one, else a idle one (it only writes
        the execution row; whichever engine loop runs picks it up)."""
        if self.engine is not None:
            return self.engine
        with self._lock:
            if self._starter is None:
                self._starter = commands.starting_engine(self.store, self.settings, self.artifacts)
            return self._starter

    def decide(
        self, ex_id: str, user: User, approve: bool, comment: str, digest: str | None
    ) -> ApprovalRecord:
        """Approve or reject as `user` (`commands.decide_approval`), bound to the digest the
        page or API client showed; wakes this process's engine."""
        row = commands.decide_approval(
            self.store,
            self.cache,
            ex_id,
            user,
            approve=approve,
            comment=comment,
            digest=digest,
            require_digest=True,
        )
        self.wake()
        return row

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx
