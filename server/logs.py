"""Logging setup: one redaction filter on every handler, quiet HTTP client loggers."""

from __future__ import annotations

import logging
import sys
import uuid

from auth.redaction import secrets_to_redact


def log_unexpected(exc: BaseException, where: str) -> str:
    """Log a failure nobody anticipated with its traceback; the reference is all the caller sees."""
    reference = uuid.uuid4().hex[:12]
    logging.getLogger("tendril.errors").error(
        "unexpected error in %s (ref=%s)", where, reference, exc_info=exc
    )
    return reference


class RedactingFilter(logging.Filter):
    """Masks registered secrets, bearer headers and token-bearing URLs in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = secrets_to_redact.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets_to_redact.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = secrets_to_redact.redact(record.stack_info)
        record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr (stdout carries the MCP protocol under `tendril mcp`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
