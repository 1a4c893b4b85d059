"""Workflows (definitions, executions run on DBOS, triggers) and outgoing webhooks with their
deliveries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from storage.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _owner(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["owner_id"], ["owners.id"], name=f"fk_{table}_owner_id_owners", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        _owner("workflows"),
    )
    op.create_index("ix_workflows_owner_id", "workflows", ["owner_id"])

    op.create_table(
        "workflow_executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("started_by", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.Uuid()),
        sa.Column("trigger_id", sa.Uuid()),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_executions"),
        _owner("workflow_executions"),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_executions_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "owner_id",
            "workflow_id",
            "idempotency_key",
            name="uq_workflow_executions_owner_id_workflow_id_idempotency_key",
        ),
    )
    for columns in (["owner_id", "id"], ["owner_id", "workflow_id", "id"], ["owner_id", "status", "id"]):
        op.create_index(f"ix_workflow_executions_{'_'.join(columns)}", "workflow_executions", columns)

    op.create_table(
        "workflow_triggers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event_key", sa.String(200)),
        sa.Column("endpoint_id", sa.Uuid()),
        sa.Column("cron", sa.String(100)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("input", sa.JSON()),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_triggers"),
        _owner("workflow_triggers"),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_triggers_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name="fk_workflow_triggers_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_workflow_triggers_owner_id", "workflow_triggers", ["owner_id"])
    op.create_index("ix_workflow_triggers_kind_event_key", "workflow_triggers", ["kind", "event_key"])

    op.create_table(
        "workflow_trigger_firings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("claimed_until", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_trigger_firings"),
        _owner("workflow_trigger_firings"),
        sa.ForeignKeyConstraint(
            ["trigger_id"],
            ["workflow_triggers.id"],
            name="fk_workflow_trigger_firings_trigger_id_workflow_triggers",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "outgoing_webhooks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("sealed_headers", sa.Text()),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff_ms", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_outgoing_webhooks"),
        _owner("outgoing_webhooks"),
    )
    op.create_index("ix_outgoing_webhooks_owner_id", "outgoing_webhooks", ["owner_id"])

    op.create_table(
        "outgoing_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_outgoing_deliveries"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["outgoing_webhooks.id"],
            name="fk_outgoing_deliveries_webhook_id_outgoing_webhooks",
            ondelete="CASCADE",
        ),
        _owner("outgoing_deliveries"),
        sa.UniqueConstraint("dedupe_key", name="uq_outgoing_deliveries_dedupe_key"),
    )
    op.create_index("ix_outgoing_deliveries_webhook_id_id", "outgoing_deliveries", ["webhook_id", "id"])
    op.create_index(
        "ix_outgoing_deliveries_status_next_attempt_at", "outgoing_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    for table in (
        "outgoing_deliveries",
        "outgoing_webhooks",
        "workflow_trigger_firings",
        "workflow_triggers",
        "workflow_executions",
        "workflows",
    ):
        op.drop_table(table)
