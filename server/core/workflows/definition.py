"""A workflow's definition: its steps, each `{name, type, config}`, checked whole on create and on
update so that a definition which cannot run is refused with a message naming the step.

Step types and their configs (camelCase, as the API writes them):

- `action`: a connector action on one of the owner's connections, `{"connectionId": "<id>"}` or
  `{"connector": "slack", "label"?: "<connection label>"}`, plus `"action": "post_message"` and
  `"parameters": {...}` (the action's input; templates allowed in values).
- `http_request`: `{"method": "GET", "url": "https://...", "headers"?: {...}, "body"?: <JSON>}`
  (templates allowed in url, header values and body).
- `delay`: `{"seconds": 30}`, a durable sleep of at most MAX_DELAY_SECONDS.
- `condition`: `{"if": "<expression>", "else"?: "stop" | "skip", "skip"?: ["<later step>", ...]}`:
  when the expression is false, `stop` (the default) ends the execution there, completed, and
  `skip` skips the later steps named in `skip` and goes on.

Templates (`{{ input.x }}`, `{{ steps.fetch.output.id }}`, server/core/workflows/templates.py)
may refer to earlier steps only. Nothing here calls a provider: the checks are against the catalog
and, for `connectionId` steps, the owner's connections as the caller passes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from connectors import Catalog, Connector
from server.core.errors import Invalid, did_you_mean
from server.core.workflows import templates
from server.core.workflows.templates import TemplateProblem

StepType = Literal["action", "http_request", "delay", "condition"]
STEP_TYPES: tuple[StepType, ...] = ("action", "http_request", "delay", "condition")
MAX_STEPS = 50
MAX_STEP_CONFIG_BYTES = 64 * 1024  # one step's config, as JSON
MAX_DEFINITION_BYTES = 512 * 1024  # the whole definition, as JSON
MAX_DELAY_SECONDS = 7 * 24 * 3600
MAX_URL_CHARS = 8000
# A step's name is how templates read its output (`steps.<name>.output`), so it must be an identifier.
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Headers the HTTP client sets itself; a definition may not.
RESERVED_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
# The connector whose permission an http_request step needs from an agent (see connectors_used).
HTTP_CONNECTOR = "http"
# What connectors_used names for a connectionId step the caller could not resolve: no agent has it.
UNRESOLVED = "connection:"


# -- the models -------------------------------------------------------------------------------------
class Step(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(
        description="Unique in the workflow; later steps read its output as steps.<name>.output."
    )
    type: StepType = Field(description="action, http_request, delay or condition.")
    config: dict[str, JsonValue] = Field(description="The step's settings; see the step types.")


class Definition(BaseModel):
    model_config = ConfigDict(frozen=True)

    steps: list[Step] = Field(description="Run in order.")

    def step(self, name: str) -> Step | None:
        return next((step for step in self.steps if step.name == name), None)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ActionConfig(_Config):
    connection_id: str | None = Field(None, alias="connectionId", max_length=64)
    connector: str | None = Field(None, max_length=64)
    label: str | None = Field(None, max_length=200)
    action: str = Field(max_length=128)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class HttpRequestConfig(_Config):
    method: str = "GET"
    url: str = Field(max_length=MAX_URL_CHARS)
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None


class DelayConfig(_Config):
    seconds: float = Field(ge=0, le=MAX_DELAY_SECONDS)


class ConditionConfig(_Config):
    if_: str = Field(alias="if", max_length=templates.MAX_SOURCE_CHARS)
    else_: Literal["stop", "skip"] = Field("stop", alias="else")
    skip: list[str] = Field(default_factory=list)


StepConfig = ActionConfig | HttpRequestConfig | DelayConfig | ConditionConfig
_CONFIGS: dict[str, type[_Config]] = {
    "action": ActionConfig,
    "http_request": HttpRequestConfig,
    "delay": DelayConfig,
    "condition": ConditionConfig,
}


def config_of(step: Step) -> StepConfig:
    """The step's config as its type's model (for a step of a definition that was parsed)."""
    model: Any = _CONFIGS[step.type]
    return model.model_validate(step.config)


def label_of(index: int, name: str) -> str:
    """How messages name a step: "step 'notify' (2)" (its position counted from 1)."""
    return f"step {name!r} ({index + 1})"


# -- parsing ---------------------------------------------------------------------------------------------
def parse_definition(
    raw: object, catalog: Catalog, *, connections: Mapping[str, str] | None = None
) -> Definition:
    """`raw` checked as a definition: shapes, names, types, configs, templates and what they refer
    to, connectors and actions. `connections` maps the owner's connection ids (text) to their
    connector slugs; given, a `connectionId` step must name one of them and its action is checked
    against that connector; not given, such steps are checked for shape only.

    Raises:
        Invalid: naming the step and, in `field`, where in the request (definition.steps[i]...).
    """
    if not isinstance(raw, Mapping):
        raise Invalid('definition must be an object: {"steps": [...]}', field="definition")
    unknown = [str(key) for key in raw if key != "steps"]  # pyright: ignore[reportUnknownVariableType]
    if unknown:
        raise Invalid(f"definition takes only steps, not {', '.join(unknown)}", field="definition")
    try:
        size = len(json.dumps(raw, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise Invalid("definition must be JSON", field="definition") from None
    if size > MAX_DEFINITION_BYTES:
        raise Invalid(f"definition is larger than {MAX_DEFINITION_BYTES} bytes", field="definition")
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise Invalid("definition.steps must be a non-empty list of steps", field="definition.steps")
    if len(raw_steps) > MAX_STEPS:  # pyright: ignore[reportUnknownArgumentType]
        raise Invalid(f"a workflow has at most {MAX_STEPS} steps", field="definition.steps")

    steps = [_step_shape(index, item) for index, item in enumerate(raw_steps)]  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    positions: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.name in positions:
            raise Invalid(
                f"{label_of(index, step.name)}: the name is already used by step {positions[step.name] + 1}",
                field=f"definition.steps[{index}].name",
            )
        positions[step.name] = index
    for index, step in enumerate(steps):
        _check_step(index, step, positions, catalog, connections)
    return Definition(steps=steps)


def _step_shape(index: int, item: object) -> Step:
    where = f"definition.steps[{index}]"
    if not isinstance(item, Mapping):
        raise Invalid(f"step {index + 1}: a step is an object {{name, type, config}}", field=where)
    name = item.get("name")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(name, str) or not STEP_NAME.match(name):
        raise Invalid(
            f"step {index + 1}: name must be letters, digits and _ (not starting with a digit), "
            "at most 64 characters, so that later steps can read steps.<name>.output",
            field=f"{where}.name",
        )
    label = label_of(index, name)
    unknown = [str(key) for key in item if key not in ("name", "type", "config")]  # pyright: ignore[reportUnknownVariableType]
    if unknown:
        raise Invalid(f"{label}: a step takes name, type and config, not {', '.join(unknown)}", field=where)
    kind = item.get("type")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if kind not in STEP_TYPES:
        hint = did_you_mean(kind, STEP_TYPES) if isinstance(kind, str) else ""
        raise Invalid(
            f"{label}: unknown step type {kind!r}{hint}; the types are {', '.join(STEP_TYPES)}",
            field=f"{where}.type",
        )
    config = item.get("config", {})  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(config, Mapping):
        raise Invalid(f"{label}: config must be an object", field=f"{where}.config")
    if len(json.dumps(config, ensure_ascii=False).encode()) > MAX_STEP_CONFIG_BYTES:
        raise Invalid(
            f"{label}: config is larger than {MAX_STEP_CONFIG_BYTES} bytes", field=f"{where}.config"
        )
    try:
        return Step.model_validate({"name": name, "type": kind, "config": config})
    except ValidationError as exc:
        raise Invalid(f"{label}: config must be JSON", field=f"{where}.config") from exc


def _check_step(
    index: int,
    step: Step,
    positions: Mapping[str, int],
    catalog: Catalog,
    connections: Mapping[str, str] | None,
) -> None:
    label = label_of(index, step.name)
    where = f"definition.steps[{index}].config"
    config = _typed_config(step, label, where)
    # Templates first: a reference to a later step is the commonest mistake, and says the most.
    try:
        referred = templates.references(_templated_part(config, label), label, "config")
    except TemplateProblem as exc:
        raise Invalid(exc.message, field=f"definition.steps[{index}].{exc.path}") from None
    for name in sorted(referred, key=lambda n: positions.get(n, -1)):
        at = positions.get(name)
        if at is None:
            hint = did_you_mean(name, [n for n, i in positions.items() if i < index])
            raise Invalid(f"{label}: refers to steps.{name}, which is not a step{hint}", field=where)
        if at == index:
            raise Invalid(f"{label}: refers to its own output (steps.{name})", field=where)
        if at > index:
            raise Invalid(
                f"{label}: refers to steps.{name}, which runs later ({at + 1}); "
                "a step can read only earlier steps' outputs",
                field=where,
            )
    if isinstance(config, ActionConfig):
        _check_action(config, label, where, catalog, connections)
    elif isinstance(config, HttpRequestConfig):
        _check_http(config, label, where)
    elif isinstance(config, ConditionConfig):
        _check_condition(config, index, label, where, positions)


def _typed_config(step: Step, label: str, where: str) -> StepConfig:
    model = _CONFIGS[step.type]
    try:
        return config_of(step)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        field = f"{where}.{location}" if location else where
        if error["type"] == "extra_forbidden":
            known = [f.alias or name for name, f in model.model_fields.items()]
            hint = did_you_mean(location, known)
            message = f"unknown setting {location!r}{hint}; a {step.type} step takes {', '.join(known)}"
        elif error["type"] == "missing":
            message = f"config.{location} is required for a {step.type} step"
        else:
            message = f"config.{location}: {error['msg']}" if location else error["msg"]
        raise Invalid(f"{label}: {message}", field=field) from None


def _templated_part(config: StepConfig, label: str) -> dict[str, Any]:
    """The parts of a config that are rendered at run time (and so may hold templates)."""
    if isinstance(config, ActionConfig):
        return {"parameters": config.parameters}
    if isinstance(config, HttpRequestConfig):
        return {"url": config.url, "headers": config.headers, "body": config.body}
    if isinstance(config, ConditionConfig):
        return {"if": templates.as_condition(config.if_, label, "config.if")}
    return {}


def _check_action(
    config: ActionConfig, label: str, where: str, catalog: Catalog, connections: Mapping[str, str] | None
) -> None:
    if (config.connection_id is None) == (config.connector is None):
        raise Invalid(
            f"{label}: an action step names either connectionId, or connector (with an optional label)",
            field=where,
        )
    if config.connection_id is not None:
        if config.label is not None:
            raise Invalid(
                f"{label}: label goes with connector, not with connectionId", field=f"{where}.label"
            )
        try:
            connection = str(UUID(config.connection_id))
        except ValueError:
            raise Invalid(
                f"{label}: connectionId is not a connection id", field=f"{where}.connectionId"
            ) from None
        if connections is None:
            return
        slug = connections.get(connection)
        if slug is None:
            # The id is not repeated: it may be another owner's, which this answer must not confirm.
            raise Invalid(
                f"{label}: no connection of yours has that connectionId", field=f"{where}.connectionId"
            )
    else:
        slug = config.connector or ""
    connector = catalog.get(slug)
    if connector is None or not connector.actions:
        hint = did_you_mean(slug, [s for s, c in catalog.items() if c.actions])
        raise Invalid(f"{label}: unknown connector {slug!r}{hint}", field=f"{where}.connector")
    action = connector.find_action(config.action)
    if action is None:
        hint = did_you_mean(config.action, connector.actions)
        raise Invalid(
            f"{label}: unknown action '{slug}.{config.action}'{hint}; "
            f"{slug} has {', '.join(connector.actions)}",
            field=f"{where}.action",
        )
    _check_parameters(config.parameters, connector, action.input_model, label, where)


def _check_parameters(
    parameters: Mapping[str, Any], connector: Connector, model: type[BaseModel], label: str, where: str
) -> None:
    """Parameter names the action knows (values may be templates, so they are checked when run)."""
    if model.model_config.get("extra") == "allow":
        return
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias is not None}
    for name in parameters:
        if name not in known:
            hint = did_you_mean(name, known)
            raise Invalid(
                f"{label}: {connector.slug} action takes no parameter {name!r}{hint}",
                field=f"{where}.parameters.{name}",
            )


def _check_http(config: HttpRequestConfig, label: str, where: str) -> None:
    if config.method.upper() not in HTTP_METHODS:
        raise Invalid(
            f"{label}: method must be one of {', '.join(HTTP_METHODS)}, not {config.method!r}",
            field=f"{where}.method",
        )
    try:
        check_url(config.url, templated=True)
    except Invalid as exc:
        raise Invalid(f"{label}: {exc.message}", field=f"{where}.url") from None
    for name, value in config.headers.items():
        if not _HEADER_NAME.match(name):
            raise Invalid(f"{label}: {name!r} is not a header name", field=f"{where}.headers")
        if name.lower() in RESERVED_HEADERS:
            raise Invalid(f"{label}: the {name} header is set by Tendril", field=f"{where}.headers.{name}")
        if any(c in value for c in "\r\n\0"):
            raise Invalid(
                f"{label}: the {name} header value has a line break", field=f"{where}.headers.{name}"
            )


def _check_condition(
    config: ConditionConfig, index: int, label: str, where: str, positions: Mapping[str, int]
) -> None:
    if config.else_ == "stop" and config.skip:
        raise Invalid(f'{label}: skip goes with "else": "skip"', field=f"{where}.skip")
    if config.else_ == "skip" and not config.skip:
        raise Invalid(f'{label}: "else": "skip" needs skip, the later steps to skip', field=f"{where}.skip")
    for name in config.skip:
        at = positions.get(name)
        if at is None or at <= index:
            hint = did_you_mean(name, [n for n, i in positions.items() if i > index])
            raise Invalid(
                f"{label}: skip names {name!r}, which is not a later step{hint}", field=f"{where}.skip"
            )


def check_url(url: str, *, templated: bool = False) -> str:
    """An absolute http(s) URL without credentials in it. With `templated`, a URL holding `{{ }}`
    is checked as far as its literal start goes (the rendered URL is checked again when run, and
    the egress guard decides where it may go)."""
    if templated and "{{" in url:
        if url.lstrip().startswith("{{"):
            return url
        if not re.match(r"^https?://[^/]", url, re.IGNORECASE):
            raise Invalid("url must start with http:// or https:// (or be a {{ template }})")
        return url
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise Invalid("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a bad port raises here
    except ValueError as exc:
        raise Invalid(f"url is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Invalid("url must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url must not hold credentials; send them in a header or use a connection")
    return url


# -- what a definition uses ----------------------------------------------------------------------------------
def connectors_used(definition: Definition, connections: Mapping[str, str] | None = None) -> set[str]:
    """The connectors an agent must be allowed for it to run the workflow: each action step's
    connector (a `connectionId` step's through `connections`, id -> slug; an id not there counts
    as `connection:<id>`, which no agent is allowed), and `http` when there is an http_request step
    (it sends requests as the http connector does)."""
    used: set[str] = set()
    for step in definition.steps:
        if step.type == "http_request":
            used.add(HTTP_CONNECTOR)
        elif step.type == "action":
            config = config_of(step)
            assert isinstance(config, ActionConfig)
            if config.connector is not None:
                used.add(config.connector)
            elif config.connection_id is not None:
                key = _normal_id(config.connection_id)
                slug = (connections or {}).get(key)
                used.add(slug if slug is not None else f"{UNRESOLVED}{key}")
    return used


def connection_ids(definition: Definition) -> set[str]:
    """The connection ids the definition's action steps name (text, normalised)."""
    found: set[str] = set()
    for step in definition.steps:
        if step.type == "action":
            config = config_of(step)
            assert isinstance(config, ActionConfig)
            if config.connection_id is not None:
                found.add(_normal_id(config.connection_id))
    return found


def _normal_id(text: str) -> str:
    try:
        return str(UUID(text))
    except ValueError:
        return text
