"""The users of the dashboard and API, for the entry points: roles, the local user the CLI
acts as, and the user table's operations (add, list, disable, look up, the first admin).

The table's SQL lives in `server/auth.py` (it is moving into the store); the CLI reaches it
only through these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

ROLES = ("viewer", "operator", "approver", "admin")

if TYPE_CHECKING:
    from conveyor.server.auth import User
    from conveyor.settings import Settings
    from conveyor.store.db import Store


def local_user() -> User:
    """The CLI's identity: the local OS user, with admin rights (they own the state dir)."""
    from conveyor.server.auth import local_user as local

    return local()


def named(store: Store, name: str) -> User:
    """The enabled user `name` (NotFound otherwise)."""
    from conveyor.server.auth import Users

    return Users(store).get(name)


def user_list(store: Store) -> list[dict[str, Any]]:
    """Users and roles (never their tokens)."""
    from conveyor.server.auth import Users

    return Users(store).list()


def disable(store: Store, name: str, actor: str) -> None:
    """Disable a user (their token and sessions stop working), audited."""
    from conveyor.server.auth import Users

    Users(store).disable(name)
    store.audit(actor, "user.disable", name, {})


def ensure_admin(settings: Settings) -> str | None:
    """Create the first admin unless one exists; returns its token when it was created."""
    from conveyor.server.auth import ensure_admin as ensure
    from conveyor.service.commands import open_store

    store = open_store(settings)
    try:
        return ensure(store)
    finally:
        store.close()


def acting_as(name: str, role: str) -> User:
    """A user that is not in the table (the demo deciding its own approval)."""
    from conveyor.server.auth import User

    return User(name, role)
