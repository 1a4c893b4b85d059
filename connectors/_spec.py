"""The declarative half of a connector: `connector.yaml`, validated when it is loaded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AuthType = Literal["oauth", "api_key", "none"]
Availability = Literal["available", "coming_soon", "deprecated"]

_SLUG = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CredentialField(_Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    required: bool = True
    secret: bool = False
    pattern: str | None = None
    description: str | None = None
    placeholder: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class OAuthSpec(_Strict):
    """The provider's OAuth 2.0 authorization-code flow, as data (quirks included)."""

    authorize_url: str
    token_url: str
    revoke_url: str | None = None
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    pkce: bool = True
    # Always sent to the authorize endpoint (Google: access_type=offline, prompt=consent).
    authorize_params: dict[str, str] = Field(default_factory=dict)
    # Added when the user asks to pick another account (`selectAccount=1`).
    account_picker_params: dict[str, str] = Field(default_factory=dict)
    token_body: Literal["form", "json"] = "form"
    # Which token-response field fills which credential key the client factory reads.
    credential_keys: dict[str, str] = Field(default_factory=lambda: {"access_token": "access_token"})


class WebhookSpec(_Strict):
    """The provider pushes events to Tendril; `webhook.py` beside the spec verifies them."""

    # What the owner copies from the provider's console when setting up an endpoint. None: the
    # hook is only ever created through the provider's API (Telegram's setWebhook).
    secrets: tuple[str, ...] = ()
    # Where the provider publishes the keys its deliveries are signed with (kid -> PEM), for
    # receivers that verify tokens rather than a shared secret (Gmail's Pub/Sub OIDC tokens).
    signing_keys_url: str | None = None


class ConnectorSpec(_Strict):
    slug: str
    name: str
    description: str
    auth_type: AuthType
    api_base: str = ""
    availability: Availability = "available"
    availability_reason: str | None = None
    docs_url: str | None = None
    credential_fields: tuple[CredentialField, ...] = ()
    oauth: OAuthSpec | None = None
    # Other systems' ids for our actions (Alloy's `post-search` for `search`), accepted by REST.
    action_aliases: dict[str, str] = Field(default_factory=dict)
    # Connection config keys that fill omitted parameters (`channel` from `defaultChannel`).
    defaults: dict[str, str] = Field(default_factory=dict)
    # A files connector (uploaded file, bucket) has no actions: its connections are made through
    # the files API (`POST /connectors`) and agents read them as MCP resources.
    files: bool = False
    webhook: WebhookSpec | None = None
    # Only a webhook receiver (no actions yet): agents may allow it to get its events as jobs,
    # but owners make no connections of it.
    webhook_only: bool = False

    @field_validator("slug")
    @classmethod
    def _slug_shape(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"slug {value!r} must match {_SLUG.pattern}")
        return value

    @model_validator(mode="after")
    def _fields_fit_auth_type(self) -> ConnectorSpec:
        if self.auth_type == "api_key" and not self.credential_fields:
            raise ValueError("an api_key connector must declare credential_fields")
        if self.auth_type == "oauth" and self.oauth is None:
            raise ValueError("an oauth connector must declare its oauth block")
        if self.webhook_only and self.webhook is None:
            raise ValueError("a webhook_only connector must declare its webhook block")
        keys = [f.key for f in self.credential_fields]
        if len(keys) != len(set(keys)):
            raise ValueError("credential field keys must be unique")
        return self

    @property
    def secret_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.credential_fields if f.secret)

    @classmethod
    def from_yaml(cls, path: Path) -> ConnectorSpec:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls.model_validate(data)
