"""Every setting Tendril reads, in one place.

This is the only module that reads the environment or `.env`. Everything else receives values
through constructor arguments, so tests build their own `Settings(...)` without touching os.environ.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from ipaddress import ip_address
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TENDRIL_"


class ConnectorSettings(BaseModel):
    """Per-connector overrides: `TENDRIL_<SLUG>_API_BASE`, `_CLIENT_ID`, ... (SLUG upper-cased)."""

    api_base: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    # Comma-separated host[:port] entries this connector may reach even though they are internal.
    allowed_hosts: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    env: Literal["development", "production", "test"] = Field(
        "development", description="`production` refuses to start without TENDRIL_MASTER_KEY."
    )
    data_dir: Path = Field(Path(".tendril"), description="Where the embedded database and key live.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Default: SQLite at <data_dir>/tendril.db. PostgreSQL: "
        "postgresql+asyncpg://user:pw@host/db or postgresql+psycopg://...",
    )
    master_key: SecretStr | None = Field(
        None,
        description="Comma-separated base64 AES-256 keys. The first encrypts, all decrypt.",
    )
    public_url: str = Field(
        "",
        description="Base of every URL handed out. Default: http://<host>:<port> of the listener "
        "(127.0.0.1 when it listens on every interface).",
    )
    host: str = Field("127.0.0.1", description="Interface `tendril serve` binds.")
    port: int = Field(8080, ge=0, le=65535, description="Port `tendril serve` binds.")
    log_level: str = Field("INFO", description="Root log level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per log line (timestamp, level, logger, message, fields).",
    )
    access_log: bool = Field(
        True, description="One log line per HTTP request (method, route, status, duration, key or agent id)."
    )
    access_log_probes: bool = Field(
        False, description="Also log requests to /healthz, /readyz and /metrics (left out by default)."
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus presents to GET /metrics. Unset: /metrics answers 404.",
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest JSON request body accepted.")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send a request's headers before it is dropped."
    )
    body_timeout_seconds: float = Field(
        20.0, gt=0, description="Time a client has to send a request's body, extended as its bytes arrive."
    )
    body_min_bytes_per_second: int = Field(
        65536, gt=0, description="Each this many body bytes received extend the body deadline by a second."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxies whose X-Forwarded-For is believed (comma-separated, or *)."
    )
    auth_failures_per_client: int = Field(
        30, ge=1, description="Failed key checks a client may make in a minute before it gets 429s."
    )
    auth_failures_per_key_prefix: int = Field(
        10, ge=1, description="Failed checks of keys sharing their first 12 characters, per minute."
    )
    api_rate_limit: int = Field(
        100,
        ge=1,
        description="Requests per minute an API key may make, unless it has a limit of its own; also "
        "what one address may make without a valid key.",
    )
    agent_tool_call_rate_limit: int = Field(
        120, ge=1, description="MCP tool calls per minute an agent may make, unless it has its own limit."
    )
    rate_limit_sync_seconds: float = Field(
        1.0,
        gt=0,
        description="On PostgreSQL, how often each replica adds its request counts to the shared ones "
        "(sooner as a limit nears).",
    )
    action_timeout_seconds: float = Field(30.0, gt=0, description="Deadline for one provider action.")
    max_retry_wait_seconds: float = Field(
        10.0, ge=0, description="Longest rate-limit wait Tendril sits out itself before telling the caller."
    )
    agent_key: SecretStr | None = Field(None, description="Agent key used by `tendril mcp` (stdio).")
    files_url: str | None = Field(
        None,
        description="fsspec URL where uploaded files live. Default: <data_dir>/files. Use gs://bucket/prefix "
        "or s3://bucket/prefix when several replicas share files; empty turns uploads off (503).",
    )
    max_upload_bytes: int = Field(2 << 30, gt=0, description="Largest file upload accepted (413 past it).")
    gcs_token: str | None = Field(
        None,
        description="How gcs connections authenticate to Google: google_default (the server's "
        "application default credentials), a service-account JSON file path, or anon (emulators). "
        "Unset: GCS connections are refused with 503.",
    )
    gcs_endpoint_url: str | None = Field(None, description="GCS JSON API base (an emulator in tests).")
    gcs_grants: str | None = Field(
        None,
        description="Buckets owners may mount with the server's GCS credential, as comma-separated "
        "owner=gs://bucket[/folder] entries (also granted with `tendril gcs grant`). Default: none.",
    )
    gcs_project: str | None = Field(None, description="Google Cloud project for GCS requests.")
    webhook_base_url: str | None = Field(
        None, description="Public https base of the webhook receivers. Default: TENDRIL_PUBLIC_URL."
    )
    webhook_allow_insecure_urls: bool = Field(
        False, description="Development only: let setup hand out http:// or localhost receiver URLs."
    )
    webhook_max_body_bytes: int = Field(1 << 20, gt=0, description="Largest webhook body accepted (413).")
    job_max_attempts: int = Field(5, ge=1, le=100, description="Attempts per job before it is dead.")
    job_retry_base_seconds: float = Field(
        2.0,
        gt=0,
        description="First retry delay of a failed job; doubles per attempt (jittered, at most 10 min).",
    )
    job_lease_seconds: float = Field(300.0, gt=0, description="How long a claimed job stays leased.")
    push_allowed_hosts: str | None = Field(
        None,
        description="Comma-separated host[:port] entries agent delivery URLs may reach although internal.",
    )
    push_poll_seconds: float = Field(1.0, gt=0, description="How often pushers look for due retries.")
    audit_retention_days: int = Field(
        90, ge=0, description="Days audit events are kept (older ones are deleted hourly); 0 keeps them all."
    )
    workflow_executor_id: str = Field(
        "local",
        description="This process's name in the workflow engine (DBOS), which at start resumes the "
        "unfinished executions of its name: with several replicas on PostgreSQL, give each a distinct "
        "name it keeps across restarts.",
    )
    google_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description="Google's token signing certificates (for Gmail push's Pub/Sub OIDC tokens).",
    )
    connectors: dict[str, ConnectorSettings] = Field(
        default_factory=dict, description="Filled from TENDRIL_<SLUG>_* variables."
    )

    # Whether TENDRIL_PUBLIC_URL was given (else it follows the host and port).
    _public_url_set: bool = PrivateAttr(False)

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("TENDRIL_PUBLIC_URL must be an absolute http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _public_url_follows_the_listener(self) -> Settings:
        self._public_url_set = bool(self.public_url)
        if not self.public_url:
            self.public_url = listener_url(self.host, self.port)
        return self

    @property
    def public_url_set(self) -> bool:
        """True when TENDRIL_PUBLIC_URL was given; False when it is derived from the host and port."""
        return self._public_url_set

    def for_listener(self, host: str, port: int) -> Settings:
        """These settings for a server listening on host:port (`serve --host/--port`, or the port the
        system picked for port 0): a public URL that was not set follows them."""
        update: dict[str, object] = {"host": host, "port": port}
        if not self._public_url_set:
            update["public_url"] = listener_url(host, port)
        return self.model_copy(update=update)

    @cached_property
    def resolved_files_url(self) -> str | None:
        if self.files_url == "":
            return None
        return self.files_url or (self.data_dir.resolve() / "files").as_uri()

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tendril.db'}"

    def connector(self, slug: str) -> ConnectorSettings:
        return self.connectors.get(slug, ConnectorSettings())

    @classmethod
    def from_environment(cls, env_file: str | Path = ".env") -> Settings:
        """Read TENDRIL_* from the process environment and `.env` (the environment wins)."""
        raw: dict[str, str] = {
            key: value for key, value in dotenv_values(env_file).items() if value is not None
        }
        raw.update(os.environ)
        settings = cls(_env_file=env_file)  # type: ignore[call-arg]
        settings.connectors = _connector_settings(raw)
        return settings


def listener_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a server listening on host:port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"


_CONNECTOR_FIELD = re.compile(
    rf"^{ENV_PREFIX}(?P<slug>[A-Z0-9_]+?)_(?P<field>API_BASE|CLIENT_ID|CLIENT_SECRET|AUTHORIZE_URL|TOKEN_URL|REVOKE_URL|ALLOWED_HOSTS)$"
)


def _connector_settings(raw: dict[str, str]) -> dict[str, ConnectorSettings]:
    found: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        match = _CONNECTOR_FIELD.match(key)
        if match and value:
            found.setdefault(match["slug"].lower(), {})[match["field"].lower()] = value
    return {slug: ConnectorSettings.model_validate(fields) for slug, fields in found.items()}
