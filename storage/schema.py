"""The relational schema, shared by SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from uuid_utils.compat import uuid7

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both engines (SQLite drops the zone; we put it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobStatus:
    """The values of jobs.status."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an attempt failed; it runs again after `run_after`
    DEAD = "dead"  # no attempts left: the dead-letter list, retried only by hand

    ALL = (QUEUED, RUNNING, SUCCEEDED, FAILED, DEAD)


def time_ordered_id() -> UUID:
    """A UUIDv7, for rows written by the thousand (deliveries, jobs): consecutive ids sort together,
    so a batch of inserts appends to the primary-key index instead of touching a random page each,
    which made SQLite's commits of random UUIDv4 ids several times slower."""
    return uuid7()


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(), primary_key=True)


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


owners = sa.Table(
    "owners",
    metadata,
    _id(),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    _created(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    # Only a digest of the key is kept; the key itself is shown once, at creation.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("permissions", sa.JSON(), nullable=False),
    _created(),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
    # Requests per minute this key may make; NULL: the server's default (TENDRIL_API_RATE_LIMIT).
    sa.Column("rate_limit", sa.Integer()),
    sa.Index(None, "owner_id"),
)

agents = sa.Table(
    "agents",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("allowed_connectors", sa.JSON(), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    # Push delivery of the agent's jobs: where to POST them, and the HMAC secret (sealed).
    sa.Column("delivery_url", sa.String(2000)),
    sa.Column("sealed_delivery_secret", sa.Text()),
    # MCP tool calls per minute; NULL: the server's default (TENDRIL_AGENT_TOOL_CALL_RATE_LIMIT).
    sa.Column("tool_rate_limit", sa.Integer()),
    sa.Index(None, "owner_id"),
)

# A credential as an object of its own: sealed once here, and a copy sealed into each connection it
# backs (connections read only their own copy; rotating the credential re-seals every copy).
credentials = sa.Table(
    "credentials",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.String(1000), nullable=False, server_default=""),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    # AES-256-GCM ciphertext sealed by auth.crypto with the credential's id; never plaintext.
    sa.Column("data", sa.Text(), nullable=False),
    # The names of the fields inside `data` (shown to the owner; the values never are).
    sa.Column("fields", sa.JSON(), nullable=False),
    sa.Column("metadata", sa.JSON(), nullable=False),
    # Non-secret facts the provider told when the data was verified (workspace, bot name, ...).
    sa.Column("account", sa.JSON(), nullable=False),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "owner_id"),
)

connections = sa.Table(
    "connections",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("connector_slug", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("config", sa.JSON(), nullable=False),
    # AES-256-GCM ciphertext sealed by auth.crypto (key id inside); never plaintext.
    sa.Column("credentials", sa.Text()),
    # Non-secret facts learned when the credential was verified (workspace, bot name, ...).
    sa.Column("account", sa.JSON(), nullable=False),
    sa.Column("last_error", sa.Text()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    # OAuth facts that are not secret: what was granted and until when the access token lives.
    sa.Column("auth_method", sa.String(16), nullable=False, server_default="api_key"),
    sa.Column("scopes", sa.JSON()),
    sa.Column("token_expires_at", UTCDateTime()),
    # Cross-process refresh lock: whoever sets it (compare-and-set) refreshes; it expires by itself.
    sa.Column("refresh_lock_until", UTCDateTime()),
    # The credential object whose copy this connection holds, if it was made from one.
    sa.Column("credential_id", sa.Uuid(), sa.ForeignKey("credentials.id", ondelete="SET NULL")),
    sa.Index(None, "owner_id", "connector_slug"),
    sa.Index(None, "credential_id"),
)

# Request counts per rate-limit bucket (an API key, an agent's tool calls), shared by the replicas
# on PostgreSQL: each adds its hits here now and then and reads back everyone's. A window starts
# with its first request and ends `window_end` (Unix seconds).
rate_windows = sa.Table(
    "rate_windows",
    metadata,
    sa.Column("bucket", sa.String(200), primary_key=True),
    sa.Column("hits", sa.Integer(), nullable=False),
    sa.Column("window_end", sa.Float(), nullable=False),
)

oauth_states = sa.Table(
    "oauth_states",
    metadata,
    _id(),
    # Only a digest of `state` is kept: the value itself travels through the provider.
    sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "connection_id", sa.Uuid(), sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=False
    ),
    # The PKCE verifier, sealed like a credential (it can redeem the code).
    sa.Column("sealed_verifier", sa.Text()),
    sa.Column("redirect_uri", sa.String(2000), nullable=False),
    _created(),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime()),
    sa.Index(None, "connection_id"),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    _created(),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    # The key the session was opened with: its permissions apply, and revoking it ends the session.
    sa.Column("api_key_id", sa.Uuid(), sa.ForeignKey("api_keys.id", ondelete="CASCADE")),
)

