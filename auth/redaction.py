"""The set of secret values that must never reach a log line.

Connectors register every secret they decrypt; the log filter installed by the server replaces
any registered value with ****. Values stay only while a process has seen them recently.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

MASK = "****"
_MIN_SECRET_LENGTH = 6  # shorter strings would mask ordinary words
_MAX_REMEMBERED = 10_000

# Patterns that are secrets whoever wrote them: bearer headers, Telegram bot paths, our keys.
_PATTERNS = [
    re.compile(r"(?i)(authorization:\s*(?:bearer|bot|basic)\s+)[^\s'\",]+"),
    re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+"),
    re.compile(r"\b(tdl_)[A-Za-z0-9_-]{8,}"),
    re.compile(r"\b(xox[abprse]-)[A-Za-z0-9-]+"),
]


class SecretRegistry:
    def __init__(self) -> None:
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        if len(value) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._secrets:
                self._secrets.move_to_end(value)
                return
            self._secrets[value] = None
            if len(self._secrets) > _MAX_REMEMBERED:
                self._secrets.popitem(last=False)
            self._pattern = None

    def redact(self, text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        pattern = self._compiled()
        return pattern.sub(MASK, text) if pattern else text

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                # Longest first, so a secret containing another is masked whole.
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            return self._pattern


secrets_to_redact = SecretRegistry()
