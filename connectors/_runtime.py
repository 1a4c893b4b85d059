"""Running actions: validation, timeouts, retries, error mapping, secret registration and the
pool of open provider clients.

Whatever client a connector uses (an official SDK or httpx), this module is where the policy
lives, so every action gets the same behaviour without writing any of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
import tenacity
from pydantic import BaseModel, ValidationError

from auth.redaction import Scrubber, secrets_to_redact
from connectors._connector import Action, ActionContext, ClientOptions, Connector
from connectors._pool import ClientPool
from connectors.errors import (
    ConnectorError,
    InvalidInput,
    MissingScopes,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


class Backoff(tenacity.wait.wait_base):
    """How long the nth retry waits: exponential, capped, with full jitter (AWS architecture blog),
    so retries of many callers spread apart. The one formula behind action retries (as a tenacity
    wait strategy) and job retries (`delay`)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap

    def delay(self, retry: int) -> float:
        """The wait before retry number `retry` (1 for the first)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** max(retry - 1, 0)))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.delay(retry_state.attempt_number)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    # A provider asking us to wait longer than this is reported to the caller instead.
    max_wait: float = 10.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_delay, self.max_delay)


def _with_defaults(
    connector: Connector, action: Action, params: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """Fill omitted parameters from the connection's config (Slack `defaultChannel`, ...)."""
    filled = dict(params)
    for param, key in connector.spec.defaults.items():
        if param not in action.input_model.model_fields or filled.get(param) not in (None, ""):
            continue
        if config.get(key) not in (None, ""):
            filled[param] = config[key]
        elif not action.input_model.model_fields[param].is_required():
            raise InvalidInput(f"'{param}' is required (or set {key} on the connection)", field=param)
    return filled


