"""Setup that registers the hook through the provider's API (GitHub repository hooks, Stripe webhook
endpoints) with the connection's stored credential, so the owner pastes nothing: the secret the
provider signs with is then the one the receiver checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from uuid import UUID

import httpx
import pytest

from server.logs import install_redaction
from server.settings import ConnectorSettings, Settings
from tests.conftest import SLACK_TOKEN, Tendril, running_tendril
from tests.fakes.github import FakeGitHub
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.stripe import FakeStripe
from tests.support.rest import assert_error
from tests.support.webhooks import Delivery, GitHubSigner, StripeSigner

pytestmark = pytest.mark.anyio

BASE = "https://hooks.tendril.test"
GITHUB_TOKEN = "ghp_CanaryHookAdmin0123456789abcdefghij"
GITHUB_ISSUES_ONLY = "ghp_CanaryIssuesOnly0123456789abcdefghi"
STRIPE_KEY = "sk_test_51CanaryStripeHooksQw7Zx9Lm2"


@dataclass
class Providers:
    github: FakeGitHub
    stripe: FakeStripe


@pytest.fixture
def providers() -> Iterator[tuple[Providers, str, str]]:
    github, stripe = FakeGitHub(), FakeStripe()
    github.add_token(GITHUB_TOKEN, scopes=["repo", "admin:repo_hook"])
    github.add_token(GITHUB_ISSUES_ONLY, scopes=["repo"])
    stripe.add_key(STRIPE_KEY)
    with run_asgi_on_loopback(github.app) as github_url, run_asgi_on_loopback(stripe.app) as stripe_url:
        yield Providers(github, stripe), github_url, stripe_url


@pytest.fixture
async def tendril_with_hooks(
    settings: Settings, providers: tuple[Providers, str, str]
) -> AsyncIterator[Tendril]:
    _, github_url, stripe_url = providers
    connectors = {
        **settings.connectors,
        "github": ConnectorSettings(api_base=github_url),
        "stripe": ConnectorSettings(api_base=stripe_url),
    }
    configured = settings.model_copy(update={"webhook_base_url": BASE, "connectors": connectors})
    async with running_tendril(configured) as tendril:
        yield tendril


async def connected(
    tendril: Tendril, slug: str, credentials: dict[str, str]
) -> tuple[httpx.AsyncClient, str]:
    owner = await tendril.new_owner()
    api = tendril.raw()
    api.headers["X-Api-Key"] = owner.api_key
    connections = tendril.core.connections
    connection, _ = await connections.start(UUID(owner.id), tendril.core.catalog[slug], label=slug)
    await connections.submit_credentials(UUID(owner.id), connection.id, credentials)
    async with tendril.raw() as http:
        made = await http.post(
            "/api/v1/agents",
            json={"name": "listener", "allowedConnectors": [slug]},
            headers={"X-Api-Key": owner.api_key},
        )
    assert made.status_code == 201, made.text
    return api, str(connection.id)


async def status_of(api: httpx.AsyncClient, path: str, delivery: Delivery) -> int:
    return (await api.post(path, content=delivery.body, headers=delivery.headers)).status_code


async def test_github_hook_is_created_with_a_secret_tendril_keeps(
    tendril_with_hooks: Tendril, providers: tuple[Providers, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    fakes = providers[0]
    api, connection_id = await connected(tendril_with_hooks, "github", {"token": GITHUB_TOKEN})
    async with api:
        body = {
            "provider": "github",
            "register": {"repository": "octo-org/hello-world", "events": ["issues"]},
        }
        created = await api.post(f"/api/v1/connections/{connection_id}/webhooks", json=body)
        assert created.status_code == 201, created.text
        endpoint, setup = created.json()["endpoint"], created.json()["setup"]
        [hook] = fakes.github.hooks()
        assert hook["config"]["url"] == endpoint["url"] and hook["config"]["content_type"] == "json"
        assert hook["events"] == ["issues"] and hook["config"]["insecure_ssl"] == "0"
        assert setup["registered"] is True and setup["providerHookId"] == str(hook["id"])
        secret = hook["config"]["secret"]
        assert len(secret) >= 32 and secret not in created.text  # never shown back

        # GitHub signs with the secret it was given; the receiver knows it, a forger does not.
        signer = GitHubSigner(secrets={"secret": secret})
        path = f"/api/v1/connectors/webhooks/github/{endpoint['id']}"
        good = signer.deliver("d-1")
        assert await status_of(api, path, good) == 200
        forged = signer.deliver("d-2", forged=True)
        assert await status_of(api, path, forged) == 403
        [job] = (await api.get("/api/v1/jobs")).json()["jobs"]
        assert job["eventKey"] == "github.issues.opened"
        listed = (await api.get("/api/v1/webhook-endpoints")).text

        # Deleting the endpoint removes the hook it created at GitHub; the URL stops answering.
        stranger = await tendril_with_hooks.new_owner()
        denied = await api.delete(
            f"/api/v1/webhook-endpoints/{endpoint['id']}", headers={"X-Api-Key": stranger.api_key}
        )
        assert_error(denied, 404, "NOT_FOUND")
        assert len(fakes.github.hooks()) == 1
        deleted = await api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["endpoint"]["status"] == "deleted"
        assert deleted.json()["provider"] == {"removed": True, "how": "removed the hook at GitHub"}
        assert fakes.github.hooks() == []
        assert await status_of(api, path, signer.deliver("d-3")) == 404
        assert (await api.get("/api/v1/webhook-endpoints")).json()["endpoints"] == []
        assert len((await api.get("/api/v1/jobs")).json()["jobs"]) == 1  # its jobs stay
        assert_error(await api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}"), 404, "NOT_FOUND")
    for canary in (secret, GITHUB_TOKEN):
        assert canary not in listed and canary not in deleted.text and canary not in caplog.text


async def test_stripe_endpoint_is_created_and_its_whsec_secret_stored(
    tendril_with_hooks: Tendril, providers: tuple[Providers, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    fakes = providers[0]
    api, connection_id = await connected(tendril_with_hooks, "stripe", {"secret_key": STRIPE_KEY})
    async with api:
        created = await api.post(
            f"/api/v1/connections/{connection_id}/webhooks", json={"provider": "stripe", "register": True}
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["endpoint"]
        [made] = fakes.stripe.webhook_endpoints.values()
        assert made["url"] == endpoint["url"] and "invoice.paid" in made["enabled_events"]
        assert made["secret"] not in created.text
        signer = StripeSigner(secrets={"signing_secret": made["secret"]})
        path = f"/api/v1/connectors/webhooks/stripe/{endpoint['id']}"
        good = signer.deliver("evt_1")
        assert await status_of(api, path, good) == 200
        stale = signer.deliver("evt_2", age=400)
        assert await status_of(api, path, stale) == 403
        assert len((await api.get("/api/v1/jobs")).json()["jobs"]) == 1
        listed = (await api.get("/api/v1/webhook-endpoints")).text

        # Stripe failing the removal keeps the endpoint, so deleting again can finish the job.
        fakes.stripe.fail_next("webhook_endpoints.delete", 500, should_retry=False)
        failed = await api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}")
        assert_error(failed, 502, "UPSTREAM_ERROR", "could not remove the hook at Stripe")
        assert fakes.stripe.webhook_endpoints and await status_of(api, path, signer.deliver("evt_3")) == 200
        deleted = await api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}")
        assert deleted.status_code == 200 and deleted.json()["provider"]["removed"] is True
        assert fakes.stripe.webhook_endpoints == {}
        assert await status_of(api, path, signer.deliver("evt_4")) == 404
    for canary in (made["secret"], STRIPE_KEY):
        assert canary not in listed + failed.text + deleted.text and canary not in caplog.text


async def test_registration_failures_are_explained_and_store_nothing(
    tendril_with_hooks: Tendril, providers: tuple[Providers, str, str]
) -> None:
    fakes = providers[0]
    api, connection_id = await connected(tendril_with_hooks, "github", {"token": GITHUB_ISSUES_ONLY})
    url = f"/api/v1/connections/{connection_id}/webhooks"
    async with api:
        no_scope = await api.post(
            url, json={"provider": "github", "register": {"repository": "octo-org/hello-world"}}
        )
        assert_error(
            no_scope, 400, "BAD_REQUEST", "could not create the hook with this connection's credential"
        )
        no_repo = await api.post(url, json={"provider": "github", "register": True})
        assert_error(no_repo, 400, "BAD_REQUEST", "owner/name")
        bad_shape = await api.post(url, json={"provider": "github", "register": {"repo": "x/y"}})
        assert_error(bad_shape, 400, "BAD_REQUEST", "register must be")
        assert fakes.github.hooks() == []
        assert (await api.get("/api/v1/webhook-endpoints")).json()["endpoints"] == []

    slack_api, slack_connection = await connected(tendril_with_hooks, "slack", {"bot_token": SLACK_TOKEN})
    async with slack_api:
        console_only = await slack_api.post(
            f"/api/v1/connections/{slack_connection}/webhooks", json={"provider": "slack", "register": True}
        )
        assert_error(console_only, 400, "BAD_REQUEST", "created in its console")
        pasted = await slack_api.post(
            f"/api/v1/connections/{slack_connection}/webhooks",
            json={"provider": "slack", "secrets": {"signing_secret": "slack-signing-Canary-1"}},
        )
        endpoint = pasted.json()["endpoint"]
        deleted = await slack_api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}")
        assert deleted.status_code == 200 and deleted.json()["provider"]["removed"] is False
        assert endpoint["url"] in deleted.json()["provider"]["how"]  # what to remove by hand, and where
