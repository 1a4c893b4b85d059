"""Assertions shared by the REST API tests."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> dict[str, Any]:
    """The API's error shape: `{"error": "<readable>", "code": "<CODE>"}`, with these words in it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"], body
    for fragment in fragments:
        assert fragment in body["error"], body
    return body