# Buckets (or folders of them) the operator lets an owner mount as gcs connections.
gcs_grants = sa.Table(
    "gcs_grants",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("url", sa.String(1000), nullable=False),
    _created(),
    sa.UniqueConstraint("owner_id", "url"),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("connections.id", ondelete="CASCADE")),
    sa.Column("provider", sa.String(32), nullable=False),
    # The provider's signing secrets as one sealed JSON object (auth.crypto), never plaintext.
    sa.Column("sealed_secrets", sa.Text(), nullable=False),
    # Agent ids the events go to; NULL: the owner's agents that allow the provider.
    sa.Column("agent_ids", sa.JSON()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("delivery_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("duplicate_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("rejected_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_delivery_at", UTCDateTime()),
    sa.Column("last_error", sa.Text()),
    sa.Column("last_error_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Index(None, "owner_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    _id(),
    sa.Column(
        "endpoint_id", sa.Uuid(), sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    ),
    # The provider's own id for the event: the dedupe key (at-least-once delivery everywhere).
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("endpoint_id", "event_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("agent_id", sa.Uuid(), sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "delivery_id", sa.Uuid(), sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    # queued -> running -> succeeded | failed (retried later) -> dead (no attempts left)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("run_after", UTCDateTime(), nullable=False),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("last_error", sa.Text()),
    sa.Column("result", sa.JSON()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.UniqueConstraint("delivery_id", "agent_id"),
    sa.Index(None, "status", "run_after"),
    sa.Index(None, "agent_id", "status"),
)

# The audit trail (server/core/audit.py): who did what, on which connection, and how it ended; never
# arguments, results or secrets. The id is a UUIDv7 made from `at` (to the millisecond), so ids sort
# by time: each index ends in `id`, which orders a page newest first and is the paging cursor.
audit_events = sa.Table(
    "audit_events",
    metadata,
    _id(),
    # NULL only for a failed sign-in with a key nobody holds (an operator's concern, no owner's).
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE")),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    # agent, key (an API key), session (a browser session; actor_id is the key it was opened
    # with) or system (the CLI, background work).
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.Uuid()),
    # The agent acting, or the one acted on (agent.* events); no foreign keys: the trail outlives
    # the agents and connections it names.
    sa.Column("agent_id", sa.Uuid()),
    sa.Column("connection_id", sa.Uuid()),
    sa.Column("connector", sa.String(64)),
    sa.Column("action", sa.String(128)),
    sa.Column("outcome", sa.String(64), nullable=False),  # ok, or an error code
    sa.Column("latency_ms", sa.Float()),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.Index(None, "owner_id", "id"),
    sa.Index(None, "owner_id", "agent_id", "id"),
    sa.Index(None, "owner_id", "connection_id", "id"),
    sa.Index(None, "owner_id", "kind", "id"),
)


# -- workflows (server/core/workflows/) ----------------------------------------------------------------
# A workflow is the owner's definition; its executions run on DBOS, which keeps their state (steps,
# outputs, errors) in its own system tables. Tendril's rows say whose an execution is, what started
# it, and a copy of its status for listing and filtering.
workflows = sa.Table(
    "workflows",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text()),
    # Visible to every agent of the owner (as long as its steps use connectors the agent allows).
    sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("definition", sa.JSON(), nullable=False),  # {"steps": [{name, type, config}, ...]}
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Index(None, "owner_id"),
)

workflow_executions = sa.Table(
    "workflow_executions",
    metadata,
    _id(),  # also the DBOS workflow id (its text form); UUIDv7, so pages are key ranges
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workflow_id", sa.Uuid(), sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    # api, agent, event or schedule; the agent that started it, the trigger that did.
    sa.Column("started_by", sa.String(16), nullable=False),
    sa.Column("agent_id", sa.Uuid()),
    sa.Column("trigger_id", sa.Uuid()),
    # The Idempotency-Key of the execute request (or the event or schedule tick that started it):
    # a repeated one finds this row instead of starting another.
    sa.Column("idempotency_key", sa.String(255)),
    # pending, running, completed, failed or cancelled: copied from DBOS as the execution moves.
    sa.Column("status", sa.String(16), nullable=False),
    _created(),
    sa.Column("finished_at", UTCDateTime()),
    sa.UniqueConstraint("owner_id", "workflow_id", "idempotency_key"),
    sa.Index(None, "owner_id", "id"),
    sa.Index(None, "owner_id", "workflow_id", "id"),
    sa.Index(None, "owner_id", "status", "id"),
)

# What starts a workflow besides a request: a provider event (a webhook endpoint's normalised event
# key, e.g. github.issues.opened) or a cron schedule (DBOS's scheduler fires it once per tick).
workflow_triggers = sa.Table(
    "workflow_triggers",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workflow_id", sa.Uuid(), sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # event or schedule
    sa.Column("event_key", sa.String(200)),
    # Only events arriving at this webhook endpoint; NULL: any of the owner's endpoints.
    sa.Column("endpoint_id", sa.Uuid(), sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE")),
    sa.Column("cron", sa.String(100)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("input", sa.JSON()),  # a schedule's input for each run
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "owner_id"),
    sa.Index(None, "kind", "event_key"),
)

# An event trigger's firing: written in the transaction that records the delivery causing it, and
# deleted once its execution has started. A process that dies in between leaves the row for the
# next claim (its own restart or another replica's sweep), so an acknowledged event that matched
# a trigger always starts its execution; the idempotency key makes starting it twice start one.
workflow_trigger_firings = sa.Table(
    "workflow_trigger_firings",
    metadata,
    _id(),  # UUIDv7: claimed oldest first
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "trigger_id", sa.Uuid(), sa.ForeignKey("workflow_triggers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("workflow_id", sa.Uuid(), nullable=False),
    # The execution's idempotency key: the delivery's dedupe identity (endpoint and provider event id).
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("input", sa.JSON(), nullable=False),  # the event's payload, as its jobs get it
    # Set while a process starts the execution; a claim that runs out is taken again.
    sa.Column("claimed_until", UTCDateTime()),
    _created(),
)

# Outgoing webhooks: the owner's URLs told about events (workflow.completed, workflow.failed, ...),
# signed with a secret Tendril generates; each event sent to each webhook is one delivery row.
outgoing_webhooks = sa.Table(
    "outgoing_webhooks",
    metadata,
    _id(),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("events", sa.JSON(), nullable=False),
    # The signing secret, and the custom headers (which may carry the receiver's own credentials),
    # each sealed with the master key and bound to this row.
    sa.Column("sealed_secret", sa.Text(), nullable=False),
    sa.Column("sealed_headers", sa.Text()),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("backoff_ms", sa.Integer(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    sa.Index(None, "owner_id"),
)

outgoing_deliveries = sa.Table(
    "outgoing_deliveries",
    metadata,
    _id(),  # UUIDv7; also the X-Webhook-Delivery header
    sa.Column(
        "webhook_id", sa.Uuid(), sa.ForeignKey("outgoing_webhooks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),  # the exact bytes signed and sent (UTF-8 JSON)
    # Makes announcing an event idempotent (event, subject, webhook); NULL for a redelivery.
    sa.Column("dedupe_key", sa.String(255), unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, failed (retrying), dead
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("last_status_code", sa.Integer()),
    sa.Column("last_error", sa.Text()),
    _created(),
    sa.Column("delivered_at", UTCDateTime()),
    sa.Index(None, "webhook_id", "id"),
    sa.Index(None, "status", "next_attempt_at"),
)
