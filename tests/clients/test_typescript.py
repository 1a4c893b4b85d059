"""The TypeScript client in clients/typescript: its committed types are what the current OpenAPI
document generates, the package type-checks, and its smoke script runs against `tendril serve`.

Node 22 comes from scripts/ensure-node-tools and the package's npm dependencies from
scripts/ensure-ts-client; without them these tests fail on CI and skip elsewhere. The package's
npm scripts are run the way npm runs them (`sh -c` with node_modules/.bin first on PATH), so the
tests need no npm. Runs on SQLite only.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest

from clients import TendrilClient
from clients.rest import TendrilApiError
from connectors import load_catalog
from server.settings import Settings
from tests.conftest import Owner, _bootstrap_owner
from tests.e2e.tendril_process import TendrilProcess, tendril_serve
from tests.support import node_tools

pytestmark = pytest.mark.anyio

PACKAGE = node_tools.REPO_ROOT / "clients" / "typescript"
SCHEMA = PACKAGE / "src" / "schema.d.ts"
REGENERATE = "clients/typescript/generate"
TIMEOUT = 120.0  # for any one subprocess; each takes a few seconds
DIFF_LINES = 80


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Overrides the SQLite+PostgreSQL parametrization: the client does not care which."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


@dataclass(frozen=True)
class Toolchain:
    """Node 22 on PATH, a throwaway HOME, and no TENDRIL_* settings from the outer environment."""

    env: dict[str, str] = field(repr=False)  # kept out of failure reports

    def run(
        self, argv: list[str], *, cwd: Path = PACKAGE, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=cwd,
            env={**self.env, **extra_env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def npm_script(self, name: str) -> subprocess.CompletedProcess[str]:
        """`npm run NAME` without npm: the script from package.json, with node_modules/.bin on PATH."""
        script = json.loads((PACKAGE / "package.json").read_text())["scripts"][name]
        path = os.pathsep.join([str(PACKAGE / "node_modules" / ".bin"), self.env["PATH"]])
        return self.run(["sh", "-c", script], PATH=path)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(result.args) if isinstance(result.args, list) else str(result.args)
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    return f"exit {result.returncode}: {command}\n{output}"


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> Toolchain:
    try:
        node_tools.node_bin()
    except RuntimeError as exc:
        _unavailable(f"TypeScript client tests need Node 22: {exc}")
    wanted = ["typescript/bin/tsc", "openapi-typescript/bin/cli.js", "openapi-fetch/package.json"]
    missing = [name for name in wanted if not (PACKAGE / "node_modules" / name).is_file()]
    if missing:
        _unavailable(
            f"{PACKAGE / 'node_modules'} lacks {', '.join(missing)}. "
            "Run scripts/ensure-ts-client (after scripts/ensure-node-tools)."
        )
    env = node_tools.node_env(tmp_path_factory.mktemp("node-home"))
    env = {key: value for key, value in env.items() if not key.startswith("TENDRIL_")}
    return Toolchain(env)


@pytest.fixture(scope="module")
def built(toolchain: Toolchain) -> Path:
    """`npm run build` once per module; the package's dist/ (git-ignored)."""
    dist = PACKAGE / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    result = toolchain.npm_script("build")
    assert result.returncode == 0, describe(result)
    for name in ("index.js", "index.d.ts", "schema.d.ts", "smoke.js"):
        assert (dist / name).is_file(), f"npm run build left no dist/{name}\n{describe(result)}"
    return dist


def test_the_committed_types_are_what_the_current_document_generates(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    fresh = tmp_path / "schema.d.ts"
    result = toolchain.run(
        [str(PACKAGE / "generate"), "--output", str(fresh)], cwd=tmp_path, PYTHON=sys.executable
    )
    assert result.returncode == 0, describe(result)
    committed, generated = SCHEMA.read_text(), fresh.read_text()
    if committed != generated:
        diff = list(
            difflib.unified_diff(
                committed.splitlines(),
                generated.splitlines(),
                "clients/typescript/src/schema.d.ts (committed)",
                "generated from the current OpenAPI document",
                lineterm="",
            )
        )
        shown = "\n".join(diff[:DIFF_LINES]) + ("\n..." if len(diff) > DIFF_LINES else "")
        pytest.fail(
            "The API changed but the TypeScript client's types did not: run "
            f"`{REGENERATE}` and commit clients/typescript/src/schema.d.ts "
            f"(then fix clients/typescript/src if it no longer type-checks).\n{shown}"
        )


def test_the_package_type_checks(toolchain: Toolchain) -> None:
    result = toolchain.npm_script("check")
    assert result.returncode == 0, f"tsc --noEmit failed in clients/typescript\n{describe(result)}"


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[TendrilProcess, Owner]]:
    admin = _bootstrap_owner(settings, "admin")  # before the first start: no bootstrap key printed
    with tendril_serve(settings, tmp_path / "proc") as proc:
        yield proc, admin


async def test_the_smoke_script_runs_a_connection_through_its_life_on_a_live_server(
    toolchain: Toolchain, built: Path, served: tuple[TendrilProcess, Owner]
) -> None:
    proc, admin = served
    argv = [str(node_tools.node_bin()), str(built / "smoke.js")]
    run = partial(toolchain.run, argv, TENDRIL_URL=proc.url, TENDRIL_API_KEY=admin.api_key)
    result = await anyio.to_thread.run_sync(run)
    assert result.returncode == 0, describe(result) + proc.output()
    assert admin.api_key not in result.stdout + result.stderr

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["connectors"] == len(load_catalog())
    assert summary["startStatus"] == 201
    assert summary["labels"]["renamed"] == f"{summary['labels']['started']}-renamed"
    assert summary["deleted"] is True
    assert summary["afterDelete"] == {"status": 404, "code": "NOT_FOUND"}
    assert summary["unauthenticated"] == {"status": 401, "code": "UNAUTHORIZED"}

    # The Python client agrees: the connection the script made and deleted is gone.
    async with TendrilClient(proc.url, api_key=admin.api_key) as client:
        with pytest.raises(TendrilApiError) as gone:
            await client.connection(summary["connectionId"])
        assert gone.value.status == 404
        assert summary["connectionId"] not in {c.id for c in await client.connections()}
