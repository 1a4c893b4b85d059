"""Ready-to-paste MCP host configs for one agent, over Streamable HTTP: the shapes Tendril ships in
clients/configs/ (a test keeps the two alike), with the agent's key written in where the shipped
files take it from the environment or a prompt. The key is known only when it is made, so every
other page shows `<agent key>` in its place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = "<agent key>"
SERVER_NAME = "tendril"


@dataclass(frozen=True, slots=True)
class HostConfig:
    host: str
    where: str  # the file it goes into
    text: str  # the JSON to paste


def host_configs(mcp_url: str, agent_key: str | None) -> list[HostConfig]:
    bearer = f"Bearer {agent_key or PLACEHOLDER}"
    headers = {"Authorization": bearer}
    # mcp-remote refuses plain http:// to anything but loopback unless told.
    insecure = ["--allow-http"] if mcp_url.startswith("http://") else []
    shapes: list[tuple[str, str, dict[str, Any]]] = [
        (
            "Claude Code",
            ".mcp.json at the project root",
            {"mcpServers": {SERVER_NAME: {"type": "http", "url": mcp_url, "headers": headers}}},
        ),
        (
            "Cursor",
            ".cursor/mcp.json in the project, or ~/.cursor/mcp.json",
            {"mcpServers": {SERVER_NAME: {"url": mcp_url, "headers": headers}}},
        ),
        (
            "VS Code",
            ".vscode/mcp.json in the workspace, or the user mcp.json",
            {"servers": {SERVER_NAME: {"type": "http", "url": mcp_url, "headers": headers}}},
        ),
        (
            "Claude Desktop",
            "claude_desktop_config.json (through the mcp-remote bridge, which needs Node.js)",
            {
                "mcpServers": {
                    SERVER_NAME: {
                        "command": "npx",
                        "args": [
                            "-y",
                            "mcp-remote",
                            mcp_url,
                            "--transport",
                            "http-only",
                            *insecure,
                            "--header",
                            "Authorization:${AUTH_HEADER}",
                        ],
                        "env": {"AUTH_HEADER": bearer},
                    }
                }
            },
        ),
    ]
    return [HostConfig(host, where, json.dumps(shape, indent=2)) for host, where, shape in shapes]
