"""Logging setup: one redaction filter on every handler, text or JSON lines, quiet HTTP client
loggers; and what the access log records of a request while it is served."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from auth.redaction import secrets_to_redact

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What every LogRecord carries; anything else on a record came in through `extra=`.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def log_unexpected(exc: BaseException, where: str) -> str:
    """Log a failure nobody anticipated with its traceback; the reference is all the caller sees."""
    reference = uuid.uuid4().hex[:12]
    logging.getLogger("tendril.errors").error(
        "unexpected error in %s (ref=%s)", where, reference, exc_info=exc
    )
    return reference


# Set (to True) on a record whose message and fields are made only of what cannot hold a secret
# (the access log's method, route template, status, duration, address and ids): it is not scanned.
NOTHING_TO_REDACT = "_nothing_to_redact"


class RedactingFilter(logging.Filter):
    """Masks registered secrets, bearer headers and token-bearing URLs in every record: its message,
    traceback, stack, and the string fields it was given with `extra=` (which JSON lines show)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get(NOTHING_TO_REDACT) is True:
            return True
        message = record.getMessage()
        redacted = secrets_to_redact.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets_to_redact.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = secrets_to_redact.redact(record.stack_info)
        record.msg, record.args = redacted, None
        fields = record.__dict__
        given = [(k, v) for k in fields.keys() - _RECORD_FIELDS if type(v := fields[k]) is str]
        if given:
            # One scan of them all; field by field only when something in them is masked.
            joined = "\x00".join(value for _, value in given)
            if secrets_to_redact.redact(joined) != joined:
                for name, value in given:
                    record.__dict__[name] = secrets_to_redact.redact(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, then the record's own fields
    (an access line's method, route, status, ...), and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:  # no RedactingFilter in front: never the case here
            record.exc_text = secrets_to_redact.redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Logs go to stderr (stdout carries the MCP protocol under `tendril mcp`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    install_redaction(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_noisy_loggers()


def install_redaction(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


# Libraries that log what passes through them: full URLs (Telegram's carry the bot token) and, at
# DEBUG, whole messages (sse_starlette logs every MCP SSE chunk: tool results, job payloads). They
# stay at WARNING whatever TENDRIL_LOG_LEVEL says.
CONTENT_LOGGERS = ("httpx", "httpcore", "httpx2", "mcp", "sse_starlette", "slack_sdk", "aiosqlite", "asyncio")


def quiet_noisy_loggers() -> None:
    for name in CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# -- the access log's notes on a request ------------------------------------------------------------
ACCESS_SCOPE_KEY = "tendril.access"


@dataclass(slots=True)
class AccessNote:
    """Put in each HTTP request's ASGI scope by the access log (server/web/access.py), filled in by
    whoever learns something about the request on its way: who authenticated (the REST API, the
    pages' session, the MCP gate) and, for a request answered before routing, its route template."""

    route: str | None = None
    key_id: UUID | None = None
    agent_id: UUID | None = None


def access_note(scope: MutableMapping[str, Any]) -> AccessNote | None:
    note = scope.get(ACCESS_SCOPE_KEY)
    return note if isinstance(note, AccessNote) else None


def note_key(scope: MutableMapping[str, Any], key_id: UUID) -> None:
    """The request was made with this owner API key (or a browser session opened with it)."""
    if (note := access_note(scope)) is not None:
        note.key_id = key_id


def note_agent(scope: MutableMapping[str, Any], agent_id: UUID) -> None:
    """The request was made with this agent's key."""
    if (note := access_note(scope)) is not None:
        note.agent_id = agent_id
