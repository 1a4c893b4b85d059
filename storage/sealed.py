"""Every column holding values sealed with the master key, and the two things key rotation does
with them: read them all, and swap one for its re-sealed copy."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema


@dataclass(frozen=True, slots=True)
class SealedColumn:
    what: str  # as the CLI names them: "webhook endpoint secrets"
    table: sa.Table
    column: str
    # The row id each value is bound to (its associated data) and the kind it was sealed as.
    bound_to: str = "id"
    kind: str = "connection"


SEALED_COLUMNS = (
    SealedColumn("connection credentials", schema.connections, "credentials"),
    SealedColumn("credential objects", schema.credentials, "data", kind="credential"),
    SealedColumn("webhook endpoint secrets", schema.webhook_endpoints, "sealed_secrets"),
    SealedColumn("agent delivery secrets", schema.agents, "sealed_delivery_secret"),
    SealedColumn(
        "outgoing webhook secrets", schema.outgoing_webhooks, "sealed_secret", kind="outgoing_webhook"
    ),
    SealedColumn(
        "outgoing webhook headers", schema.outgoing_webhooks, "sealed_headers", kind="outgoing_headers"
    ),
    # A PKCE verifier is sealed for the connection its handshake completes.
    SealedColumn(
        "OAuth handshakes in progress", schema.oauth_states, "sealed_verifier", bound_to="connection_id"
    ),
)


class SealedValues:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self, where: SealedColumn) -> list[tuple[UUID, str]]:
        """(bound row id, sealed value) of every row that has one, deleted rows included."""
        column = where.table.c[where.column]
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(where.table.c[where.bound_to], column).where(column.is_not(None))
            )
            return [(row[0], row[1]) for row in rows]

    async def replace(self, where: SealedColumn, bound_to: UUID, old: str, new: str) -> bool:
        """Compare-and-swap, so a rotation never overwrites a value written meanwhile."""
        column = where.table.c[where.column]
        async with self.engine.begin() as conn:
            result = await conn.execute(
                where.table.update()
                .where(where.table.c[where.bound_to] == bound_to, column == old)
                .values({where.column: new})
            )
        return result.rowcount >= 1
