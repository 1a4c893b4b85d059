"""Uploaded files: no provider and no actions; agents reach the content as MCP resources."""

from __future__ import annotations

from connectors import Connector

connector = Connector.load(__file__)
