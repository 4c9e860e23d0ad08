"""The users of the dashboard and API: roles, the user record and its role checks, the local
user the CLI acts as, and the user table's operations (add, list, disable, look up, sessions,
the first admin). The CLI and the server reach the user table only through this module.

Roles are ordered: viewer < operator (start/stop/retry, transitions) < approver (decide
approvals) < admin (users, audit). A user holds one role and has every right of the roles
below it. API tokens are `cvy_` + 32 random bytes; the store keeps only their SHA-256.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, Conflict, Forbidden, NotFound

ROLES = ("viewer", "operator", "approver", "admin")

if TYPE_CHECKING:
    from conveyor.settings import Settings
    from conveyor.store.db import Store

SESSION_SECONDS = 12 * 3600
TOKEN_PREFIX = "cvy_"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    email: str | None = None

    def can(self, role: str) -> bool:
        return rank(self.role) >= rank(role)


def rank(role: str) -> int:
    if role not in ROLES:
        raise ConfigError(f"unknown role '{role}' (roles: {', '.join(ROLES)})")
    return ROLES.index(role)


def require(user: User, role: str, doing: str) -> None:
    """Raise Forbidden unless the user has at least `role`."""
    if not user.can(role):
        raise Forbidden(
            f"{doing} needs the {role} role; '{user.name}' is {user.role}"
            " (an admin can change it with `conveyor user add NAME --role ROLE`)"
        )


def local_user() -> User:
    """The CLI's identity: the local OS user, with admin rights (they own the state dir)."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):
        login = str(os.getuid())
    return User(f"local:{login}", "admin")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    """The users table: made here, read on every request."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, name: str, role: str, email: str | None = None, *, replace: bool = False) -> str:
        """Create a user (or give an existing one a new token with `replace`); return the token."""
        rank(role)
        if not name or len(name) > 100 or any(c.isspace() for c in name):
            raise ConfigError(f"'{name}' is not a valid user name (1-100 characters, no spaces)")
        token = new_token()
        self.store.save_user(
            name,
            replace=replace,
            role=role,
            token_hash=hash_token(token),
            email=email or None,
            disabled=False,
        )
        return token

    def list(self) -> list[dict[str, Any]]:
        return [
            dict(
                name=u.name,
                role=u.role,
                email=u.email,
                created_at=u.created_at,
                disabled=u.disabled,
            )
            for u in self.store.list_users()
        ]

    def count(self) -> int:
        return int(self.store.has_users())

    def get(self, name: str) -> User:
        r = self.store.get_user(name)
        if r is None or r.disabled:
            raise NotFound(f"no user '{name}' (see `conveyor user list`)")
        return User(r.name, r.role, r.email)

    def by_token(self, token: str) -> tuple[User, str] | None:
        """The user a token belongs to, and the token's hash; None for an unknown token."""
        h = hash_token(token)
        r = self.store.user_by_token_hash(h)
        if r is None or r.disabled:
            return None
        return User(r.name, r.role, r.email), h

    def session_user(self, s: Session) -> User | None:
        """The user of a signed session, if the session is still open in the store (not
        logged out, not expired) and the user's token is the one it was opened with."""
        r = self.store.session_user(_sid_hash(s.sid), s.user, time.time())
        if r is None or r.disabled:
            return None
        if not hmac.compare_digest(r.token_hash[:16], s.token_hash_prefix):
            return None
        return User(r.name, r.role, r.email)

    def open_session(self, s: Session) -> None:
        """Record a new dashboard session (and forget expired ones)."""
        self.store.open_session(_sid_hash(s.sid), s.user, s.issued + SESSION_SECONDS)

    def close_session(self, s: Session) -> None:
        """Revoke a session: its cookie is refused from now on, wherever it was copied."""
        self.store.close_session(_sid_hash(s.sid))

    def disable(self, name: str) -> None:
        if not self.store.disable_user(name):
            raise NotFound(f"no user '{name}'")


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def ensure_admin(store: Store, name: str = "admin") -> str | None:
    """On first start (no users at all), create an admin and return its token; else None."""
    users = Users(store)
    if users.count():
        return None
    try:
        token = users.add(name, "admin")
    except Conflict:
        return None  # another process made it first
    store.audit("system", "user.create", name, {"role": "admin", "reason": "first start"})
    return token


@dataclass(frozen=True)
class Session:
    user: str
    token_hash_prefix: str
    sid: str
    issued: float


def named(store: Store, name: str) -> User:
    """The enabled user `name` (NotFound otherwise)."""
    return Users(store).get(name)


def user_list(store: Store) -> list[dict[str, Any]]:
    """Users and roles (never their tokens)."""
    return Users(store).list()


def disable(store: Store, name: str, actor: str) -> None:
    """Disable a user (their token and sessions stop working), audited."""
    Users(store).disable(name)
    store.audit(actor, "user.disable", name, {})


def ensure_admin_in(settings: Settings) -> str | None:
    """Create the first admin unless one exists; returns its token when it was created."""
    from conveyor.service.commands import open_store

    store = open_store(settings)
    try:
        return ensure_admin(store)
    finally:
        store.close()


def acting_as(name: str, role: str) -> User:
    """A user that is not in the table (the demo deciding its own approval)."""
    return User(name, role)
