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


class ConnectorSpec(_Strict):
    slug: str
    name: str
    description: str
    auth_type: AuthType
    api_base: str
    availability: Availability = "available"
    availability_reason: str | None = None
    docs_url: str | None = None
    credential_fields: tuple[CredentialField, ...] = ()

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
