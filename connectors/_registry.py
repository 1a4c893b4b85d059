"""The one registry: every `connectors/<slug>/` folder with a `connector.yaml`, its actions
(`actions.py`) and, where the provider pushes events, its webhook receiver (`webhook.py`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from connectors._connector import Action, Connector
from connectors._spec import ConnectorSpec

_PACKAGE_DIR = Path(__file__).parent


class Catalog(Mapping[str, Connector]):
    """The connectors owners connect (actions or files), read-only and ordered by slug so tool
    lists are stable; `receivers` adds every provider whose webhooks Tendril verifies, including
    the webhook-only ones (Twilio, WhatsApp)."""

    def __init__(self, connectors: list[Connector]) -> None:
        by_slug: dict[str, Connector] = {}
        for connector in sorted(connectors, key=lambda c: c.slug):
            if connector.slug in by_slug:
                raise ValueError(f"connector {connector.slug!r} registered twice")
            by_slug[connector.slug] = connector
        self._everything = MappingProxyType(by_slug)
        self._by_slug = MappingProxyType({s: c for s, c in by_slug.items() if not c.spec.webhook_only})
        self.receivers: Mapping[str, Connector] = MappingProxyType(
            {s: c for s, c in by_slug.items() if c.webhook is not None}
        )

    def __getitem__(self, slug: str) -> Connector:
        return self._by_slug[slug]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_slug)

    def __len__(self) -> int:
        return len(self._by_slug)

    def knows(self, slug: str) -> bool:
        """A connector or a webhook-only provider: something an agent may be allowed."""
        return slug in self._everything

    def find_tool(self, tool_name: str) -> Action | None:
        for connector in self._by_slug.values():
            for action in connector.actions.values():
                if action.tool_name == tool_name:
                    return action
        return None


def load_catalog() -> Catalog:
    """Import each folder's `actions` module (which declares its Connector) and `webhook` module."""
    found: list[Connector] = []
    for spec_file in sorted(_PACKAGE_DIR.glob("*/connector.yaml")):
        found.append(_load(spec_file))
    return Catalog(found)


def _load(spec_file: Path) -> Connector:
    package = f"connectors.{spec_file.parent.name}"
    has_actions = spec_file.with_name("actions.py").exists()
    if has_actions:
        module = importlib.import_module(f"{package}.actions")
    else:
        # A webhook-only provider declares its Connector in webhook.py.
        if not ConnectorSpec.from_yaml(spec_file).webhook_only:
            raise TypeError(f"{package} has no actions.py; only a webhook_only connector may leave it out")
        module = importlib.import_module(f"{package}.webhook")
    connector = getattr(module, "connector", None)
    if not isinstance(connector, Connector):
        raise TypeError(f"{module.__name__} must define `connector = Connector.load(__file__)`")
    if connector.slug != spec_file.parent.name:
        raise ValueError(f"{spec_file}: slug {connector.slug!r} must match its folder name")
    if connector.spec.webhook is not None:
        importlib.import_module(f"{package}.webhook")
        if connector.webhook is None:
            raise TypeError(f"{package}.webhook must declare its receiver with @connector.receiver")
    return connector
