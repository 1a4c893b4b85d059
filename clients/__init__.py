"""Client side of Tendril: the REST client and ready-to-paste MCP host configs (never imports server)."""

from clients.rest import TendrilApiError, TendrilClient

__all__ = ["TendrilApiError", "TendrilClient"]
