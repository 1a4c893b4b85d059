"""Workflow triggers on both engines: a signed provider delivery starts one execution however often
the provider retries it (and a firing left by a process that died still starts it), schedules
fire once per tick, CRUD and validation over REST, and one owner's trigger never starts another's
workflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import anyio
import httpx
import pytest
from dbos import DBOS

from server.core.workflows.executions import ExecutionView
from server.settings import Settings
from tests.conftest import Owner, Tendril, running_tendril
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Webhook endpoints need a public https base for their URLs (requests go in-process anyway)."""
    return settings.model_copy(update={"webhook_base_url": "https://hooks.tendril.test"})


CHECK_STEPS = [{"name": "check", "type": "condition", "config": {"if": "input.action == 'opened'"}}]


async def make_workflow(http: httpx.AsyncClient, name: str = "on issues") -> str:
    made = await http.post("/api/v1/workflows", json={"name": name, "definition": {"steps": CHECK_STEPS}})
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def github_endpoint(http: httpx.AsyncClient, signer: GitHubSigner) -> tuple[str, str]:
    """A GitHub webhook endpoint of the key's owner: its id and its receiver path."""
    github = (await http.post("/api/v1/connections", json={"connectorSlug": "github"})).json()
    hooked = await http.post(
        f"/api/v1/connections/{github['connection']['id']}/webhooks",
        json={"provider": "github", "secrets": signer.secrets},
    )
    assert hooked.status_code in (200, 201), hooked.text
    endpoint = hooked.json()["endpoint"]
    return endpoint["id"], urlsplit(endpoint["url"]).path


def owner_http(tendril: Tendril, owner: Owner) -> httpx.AsyncClient:
    http = tendril.raw()
    http.headers["X-Api-Key"] = owner.api_key
    return http


async def executions_of(tendril: Tendril, owner: Owner, workflow_id: str) -> list[ExecutionView]:
    page = await tendril.core.executions.list(UUID(owner.id), workflow_id=UUID(workflow_id), limit=500)
    return page.executions


async def until_executions(
    tendril: Tendril, owner: Owner, workflow_id: str, count: int, *, finished: bool = True
) -> list[ExecutionView]:
    with anyio.fail_after(30):
        while True:
            found = await executions_of(tendril, owner, workflow_id)
            done = [e for e in found if e.status == "completed"] if finished else found
            if len(done) >= count:
                return found
            await anyio.sleep(0.05)


def issue_body(action: str) -> bytes:
    return json.dumps({"action": action, "issue": {"number": 7, "title": "Crash"}}).encode()


