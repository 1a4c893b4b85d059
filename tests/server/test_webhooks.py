"""The nine receivers over REST: a valid delivery is exactly one job; forged, stale, replayed,
oversized, malformed and misaddressed deliveries are refused and enqueue nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from server.settings import Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, Tendril, running_tendril
from tests.support.hooks import BASE, LIMIT, hook_up
from tests.support.rest import assert_error
from tests.support.webhooks import Signer, signers

pytestmark = pytest.mark.anyio

# Providers that sign the raw JSON body, so a signed body can be any JSON at all.
NESTABLE = ("github", "stripe", "linear", "discord", "whatsapp", "slack")


@pytest.mark.parametrize("signer", signers(), ids=lambda s: s.provider)
async def test_a_valid_delivery_is_one_job_and_every_bad_one_is_refused(
    hub_app: Tendril, fakes: Fakes, signer: Signer
) -> None:
    hooked = await hook_up(hub_app, signer, fakes)
    forbidden = 401 if signer.provider == "discord" else 403
    async with hooked:
        good = signer.deliver("1001")
        first = await hooked.post(good.body, good.headers)
        assert 200 <= first.status_code < 300, first.text
        again = await hooked.post(good.body, good.headers)  # the provider's retry, or a replay
        assert 200 <= again.status_code < 300
        [job] = await hooked.jobs()
        assert job["agentId"] == hooked.agent_id and str(job["eventKey"]).startswith(f"{signer.provider}.")

        forged = signer.deliver("1002", forged=True)
        assert (await hooked.post(forged.body, forged.headers)).status_code == forbidden
        if signer.timestamped:
            stale = signer.deliver("1003", age=400)
            assert (await hooked.post(stale.body, stale.headers)).status_code == forbidden
        malformed = signer.malformed()
        assert (await hooked.post(malformed.body, malformed.headers)).status_code in (400, forbidden)
        big = signer.deliver("1004")
        oversized = await hooked.post(big.body + b" " * LIMIT, big.headers)
        assert oversized.status_code == 413
        elsewhere = await hooked.api.post(
            f"/api/v1/connectors/webhooks/{signer.provider}/00000000-0000-4000-8000-000000000000",
            content=good.body,
            headers=good.headers,
        )
        assert elsewhere.status_code == 404
        assert len(await hooked.jobs()) == 1  # nothing but the one valid delivery
        [endpoint] = (await hooked.api.get("/api/v1/webhook-endpoints")).json()["endpoints"]
        assert (endpoint["deliveryCount"], endpoint["duplicateCount"]) == (1, 1)
        assert endpoint["rejectedCount"] >= 2 and endpoint["lastError"]


async def test_handshakes_answer_as_the_providers_expect(hub_app: Tendril, fakes: Fakes) -> None:
    import json

    from tests.support.webhooks import DiscordSigner, SlackSigner, WhatsAppSigner

    slack = await hook_up(hub_app, SlackSigner(), fakes)
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    async with slack:
        delivery = slack.signer._signed(challenge, 0, False)  # type: ignore[attr-defined]
        answer = await slack.post(delivery.body, delivery.headers)
        assert (answer.status_code, answer.text) == (200, "c-123")
        assert await slack.jobs() == []

    discord = await hook_up(hub_app, DiscordSigner(), fakes)
    async with discord:
        ping = discord.signer._signed(b'{"type":1}', 0, False)  # type: ignore[attr-defined]
        pong = await discord.post(ping.body, ping.headers)
        assert pong.status_code == 200 and pong.json() == {"type": 1}
        assert pong.headers["content-type"].startswith("application/json")

    whatsapp = await hook_up(hub_app, WhatsAppSigner(), fakes)
    async with whatsapp:
        verify = {
            "hub.mode": "subscribe",
            "hub.verify_token": "verify-Canary-8a",
            "hub.challenge": "1158201444",
        }
        ok = await whatsapp.api.get(whatsapp.path, params=verify)
        assert (ok.status_code, ok.text) == (200, "1158201444")
        wrong = await whatsapp.api.get(whatsapp.path, params={**verify, "hub.verify_token": "nope"})
        assert wrong.status_code == 403


async def test_setup_refuses_internal_urls_unknown_providers_and_missing_secrets(
    tendril: Tendril, settings: Settings
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as api:
        api.headers["X-Api-Key"] = owner.api_key
        connection, _ = await tendril.core.connections.start(UUID(owner.id), tendril.core.catalog["github"])
        path = f"/api/v1/connections/{connection.id}/webhooks"
        local = await api.post(path, json={"provider": "github", "secrets": {"secret": "x"}})
        assert_error(local, 400, "BAD_REQUEST", "TENDRIL_WEBHOOK_BASE_URL")
    public = settings.model_copy(update={"webhook_base_url": BASE})
    async with running_tendril(public) as hub_app, hub_app.raw() as api:
        api.headers["X-Api-Key"] = owner.api_key
        assert_error(
            await api.post(path, json={"provider": "myspace"}),
            400,
            "BAD_REQUEST",
            "unknown webhook provider",
        )
        assert_error(
            await api.post(path, json={"provider": "github", "secrets": {}}), 400, "BAD_REQUEST", "secret"
        )
        assert_error(
            await api.post(path, json={"provider": "stripe", "secrets": {"signing_secret": "whsec_x"}}),
            400,
            "BAD_REQUEST",
            "not stripe",
        )
        stranger = await hub_app.new_owner()
        api.headers["X-Api-Key"] = stranger.api_key
        assert_error(
            await api.post(path, json={"provider": "github", "secrets": {"secret": "x"}}),
            404,
            "NOT_FOUND",
        )


async def test_secrets_are_sealed_and_never_shown(hub_app: Tendril, fakes: Fakes) -> None:
    from tests.support.webhooks import GitHubSigner

    hooked = await hook_up(hub_app, GitHubSigner(), fakes)
    async with hooked:
        listed = (await hooked.api.get("/api/v1/webhook-endpoints")).text
        assert "github-hook-Canary-77e1" not in listed
    [endpoint] = await hub_app.core.webhooks.list(hooked.owner_id)
    assert "github-hook-Canary-77e1" not in endpoint.sealed_secrets


async def test_the_receiver_refuses_other_methods_shapes_and_streams_and_hides_failures(
    hub_app: Tendril, fakes: Fakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver is plain ASGI in front of the router (server/web/ingress.py): its edges."""
    from tests.support.webhooks import GitHubSigner

    hooked = await hook_up(hub_app, GitHubSigner(), fakes)
    async with hooked:
        good = hooked.signer.deliver("2001")
        put = await hooked.api.put(hooked.path, content=good.body, headers=good.headers)
        assert put.status_code == 405 and put.headers["allow"] == "POST, GET"
        for shape in ("/api/v1/connectors/webhooks/github", f"{hooked.path}/extra"):
            assert_error(await hooked.api.post(shape, content=good.body), 404, "NOT_FOUND")
        # Only the endpoint id as Tendril hands it out: another spelling is no endpoint.
        upper = hooked.path[:-36] + hooked.path[-36:].upper()
        assert (await hooked.api.post(upper, content=good.body, headers=good.headers)).status_code == 404

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies as it streams
            for _ in range(LIMIT // 1024 + 2):
                yield b" " * 1024

        streamed = await hooked.api.post(hooked.path, content=chunks(), headers=good.headers)
        assert streamed.status_code == 413

        async def broken(*_args: object) -> None:
            raise RuntimeError("Canary-ingress-5f3 internals")

        monkeypatch.setattr(hub_app.core.ingest, "receive", broken)
        failed = await hooked.post(good.body, good.headers)
        assert failed.status_code == 500 and "ref=" in failed.text
        assert "Canary-ingress-5f3" not in failed.text
        logged = [r for r in caplog.records if f"ref={failed.json()['reference']}" in r.getMessage()]
        assert logged and "Canary-ingress-5f3" in str(logged[0].exc_info)  # the details: in the log only
        assert await hooked.jobs() == []


async def test_deleting_a_telegram_endpoint_deletes_the_bots_webhook_only_while_it_is_ours(
    hub_app: Tendril, fakes: Fakes
) -> None:
    from tests.support.webhooks import TelegramSigner

    for repointed in (False, True):
        hooked = await hook_up(hub_app, TelegramSigner(), fakes)
        async with hooked:
            if repointed:  # since setup, someone pointed the bot at another service
                fakes.telegram.webhooks[TELEGRAM_TOKEN]["url"] = "https://elsewhere.example/hook"
            endpoint_id = hooked.path.rsplit("/", 1)[1]
            deleted = await hooked.api.delete(f"/api/v1/webhook-endpoints/{endpoint_id}")
            assert deleted.status_code == 200, deleted.text
            assert deleted.json()["provider"]["removed"] is not repointed
            if repointed:
                assert fakes.telegram.webhooks[TELEGRAM_TOKEN]["url"] == "https://elsewhere.example/hook"
                assert "no hook of Tendril's left to remove" in deleted.json()["provider"]["how"]
            else:
                assert TELEGRAM_TOKEN not in fakes.telegram.webhooks
            delivery = hooked.signer.deliver("3001")
            assert (await hooked.post(delivery.body, delivery.headers)).status_code == 404


NESTED_DEPTH = 10_000  # far past any payload a provider sends; Python's JSON parser recurses per level


@pytest.mark.parametrize("signer", [s for s in signers() if s.provider in NESTABLE], ids=lambda s: s.provider)
async def test_a_signed_body_nested_too_deeply_is_refused_with_a_400_and_nothing_logged_as_a_failure(
    hub_app: Tendril, fakes: Fakes, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    hooked = await hook_up(hub_app, signer, fakes)
    async with hooked:
        deep = signer.sign_body(b'{"a":' * NESTED_DEPTH + b"1" + b"}" * NESTED_DEPTH)
        assert len(deep.body) < LIMIT  # refused for its shape, not its size
        refused = await hooked.post(deep.body, deep.headers)
        assert refused.status_code == 400, refused.text
        assert "nested too deeply" in refused.json()["error"]
        assert await hooked.jobs() == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
