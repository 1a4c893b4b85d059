"""Gmail actions through the real google-api-python-client, against the fake on loopback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import anyio
import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
)
from server.settings import Settings
from tests.conftest import OAuthFakes, oauth_connector, running_tendril
from tests.connectors.cases import Sleeps
from tests.fakes.gmail import READONLY, SEND, FakeGmail
from tests.server.test_oauth_flow import connected_via_oauth, expire_the_access_token
from tests.support.asgi import Swappable

pytestmark = pytest.mark.anyio
gmail = load_catalog()["gmail"]
TOKEN = "ya29.a0CanaryGmailAccessToken-7Qx2LmVb9sT4"
CREDENTIALS = {"access_token": TOKEN}


@pytest.fixture
def fake(provider_server: tuple[Swappable, str]) -> FakeGmail:
    fake = FakeGmail("ada@example.com")
    fake.add_token(TOKEN)
    provider_server[0].target = fake.app
    return fake


@pytest.fixture
def url(provider_server: tuple[Swappable, str], fake: FakeGmail) -> str:
    return provider_server[1]


def runner(url: str, sleeps: Sleeps | None = None) -> ActionRunner:
    return ActionRunner(api_bases={"gmail": url}, timeout=5, sleep=sleeps if sleeps is not None else Sleeps())


async def run(url: str, action: str, params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    credentials = kwargs.pop("credentials", CREDENTIALS)
    result = await runner(url, kwargs.pop("sleeps", None)).run(
        gmail, gmail.actions[action], params, credentials=credentials
    )
    return result.model_dump()


def test_actions_are_annotated_and_scoped() -> None:
    declared = {name: (a.hints.read_only, a.hints.idempotent, a.scopes) for name, a in gmail.actions.items()}
    assert declared == {
        "list_labels": (True, False, (READONLY,)),
        "list_messages": (True, False, (READONLY,)),
        "get_message": (True, False, (READONLY,)),
        "send_email": (False, False, (SEND,)),
    }
    assert gmail.spec.availability == "available" and gmail.spec.credential_fields == ()
    assert gmail.spec.oauth is not None and gmail.spec.oauth.authorize_params["access_type"] == "offline"
    schema = gmail.actions["get_message"].output_model.model_json_schema()
    assert "from" in schema["properties"]


async def test_verify_names_the_mailbox(fake: FakeGmail, url: str) -> None:
    assert await runner(url).verify(gmail, CREDENTIALS) == {"emailAddress": "ada@example.com"}
    assert fake.operations("getProfile") == [TOKEN]  # sent as `Authorization: Bearer`


async def test_list_labels_returns_the_levqor_shape_with_details(fake: FakeGmail, url: str) -> None:
    label_id = fake.add_label("Receipts")
    result = await run(url, "list_labels", {})
    assert result["labels"][:4] == ["INBOX", "SENT", "DRAFT", "SPAM"]
    assert result["labels"][-1] == "Receipts"
    assert result["label_details"][0] == {"id": "INBOX", "name": "INBOX", "type": "system"}
    assert result["label_details"][-1] == {"id": label_id, "name": "Receipts", "type": "user"}


async def test_list_messages_searches_filters_and_pages(fake: FakeGmail, url: str) -> None:
    first = fake.deliver(sender="Bob <bob@example.org>", subject="Invoice 1", text="pay me")
    fake.deliver(sender="carol@example.net", subject="Lunch?", text="noon")
    second = fake.deliver(sender="Bob <bob@example.org>", subject="Invoice 2", text="pay me again")
    archived = fake.deliver(sender="bob@example.org", subject="Invoice 0", text="old", labels=("Label_9",))

    page = await run(url, "list_messages", {"query": "from:bob invoice", "max_results": 2})
    assert page["messages"] == [
        {"id": archived, "thread_id": archived},
        {"id": second, "thread_id": second},
    ]
    assert page["result_size_estimate"] == 3 and page["next_page_token"]
    rest = await run(
        url,
        "list_messages",
        {"query": "from:bob invoice", "max_results": 2, "page_token": page["next_page_token"]},
    )
    assert rest["messages"] == [{"id": first, "thread_id": first}] and rest["next_page_token"] is None

    inbox = await run(url, "list_messages", {"query": "invoice", "label_ids": ["INBOX", "UNREAD"]})
    assert [m["id"] for m in inbox["messages"]] == [second, first]
    nothing = await run(url, "list_messages", {"query": "subject:holiday"})
    assert nothing == {"messages": [], "next_page_token": None, "result_size_estimate": 0}


async def test_get_message_decodes_headers_and_the_plain_text_body(fake: FakeGmail, url: str) -> None:
    message_id = fake.deliver(
        sender="Zoë <zoe@example.org>",
        subject="Café menu",
        text="Crème brûlée today.\n",
        html="<p>Crème brûlée <b>today</b>.</p>",
        charset="iso-8859-1",
    )
    result = await run(url, "get_message", {"message_id": message_id})
    assert result == {
        "id": message_id,
        "thread_id": message_id,
        "label_ids": ["INBOX", "UNREAD"],
        "snippet": "Crème brûlée today.",
        "subject": "Café menu",
        "from": "Zoë <zoe@example.org>",
        "to": "ada@example.com",
        "date": "Tue, 14 Nov 2023 09:30:00 +0000",
        "body_text": "Crème brûlée today.\n",
        "body_truncated": False,
    }


async def test_metadata_and_minimal_formats_leave_out_what_gmail_leaves_out(
    fake: FakeGmail, url: str
) -> None:
    message_id = fake.deliver(sender="bob@example.org", subject="Hi", text="hello there")
    metadata = await run(url, "get_message", {"message_id": message_id, "format": "metadata"})
    assert (metadata["subject"], metadata["from"], metadata["body_text"]) == ("Hi", "bob@example.org", None)
    minimal = await run(url, "get_message", {"message_id": message_id, "format": "minimal"})
    assert (minimal["subject"], minimal["from"], minimal["snippet"]) == (None, None, "hello there")


async def test_a_long_body_is_truncated_and_says_so(fake: FakeGmail, url: str) -> None:
    message_id = fake.deliver(sender="bob@example.org", subject="Log", text="x" * 150_000)
    result = await run(url, "get_message", {"message_id": message_id})
    assert len(result["body_text"]) == 100_000 and result["body_truncated"] is True


async def test_send_email_posts_a_mime_message_and_returns_its_ids(fake: FakeGmail, url: str) -> None:
    result = await run(
        url,
        "send_email",
        {
            "to": "Bob <bob@example.org>, carol@example.net",
            "subject": "Quarterly report",
            "body": "See the numbers.",
            "cc": "dave@example.com",
            "bcc": "eve@example.com",
            "html": "<p>See the <b>numbers</b>.</p>",
        },
    )
    [sent] = fake.sent()
    assert result == {"message_id": sent.id, "thread_id": sent.thread_id, "status": "sent"}
    mime = message_from_bytes(sent.raw, policy=policy.default)
    assert (mime["To"], mime["Cc"], mime["Bcc"]) == (
        "Bob <bob@example.org>, carol@example.net",
        "dave@example.com",
        "eve@example.com",
    )
    assert (mime["Subject"], mime["From"], mime.get_content_type()) == (
        "Quarterly report",
        "ada@example.com",
        "multipart/alternative",
    )
    assert [part.get_content_type() for part in mime.iter_parts()] == ["text/plain", "text/html"]
    read_back = await run(url, "get_message", {"message_id": sent.id})
    assert read_back["body_text"] == "See the numbers.\n" and read_back["label_ids"] == ["SENT"]


async def test_a_plain_email_is_a_single_text_part(fake: FakeGmail, url: str) -> None:
    await run(url, "send_email", {"to": "bob@example.org", "subject": "", "body": "hi"})
    [sent] = fake.sent()
    mime = message_from_bytes(sent.raw, policy=policy.default)
    assert mime.get_content_type() == "text/plain" and mime["Cc"] is None


async def test_an_unknown_message_is_not_found(fake: FakeGmail, url: str) -> None:
    with pytest.raises(NotFound, match="not found"):
        await run(url, "get_message", {"message_id": "18c0000000000fff"})


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("list_messages", {"max_results": 0}, "max_results"),
        ("list_messages", {"max_results": 501}, "max_results"),
        ("get_message", {"message_id": "../labels"}, "message_id"),
        ("get_message", {"message_id": "abc", "format": "raw"}, "format"),
        ("send_email", {"to": "not-an-address", "subject": "x", "body": "x"}, "to"),
        ("send_email", {"to": "a@example.com\nBcc: x@evil.test", "subject": "x", "body": "x"}, "to"),
        ("send_email", {"to": "a@example.com", "subject": "x\r\nBcc: x@evil.test", "body": "x"}, "subject"),
        ("send_email", {"to": "a@example.com", "subject": "x", "body": "x", "cc": "nobody"}, "cc"),
        ("send_email", {"to": "a@example.com", "subject": "x"}, "body"),
    ],
)
async def test_invalid_input_names_the_field(
    fake: FakeGmail, url: str, action: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await run(url, action, params)
    assert caught.value.field == field
    assert fake.calls == []  # refused before anything reached Gmail


async def test_gmails_own_invalid_argument_names_the_field(fake: FakeGmail, url: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid pageToken") as caught:
        await run(url, "list_messages", {"page_token": "not-a-token"})
    assert caught.value.field == "page_token"
    fake.fail_next("messages.send", status=400, reason="invalidArgument", message="Invalid To header")
    with pytest.raises(InvalidInput) as refused:
        await run(url, "send_email", {"to": "bob@example.org", "subject": "x", "body": "x"})
    assert refused.value.field == "to"


async def test_an_unknown_or_expired_token_is_invalid_credentials(fake: FakeGmail, url: str) -> None:
    with pytest.raises(InvalidCredentials, match="expired or was revoked"):
        await runner(url).verify(gmail, {"access_token": "ya29.not-a-known-token"})
    assert (await run(url, "list_labels", {}))["labels"]
    fake.expire_token(TOKEN)
    with pytest.raises(InvalidCredentials):
        await run(url, "list_labels", {})
    with pytest.raises(InvalidCredentials):
        await runner(url).verify(gmail, CREDENTIALS)
    # google-auth was given nothing to refresh with, so the 401 surfaced once, without a refresh.
    assert fake.operations("labels.list") == [TOKEN, TOKEN]


async def test_a_missing_scope_is_named_for_the_action(fake: FakeGmail, url: str) -> None:
    fake.add_token("ya29.read-only", scopes={READONLY})
    fake.add_token("ya29.send-only", scopes={SEND})
    with pytest.raises(MissingScopes) as send_refused:
        await run(
            url,
            "send_email",
            {"to": "bob@example.org", "subject": "x", "body": "x"},
            credentials={"access_token": "ya29.read-only"},
        )
    assert send_refused.value.scopes == [SEND] and SEND in send_refused.value.message
    assert fake.sent() == []
    for action, params in (("list_labels", {}), ("get_message", {"message_id": "abc"})):
        with pytest.raises(MissingScopes) as read_refused:
            await run(url, action, params, credentials={"access_token": "ya29.send-only"})
        assert read_refused.value.scopes == [READONLY]


async def test_other_refusals_are_forbidden(fake: FakeGmail, url: str) -> None:
    fake.fail_next("messages.send", status=403, reason="domainPolicy", message="Sending is disabled")
    with pytest.raises(Forbidden, match="Sending is disabled"):
        await run(url, "send_email", {"to": "bob@example.org", "subject": "x", "body": "x"})


async def test_a_403_user_rate_limit_uses_gmails_retry_after_time(fake: FakeGmail, url: str) -> None:
    when = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    fake.rate_limit_next(
        "messages.send",
        status=403,
        reason="userRateLimitExceeded",
        message=f"User-rate limit exceeded.  Retry after {when}",
    )
    with pytest.raises(RateLimited) as caught:
        await run(url, "send_email", {"to": "bob@example.org", "subject": "x", "body": "x"})
    assert 25 < caught.value.retry_after <= 30
    fake.rate_limit_next("messages.list", times=3)  # no signal at all: a short backoff
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as exhausted:
        await run(url, "list_messages", {}, sleeps=sleeps)
    assert exhausted.value.retry_after == 1.0 and sleeps == [1.0, 1.0]


async def test_server_errors_retry_reads_but_not_sends(fake: FakeGmail, url: str) -> None:
    fake.fail_next("messages.list", status=503)
    sleeps = Sleeps()
    assert (await run(url, "list_messages", {}, sleeps=sleeps))["messages"] == []
    assert len(sleeps) == 1
    fake.fail_next("messages.send", status=500)
    with pytest.raises(UpstreamError) as caught:
        await run(url, "send_email", {"to": "bob@example.org", "subject": "x", "body": "x"})
    assert (caught.value.status, caught.value.is_transient) == (500, True)
    assert len(fake.operations("messages.send")) == 1


# -- through Tendril: the OAuth connection and its refresh ----------------------------------------
async def test_gmails_refresh_goes_through_tendrils_single_flight_refresh(
    settings: Settings, oauth_fakes: OAuthFakes, fake: FakeGmail, url: str
) -> None:
    issuer = oauth_fakes.github  # a standard OAuth server with refresh tokens, playing Google
    fake.token_authority = lambda token: token in issuer.valid_access_tokens()
    gmail_settings = oauth_connector(
        oauth_fakes.github_url, "github-client", "github-secret-canary-7f3", api_base=url
    )
    settings = settings.model_copy(update={"connectors": {**settings.connectors, "gmail": gmail_settings}})
    async with running_tendril(settings) as tendril:
        owner = await tendril.new_owner()
        connection_id = await connected_via_oauth(tendril, owner, "gmail")
        [first] = issuer.valid_access_tokens()
        # Expired for both sides: Tendril's record says so, and Gmail would refuse the old token.
        await expire_the_access_token(tendril, connection_id)
        issuer.expire_all_access_tokens()
        issuer.token_delay = 0.2  # keeps the refresh in flight while the other calls arrive
        record = await tendril.core.connections.get(uuid.UUID(owner.id), uuid.UUID(connection_id))
        action = tendril.core.catalog["gmail"].actions["list_labels"]
        labels: list[list[str]] = []

        async def call() -> None:
            output = await tendril.core.connections.run(record, action, {})
            labels.append(output.model_dump()["labels"])

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(call)

    assert len(labels) == 10 and all("INBOX" in names for names in labels)
    assert issuer.refresh_count == 1
    [refreshed] = issuer.valid_access_tokens()
    assert refreshed != first
    assert fake.operations("labels.list") == [refreshed] * 10
    [refresh] = [r for r in issuer.token_requests if r["grant_type"] == "refresh_token"]
    assert refresh["result"] == "ok"
