"""Conveyor's exceptions. Each knows its CLI exit code and its HTTP status.

ConveyorError                  exit 1, HTTP 500
├── ConfigError                exit 2, HTTP 400  bad input: a file, a flag, a value
│   └── ValidationFailed       exit 2, HTTP 422  a file with one or more located problems
├── NotFound                   exit 2, HTTP 404  no such pipeline, execution, environment...
├── Conflict                   exit 2, HTTP 409  the request lost a race or no longer applies
├── AuthError                  exit 2, HTTP 401  no or bad credentials
│   └── Forbidden              exit 2, HTTP 403  known user, wrong role
├── Unavailable                exit 3, HTTP 503  a component is missing or down (tool, registry, DB)
└── ActionError                exit 1, HTTP 500  raised inside an action: "the tool broke"
    └── ActionFailed                             "the check said no" (tests failed, probe failed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ConveyorError(Exception):
    exit_code = 1
    http_status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ConveyorError):
    exit_code = 2
    http_status = 400
    code = "bad_request"


@dataclass(frozen=True)
class Problem:
    """One located problem in an input file: `file:line: message`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ValidationFailed(ConfigError):
    http_status = 422
    code = "invalid"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFound(ConveyorError):
    """What was named does not exist: an execution, an approval, a file, an image."""

    exit_code = 2
    http_status = 404
    code = "not_found"


class Conflict(ConveyorError):
    """The request contradicts the current state: stopping a finished execution, deciding
    an approval twice."""

    exit_code = 2
    http_status = 409
    code = "conflict"


class AuthError(ConveyorError):
    """No valid credentials: no session, an unknown token, a wrong password."""

    exit_code = 2
    http_status = 401
    code = "unauthorized"


class Forbidden(AuthError):
    """Known, but not allowed: a role without the right, an author approving their own change
    under `selfApproval: false`, a stale form."""

    http_status = 403
    code = "forbidden"


class Unavailable(ConveyorError):
    """A component the command needs is missing or down; the message names the package to
    install or the command that starts it."""

    exit_code = 3
    http_status = 503
    code = "unavailable"


class ActionError(ConveyorError):
    """The tool an action drives broke (registry down, podman missing): reason `ToolError`."""

    reason = "ToolError"


class ActionFailed(ActionError):
    """The check an action performs said no (tests failed, probe failed): reason `ActionFailed`."""

    reason = "ActionFailed"


def missing_tool(binary: str, package: str) -> Unavailable:
    """The error for a binary that is not installed, naming the Debian package."""
    return Unavailable(
        f"'{binary}' was not found on PATH: install it with `apt-get install -y {package}`"
    )
