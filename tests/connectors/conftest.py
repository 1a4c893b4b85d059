"""Fixtures the connector tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import swappable_server
from tests.support.asgi import Swappable


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[Swappable, str]]:
    """One loopback socket per module; each test installs a fresh fake behind it."""
    yield from swappable_server()