@pytest.mark.timeout(90)
async def test_a_delivery_starts_one_execution_however_often_the_provider_sends_it(tendril: Tendril) -> None:
    alice, bob = await tendril.new_owner(), await tendril.new_owner()
    signer = GitHubSigner()
    async with owner_http(tendril, alice) as http, owner_http(tendril, bob) as bobs:
        workflow = await make_workflow(http)
        endpoint, receiver = await github_endpoint(http, signer)
        made = await http.post(
            f"/api/v1/workflows/{workflow}/triggers",
            json={"kind": "event", "eventKey": "github.issues.opened", "endpointId": endpoint},
        )
        assert made.status_code == 201, made.text
        trigger = made.json()
        assert (trigger["kind"], trigger["eventKey"], trigger["active"]) == (
            "event",
            "github.issues.opened",
            True,
        )
        # Bob listens for the same event on his own workflow: Alice's deliveries never start it.
        bobs_workflow = await make_workflow(bobs)
        assert (
            await bobs.post(
                f"/api/v1/workflows/{bobs_workflow}/triggers",
                json={"kind": "event", "eventKey": "github.issues.*"},
            )
        ).status_code == 201

        first = signer.deliver("delivery-1")
        for _ in range(3):  # the provider retries the same delivery
            sent = await http.post(receiver, content=first.body, headers=first.headers)
            assert sent.status_code == 200, sent.text
        second = signer.deliver("delivery-2")
        assert (await http.post(receiver, content=second.body, headers=second.headers)).status_code == 200
        other = signer.sign_body(issue_body("closed"))  # github.issues.closed: not this trigger's
        assert (await http.post(receiver, content=other.body, headers=other.headers)).status_code == 200

        found = await until_executions(tendril, alice, workflow, 2)
        assert await tendril.core.triggers.fire_pending() == 0  # nothing left owed
        found = await executions_of(tendril, alice, workflow)
        assert len(found) == 2
        assert {e.idempotency_key for e in found} == {
            f"event:{endpoint}:delivery-1",
            f"event:{endpoint}:delivery-2",
        }
        assert all(e.started_by == "event" and str(e.trigger_id) == trigger["id"] for e in found)
        shown = (await http.get(f"/api/v1/executions/{found[0].id}")).json()
        assert shown["input"] == {"action": "opened", "issue": {"number": 7, "title": "Crash"}}
        assert shown["triggerId"] == trigger["id"] and shown["startedBy"] == "event"
        assert await executions_of(tendril, bob, bobs_workflow) == []

        # Paused, it starts nothing; resumed, it does again.
        paused = await http.patch(
            f"/api/v1/workflows/{workflow}/triggers/{trigger['id']}", json={"active": False}
        )
        assert paused.status_code == 200 and paused.json()["active"] is False
        third = signer.deliver("delivery-3")
        assert (await http.post(receiver, content=third.body, headers=third.headers)).status_code == 200
        await tendril.core.triggers.fire_pending()
        assert len(await executions_of(tendril, alice, workflow)) == 2


@pytest.mark.timeout(90)
async def test_a_firing_left_by_a_process_that_died_starts_its_execution_at_the_next_start(
    settings: Settings,
) -> None:
    signer = GitHubSigner()
    async with running_tendril(settings) as tendril:
        alice = await tendril.new_owner()
        async with owner_http(tendril, alice) as http:
            workflow = await make_workflow(http)
            _endpoint, receiver = await github_endpoint(http, signer)
            made = await http.post(
                f"/api/v1/workflows/{workflow}/triggers",
                json={"kind": "event", "eventKey": "github.issues.opened"},
            )
            assert made.status_code == 201, made.text
            # The process "dies" after the delivery is written and before its execution starts:
            # nothing starts executions any more here.
            tendril.core.triggers.stop()
            tendril.core._writer._fired.clear()  # pyright: ignore[reportPrivateUsage]
            delivery = signer.deliver("delivery-before-the-crash")
            assert (
                await http.post(receiver, content=delivery.body, headers=delivery.headers)
            ).status_code == 200
            store = tendril.core.triggers._store  # pyright: ignore[reportPrivateUsage]
            assert await store.pending_firings() == 1
            assert await executions_of(tendril, alice, workflow) == []
    async with running_tendril(settings) as restarted:
        [execution] = await until_executions(restarted, alice, workflow, 1)
        assert execution.started_by == "event"
        assert await restarted.core.triggers._store.pending_firings() == 0  # pyright: ignore[reportPrivateUsage]


