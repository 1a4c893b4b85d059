"""The catalog: every connector package under `connectors/` that has a `connector.yaml`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from connectors._connector import Action, Connector

_PACKAGE_DIR = Path(__file__).parent


class Catalog(Mapping[str, Connector]):
    """Read-only, ordered by slug, so tool lists are stable."""

    def __init__(self, connectors: list[Connector]) -> None:
        by_slug: dict[str, Connector] = {}
        for connector in sorted(connectors, key=lambda c: c.slug):
            if connector.slug in by_slug:
                raise ValueError(f"connector {connector.slug!r} registered twice")
            by_slug[connector.slug] = connector
        self._by_slug = MappingProxyType(by_slug)

    def __getitem__(self, slug: str) -> Connector:
        return self._by_slug[slug]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_slug)

    def __len__(self) -> int:
        return len(self._by_slug)

    def find_tool(self, tool_name: str) -> Action | None:
        for connector in self._by_slug.values():
            for action in connector.actions.values():
                if action.tool_name == tool_name:
                    return action
        return None


def load_catalog() -> Catalog:
    """Import each connector package's `actions` module, which declares its Connector."""
    found: list[Connector] = []
    for spec_file in sorted(_PACKAGE_DIR.glob("*/connector.yaml")):
        module = importlib.import_module(f"connectors.{spec_file.parent.name}.actions")
        connector = getattr(module, "connector", None)
        if not isinstance(connector, Connector):
            raise TypeError(f"{module.__name__} must define `connector = Connector.load(__file__)`")
        if connector.slug != spec_file.parent.name:
            raise ValueError(f"{spec_file}: slug {connector.slug!r} must match its folder name")
        found.append(connector)
    return Catalog(found)
