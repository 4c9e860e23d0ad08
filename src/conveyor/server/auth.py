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
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from conveyor.errors import AuthError
from conveyor.service.users import SESSION_SECONDS, Session, User, Users, ensure_admin

# the user record, roles and the user table live in conveyor.service.users; these names stay
# importable from here for the tests and benches that already use them
__all__ = ["SESSION_SECONDS", "Session", "Signer", "User", "Users", "bearer_token", "ensure_admin"]
__all__ += ["session_key"]


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
