"""Connecting the real `mcp` SDK client to a Tendril over Streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def mcp_client(
    base_url: str, agent_key: str, *, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """`mode` is "legacy" (initialize handshake, 2025-11-25) or "2026-07-28" (stateless era)."""
    headers = {"Authorization": f"Bearer {agent_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode, cache=None, **options) as client:
            yield client
