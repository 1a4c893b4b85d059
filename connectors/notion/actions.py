"""Notion: OAuth connection declared; its actions arrive with the connector catalog."""

from connectors import Connector

connector = Connector.load(__file__)
