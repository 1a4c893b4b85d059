"""SMTP submission through aiosmtplib: TLS is always verified, never silently skipped."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from functools import lru_cache
from typing import Any, Literal

import aiosmtplib
import anyio
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from connectors import ActionContext, ClientOptions, Connector, Hints
from connectors._egress import AllowList, BlockedDestination, system_resolver, vetted_addresses
from connectors.errors import (
    ConnectorError,
    InvalidCredentials,
    InvalidInput,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    tls_failure,
)

connector = Connector.load(__file__)

Security = Literal["starttls", "tls", "none"]
MAX_RECIPIENTS = 100
# Deliberately loose (RFC 5321 allows far more); it only has to catch what is clearly not an address.
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")


@dataclass(frozen=True, slots=True)
class Mailer:
    """An SMTP session that is connected, TLS-protected as configured, and logged in."""

    smtp: aiosmtplib.SMTP
    host: str
    security: Security
    default_from: str | None


@lru_cache(maxsize=32)
def _tls_context(ca_cert_pem: str | None) -> ssl.SSLContext:
    # With a CA given, trust only that CA (a private server's own); else the system store.
    # Cached: loading the system store takes ~0.1s, and a context serves any number of sessions.
    try:
        return ssl.create_default_context(cadata=ca_cert_pem) if ca_cert_pem else ssl.create_default_context()
    except (ssl.SSLError, ValueError):
        raise InvalidCredentials("ca_cert_pem is not a valid PEM certificate") from None


def _settings(credentials: Mapping[str, str]) -> tuple[int, Security]:
    port = credentials["port"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidCredentials(f"port {port!r} is not a TCP port")
    security = credentials.get("security") or "starttls"
    if security not in ("starttls", "tls", "none"):
        raise InvalidCredentials("security must be starttls, tls or none")
    return int(port), security


def _default_sender(credentials: Mapping[str, str]) -> str | None:
    configured, user = credentials.get("from_address"), credentials["user"]
    try:
        if configured:
            return _address_list(configured)[0]
        return _address_list(user)[0] if "@" in user else None
    except (ValueError, IndexError):
        raise InvalidCredentials("from_address is not an email address") from None


async def _connect_to_vetted_address(host: str, port: int, options: ClientOptions) -> socket.socket:
    """A socket connected to an address the egress rules allow (the http connector's rules).

    Connecting to the vetted IP ourselves closes the gap a second DNS answer could slip through;
    aiosmtplib keeps `host` for TLS, so certificates are still checked against the name.
    """
    try:
        allow = AllowList.parse(options.allowed_hosts)
        addresses = await vetted_addresses(host, port, allow=allow, resolve=system_resolver)
    except BlockedDestination as exc:
        raise InvalidInput(
            f"SMTP host: {exc}; an operator can open it with TENDRIL_SMTP_ALLOWED_HOSTS", field="host"
        ) from None
    except OSError:
        raise UpstreamError(f"cannot resolve SMTP host {host}", retryable=True) from None
    loop = asyncio.get_running_loop()
    for address in addresses:
        sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (str(address), port))
        except OSError:
            sock.close()
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise UpstreamError(f"could not connect to the SMTP server {host}:{port}", retryable=True)


# One SMTP session per call: a kept session would go stale between sends.
@connector.client_per_call_only
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[Mailer]:
    host = credentials["host"]
    port, security = _settings(credentials)
    default_from = _default_sender(credentials)
    context = await anyio.to_thread.run_sync(_tls_context, credentials.get("ca_cert_pem"))
    sock = await _connect_to_vetted_address(host, port, options)
    # STARTTLS is driven by hand below: aiosmtplib's automatic mode would go on in plaintext
    # when the server does not offer it.
    smtp = aiosmtplib.SMTP(
        hostname=host,
        sock=sock,
        use_tls=security == "tls",
        start_tls=False,
        tls_context=context,
        timeout=options.timeout,
    )
    try:
        await smtp.connect()
    except BaseException:
        sock.close()
        raise
    try:
        if security == "starttls":
            await smtp.ehlo()
            if not smtp.supports_extension("starttls"):
                raise UpstreamError(f"{host} does not offer STARTTLS; use security tls (port 465) instead")
            await smtp.starttls()
        await smtp.ehlo()
        if not smtp.supports_extension("auth"):
            hint = " before TLS; use security starttls or tls" if security == "none" else ""
            raise InvalidCredentials(f"{host} does not offer SMTP AUTH{hint}")
        await smtp.login(credentials["user"], credentials["password"])
        yield Mailer(smtp, host, security, default_from)
    finally:
        try:
            with suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        finally:
            smtp.close()


@connector.verifier
async def verify(client: Mailer) -> dict[str, Any]:
    """Connecting, TLS and AUTH already happened when the client opened; report where."""
    return {"host": client.host, "security": client.security}


# SMTP says "later" but never how much later; a minute is what submission servers usually mean.
SMTP_THROTTLE_WAIT = 60.0
_POLICY_STATUS = re.compile(r"^4\.7\.\d{1,3}\b")  # RFC 3463 X.7.X: security or policy status


def _is_throttling(exc: aiosmtplib.SMTPResponseException) -> bool:
    """421 (service closing) or a 4.7.x policy reply: how throttling servers answer (RFC 5321, 3463)."""
    return exc.code == 421 or (400 <= exc.code < 500 and bool(_POLICY_STATUS.match(exc.message)))


@connector.error_mapper
def map_smtp_error(exc: BaseException) -> ConnectorError | None:
    tls = tls_failure(exc, "the SMTP server")
    if tls is not None:
        return tls
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return InvalidCredentials(f"the SMTP server refused the login ({exc.code} {exc.message})")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return InvalidInput(f"the SMTP server refused every recipient ({refused})", field="to")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return InvalidInput(
            f"the SMTP server refused the sender {exc.sender} ({exc.code} {exc.message})",
            field="from_address",
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return InvalidInput(f"the SMTP server cannot take this message: {exc.message}", field="to")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return UpstreamTimeout("the SMTP server did not answer in time")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return UpstreamError(f"could not talk to the SMTP server: {exc.message}", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and _is_throttling(exc):
        return RateLimited(
            f"the SMTP server is throttling ({exc.code} {exc.message}); try again later",
            retry_after=SMTP_THROTTLE_WAIT,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4yz replies are transient by definition (RFC 5321 section 4.2.1); 5yz are final.
        return UpstreamError(
            f"the SMTP server answered {exc.code} {exc.message}",
            status=exc.code,
            retryable=400 <= exc.code < 500,
        )
    if isinstance(exc, aiosmtplib.SMTPException):
        return UpstreamError(f"SMTP error: {exc.message}")
    return None


def _parse_addresses(value: str | Sequence[str]) -> list[tuple[str, str]]:
    items = [value] if isinstance(value, str) else list(value)
    if any("\r" in item or "\n" in item for item in items):
        raise ValueError("addresses may not contain line breaks")
    pairs = [(name, addr) for name, addr in getaddresses(items) if name or addr]
    for name, addr in pairs:
        if not _ADDR_SPEC.match(addr):
            raise ValueError(f"{formataddr((name, addr)) or addr!r} is not an email address")
    return pairs


def _address_list(value: str | Sequence[str]) -> list[str]:
    """Normalised `Name <addr>` strings; raises ValueError naming the first bad entry."""
    return [formataddr(pair) for pair in _parse_addresses(value)]


def _addr_specs(values: Sequence[str]) -> list[str]:
    return [addr for _, addr in _parse_addresses(values)]


_ADDRESSES = "One address or a list; a single string may hold several, comma-separated."


class SendEmailInput(BaseModel):
    to: list[str] | str = Field(
        description=f"Recipients ('Jane <jane@example.com>' or 'jane@example.com'). {_ADDRESSES}"
    )
    subject: str = Field(max_length=998, pattern=r"^[^\r\n]*$", description="Subject line (one line).")
    body: str = Field(max_length=1_000_000, description="Plain-text body.")
    html: str | None = Field(
        None, max_length=1_000_000, description="HTML version of the body, sent as an alternative part."
    )
    cc: list[str] | str | None = Field(None, description=f"Carbon-copy recipients. {_ADDRESSES}")
    bcc: list[str] | str | None = Field(
        None, description=f"Blind-copy recipients: they get the email but appear in no header. {_ADDRESSES}"
    )
    reply_to: str | None = Field(None, description="Address replies should go to, if not the sender.")
    from_address: str | None = Field(
        None, description="Sender, overriding the connection's default; the server may refuse other senders."
    )

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _address_lists(cls, value: str | list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        addresses = _address_list(value)
        if info.field_name == "to" and not addresses:
            raise ValueError("at least one recipient is required")
        if len(addresses) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} addresses")
        return addresses

    @field_validator("reply_to", "from_address")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        addresses = _address_list(value)
        if len(addresses) != 1:
            raise ValueError("exactly one address")
        return addresses[0]


class SendEmailOutput(BaseModel):
    message_id: str = Field(description="The Message-ID header of the sent email, e.g. <...@example.com>.")
    accepted: list[str] = Field(description="Envelope recipients the server accepted.")
    rejected: dict[str, str] = Field(description="Envelope recipients the server refused, with its reply.")
    status: str = Field(description="Always `sent` when the server accepted the message.")


def _build_message(params: SendEmailInput, sender: str, to: list[str], cc: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message["Subject"] = params.subject
    message["Date"] = formatdate(usegmt=True)
    # Our own domain part: make_msgid's default calls getfqdn(), a blocking DNS lookup.
    message["Message-ID"] = make_msgid(domain=_addr_specs([sender])[0].rsplit("@", 1)[1])
    message.set_content(params.body)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    return message


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else value


@connector.action(Hints(read_only=False, idempotent=False))
async def send_email(ctx: ActionContext[Mailer], params: SendEmailInput) -> SendEmailOutput:
    """Send an email from the connected mailbox through its SMTP server.

    Bcc recipients receive the email without being named in it. Sending twice sends two emails.
    """
    sender = params.from_address or ctx.client.default_from
    if not sender:
        raise InvalidInput(
            "no sender: pass from_address or set the connection's From address", field="from_address"
        )
    to, cc, bcc = _as_list(params.to), _as_list(params.cc), _as_list(params.bcc)
    message = _build_message(params, sender, to, cc)
    # Unique envelope recipients, in order; Bcc goes only here, never into a header.
    recipients = list(dict.fromkeys(_addr_specs([*to, *cc, *bcc])))
    refused, _reply = await ctx.client.smtp.send_message(
        message, sender=_addr_specs([sender])[0], recipients=recipients
    )
    ctx.log.info("smtp: sent %s to %d recipient(s)", message["Message-ID"], len(recipients) - len(refused))
    return SendEmailOutput(
        message_id=str(message["Message-ID"]),
        accepted=[r for r in recipients if r not in refused],
        rejected={r: f"{reply.code} {reply.message}" for r, reply in refused.items()},
        status="sent",
    )
