"""Keeping secrets out of what Tendril shows and logs.

A secret can travel in other forms than the one it was stored in: percent-encoded in a URL,
JSON-escaped in a body (`\\/` for `/`), base64 in a Basic header. `secret_forms` names them all, and
both guards use it:
- `Scrubber` masks one call's secrets in what a provider sent back (results, error texts), on the
  decoded values, so an encoding cannot hide a secret;
- `secrets_to_redact`, the set every log line is masked against: connectors register each secret
  they decrypt, with all its forms. Values stay only while a process has seen them recently.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import ahocorasick

MASK = "****"
_MIN_SECRET_LENGTH = 6  # shorter strings would mask ordinary words
_MAX_REMEMBERED = 10_000

# Patterns that are secrets whoever wrote them: bearer headers, Telegram bot paths, our keys. One
# alternation, so a log line is scanned once (every line is: the access log writes one per request).
# Each keeps the group it matched in (what precedes the secret) and loses the rest.
_PATTERN = re.compile(
    r"(?i:(authorization:\s*(?:bearer|bot|basic)\s+))[^\s'\",]+"
    r"|(/bot)\d+:[A-Za-z0-9_-]+"
    r"|\b(tdl_)[A-Za-z0-9_-]{8,}"
    r"|\b(xox[abprse]-)[A-Za-z0-9-]+"
)


def _keep_prefix(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None) + MASK


def _may_match(text: str) -> bool:
    """What every match of _PATTERN contains, checked in a fraction of the regex's time (the
    letters of "author" have no case variants beyond ASCII, so lower() finds what (?i) would)."""
    return "tdl_" in text or "xox" in text or "/bot" in text or "author" in text.lower()


def secret_forms(secret: str) -> set[str]:
    """The secret as it may appear: raw, percent-encoded, JSON-escaped (with or without `\\/`)."""
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def basic_pair(user: str, password: str) -> set[str]:
    """What HTTP Basic sends for this user and password (standard and URL-safe base64)."""
    raw = f"{user}:{password}".encode()
    return {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first, so a secret containing another is masked whole.
    ordered = sorted(set(values), key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None


class Scrubber:
    """Masks a call's secrets, in every form, in text and in decoded values (dicts, lists, strings)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= _MIN_SECRET_LENGTH:
                forms |= secret_forms(secret)
        self.forms = frozenset(forms)
        self._pattern = _pattern(forms)

    @classmethod
    def for_credentials(cls, credentials: Mapping[str, str], secret_keys: Iterable[str]) -> Scrubber:
        values = [credentials[key] for key in secret_keys if credentials.get(key)]
        user = credentials.get("username") or credentials.get("user")
        if user and credentials.get("password"):
            values += basic_pair(user, credentials["password"])
        return cls(values)

    def found_in(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class SecretRegistry:
    """The secrets (in all their forms) this process opened recently, most recent last."""

    def __init__(self) -> None:
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._automaton: ahocorasick.Automaton | None = None

    def register(self, value: str) -> None:
        if len(value) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._secrets:
                self._secrets.move_to_end(value)
                return
            for form in secret_forms(value):
                self._secrets[form] = None
            while len(self._secrets) > _MAX_REMEMBERED:
                self._secrets.popitem(last=False)
            self._automaton = None

    def redact(self, text: str) -> str:
        if len(text) < _MIN_SECRET_LENGTH:
            return text  # too short to hold a secret or any pattern's match
        if _may_match(text):
            text = _PATTERN.sub(_keep_prefix, text)
        automaton = self._compiled()
        if automaton is None:
            return text
        # Leftmost-longest, non-overlapping: a secret containing another is masked whole.
        pieces: list[str] = []
        kept_from = 0
        for end, length in automaton.iter_long(text):
            start = end + 1 - length
            pieces += (text[kept_from:start], MASK)
            kept_from = end + 1
        if not pieces:
            return text
        pieces.append(text[kept_from:])
        return "".join(pieces)

    def _compiled(self) -> ahocorasick.Automaton | None:
        with self._lock:
            if self._automaton is None and self._secrets:
                automaton = ahocorasick.Automaton()
                for form in self._secrets:
                    automaton.add_word(form, len(form))
                automaton.make_automaton()
                self._automaton = automaton
            return self._automaton


secrets_to_redact = SecretRegistry()
