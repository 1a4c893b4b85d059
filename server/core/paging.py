"""Cursor pages over time-ordered ids (UUIDv7): a page's cursor is its last row's id, opaque to
clients (URL-safe base64, no padding), and the next page is what comes after it."""

from __future__ import annotations

import base64
import binascii
from uuid import UUID

from server.core.errors import Invalid

MALFORMED = "malformed cursor: pass back the nextCursor of a page"


def cursor_of(row_id: UUID) -> str:
    return base64.urlsafe_b64encode(row_id.bytes).decode().rstrip("=")


def id_after(cursor: str, malformed: str = MALFORMED) -> UUID:
    """The id a cursor names; Invalid (field `cursor`) for anything cursor_of did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 16:
            raise ValueError("not an id")
        return UUID(bytes=raw)
    except (ValueError, binascii.Error):
        raise Invalid(malformed, field="cursor") from None