class ActionRunner:
    def __init__(
        self,
        *,
        api_bases: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        allowed_hosts: Mapping[str, Sequence[str]] | None = None,
        clients: ClientPool | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """`on_failure(connector_slug, error)` hears of every provider exchange that failed (each
        attempt of a retried action too), as the ConnectorError it was mapped to."""
        self._allowed_hosts = {slug: tuple(hosts) for slug, hosts in (allowed_hosts or {}).items()}
        self._api_bases = dict(api_bases or {})
        self._timeout = timeout
        self._retry = retry
        self._http_transport = http_transport
        self._sleep = sleep
        self._clients = clients or ClientPool()
        self._on_failure = on_failure

    async def aclose(self) -> None:
        """Close the provider clients kept open for reuse (at shutdown)."""
        await self._clients.aclose()

    async def __aenter__(self) -> ActionRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def options_for(self, connector: Connector) -> ClientOptions:
        api_base = self._api_bases.get(connector.slug) or connector.spec.api_base
        return ClientOptions(
            api_base=api_base,
            timeout=self._timeout,
            http_transport=self._http_transport,
            allowed_hosts=self._allowed_hosts.get(connector.slug, ()),
        )

    def parse_input(self, action: Action, params: Mapping[str, Any]) -> BaseModel:
        try:
            return action.input_model.model_validate(params)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None

    async def run(
        self,
        connector: Connector,
        action: Action,
        params: Mapping[str, Any],
        *,
        credentials: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
        connection_id: UUID | None = None,
    ) -> BaseModel:
        """Run one action; raises ConnectorError for anything the caller can act on."""
        parsed = self.parse_input(action, _with_defaults(connector, action, params, config or {}))
        scrubber = self._secrets(connector, credentials)
        log = logging.LoggerAdapter(
            logging.getLogger(f"connectors.{connector.slug}"),
            {"connector": connector.slug, "action": action.name, "connection_id": str(connection_id)},
        )

        def retry_after_or_backoff(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return error.retry_after if isinstance(error, RateLimited) else self._retry.backoff(state)

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            code = error.code if isinstance(error, ConnectorError) else "error"
            log.warning("%s.%s: %s; retrying in %.2fs", connector.slug, action.name, code, wait)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self._retry.max_attempts),
            retry=tenacity.retry_if_exception(lambda error: self._may_retry(action, error)),
            wait=retry_after_or_backoff,
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        with _scrubbed_errors(scrubber):
            result = await retrying(
                self._attempt, connector, action, parsed, credentials, config, connection_id, log
            )
        return _scrubbed_output(scrubber, self._check_output(action, result))

    async def verify(self, connector: Connector, credentials: Mapping[str, str]) -> dict[str, Any]:
        """Ask the provider whether a credential works; returns non-secret account facts."""
        facts = await self.call(connector, credentials, connector.verify)
        return self._secrets(connector, credentials).value(facts)

    async def call(
        self, connector: Connector, credentials: Mapping[str, str], work: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        """One provider call outside an action (verifying a credential, registering or removing a
        hook): the connector's own client, timeout and error mapping, its secrets kept out of error
        texts and logs; not retried."""
        with _scrubbed_errors(self._secrets(connector, credentials)):
            return await self._with_client(connector, credentials, work)

    async def _attempt(
        self,
        connector: Connector,
        action: Action,
        params: BaseModel,
        credentials: Mapping[str, str],
        config: Mapping[str, Any] | None,
        connection_id: UUID | None,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> Any:
        async def work(client: Any) -> Any:
            return await action.func(ActionContext(client, dict(config or {}), connection_id, log), params)

        try:
            return await self._with_client(connector, credentials, work)
        except MissingScopes as error:
            if error.scopes or not action.scopes:
                raise
            raise error.naming(action.scopes) from error  # the provider did not say which

    async def _with_client(
        self, connector: Connector, credentials: Mapping[str, str], work: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        """One provider exchange under the deadline, its failures mapped to ConnectorError; on the
        connector's client for this credential, kept open between calls unless it is per call."""
        try:
            return await self._exchange(connector, credentials, work)
        except Exception as exc:
            if self._on_failure is not None:
                self._on_failure(connector.slug, exc)
            raise

    async def _exchange(
        self, connector: Connector, credentials: Mapping[str, str], work: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        options = self.options_for(connector)
        try:
            with anyio.fail_after(self._timeout):
                if connector.client_per_call:
                    async with connector.open_client(credentials, options) as client:
                        return await work(client)
                key = _client_key(connector, credentials)
                async with self._clients.lease(
                    key, lambda: connector.open_client(credentials, options)
                ) as client:
                    return await work(client)
        except TimeoutError:
            raise UpstreamTimeout(f"{connector.spec.name} did not answer within {self._timeout:g}s") from None
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._mapped(connector, exc) from exc

    def _mapped(self, connector: Connector, exc: Exception) -> Exception:
        mapped = connector.map_error(exc)
        if mapped is not None:
            return mapped
        if isinstance(exc, httpx.TransportError):
            return UpstreamError(f"could not reach {connector.spec.name}", retryable=True)
        return exc  # unexpected: the boundary logs it with a reference

    def _may_retry(self, action: Action, error: BaseException) -> bool:
        # A send is never repeated here: without an idempotency key the user could see it twice,
        # so its caller gets the error (with retryAfter) and decides.
        if not action.hints.safe_to_repeat:
            return False
        if isinstance(error, RateLimited):
            return error.retry_after <= self._retry.max_wait
        return isinstance(error, UpstreamTimeout) or (isinstance(error, UpstreamError) and error.is_transient)

    @staticmethod
    def _check_output(action: Action, result: Any) -> BaseModel:
        if not isinstance(result, action.output_model):
            raise TypeError(
                f"{action.tool_name} returned {type(result).__name__}, not {action.output_model.__name__}"
            )
        return result

    @staticmethod
    def _secrets(connector: Connector, credentials: Mapping[str, str]) -> Scrubber:
        """The credential's secrets: registered for log redaction, and a scrubber for what comes back."""
        oauth = connector.spec.oauth
        token_keys = (
            set(oauth.credential_keys.values()) | {"access_token", "refresh_token"} if oauth else set()
        )
        keys = (*connector.spec.secret_keys, *token_keys)
        for key in keys:
            value = credentials.get(key)
            if value:
                secrets_to_redact.register(value)
        return Scrubber.for_credentials(credentials, keys)


@contextmanager
def _scrubbed_errors(scrubber: Scrubber) -> Iterator[None]:
    """A provider's error text may quote the request (Telegram's paths carry the bot token)."""
    try:
        yield
    except ConnectorError as error:
        if scrubber.found_in(error.message):
            error.message = scrubber.text(error.message)
            error.args = (error.message,)
        raise


def _scrubbed_output(scrubber: Scrubber, result: BaseModel) -> BaseModel:
    """A provider may echo the credential, in any encoding, in any field (a redirect's URL, an echoed
    header): every decoded value is checked, and the result rebuilt only when one held a secret."""
    if not scrubber.forms or not scrubber.found_in(result.model_dump_json()):
        return result
    return type(result).model_validate(scrubber.value(result.model_dump(mode="json", by_alias=True)))


def _client_key(connector: Connector, credentials: Mapping[str, str]) -> str:
    """Which pooled client serves this credential: a digest, so the pool holds no secret as a key."""
    material = json.dumps([connector.slug, sorted(credentials.items())]).encode()
    return hashlib.sha256(material).hexdigest()
