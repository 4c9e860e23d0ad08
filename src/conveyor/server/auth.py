"""Who may do what: users, roles, API tokens, signed session cookies and CSRF tokens.

Roles are ordered: viewer < operator (start/stop/retry, transitions) < approver (decide
approvals) < admin (users, audit). A user holds one role and has every right of the roles
below it.

API tokens are `cvy_` + 32 random bytes (urlsafe base64). The store keeps only their
SHA-256. A fast hash is enough here, unlike for passwords: a token has 256 bits of entropy,
so there is nothing to guess from the hash, and an unsalted digest can be looked up through
the unique `token_hash` index. The token is shown once, when it is made.

The dashboard signs in with a token and then carries a session cookie (HttpOnly,
SameSite=Lax, 12 h) whose value is `base64(json).hmac-sha256`; the key is random and kept in
the state dir (`session.key`, mode 0600). The session names the user and the first 16 hex
digits of their token hash, so replacing a user's token ends their sessions. Each session
is also a row in the store (the SHA-256 of its random id, its user, its expiry): a cookie
is accepted only while that row exists, and logout deletes it, so a cookie copied before
logout is refused after. Forms carry a CSRF token: HMAC(key, "csrf:" + the session id).

The CLI runs as the local OS user with admin rights (`local:<login>` in the audit log): who
can read the state dir can change the database anyway.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import AuthError, ConfigError, Conflict, Forbidden, NotFound
from conveyor.service.users import ROLES
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


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("the Authorization header must be `Bearer <token>`")
    return value.strip()


def session_key(state_dir: Path) -> bytes:
    """The dashboard's signing key: random, made once, kept in the state dir (mode 0600)."""
    path = state_dir / "session.key"
    if path.exists():
        return path.read_bytes()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    user: str
    token_hash_prefix: str
    sid: str
    issued: float


class Signer:
    """Signed session cookies and CSRF tokens (HMAC-SHA256 with one key)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, data: bytes) -> str:
        return _b64(hmac.new(self.key, data, hashlib.sha256).digest())

    def session_cookie(self, user: User, token_hash: str) -> tuple[str, Session]:
        """A new signed session cookie and the session it carries (to record in the store)."""
        s = Session(user.name, token_hash[:16], secrets.token_hex(16), int(time.time()))
        body = json.dumps(
            {"u": s.user, "t": s.token_hash_prefix, "s": s.sid, "i": s.issued},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{self._mac(body)}", s

    def read_session(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body_b64, mac = cookie.rsplit(".", 1)
        try:
            body = _unb64(body_b64)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            d = json.loads(body)
            s = Session(str(d["u"]), str(d["t"]), str(d["s"]), float(d["i"]))
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - s.issued > SESSION_SECONDS:
            return None
        return s

    def csrf_token(self, sid: str) -> str:
        return self._mac(f"csrf:{sid}".encode())

    def check_csrf(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(sid))
