"""One conformance case per connector: its fake, canary credentials, and the calls that exercise it.

`test_conformance_live.py` runs the same checks on every case (happy path, the provider's error
shape, invalid credentials, missing scopes, 429 handling, an unreachable provider, canary secrets).
A connector without a case fails there, so a new connector is held to them just by existing.
A case only says how to drive its fake; every expectation lives in the shared tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors import ActionRunner, Connector, load_catalog
from connectors.errors import ConnectorError, Forbidden, InvalidInput, NotFound
from tests.fakes.discord import FakeDiscord
from tests.fakes.github import FakeGitHub
from tests.fakes.gmail import READONLY, SEND, FakeGmail
from tests.fakes.http_upstream import FakeUpstream
from tests.fakes.linear import TEAM_ID, FakeLinear
from tests.fakes.notion import FakeNotion
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import SmtpSink, ThrowawayCA
from tests.fakes.stripe import FakeStripe
from tests.fakes.telegram import FakeTelegram
from tests.support.asgi import Swappable

CATALOG = load_catalog()


@dataclass
class Loopback:
    """Servers the cases share: one HTTP socket each fake is installed behind, and an SMTP server."""

    holder: Swappable
    http_url: str
    smtp_sink: SmtpSink
    smtp_ca: ThrowawayCA
    smtp_port: int


@dataclass(frozen=True)
class Call:
    action: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A call the provider refuses in its own error shape, and what the agent must be told."""

    call: Call
    kind: type[ConnectorError]
    mentions: str


@dataclass(frozen=True)
class ScopeCheck:
    """Credentials the provider accepts but that lack `scope`, which `call` needs."""

    credentials: dict[str, str]
    call: Call
    scope: str


