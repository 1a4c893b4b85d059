"""Connectors: declarative specs plus async actions and webhook receivers, run through one runtime."""

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
from connectors._egress import AllowList, BlockedDestination, GuardedTransport, vetted_addresses
from connectors._pool import ClientPool
from connectors._registry import Catalog, load_catalog
from connectors._runtime import ActionRunner, Backoff, RetryPolicy
from connectors._spec import ConnectorSpec, CredentialField, WebhookSpec
from connectors._webhook import Event, Inbound, Receiver, Refused, Reply

__all__ = [
    "Action",
    "ActionContext",
    "ActionRunner",
    "AllowList",
    "Backoff",
    "BlockedDestination",
    "Catalog",
    "ClientOptions",
    "ClientPool",
    "Connector",
    "ConnectorSpec",
    "CredentialField",
    "Event",
    "GuardedTransport",
    "Hints",
    "HookRef",
    "HookRequest",
    "Inbound",
    "Receiver",
    "Refused",
    "RegisteredHook",
    "Reply",
    "RetryPolicy",
    "WebhookSpec",
    "load_catalog",
    "vetted_addresses",
]
