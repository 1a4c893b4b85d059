"""The ready-to-paste MCP host configs in clients/configs: valid JSON that really reaches Tendril."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings, listener_url

CONFIGS = Path(__file__).resolve().parents[2] / "clients" / "configs"
FILES = sorted(CONFIGS.rglob("*.json"))
# What `tendril serve` hands out with the default host and port (the public URL follows them).
DEFAULT_MCP_URL = (
    f"{listener_url(Settings.model_fields['host'].default, Settings.model_fields['port'].default)}/mcp"
)
HOSTS = {"claude-desktop", "claude-code", "cursor", "vscode"}
# Anything shaped like a real Tendril key (tdl_ + 8 or more key characters) must never be committed.
REAL_KEY = re.compile(r"tdl_(agent_)?[A-Za-z0-9_-]{8,}")


def _rel(path: Path) -> str:
    return path.relative_to(CONFIGS).as_posix()


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_host_has_a_stdio_and_an_http_config() -> None:
    found = {(path.parent.name, path.name.split(".")[-2]) for path in FILES}
    assert found == {(host, transport) for host in HOSTS for transport in ("stdio", "http")}


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_config_points_at_tendril(path: Path) -> None:
    data = _load(path)
    servers_key = "servers" if path.parent.name == "vscode" else "mcpServers"
    servers = data[servers_key]
    assert list(servers) == ["tendril"]
    server = servers["tendril"]

    if path.name.endswith(".stdio.json"):
        assert server.get("type", "stdio") == "stdio"
        assert Path(server["command"]).name == "tendril"
        assert server["args"] == ["mcp"]
        assert {"TENDRIL_AGENT_KEY", "TENDRIL_DATA_DIR"} <= set(server["env"])
    elif server.get("command") == "npx":  # Claude Desktop reaches HTTP servers through mcp-remote
        args = server["args"]
        assert "mcp-remote" in args and DEFAULT_MCP_URL in args
        header = args[args.index("--header") + 1]
        name, _, value = header.partition(":")
        assert name == "Authorization"
        env_var = re.fullmatch(r"\$\{(\w+)\}", value)
        assert env_var is not None and server["env"][env_var[1]].startswith("Bearer ")
    else:
        assert server.get("type", "http") == "http"
        assert server["url"] == DEFAULT_MCP_URL
        assert server["headers"]["Authorization"].startswith("Bearer ")


@pytest.mark.parametrize("path", [p for p in FILES if p.parent.name == "vscode"], ids=_rel)
def test_vscode_inputs_are_declared_password_prompts(path: Path) -> None:
    data = _load(path)
    declared = {entry["id"]: entry for entry in data["inputs"]}
    used = set(re.findall(r"\$\{input:([^}]+)\}", json.dumps(data["servers"])))
    assert used and used <= set(declared)
    for input_id in used:
        assert declared[input_id]["type"] == "promptString"
        assert declared[input_id]["password"] is True


def test_no_real_keys_and_readme_lists_every_file() -> None:
    readme = (CONFIGS / "README.md").read_text(encoding="utf-8")
    for path in FILES:
        assert not REAL_KEY.search(path.read_text(encoding="utf-8")), _rel(path)
        assert _rel(path) in readme
    assert not REAL_KEY.search(readme)
