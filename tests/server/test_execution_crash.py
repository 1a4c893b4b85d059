"""Crash safety of executions (issue 15, point 3), on both engines: executions in flight in a real
`tendril serve`, each held in a step waiting on a slow receiver, when the process is SIGKILLed;
restarted on the same data dir and database, every execution completes, the steps after the
interrupted one reach their receivers exactly once, the steps before it are not repeated, and the
interrupted step, sent again, carries the same Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.settings import Settings
from storage import db, schema
from storage.repositories import utcnow
from tests.conftest import SLACK_TOKEN, Fakes
from tests.fakes.loopback import run_asgi_on_loopback
from tests.server.test_webhook_crash import Server
from tests.support.core import prepared_core

pytestmark = pytest.mark.anyio

EXECUTIONS = 4


@dataclass
class SlowReceiver:
    """Records every request (path, Idempotency-Key); requests to /slow/... wait while `hold` is set."""

    url: str = ""
    seen: list[tuple[str, str | None]] = field(default_factory=list[tuple[str, str | None]])
    hold: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            self.seen.append((request.url.path, request.headers.get("idempotency-key")))
            if request.url.path.startswith("/slow/"):
                for _ in range(600):  # 30 s at most
                    if not self.hold.is_set():
                        break
                    await asyncio.sleep(0.05)
            return JSONResponse(
                {"path": request.url.path, "body": json.loads(await request.body() or b"null")}
            )

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def count(self, prefix: str) -> Counter[str]:
        return Counter(path for path, _ in self.seen if path.startswith(prefix))


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    receiver = SlowReceiver()
    with run_asgi_on_loopback(receiver.app()) as url:
        receiver.url = url
        yield receiver
        receiver.hold.clear()


async def _bootstrap(settings: Settings, receiver: SlowReceiver) -> tuple[str, UUID]:
    """An owner with a Slack connection, an API key and a four-step workflow."""
    async with prepared_core(settings) as core:
        owner = await core.identity.create_owner("crash-owner")
        key = await core.identity.create_api_key(owner.id, name="crash", permissions=["admin"])
        connection, _ = await core.connections.start(owner.id, core.catalog["slack"], label="s")
        await core.connections.submit_credentials(owner.id, connection.id, {"bot_token": SLACK_TOKEN})

    def post(name: str) -> dict[str, Any]:
        url = f"{receiver.url}/{name}/{{{{ input.n }}}}"
        return {
            "name": name,
            "type": "http_request",
            "config": {"method": "POST", "url": url, "body": {"n": "{{ input.n }}"}},
        }

    steps = [
        post("before"),
        post("slow"),
        post("after"),
        {
            "name": "notify",
            "type": "action",
            "config": {
                "connectionId": str(connection.id),
                "action": "post_message",
                "parameters": {"channel": "#general", "text": "done {{ input.n }}"},
            },
        },
    ]
    engine = db.create_engine(settings.resolved_database_url)
    workflow_id = schema.time_ordered_id()
    try:
        async with engine.begin() as conn:
            now = utcnow()
            await conn.execute(
                schema.workflows.insert().values(
                    id=workflow_id,
                    owner_id=owner.id,
                    name="crash",
                    definition={"steps": steps},
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()
    return key.plaintext, workflow_id


async def _until(what: str, check: Any, seconds: float = 30) -> None:
    """Poll `check` until it holds; `what` names it when it never does."""
    with anyio.fail_after(seconds):
        while True:
            if await check():
                return
            await anyio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_executions_in_flight_survive_sigkill_with_each_step_run_once(
    settings: Settings, fakes: Fakes, receiver: SlowReceiver, tmp_path: Path
) -> None:
    api_key, workflow_id = await _bootstrap(settings, receiver)
    server = Server(settings, tmp_path)
    server.env["TENDRIL_HTTP_ALLOWED_HOSTS"] = "127.0.0.1"
    server.env["TENDRIL_ACTION_TIMEOUT_SECONDS"] = "60"
    receiver.hold.set()
    await server.start()
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
            ids = []
            for n in range(EXECUTIONS):
                answer = await http.post(f"/api/v1/workflows/{workflow_id}/execute", json={"input": {"n": n}})
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["executionId"])

            async def all_waiting() -> bool:
                return len(receiver.count("/slow/")) == EXECUTIONS

            await _until("every execution in its slow step", all_waiting)
            server.kill()
            receiver.hold.clear()
            await server.start()

            async def all_done() -> bool:
                views = [(await http.get(f"/api/v1/executions/{i}")).json() for i in ids]
                return all(v["status"] not in ("pending", "running") for v in views)

            await _until("every execution finished after the restart", all_done, seconds=60)
            views = [(await http.get(f"/api/v1/executions/{i}")).json() for i in ids]
    finally:
        server.stop()

    assert [v["status"] for v in views] == ["completed"] * EXECUTIONS, views
    expected = Counter(f"/{name}/{n}" for n in range(EXECUTIONS) for name in ("before", "after"))
    assert receiver.count("/before/") + receiver.count("/after/") == expected
    slow_calls = receiver.count("/slow/")
    assert all(slow_calls[f"/slow/{n}"] == 2 for n in range(EXECUTIONS)), slow_calls
    for n, execution_id in enumerate(ids):
        keys = {key for path, key in receiver.seen if path == f"/slow/{n}"}
        assert keys == {f"{execution_id}:slow"}
    texts = Counter(m["text"] for m in fakes.slack.messages)
    assert texts == Counter(f"done {n}" for n in range(EXECUTIONS))
    assert all([s["status"] for s in v["steps"]] == ["completed"] * 4 for v in views)