@pytest.mark.timeout(90)
async def test_a_schedule_fires_once_per_tick_until_paused_and_stops_with_its_workflow(
    tendril: Tendril,
) -> None:
    alice = await tendril.new_owner()
    async with owner_http(tendril, alice) as http:
        workflow = await make_workflow(http)
        made = await http.post(
            f"/api/v1/workflows/{workflow}/triggers",
            json={
                "kind": "schedule",
                "cron": "* * * * * *",
                "timezone": "Europe/Paris",
                "input": {"action": "opened"},
            },
        )
        assert made.status_code == 201, made.text
        trigger = made.json()
        found = await until_executions(tendril, alice, workflow, 2)
        assert all(e.started_by == "schedule" and str(e.trigger_id) == trigger["id"] for e in found)
        keys = [e.idempotency_key or "" for e in found]
        assert len(set(keys)) == len(keys) and all(k.startswith(f"schedule:{trigger['id']}:") for k in keys)
        shown = (await http.get(f"/api/v1/executions/{found[0].id}")).json()
        assert shown["input"] == {"action": "opened"} and shown["status"] == "completed"

        # A tick DBOS ran twice (two replicas, a recovery) still starts one execution.
        tick = datetime(2030, 1, 1, tzinfo=UTC)
        before = len(await executions_of(tendril, alice, workflow))
        for _ in range(2):
            await tendril.core.triggers.fire_schedule(UUID(trigger["id"]), tick)
        assert len(await executions_of(tendril, alice, workflow)) == before + 1

        paused = await http.patch(
            f"/api/v1/workflows/{workflow}/triggers/{trigger['id']}", json={"active": False}
        )
        assert paused.status_code == 200
        assert await DBOS.get_schedule_async(trigger["id"]) is None
        resumed = await http.patch(
            f"/api/v1/workflows/{workflow}/triggers/{trigger['id']}", json={"active": True}
        )
        assert resumed.status_code == 200
        assert await DBOS.get_schedule_async(trigger["id"]) is not None

        # Its workflow deleted, the next tick starts nothing and removes the schedule.
        assert (await http.delete(f"/api/v1/workflows/{workflow}")).status_code == 200
        count = len(await executions_of(tendril, alice, workflow))
        await tendril.core.triggers.fire_schedule(UUID(trigger["id"]), datetime(2030, 1, 2, tzinfo=UTC))
        assert await DBOS.get_schedule_async(trigger["id"]) is None
        assert len(await executions_of(tendril, alice, workflow)) <= count + 1  # at most a tick in flight


@pytest.mark.timeout(60)
async def test_schedules_follow_the_table_at_start(settings: Settings) -> None:
    async with running_tendril(settings) as tendril:
        alice = await tendril.new_owner()
        async with owner_http(tendril, alice) as http:
            workflow = await make_workflow(http)
            body = {"kind": "schedule", "cron": "0 9 * * 1-5", "timezone": "America/New_York"}
            kept = (await http.post(f"/api/v1/workflows/{workflow}/triggers", json=body)).json()
            dropped = (await http.post(f"/api/v1/workflows/{workflow}/triggers", json=body)).json()
            # Gone from DBOS behind Tendril's back (another version, an operator), and made stale:
            await DBOS.delete_schedule_async(kept["id"])
            store = tendril.core.triggers._store  # pyright: ignore[reportPrivateUsage]
            await store.update(UUID(alice.id), UUID(workflow), UUID(dropped["id"]), active=False)
    async with running_tendril(settings):
        assert (await DBOS.get_schedule_async(kept["id"]) or {}).get("schedule") == "0 9 * * 1-5"
        assert await DBOS.get_schedule_async(dropped["id"]) is None


