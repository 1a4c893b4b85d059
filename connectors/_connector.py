"""The code half of a connector: actions, the client factory, credential verification."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, get_type_hints
from uuid import UUID

import httpx
from pydantic import BaseModel

from connectors._spec import ConnectorSpec, WebhookSpec
from connectors._webhook import Receiver
from connectors.errors import ConnectorError

ClientT = TypeVar("ClientT")

_TOOL_NAME_MAX = 128


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What the framework tells a client factory: where the provider is and how to reach it."""

    api_base: str
    timeout: float
    # Tests and embedders may route provider traffic through their own httpx transport.
    http_transport: httpx.AsyncBaseTransport | None = None
    # Internal hosts the operator opened for this connector (TENDRIL_<SLUG>_ALLOWED_HOSTS).
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hints:
    """MCP tool annotations. Defaults describe a write that is neither idempotent nor destructive."""

    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = True

    def as_mcp(self) -> dict[str, bool]:
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent or self.read_only,
            "openWorldHint": self.open_world,
        }

    @property
    def safe_to_repeat(self) -> bool:
        return self.read_only or self.idempotent


@dataclass
class ActionContext(Generic[ClientT]):
    """What an action receives besides its parameters. Actions never see raw credentials."""

    client: ClientT
    config: Mapping[str, Any]
    connection_id: UUID | None
    log: logging.LoggerAdapter[logging.Logger]