class Sleeps(list[float]):
    """Stands in for anyio.sleep: records the runtime's waits instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclass
class Case(ABC):
    slug: ClassVar[str]
    loopback: Loopback
    credentials: dict[str, str] = field(init=False)
    bad_credentials: dict[str, str] = field(init=False)
    happy: Call = field(init=False)
    ids: tuple[str, ...] = field(init=False)  # result fields that carry the provider's ids
    provider_error: Refusal = field(init=False)
    repeatable: Call | None = field(init=False, default=None)  # a call the runtime may repeat
    send: Call = field(init=False)  # a call it must not repeat without an idempotency key
    missing_scope: ScopeCheck | None = field(init=False, default=None)
    states_wait: ClassVar[bool] = True  # the provider says how long to wait when it throttles
    sleeps: Sleeps = field(init=False, default_factory=Sleeps)

    def __post_init__(self) -> None:
        self.setup()

    @property
    def connector(self) -> Connector:
        return CATALOG[self.slug]

    @abstractmethod
    def setup(self) -> None:
        """Install a fresh fake behind the loopback server and fill in the calls."""

    @abstractmethod
    def rate_limit(self, call: Call, seconds: int) -> None:
        """Make the fake throttle `call` next, saying (where it can) to wait `seconds`."""

    @abstractmethod
    def served(self) -> int:
        """How many requests the fake has answered so far."""

    def api_base(self, origin: str) -> str:
        return origin

    def runner(self, origin: str | None = None) -> ActionRunner:
        origin = origin or self.loopback.http_url
        return ActionRunner(
            api_bases={self.slug: self.api_base(origin)},
            allowed_hosts={self.slug: ["127.0.0.1"]},
            timeout=5,
            sleep=self.sleeps,
        )

    def unreachable(self, port: int) -> tuple[ActionRunner, dict[str, str]]:
        """A runner and credentials that send the happy call to `port`, where nothing listens."""
        return self.runner(f"http://127.0.0.1:{port}"), self.credentials

    def secrets(self) -> list[str]:
        """The canaries: every secret value this case hands to the connector."""
        keys = set(self.connector.spec.secret_keys) | {"access_token", "refresh_token"}
        given = [self.credentials, self.bad_credentials]
        if self.missing_scope:
            given.append(self.missing_scope.credentials)
        return [value for creds in given for key, value in creds.items() if key in keys and value]


class SlackCase(Case):
    slug = "slack"
    methods: ClassVar[dict[str, str]] = {
        "list_channels": "conversations.list",
        "post_message": "chat.postMessage",
    }

    def setup(self) -> None:
        self.fake = FakeSlack()
        self.fake.add_token("xoxb-1111-2222-CanarySlackConformance4k9")
        self.fake.add_token("xoxb-1111-2222-CanaryReadOnlyConformance", scopes=["channels:read"])
        self.loopback.holder.target = self.fake.app
        self.credentials = {"bot_token": "xoxb-1111-2222-CanarySlackConformance4k9"}
        self.bad_credentials = {"bot_token": "xoxb-1111-2222-CanaryUnknownToken7q"}
        self.happy = self.send = Call("post_message", {"channel": "C01234567", "text": "hello"})
        self.ids = ("message_ts", "channel")
        self.provider_error = Refusal(
            Call("post_message", {"channel": "C0NOPE", "text": "x"}), NotFound, "channel_not_found"
        )
        self.repeatable = Call("list_channels", {})
        self.missing_scope = ScopeCheck(
            {"bot_token": "xoxb-1111-2222-CanaryReadOnlyConformance"}, self.send, "chat:write"
        )

    def api_base(self, origin: str) -> str:
        return f"{origin}/api/"

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.methods[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class TelegramCase(Case):
    slug = "telegram"
    methods: ClassVar[dict[str, str]] = {"get_me": "getMe", "send_message": "sendMessage"}

    def setup(self) -> None:
        self.fake = FakeTelegram()
        self.fake.add_bot("987654321:CanaryTelegramConformanceXy7Qw")
        self.loopback.holder.target = self.fake.app
        self.credentials = {"bot_token": "987654321:CanaryTelegramConformanceXy7Qw"}
        self.bad_credentials = {"bot_token": "987654321:CanaryUnknownTelegramBot3Lp"}
        self.happy = self.send = Call("send_message", {"chat_id": 123456789, "text": "hello"})
        self.ids = ("message_id", "chat_id")
        self.provider_error = Refusal(
            Call("send_message", {"chat_id": 5, "text": "x"}), NotFound, "chat not found"
        )
        self.repeatable = Call("get_me", {})

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.methods[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class NotionCase(Case):
    slug = "notion"
    endpoints: ClassVar[dict[str, str]] = {"search": "search", "create_page": "pages.create"}

    def setup(self) -> None:
        self.fake = FakeNotion()
        self.fake.add_token("ntn_CanaryNotionConformance0123456789abcdef")
        home = self.fake.add_page("Home")
        self.loopback.holder.target = self.fake.app
        self.credentials = {"token": "ntn_CanaryNotionConformance0123456789abcdef"}
        self.bad_credentials = {"token": "ntn_CanaryUnknownNotionToken0123456789ab"}
        title = {"title": [{"text": {"content": "Notes"}}]}
        self.happy = self.send = Call(
            "create_page", {"parent": {"type": "page_id", "page_id": home}, "properties": {"title": title}}
        )
        self.ids = ("page_id",)
        self.provider_error = Refusal(
            Call("get_page", {"page_id": "59833787-2cf9-4fdf-8782-e53db20768a5"}), NotFound, "Could not find"
        )
        self.repeatable = Call("search", {"query": "Home"})
        self.fake.add_token("ntn_CanaryReadOnlyNotion0123456789abcdefgh", capabilities=frozenset({"read"}))
        self.missing_scope = ScopeCheck(
            {"token": "ntn_CanaryReadOnlyNotion0123456789abcdefgh"}, self.send, "insert_content"
        )

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.endpoints[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class GmailCase(Case):
    slug = "gmail"
    operations: ClassVar[dict[str, str]] = {"list_labels": "labels.list", "send_email": "messages.send"}

    def setup(self) -> None:
        self.fake = FakeGmail("ada@example.com")
        self.fake.add_token("ya29.a0CanaryGmailConformance-3Zt8")
        self.fake.add_token("ya29.a0CanaryReadOnlyGmail-6Pq1", scopes={READONLY})
        self.loopback.holder.target = self.fake.app
        self.credentials = {"access_token": "ya29.a0CanaryGmailConformance-3Zt8"}
        self.bad_credentials = {"access_token": "ya29.a0CanaryUnknownGmail-2Wm5"}
        self.happy = self.send = Call(
            "send_email", {"to": "bob@example.org", "subject": "Hi", "body": "Hello"}
        )
        self.ids = ("message_id", "thread_id")
        self.provider_error = Refusal(
            Call("get_message", {"message_id": "18c0000000000fff"}), NotFound, "not found"
        )
        self.repeatable = Call("list_labels", {})
        self.missing_scope = ScopeCheck({"access_token": "ya29.a0CanaryReadOnlyGmail-6Pq1"}, self.send, SEND)

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.operations[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


REPO = {"owner": "octo-org", "repo": "hello-world"}


class GitHubCase(Case):
    slug = "github"

    def setup(self) -> None:
        self.fake = FakeGitHub()
        self.fake.add_token("ghp_CanaryGitHubConformance0123456789abcd")
        self.fake.add_token("ghp_CanaryReadUserOnly0123456789abcdefgh", scopes=["read:user"])
        self.loopback.holder.target = self.fake.app
        self.credentials = {"token": "ghp_CanaryGitHubConformance0123456789abcd"}
        self.bad_credentials = {"token": "ghp_CanaryUnknownGitHub0123456789abcdefg"}
        self.happy = self.send = Call("create_issue", {**REPO, "title": "Crash on start"})
        self.ids = ("issue_number", "issue_id", "url")
        self.provider_error = Refusal(
            Call("list_issues", {"owner": "octo-org", "repo": "nope"}), NotFound, "check owner, repo"
        )
        self.repeatable = Call("list_issues", REPO)
        self.missing_scope = ScopeCheck(
            {"token": "ghp_CanaryReadUserOnly0123456789abcdefgh"}, self.send, "repo"
        )

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(call.action, kind="primary", wait=seconds)  # x-ratelimit-reset

    def served(self) -> int:
        return len(self.fake.calls)


class LinearCase(Case):
    slug = "linear"
    operations: ClassVar[dict[str, str]] = {"search_issues": "searchIssues", "create_issue": "issueCreate"}

    def setup(self) -> None:
        self.fake = FakeLinear()
        self.fake.add_token("lin_api_CanaryLinearConformance0123456789abcd")
        self.fake.add_token("lin_oauth_CanaryReadOnlyLinear0123456789", kind="oauth", scopes=["read"])
        self.loopback.holder.target = self.fake.app
        self.credentials = {"api_key": "lin_api_CanaryLinearConformance0123456789abcd"}
        self.bad_credentials = {"api_key": "lin_api_CanaryUnknownLinear0123456789abcdef"}
        self.happy = self.send = Call("create_issue", {"team_id": TEAM_ID, "title": "Crash on start"})
        self.ids = ("issue_id", "identifier", "url")
        unknown_team = {"team_id": "00000000-0000-4000-8000-000000000000", "title": "x"}
        self.provider_error = Refusal(Call("create_issue", unknown_team), NotFound, "Team")
        self.repeatable = Call("search_issues", {"query": "crash"})
        self.missing_scope = ScopeCheck(
            {"access_token": "lin_oauth_CanaryReadOnlyLinear0123456789"}, self.send, "write"
        )

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.operations[call.action], reset_in=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class DiscordCase(Case):
    slug = "discord"
    routes: ClassVar[dict[str, str]] = {"edit_message": "edit_message", "send_message": "create_message"}

    def setup(self) -> None:
        self.fake = FakeDiscord()
        bot = self.fake.add_bot("MTE4MDAwMDAwMDAwMDAwMDAwMQ.GCanry.CanaryDiscordConformance-4tLq")
        channel = self.fake.add_channel("general")
        mine = self.fake.add_message(channel.id, "draft", author_id=bot.id)
        self.loopback.holder.target = self.fake.app
        self.credentials = {"bot_token": "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GCanry.CanaryDiscordConformance-4tLq"}
        self.bad_credentials = {"bot_token": "MTE4MDAwMDAwMDAwMDAwMDAwOQ.GWrong.CanaryUnknownDiscord-8uYt"}
        self.happy = self.send = Call("send_message", {"channel_id": channel.id, "content": "hello"})
        self.ids = ("message_id", "channel_id")
        self.provider_error = Refusal(
            Call("send_message", {"channel_id": "1180000000000999999", "content": "x"}),
            NotFound,
            "Unknown Channel",
        )
        self.repeatable = Call(
            "edit_message", {"channel_id": channel.id, "message_id": mine["id"], "content": "final"}
        )

    def api_base(self, origin: str) -> str:
        return f"{origin}/api/v10"

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.routes[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class StripeCase(Case):
    slug = "stripe"
    operations: ClassVar[dict[str, str]] = {
        "retrieve_customer": "customers.retrieve",
        "create_customer": "customers.create",
    }

    def setup(self) -> None:
        self.fake = FakeStripe()
        self.fake.add_key("sk_test_51CanaryStripeConformanceQw7Zx9")
        self.fake.add_key("rk_test_51CanaryReadOnlyStripeHv3Ty8", permissions={"rak_customer_read"})
        customer = self.fake.add_customer(email="ada@example.com")
        self.loopback.holder.target = self.fake.app
        self.credentials = {"secret_key": "sk_test_51CanaryStripeConformanceQw7Zx9"}
        self.bad_credentials = {"secret_key": "sk_test_51CanaryUnknownStripeJd4Rs6"}
        self.happy = self.send = Call("create_customer", {"email": "ada@example.com", "name": "Ada"})
        self.ids = ("customer_id",)
        self.provider_error = Refusal(
            Call("retrieve_customer", {"customer_id": "cus_nope"}), NotFound, "No such customer: 'cus_nope'"
        )
        self.repeatable = Call("retrieve_customer", {"customer_id": customer["id"]})
        self.missing_scope = ScopeCheck(
            {"secret_key": "rk_test_51CanaryReadOnlyStripeHv3Ty8"}, self.send, "rak_customer_write"
        )

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(self.operations[call.action], retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


class SmtpCase(Case):
    slug = "smtp"
    states_wait = False  # SMTP replies say "later", never how much later

    def setup(self) -> None:
        self.fake = self.loopback.smtp_sink
        self.fake.reset()
        self.fake.add_user("hub@example.com", "Canary-SMTP-Conformance-5Vn8")
        self.fake.unknown_mailboxes.add("nobody@example.com")
        self.credentials = self._at(self.loopback.smtp_port, "Canary-SMTP-Conformance-5Vn8")
        self.bad_credentials = {**self.credentials, "password": "Canary-SMTP-Wrong-2Jq4"}
        self.happy = self.send = Call(
            "send_email", {"to": "bob@example.org", "subject": "Hi", "body": "Hello"}
        )
        self.ids = ("message_id",)
        self.provider_error = Refusal(
            Call("send_email", {"to": "nobody@example.com", "subject": "Hi", "body": "x"}),
            InvalidInput,
            "550 5.1.1",
        )

    def _at(self, port: int, password: str) -> dict[str, str]:
        return {
            "host": "127.0.0.1",
            "port": str(port),
            "user": "hub@example.com",
            "password": password,
            "security": "starttls",
            "ca_cert_pem": self.loopback.smtp_ca.ca_pem,
        }

    def unreachable(self, port: int) -> tuple[ActionRunner, dict[str, str]]:
        return self.runner(), {**self.credentials, "port": str(port)}

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.fail_next_data("451 4.7.1 Too many messages, slow down")

    def served(self) -> int:
        return self.fake.data_attempts


class HttpCase(Case):
    slug = "http"

    def setup(self) -> None:
        self.fake = FakeUpstream()
        self.fake.accepted_authorization.add("Bearer CanaryHttpConformance-8c41e2")
        self.loopback.holder.target = self.fake.app
        self.credentials = self._at(self.loopback.http_url, "CanaryHttpConformance-8c41e2")
        self.bad_credentials = {**self.credentials, "token": "CanaryHttpWrongToken-0d7f3a"}
        self.happy = Call("request", {"method": "GET", "path": "echo"})
        self.send = Call("request", {"method": "POST", "path": "echo", "json": {"a": 1}})
        self.ids = ("status", "url")
        # Its "provider" is any API; what it refuses on its own is being led to an internal address.
        to_metadata = {"to": "http://169.254.169.254/latest/meta-data"}
        self.provider_error = Refusal(
            Call("request", {"method": "GET", "path": "redirect", "query": to_metadata}),
            Forbidden,
            "refused a redirect",
        )

    @staticmethod
    def _at(origin: str, token: str) -> dict[str, str]:
        host = origin.removeprefix("http://")
        return {"base_url": f"{origin}/api", "auth": "bearer", "token": token, "allowed_hosts": host}

    def unreachable(self, port: int) -> tuple[ActionRunner, dict[str, str]]:
        token = self.credentials["token"]
        return self.runner(), self._at(f"http://127.0.0.1:{port}", token)

    def rate_limit(self, call: Call, seconds: int) -> None:
        self.fake.rate_limit_next(retry_after=seconds)

    def served(self) -> int:
        return len(self.fake.calls)


CASES: dict[str, type[Case]] = {
    case.slug: case
    for case in (
        SlackCase,
        TelegramCase,
        NotionCase,
        GmailCase,
        GitHubCase,
        LinearCase,
        DiscordCase,
        StripeCase,
        SmtpCase,
        HttpCase,
    )
}