@pytest.mark.timeout(60)
async def test_triggers_are_checked_and_scoped_to_their_owner(tendril: Tendril) -> None:
    alice, bob = await tendril.new_owner(), await tendril.new_owner()
    signer = GitHubSigner()
    async with owner_http(tendril, alice) as http, owner_http(tendril, bob) as bobs:
        workflow = await make_workflow(http)
        endpoint, _ = await github_endpoint(http, signer)
        bobs_endpoint, _ = await github_endpoint(bobs, signer)
        bobs_workflow = await make_workflow(bobs)
        base = f"/api/v1/workflows/{workflow}/triggers"

        async def refused(body: dict[str, Any], status: int, *words: str) -> None:
            answer = await http.post(base, json=body)
            assert answer.status_code == status, answer.text
            assert all(w in answer.text for w in words), answer.text

        await refused({"kind": "schedule", "cron": "every day"}, 400, "cron", "every day")
        await refused({"kind": "schedule", "cron": "* * * * * * * *"}, 400, "cron")
        await refused({"kind": "schedule", "cron": "61 * * * *"}, 400, "cron")
        await refused({"kind": "schedule"}, 400, "cron")
        await refused({"kind": "schedule", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}, 400, "timezone")
        await refused({"kind": "schedule", "cron": "0 9 * * *", "eventKey": "github.push"}, 400, "eventKey")
        await refused({"kind": "event"}, 400, "eventKey")
        await refused({"kind": "event", "eventKey": "nosuch.thing"}, 400, "eventKey", "nosuch")
        await refused({"kind": "event", "eventKey": "github issues"}, 400, "eventKey")
        await refused({"kind": "event", "eventKey": "github.push", "cron": "0 9 * * *"}, 400, "cron")
        await refused(
            {"kind": "event", "eventKey": "stripe.invoice.paid", "endpointId": endpoint}, 400, "endpoint"
        )
        await refused({"kind": "hourly"}, 400, "kind")
        # Unknown, and Bob's, endpoints are not found alike.
        unknown = "00000000-0000-4000-8000-000000000000"
        await refused({"kind": "event", "eventKey": "github.push", "endpointId": unknown}, 404, "endpoint")
        await refused(
            {"kind": "event", "eventKey": "github.push", "endpointId": bobs_endpoint}, 404, "endpoint"
        )
        # Bob's workflow is not found for Alice, nor hers for him.
        assert (
            await http.post(
                f"/api/v1/workflows/{bobs_workflow}/triggers",
                json={"kind": "event", "eventKey": "github.push"},
            )
        ).status_code == 404

        made = await http.post(base, json={"kind": "schedule", "cron": "0  9 * * 1-5"})
        assert made.status_code == 201, made.text
        trigger = made.json()
        assert trigger["cron"] == "0 9 * * 1-5" and trigger["timezone"] is None
        one = f"{base}/{trigger['id']}"
        assert (await http.get(one)).json() == trigger
        assert (await http.get(base)).json() == {"triggers": [trigger]}
        assert (await bobs.get(one)).status_code == 404
        assert (
            await bobs.get(f"/api/v1/workflows/{bobs_workflow}/triggers/{trigger['id']}")
        ).status_code == 404
        assert (await bobs.patch(one, json={"active": False})).status_code == 404
        assert (await bobs.delete(one)).status_code == 404

        changed = await http.patch(
            one, json={"cron": "*/5 * * * *", "timezone": "Asia/Tokyo", "input": {"n": 1}}
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["cron"], changed.json()["timezone"], changed.json()["input"]) == (
            "*/5 * * * *",
            "Asia/Tokyo",
            {"n": 1},
        )
        schedule = await DBOS.get_schedule_async(trigger["id"])
        assert schedule is not None and (schedule["schedule"], schedule["cron_timezone"]) == (
            "*/5 * * * *",
            "Asia/Tokyo",
        )
        assert (await http.patch(one, json={"cron": "nope"})).status_code == 400
        assert (await http.patch(one, json={"kind": "event"})).status_code == 400
        cleared = await http.patch(one, json={"timezone": None})
        assert cleared.status_code == 200 and cleared.json()["timezone"] is None

        assert (await http.delete(one)).status_code == 200
        assert (await http.get(one)).status_code == 404
        assert await DBOS.get_schedule_async(trigger["id"]) is None


@pytest.mark.timeout(90)
async def test_two_replicas_start_one_execution_per_tick(settings: Settings) -> None:
    """Two in-process replicas on one database (they share the process's DBOS; separate processes
    each run DBOS's scheduler, which derives the same workflow id per tick): the second's start
    leaves the schedule as it is, and each tick starts one execution, whichever replica runs it."""
    async with running_tendril(settings) as first:
        alice = await first.new_owner()
        async with owner_http(first, alice) as http:
            workflow = await make_workflow(http)
            made = await http.post(
                f"/api/v1/workflows/{workflow}/triggers",
                json={"kind": "schedule", "cron": "* * * * * *", "input": {"action": "opened"}},
            )
            assert made.status_code == 201, made.text
        before = await DBOS.get_schedule_async(made.json()["id"])
        async with running_tendril(settings) as second:
            after = await DBOS.get_schedule_async(made.json()["id"])
            assert before is not None and after is not None
            assert after["schedule_id"] == before["schedule_id"]  # not made again by the second start
            found = await until_executions(second, alice, workflow, 3)
            ticks = [e.idempotency_key for e in found]
            assert len(ticks) == len(set(ticks))
