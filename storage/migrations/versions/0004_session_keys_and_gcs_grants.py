"""Browser sessions remember the key they were opened with; operators grant owners GCS buckets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from storage.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions from before this had no key: they end (a session without a key is not signed in).
    op.execute("DELETE FROM web_sessions")
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("api_key_id", sa.Uuid()))
        batch.create_foreign_key(
            "fk_web_sessions_api_key_id_api_keys", "api_keys", ["api_key_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "gcs_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gcs_grants"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_gcs_grants_owner_id_owners", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("owner_id", "url", name="uq_gcs_grants_owner_id_url"),
    )


def downgrade() -> None:
    op.drop_table("gcs_grants")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_constraint("fk_web_sessions_api_key_id_api_keys", type_="foreignkey")
        batch.drop_column("api_key_id")
