"""OAuth: token facts on connections, single-use states, browser sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from storage.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("auth_method", sa.String(16), nullable=False, server_default="api_key"))
        batch.add_column(sa.Column("scopes", sa.JSON()))
        batch.add_column(sa.Column("token_expires_at", UTCDateTime()))
        batch.add_column(sa.Column("refresh_lock_until", UTCDateTime()))
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("sealed_verifier", sa.Text()),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_states"),
        sa.UniqueConstraint("state_hash", name="uq_oauth_states_state_hash"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_oauth_states_owner_id_owners", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name="fk_oauth_states_connection_id_connections",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_oauth_states_connection_id", "oauth_states", ["connection_id"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_web_sessions_owner_id_owners", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_table("oauth_states")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("refresh_lock_until")
        batch.drop_column("token_expires_at")
        batch.drop_column("scopes")
        batch.drop_column("auth_method")
