"""The MCP edge: each agent's tools and resources over Streamable HTTP (/mcp) and stdio."""
