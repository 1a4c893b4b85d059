"""Rate limits per API key and per agent, counted in shared windows on PostgreSQL; credentials as
objects of their own, which connections may be made from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from storage.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limit", sa.Integer()))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("tool_rate_limit", sa.Integer()))
    op.create_table(
        "credentials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("account", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_credentials_owner_id_owners", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_credentials_owner_id", "credentials", ["owner_id"])
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("credential_id", sa.Uuid()))
        batch.create_foreign_key(
            "fk_connections_credential_id_credentials",
            "credentials",
            ["credential_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_connections_credential_id", ["credential_id"])
    op.create_table(
        "rate_windows",
        sa.Column("bucket", sa.String(200), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_rate_windows"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
    with op.batch_alter_table("connections") as batch:
        batch.drop_index("ix_connections_credential_id")
        batch.drop_constraint("fk_connections_credential_id_credentials", type_="foreignkey")
        batch.drop_column("credential_id")
    op.drop_index("ix_credentials_owner_id", "credentials")
    op.drop_table("credentials")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("tool_rate_limit")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_limit")