ActionFunc = Callable[[ActionContext[Any], Any], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class HookRequest:
    """Register a webhook at the provider: where it should deliver, which events, on what.

    `secret` is a fresh random value for providers that sign with a secret we choose (GitHub,
    Telegram); providers that mint their own (Stripe) return theirs in RegisteredHook.secrets."""

    url: str
    secret: str
    events: tuple[str, ...] = ()
    target: str | None = None  # e.g. GitHub's "owner/repo"


@dataclass(frozen=True, slots=True)
class RegisteredHook:
    hook_id: str | None  # the provider's id for the hook, where it has one
    secrets: dict[str, str]  # by the webhook receiver's secret names
    description: str


@dataclass(frozen=True, slots=True)
class HookRef:
    """A webhook Tendril registered at the provider, as kept with its endpoint: enough to remove it."""

    url: str  # where it delivers (Tendril's receiver URL)
    hook_id: str | None  # RegisteredHook.hook_id
    target: str | None  # HookRequest.target


ClientFactory = Callable[[Mapping[str, str], ClientOptions], AbstractAsyncContextManager[Any]]
Verifier = Callable[[Any], Awaitable[dict[str, Any]]]
ErrorMapper = Callable[[BaseException], ConnectorError | None]
HookRegistrar = Callable[[Any, HookRequest], Awaitable[RegisteredHook]]
# True when the hook was removed; False when the provider had no such hook (any more) for Tendril.
HookRemover = Callable[[Any, HookRef], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Action:
    connector_slug: str
    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    hints: Hints
    scopes: tuple[str, ...]
    func: ActionFunc

    @property
    def tool_name(self) -> str:
        return f"{self.connector_slug}_{self.name}"


@dataclass
class Connector:
    spec: ConnectorSpec
    actions: dict[str, Action] = field(default_factory=dict)
    _client_factory: ClientFactory | None = None
    _verifier: Verifier | None = None
    _error_mappers: list[ErrorMapper] = field(default_factory=list)
    _hook_registrar: HookRegistrar | None = None
    _hook_remover: HookRemover | None = None
    _receiver: type[Receiver] | None = None
    client_per_call: bool = False

    @classmethod
    def load(cls, module_file: str) -> Connector:
        """The connector declared by `connector.yaml` beside the given module."""
        return cls(ConnectorSpec.from_yaml(Path(module_file).with_name("connector.yaml")))

    @property
    def slug(self) -> str:
        return self.spec.slug

    # -- declaration decorators ------------------------------------------------------------
    def action(
        self, hints: Hints = Hints(), *, scopes: tuple[str, ...] = (), title: str | None = None
    ) -> Callable[[Callable[[ActionContext[Any], Any], Awaitable[Any]]], Action]:
        def register(func: Callable[[ActionContext[Any], Any], Awaitable[Any]]) -> Action:
            action = self._build_action(func, hints, scopes, title)
            if action.name in self.actions:
                raise ValueError(f"{self.slug}: action {action.name!r} declared twice")
            self.actions[action.name] = action
            return action

        return register

    def _build_action(
        self, func: Callable[..., Any], hints: Hints, scopes: tuple[str, ...], title: str | None
    ) -> Action:
        types = get_type_hints(func)
        params = list(inspect.signature(func).parameters)
        if len(params) != 2:
            raise TypeError(f"{func.__name__} must take (ctx, params)")
        input_model, output_model = types.get(params[1]), types.get("return")
        for model, role in ((input_model, "parameter"), (output_model, "return")):
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                raise TypeError(
                    f"{self.slug}.{func.__name__}: {role} must be annotated with a pydantic model"
                )
        doc = inspect.getdoc(func)
        if not doc:
            raise TypeError(f"{self.slug}.{func.__name__} needs a docstring: it is what the model reads")
        assert input_model is not None and output_model is not None
        _require_field_descriptions(self.slug, func.__name__, input_model)
        _require_field_descriptions(self.slug, func.__name__, output_model)
        name = func.__name__
        if len(f"{self.slug}_{name}") > _TOOL_NAME_MAX:
            raise ValueError(f"tool name for {self.slug}.{name} is too long")
        return Action(
            connector_slug=self.slug,
            name=name,
            title=title or name.replace("_", " ").capitalize(),
            description=doc.split("\n\n")[0].replace("\n", " "),
            input_model=input_model,
            output_model=output_model,
            hints=hints,
            scopes=scopes,
            func=func,
        )

    def find_action(self, name: str) -> Action | None:
        """By our name, our tool name (`slack_post_message`) or a declared alias (`post-search`)."""
        name = self.spec.action_aliases.get(name, name)
        return self.actions.get(name) or self.actions.get(name.removeprefix(f"{self.slug}_"))

    def client(self, factory: ClientFactory) -> ClientFactory:
        """Declares how to open the provider client for a credential. The runtime keeps it open
        and reuses it for that credential's later calls (keep-alive), so it must allow concurrent use."""
        self._client_factory = factory
        return factory

    def client_per_call_only(self, factory: ClientFactory) -> ClientFactory:
        """Like `client`, for a client that must be opened for each call (an SMTP session, a
        client that is not safe to share between concurrent calls)."""
        self.client_per_call = True
        return self.client(factory)

    def verifier(self, func: Verifier) -> Verifier:
        self._verifier = func
        return func

    def error_mapper(self, func: ErrorMapper) -> ErrorMapper:
        self._error_mappers.append(func)
        return func

    def hook_registrar(self, func: HookRegistrar) -> HookRegistrar:
        """Declares that the provider's API can create webhooks with the stored credential."""
        self._hook_registrar = func
        return func

    def hook_remover(self, func: HookRemover) -> HookRemover:
        """Declares how to remove a webhook the hook_registrar created (when its endpoint goes)."""
        self._hook_remover = func
        return func

    def receiver(self, cls: type[Receiver]) -> type[Receiver]:
        """Declares the class that verifies this provider's webhook deliveries (its `webhook.py`)."""
        if self.spec.webhook is None:
            raise TypeError(f"{self.slug}: declare `webhook:` in connector.yaml before a receiver")
        self._receiver = cls
        return cls

    # -- used by the runtime -----------------------------------------------------------------
    def open_client(
        self, credentials: Mapping[str, str], options: ClientOptions
    ) -> AbstractAsyncContextManager[Any]:
        if self._client_factory is None:
            return _no_client()
        return self._client_factory(credentials, options)

    async def verify(self, client: Any) -> dict[str, Any]:
        return await self._verifier(client) if self._verifier else {}

    @property
    def registers_hooks(self) -> bool:
        return self._hook_registrar is not None

    @property
    def webhook(self) -> WebhookSpec | None:
        """What receiving this provider's webhooks takes, when it pushes events to Tendril."""
        return self.spec.webhook if self._receiver is not None else None

    def new_receiver(self, signing_keys: Mapping[str, str] | None = None) -> Receiver:
        """A receiver for one delivery; given the provider's published keys when its spec names them."""
        if self._receiver is None or self.spec.webhook is None:
            raise TypeError(f"{self.slug} receives no webhooks")
        if self.spec.webhook.signing_keys_url is not None:
            return self._receiver(signing_keys or {})  # type: ignore[call-arg]
        return self._receiver()

    async def register_hook(self, client: Any, request: HookRequest) -> RegisteredHook:
        if self._hook_registrar is None:
            raise TypeError(f"{self.slug} cannot register webhooks through its API")
        return await self._hook_registrar(client, request)

    async def remove_hook(self, client: Any, hook: HookRef) -> bool:
        if self._hook_remover is None:
            raise TypeError(f"{self.slug} cannot remove webhooks through its API")
        return await self._hook_remover(client, hook)

    def map_error(self, exc: BaseException) -> ConnectorError | None:
        for mapper in self._error_mappers:
            mapped = mapper(exc)
            if mapped is not None:
                return mapped
        return None


class _NoClient:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _no_client() -> AbstractAsyncContextManager[None]:
    return _NoClient()


def _require_field_descriptions(slug: str, func_name: str, model: type[BaseModel]) -> None:
    missing = [name for name, info in model.model_fields.items() if not info.description]
    if missing:
        raise TypeError(f"{slug}.{func_name}: describe every field of {model.__name__}: {missing}")
