"""The audit trail: one row per audited event (tool calls, action runs, credential submissions and
verifications, OAuth completions, connection status changes, key and agent changes, sign-ins).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from storage.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_audit_events_owner_id_id": ["owner_id", "id"],
    "ix_audit_events_owner_id_agent_id_id": ["owner_id", "agent_id", "id"],
    "ix_audit_events_owner_id_connection_id_id": ["owner_id", "connection_id", "id"],
    "ix_audit_events_owner_id_kind_id": ["owner_id", "kind", "id"],
}


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid()),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Uuid()),
        sa.Column("agent_id", sa.Uuid()),
        sa.Column("connection_id", sa.Uuid()),
        sa.Column("connector", sa.String(64)),
        sa.Column("action", sa.String(128)),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_audit_events_owner_id_owners", ondelete="CASCADE"
        ),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_events", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, "audit_events")
    op.drop_table("audit_events")
