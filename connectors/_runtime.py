"""Running actions: validation, timeouts, retries, error mapping and secret registration.

Whatever client a connector uses (an official SDK or httpx), this module is where the policy
lives, so every action gets the same behaviour without writing any of it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from auth.redaction import secrets_to_redact
from connectors._connector import Action, ActionContext, ClientOptions, Connector
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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    # A provider asking us to wait longer than this is reported to the caller instead.
    max_wait: float = 10.0

    def backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many callers apart.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    where = f" at '{field}'" if field else ""
    return InvalidInput(f"invalid input{where}: {first['msg']}", field=field)


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
    ) -> None:
        self._allowed_hosts = {slug: tuple(hosts) for slug, hosts in (allowed_hosts or {}).items()}
        self._api_bases = dict(api_bases or {})
        self._timeout = timeout
        self._retry = retry
        self._http_transport = http_transport
        self._sleep = sleep

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
            raise validation_error(exc) from None

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
        self._register_secrets(connector, credentials)
        log = logging.LoggerAdapter(
            logging.getLogger(f"connectors.{connector.slug}"),
            {"connector": connector.slug, "action": action.name, "connection_id": str(connection_id)},
        )
        attempt = 0
        while True:
            try:
                result = await self._attempt(
                    connector, action, parsed, credentials, config, connection_id, log
                )
            except ConnectorError as error:
                delay = self._retry_delay(action, error, attempt)
                if delay is None:
                    raise
                log.warning("%s.%s: %s; retrying in %.2fs", connector.slug, action.name, error.code, delay)
                await self._sleep(delay)
                attempt += 1
                continue
            return self._check_output(action, result)

    async def verify(self, connector: Connector, credentials: Mapping[str, str]) -> dict[str, Any]:
        """Ask the provider whether a credential works; returns non-secret account facts."""
        return await self.call(connector, credentials, connector.verify)

    async def call(
        self, connector: Connector, credentials: Mapping[str, str], work: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        """One provider call outside an action (verifying a credential, registering or removing a
        hook): the connector's own client, timeout and error mapping, its secrets redacted; not
        retried."""
        self._register_secrets(connector, credentials)
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
        """One provider exchange under the deadline, its failures mapped to ConnectorError."""
        try:
            with anyio.fail_after(self._timeout):
                async with connector.open_client(credentials, self.options_for(connector)) as client:
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

    def _retry_delay(self, action: Action, error: ConnectorError, attempt: int) -> float | None:
        if attempt + 1 >= self._retry.max_attempts:
            return None
        # A send is never repeated here: without an idempotency key the user could see it twice,
        # so its caller gets the error (with retryAfter) and decides.
        if not action.hints.safe_to_repeat:
            return None
        if isinstance(error, RateLimited):
            return error.retry_after if error.retry_after <= self._retry.max_wait else None
        transient = isinstance(error, UpstreamTimeout) or (
            isinstance(error, UpstreamError) and error.is_transient
        )
        return self._retry.backoff(attempt) if transient else None

    @staticmethod
    def _check_output(action: Action, result: Any) -> BaseModel:
        if not isinstance(result, action.output_model):
            raise TypeError(
                f"{action.tool_name} returned {type(result).__name__}, not {action.output_model.__name__}"
            )
        return result

    @staticmethod
    def _register_secrets(connector: Connector, credentials: Mapping[str, str]) -> None:
        oauth = connector.spec.oauth
        token_keys = (
            set(oauth.credential_keys.values()) | {"access_token", "refresh_token"} if oauth else set()
        )
        for key in (*connector.spec.secret_keys, *token_keys):
            value = credentials.get(key)
            if value:
                secrets_to_redact.register(value)
