"""Connectors: declarative specs plus async actions, run through one runtime."""

from connectors._connector import (
    Action,
    ActionContext,
    ClientOptions,
    Connector,
    Hints,
    HookRef,
    HookRequest,
    RegisteredHook,
)
from connectors._registry import Catalog, load_catalog
from connectors._runtime import ActionRunner, RetryPolicy
from connectors._spec import ConnectorSpec, CredentialField

__all__ = [
    "Action",
    "ActionContext",
    "ActionRunner",
    "Catalog",
    "ClientOptions",
    "Connector",
    "ConnectorSpec",
    "CredentialField",
    "Hints",
    "HookRef",
    "HookRequest",
    "RegisteredHook",
    "RetryPolicy",
    "load_catalog",
]
