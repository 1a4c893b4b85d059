"""A real SMTP server (aiosmtpd) on loopback, with a throwaway CA, AUTH and test controls.

aiosmtpd speaks the protocol for real (EHLO, STARTTLS, AUTH PLAIN/LOGIN, the 530 before
STARTTLS), so the connector's aiosmtplib session is exercised end to end. The sink keeps
every delivered message in memory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ThrowawayCA:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost (PEM strings)."""

    ca_pem: str
    cert_pem: str
    key_pem: str

    def server_context(self, tmp_dir: Path) -> ssl.SSLContext:
        # ssl loads a certificate chain from files only.
        cert, key = tmp_dir / "server.pem", tmp_dir / "server.key"
        cert.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_throwaway_ca() -> ThrowawayCA:
    """Generated at test time (EC keys are quick); nothing secret is checked in."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Tendril test CA"))
        .issuer_name(_name("Tendril test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ThrowawayCA(
        ca_pem=ca_cert.public_bytes(pem).decode(),
        cert_pem=cert.public_bytes(pem).decode(),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated: bool


@dataclass
class SmtpSink:
    """aiosmtpd handler: accepts known users, records messages, fails on request."""

    users: dict[str, str] = field(default_factory=dict)
    unknown_mailboxes: set[str] = field(default_factory=set)
    delivered: list[Delivered] = field(default_factory=list)
    data_attempts: int = 0
    _data_faults: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test controls -------------------------------------------------------
    def add_user(self, login: str, password: str) -> None:
        self.users[login] = password

    def fail_next_data(self, reply: str = "451 4.7.1 Try again later") -> None:
        """Answer the next DATA with `reply` (a 4yz is what a throttling server sends)."""
        with self._lock:
            self._data_faults.append(reply)

    def reset(self) -> None:
        with self._lock:
            self.delivered.clear()
            self.unknown_mailboxes.clear()
            self._data_faults.clear()
            self.data_attempts = 0

    # --- aiosmtpd hooks ------------------------------------------------------
    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        # handled=False: aiosmtpd then answers 535 itself (its default, True, leaves the client
        # waiting). No auth_data: aiosmtpd logs the result's repr at DEBUG.
        ok = isinstance(data, LoginPassword) and self.users.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.unknown_mailboxes:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.data_attempts += 1
            if self._data_faults:
                return self._data_faults.pop(0)
            content = cast(bytes, envelope.content)
            message = cast(EmailMessage, message_from_bytes(content, policy=policy.default))
            self.delivered.append(
                Delivered(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 2.0.0 Message accepted for delivery"


class _LoopbackController(Controller):
    """Serves on a socket bound beforehand, so the OS-picked port is known without races."""

    def __init__(self, handler: SmtpSink, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=sock.getsockname()[1],
            authenticator=handler.authenticate,
            **kwargs,
        )
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def run_smtp_on_loopback(
    sink: SmtpSink, mode: str, server_context: ssl.SSLContext | None = None
) -> Iterator[int]:
    """Serve `sink`; yield the port. Modes: `starttls` (587 style), `tls` (465 style), `plain`.

    `starttls` refuses AUTH and mail before STARTTLS. `tls` needs auth_require_tls=False:
    aiosmtpd does not count an implicitly TLS-wrapped session as TLS.
    """
    options: dict[str, Any] = {
        "starttls": {"tls_context": server_context, "require_starttls": True},
        "tls": {"ssl_context": server_context, "auth_require_tls": False},
        "plain": {},
    }[mode]
    controller = _LoopbackController(sink, _bound_socket(), **options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), never listening."""
    with _bound_socket() as sock:
        yield sock.getsockname()[1]
