"""Why a use case refused, one class per kind, with a message that is safe to show the caller.

The edges turn these into answers, each in one place: `server/web/errors.py` (HTTP status and
`{error, code}`) and `server/mcp/errors.py` (tool results and JSON-RPC errors). Provider failures
keep their own kinds (`connectors.errors`); both edges map those too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DomainError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    """The request names or holds something that cannot be used (`field` says which, when known)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(DomainError):
    """No credential, or one Tendril does not know (an unknown or revoked key)."""


class Forbidden(DomainError):
    """Known caller, not allowed to do this (a key without the permission)."""


class NotFound(DomainError):
    """Nothing of the caller's by that name or id; identical for another owner's things."""


class Conflict(DomainError):
    """Not possible in the current state (a name taken, a connection not active yet)."""


class TooLarge(DomainError):
    """Over a size limit Tendril enforces."""


class Unavailable(DomainError):
    """A feature this server is not configured for (file storage, GCS)."""


class Upstream(DomainError):
    """A provider failed a step the use case depended on (verifying a credential, creating a hook)."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """ " (did you mean 'slack'?)" for the choice nearest to a mistyped value; empty when none is near."""
    near = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""
