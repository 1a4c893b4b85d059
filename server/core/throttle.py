"""Failed authentication, slowed down: after too many failures from one client, or with keys that
start alike, further attempts are refused for a while (429 with Retry-After) before any key is
looked up, so guessing keys or flooding the log costs the guesser, not the database.

Counted in this process with a moving window (the `limits` library); several replicas each count
their own. The client is the peer address the server sees (behind a proxy, run uvicorn with
--forwarded-allow-ips so it is the real client's).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from auth import api_keys
from server.core.errors import DomainError

logger = logging.getLogger(__name__)

KEY_PREFIX_RANDOM = 8  # random characters after the kind ("tdl_", "tdl_agent_"): 48 bits, never a key


class Throttled(DomainError):
    """Too many failed attempts: try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthThrottle:
    def __init__(
        self, *, per_client: int, per_key_prefix: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._limits = {
            "client": RateLimitItemPerMinute(per_client),
            "key": RateLimitItemPerMinute(per_key_prefix),
        }
        self._windows = MovingWindowRateLimiter(MemoryStorage())
        self._clock = clock

    def _subjects(self, client: str | None, presented: str | None) -> list[tuple[str, str]]:
        subjects = [("client", client)] if client else []
        if presented:
            subjects.append(("key", key_prefix(presented)))
        return [(kind, value) for kind, value in subjects if value]

    def check(self, client: str | None, presented: str | None = None) -> None:
        """Refuse at once while this client, or this key prefix, has failed too often."""
        for kind, value in self._subjects(client, presented):
            limit = self._limits[kind]
            if not self._windows.test(limit, kind, value):
                reset = self._windows.get_window_stats(limit, kind, value).reset_time
                wait = max(1, math.ceil(reset - self._clock()))
                raise Throttled(f"too many failed attempts; try again in {wait}s", retry_after=wait)

    def failed(self, client: str | None, presented: str | None, what: str) -> None:
        """Count a failed attempt, and log it: who, and what kind of key, never the key itself."""
        logger.warning("failed %s from %s (%s)", what, client or "an unknown client", _kind_of(presented))
        for kind, value in self._subjects(client, presented):
            self._windows.hit(self._limits[kind], kind, value)


def key_prefix(presented: str) -> str:
    """What guesses at one key have in common: its kind and first random characters."""
    kind = next(
        (p for p in (api_keys.AGENT_KEY_PREFIX, api_keys.OWNER_KEY_PREFIX) if presented.startswith(p)), ""
    )
    return presented[: len(kind) + KEY_PREFIX_RANDOM]


def _kind_of(presented: str | None) -> str:
    if not presented:
        return "no key"
    if presented.startswith(api_keys.AGENT_KEY_PREFIX):
        return "an agent key"
    return "an owner key" if presented.startswith(api_keys.OWNER_KEY_PREFIX) else "not a Tendril key"
