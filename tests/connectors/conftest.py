"""Fixtures the connector tests share."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import ActionRunner
from tests.conftest import swappable_server
from tests.support.asgi import Swappable

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[Swappable, str]]:
    """One loopback socket per module; each test installs a fresh fake behind it."""
    yield from swappable_server()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytest hands this hook every collected test, not only this directory's.
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and item.path.is_relative_to(HERE)
            and inspect.iscoroutinefunction(item.obj)
        ):
            item.fixturenames.append("_runners_closed")


@pytest.fixture
async def _runners_closed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The tests make ActionRunners in one line (`runner(url).run(...)`); each keeps its provider
    clients open for reuse until closed. Closed here, on the test's own loop: left to the garbage
    collector, their sockets warned in whichever test ran next."""
    made: list[ActionRunner] = []
    init = ActionRunner.__init__

    def recording_init(self: ActionRunner, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ActionRunner, "__init__", recording_init)
    yield
    for runner in made:
        await runner.aclose()
