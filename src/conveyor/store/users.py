"""The store's users and dashboard sessions (`Store` inherits these queries)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from conveyor.errors import Conflict
from conveyor.store import tables as t
from conveyor.store.records import UserRecord


class UserQueries:
    """Users (a role and the SHA-256 of their token) and open dashboard sessions."""

    # the Store's transaction, which this mixin's queries run in (declared, not defined here)
    tx: Callable[[], AbstractContextManager[Connection]]

    def save_user(self, name: str, *, replace: bool, **values: Any) -> None:
        """Create a user, or (with `replace`) overwrite an existing one's role, token, email."""
        u = t.users
        with self.tx() as c:
            exists = c.execute(select(u.c.name).where(u.c.name == name)).first()
            if exists and not replace:
                raise Conflict(
                    f"user '{name}' already exists (use --replace to give them a new token)"
                )
            if exists:
                c.execute(update(u).where(u.c.name == name).values(**values))
            else:
                c.execute(insert(u).values(name=name, created_at=time.time(), **values))

    def list_users(self) -> list[UserRecord]:
        with self.tx() as c:
            return [UserRecord.of(r) for r in c.execute(select(t.users).order_by(t.users.c.name))]

    def has_users(self) -> bool:
        with self.tx() as c:
            return c.execute(select(t.users.c.name).limit(1)).first() is not None

    def get_user(self, name: str) -> UserRecord | None:
        return self._one_user(select(t.users).where(t.users.c.name == name))

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        return self._one_user(select(t.users).where(t.users.c.token_hash == token_hash))

    def session_user(self, session_id: str, user: str, now: float) -> UserRecord | None:
        """The user of an open (not logged out, not expired) session, if it is `user`."""
        s, u = t.sessions, t.users
        return self._one_user(
            select(u)
            .join(s, s.c.user_name == u.c.name)
            .where(s.c.id == session_id, u.c.name == user, s.c.expires_at > now)
        )

    def _one_user(self, query: Any) -> UserRecord | None:
        with self.tx() as c:
            r = c.execute(query).first()
        return UserRecord.of(r) if r else None

    def open_session(self, session_id: str, user: str, expires_at: float) -> None:
        """Record a new dashboard session (and forget expired ones)."""
        now = time.time()
        with self.tx() as c:
            c.execute(delete(t.sessions).where(t.sessions.c.expires_at <= now))
            c.execute(
                insert(t.sessions).values(
                    id=session_id, user_name=user, created_at=now, expires_at=expires_at
                )
            )

    def close_session(self, session_id: str) -> None:
        with self.tx() as c:
            c.execute(delete(t.sessions).where(t.sessions.c.id == session_id))

    def disable_user(self, name: str) -> bool:
        """Disable a user; False when there is none of that name."""
        with self.tx() as c:
            res = c.execute(update(t.users).where(t.users.c.name == name).values(disabled=True))
        return bool(res.rowcount)
