"""SMTP send_email through aiosmtplib against a real aiosmtpd server on loopback (TLS verified)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from connectors import ActionRunner, load_catalog
from connectors.errors import (
    ConnectorError,
    InvalidCredentials,
    InvalidInput,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from server.logs import install_redaction
from tests.fakes.smtp import SmtpSink, ThrowawayCA, make_throwaway_ca, refusing_port, run_smtp_on_loopback

pytestmark = pytest.mark.anyio
smtp = load_catalog()["smtp"]
send_email = smtp.actions["send_email"]

USER = "hub@example.com"
PASSWORD = "Canary-SMTP-Secret-7Qx9Zk2w"


@dataclass
class Servers:
    sink: SmtpSink
    ca: ThrowawayCA
    starttls_port: int
    tls_port: int
    plain_port: int

    def credentials(self, security: str = "starttls", **overrides: str) -> dict[str, str]:
        port = {"starttls": self.starttls_port, "tls": self.tls_port, "none": self.plain_port}[security]
        base = {
            "host": "127.0.0.1",
            "port": str(port),
            "user": USER,
            "password": PASSWORD,
            "security": security,
            "ca_cert_pem": self.ca.ca_pem,
        }
        return {**base, **overrides}


@pytest.fixture(scope="module")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    ca = make_throwaway_ca()
    context = ca.server_context(tmp_path_factory.mktemp("smtp-tls"))
    sink = SmtpSink()
    sink.add_user(USER, PASSWORD)
    with (
        run_smtp_on_loopback(sink, "starttls", context) as starttls_port,
        run_smtp_on_loopback(sink, "tls", context) as tls_port,
        run_smtp_on_loopback(sink, "plain") as plain_port,
    ):
        yield Servers(sink, ca, starttls_port, tls_port, plain_port)


@pytest.fixture
def servers(_servers: Servers) -> Servers:
    _servers.sink.reset()
    return _servers


def runner() -> ActionRunner:
    """The operator opened loopback for SMTP (TENDRIL_SMTP_ALLOWED_HOSTS), where the test server is."""
    return ActionRunner(timeout=5, allowed_hosts={"smtp": ["127.0.0.1", "localhost"]})


def parts(message: EmailMessage) -> dict[str, str]:
    # Bodies travel with CRLF line ends (RFC 5321); compare the text itself.
    return {p.get_content_type(): p.get_content().rstrip() for p in message.walk() if not p.is_multipart()}


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_verify_connects_secures_and_logs_in(servers: Servers, security: str) -> None:
    account = await runner().verify(smtp, servers.credentials(security))
    assert account == {"host": "127.0.0.1", "security": security}


async def test_send_email_over_starttls_delivers_headers_parts_and_envelope(servers: Servers) -> None:
    result = await runner().run(
        smtp,
        send_email,
        {
            "to": ["Ann Example <ann@example.com>"],
            "cc": "bob@example.com, Carol <carol@example.com>",
            "bcc": ["dave@example.com"],
            "reply_to": "replies@example.com",
            "subject": "Quarterly report",
            "body": "Plain text version.",
            "html": "<p>HTML <b>version</b>.</p>",
        },
        credentials=servers.credentials(from_address="Hub Sender <hub@example.com>"),
    )
    data = result.model_dump()
    assert data["status"] == "sent" and data["rejected"] == {}
    assert data["accepted"] == ["ann@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
    [delivered] = servers.sink.delivered
    assert delivered.authenticated
    assert delivered.mail_from == "hub@example.com"
    assert delivered.rcpt_tos == data["accepted"]
    message = delivered.message
    assert message["From"] == "Hub Sender <hub@example.com>"
    assert message["To"] == "Ann Example <ann@example.com>"
    assert message["Cc"] == "bob@example.com, Carol <carol@example.com>"
    assert message["Bcc"] is None and "dave@example.com" not in message.as_string()
    assert message["Reply-To"] == "replies@example.com"
    assert message["Subject"] == "Quarterly report"
    assert message["Message-ID"] == data["message_id"] and data["message_id"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    assert parts(message) == {
        "text/plain": "Plain text version.",
        "text/html": "<p>HTML <b>version</b>.</p>",
    }


async def test_send_email_over_implicit_tls_with_a_comma_separated_to(servers: Servers) -> None:
    result = await runner().run(
        smtp,
        send_email,
        {"to": "ann@example.com, bob@example.com", "subject": "Hi", "body": "Hello"},
        credentials=servers.credentials("tls"),
    )
    assert result.model_dump()["accepted"] == ["ann@example.com", "bob@example.com"]
    [delivered] = servers.sink.delivered
    assert delivered.message["To"] == "ann@example.com, bob@example.com"
    assert delivered.message.get_content_type() == "text/plain"
    assert delivered.message["From"] == USER  # the username, as no from_address is set


async def test_the_from_address_parameter_overrides_the_connection_default(servers: Servers) -> None:
    await runner().run(
        smtp,
        send_email,
        {"to": "ann@example.com", "subject": "s", "body": "b", "from_address": "Team <team@example.org>"},
        credentials=servers.credentials(from_address="hub@example.com"),
    )
    [delivered] = servers.sink.delivered
    assert delivered.mail_from == "team@example.org"
    assert delivered.message["From"] == "Team <team@example.org>"


async def test_a_wrong_password_is_invalid_credentials(servers: Servers) -> None:
    wrong = servers.credentials(password="not-the-password")
    with pytest.raises(InvalidCredentials, match="535"):
        await runner().verify(smtp, wrong)
    with pytest.raises(InvalidCredentials, match="refused the login"):
        await runner().run(
            smtp, send_email, {"to": "a@example.com", "subject": "s", "body": "b"}, credentials=wrong
        )
    assert servers.sink.delivered == []


async def test_refused_recipients_are_reported_or_rejected(servers: Servers) -> None:
    servers.sink.unknown_mailboxes.add("ghost@example.com")
    partial = await runner().run(
        smtp,
        send_email,
        {"to": ["ann@example.com", "ghost@example.com"], "subject": "s", "body": "b"},
        credentials=servers.credentials(),
    )
    assert partial.model_dump()["accepted"] == ["ann@example.com"]
    assert partial.model_dump()["rejected"] == {"ghost@example.com": "550 5.1.1 No such mailbox here"}
    with pytest.raises(InvalidInput) as caught:
        await runner().run(
            smtp,
            send_email,
            {"to": "ghost@example.com", "subject": "s", "body": "b"},
            credentials=servers.credentials(),
        )
    assert caught.value.field == "to" and "ghost@example.com" in caught.value.message
    assert len(servers.sink.delivered) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "not-an-address", "subject": "s", "body": "b"}, "to"),
        ({"to": [], "subject": "s", "body": "b"}, "to"),
        ({"to": "a@example.com", "bcc": "a@example.com, nope", "subject": "s", "body": "b"}, "bcc"),
        ({"to": "a@example.com\r\nBcc: x@example.com", "subject": "s", "body": "b"}, "to"),
        ({"to": "a@example.com", "subject": "two\nlines", "body": "b"}, "subject"),
        ({"to": "a@example.com", "subject": "s", "body": "b", "reply_to": "a@x.org, b@x.org"}, "reply_to"),
    ],
)
async def test_invalid_input_names_the_field(servers: Servers, params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await runner().run(smtp, send_email, params, credentials=servers.credentials())
    assert caught.value.field == field
    assert servers.sink.delivered == []


async def test_without_any_sender_address_from_address_is_asked_for(servers: Servers) -> None:
    servers.sink.add_user("hub", PASSWORD)
    with pytest.raises(InvalidInput) as caught:
        await runner().run(
            smtp,
            send_email,
            {"to": "a@example.com", "subject": "s", "body": "b"},
            credentials=servers.credentials(user="hub"),
        )
    assert caught.value.field == "from_address"


async def test_a_certificate_from_an_unknown_ca_fails_naming_tls(servers: Servers) -> None:
    for security in ("starttls", "tls"):
        untrusted = servers.credentials(security, ca_cert_pem=make_throwaway_ca().ca_pem)
        with pytest.raises(UpstreamError, match="TLS") as caught:
            await runner().verify(smtp, untrusted)
        assert "certificate verification failed" in caught.value.message


async def test_starttls_is_never_skipped_when_the_server_lacks_it(servers: Servers) -> None:
    credentials = servers.credentials("starttls", port=str(servers.plain_port))
    with pytest.raises(UpstreamError, match="does not offer STARTTLS"):
        await runner().verify(smtp, credentials)


async def test_security_none_cannot_log_in_where_auth_needs_tls(servers: Servers) -> None:
    credentials = servers.credentials("none", port=str(servers.starttls_port))
    with pytest.raises(InvalidCredentials, match="does not offer SMTP AUTH before TLS"):
        await runner().verify(smtp, credentials)


async def test_a_refused_connection_is_a_retryable_upstream_error(servers: Servers) -> None:
    with refusing_port() as port, pytest.raises(UpstreamError) as caught:
        await runner().verify(smtp, servers.credentials(port=str(port)))
    assert caught.value.is_transient and "could not connect to the SMTP server" in caught.value.message


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("451 4.7.1 Too many messages, slow down", RateLimited),  # a policy status: throttling
        ("452 4.3.1 Insufficient system storage", UpstreamError),  # transient, but not a rate limit
    ],
)
async def test_a_temporary_failure_is_reported_and_the_send_is_not_repeated(
    servers: Servers, reply: str, kind: type[ConnectorError]
) -> None:
    servers.sink.fail_next_data(reply)
    with pytest.raises(kind) as caught:
        await runner().run(
            smtp,
            send_email,
            {"to": "a@example.com", "subject": "s", "body": "b"},
            credentials=servers.credentials(),
        )
    assert caught.value.retryable or (isinstance(caught.value, UpstreamError) and caught.value.is_transient)
    assert reply.split(" ", 1)[1] in caught.value.message
    assert servers.sink.data_attempts == 1 and servers.sink.delivered == []


async def test_a_server_that_never_answers_is_a_timeout(servers: Servers) -> None:
    with socket.socket() as silent:  # listens, accepts into the backlog, never sends a greeting
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(UpstreamTimeout):
            await ActionRunner(timeout=0.5, allowed_hosts={"smtp": ["127.0.0.1"]}).verify(
                smtp, servers.credentials(port=str(port))
            )


async def test_the_password_never_reaches_results_errors_or_logs(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction(caplog.handler)
    caplog.set_level(logging.DEBUG)
    result = await runner().run(
        smtp,
        send_email,
        {"to": "a@example.com", "subject": "s", "body": "b"},
        credentials=servers.credentials(),
    )
    texts = [result.model_dump_json()]
    for credentials in (
        servers.credentials(password=PASSWORD + "-wrong"),
        servers.credentials("tls", port="1"),
    ):
        with pytest.raises(Exception) as caught:  # any failure: only its text matters
            await runner().verify(smtp, credentials)
        texts.append(str(caught.value))
    assert all(PASSWORD not in text for text in texts)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.169.254", "127.0.0.1", "::1"])
async def test_internal_smtp_hosts_are_refused_unless_the_operator_opened_them(
    servers: Servers, host: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await ActionRunner(timeout=5).verify(smtp, servers.credentials(host=host))
    assert refused.value.field == "host" and "TENDRIL_SMTP_ALLOWED_HOSTS" in refused.value.message


async def test_the_connection_goes_to_the_address_that_was_checked(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS is asked once: a second answer (rebinding) cannot move the connection elsewhere."""
    answers = [["127.0.0.1"]]

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        return answers.pop(0) if answers else ["10.255.255.1"]

    monkeypatch.setattr("connectors.smtp.actions.system_resolver", rebinding_resolver)
    result = await runner().run(
        smtp,
        send_email,
        {"to": "a@example.com", "subject": "pinned", "body": "b"},
        credentials=servers.credentials(host="localhost"),  # TLS still checks the name
    )
    assert result.model_dump()["status"] == "sent" and answers == []
    assert [d.message["Subject"] for d in servers.sink.delivered] == ["pinned"]
