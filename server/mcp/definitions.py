"""How Tendril describes a tool to MCP clients: schemas from pydantic models, annotations from
the action's hints (`connectors.Hints.as_mcp`, the one derivation REST's catalog uses too)."""

from __future__ import annotations

from functools import cache
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from connectors import Hints

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Present instead of the result when isError is true: what went wrong and what to do.",
    "properties": {
        "code": {"type": "string", "description": "Stable error code, e.g. not_connected, rate_limited."},
        "message": {"type": "string", "description": "What happened, safe to show the user."},
    },
    "required": ["code", "message"],
}


@cache
def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def with_error(result: dict[str, Any]) -> dict[str, Any]:
    """An output schema that also admits the `{"error": {...}}` of an error result.

    Error results carry their facts in structuredContent too, and some clients (MCP Inspector)
    validate every result against the output schema, errors included.
    """
    admitting = dict(result)
    admitting["properties"] = {**result.get("properties", {}), "error": ERROR_SCHEMA}
    required = admitting.pop("required", None)
    if required:
        admitting["anyOf"] = [{"required": required}, {"required": ["error"]}]
    return admitting


@cache
def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    return with_error(schema(model))


def tool(
    name: str,
    title: str,
    description: str,
    *,
    input_schema: dict[str, Any],
    hints: Hints,
    output: dict[str, Any] | None = None,
) -> types.Tool:
    return types.Tool(
        name=name,
        title=title,
        description=description,
        input_schema=input_schema,
        output_schema=output,
        annotations=types.ToolAnnotations.model_validate({"title": title, **hints.as_mcp()}),
    )
