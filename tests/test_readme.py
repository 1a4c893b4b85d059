"""The README speaks for the code: its connector table lists every connector in the catalog, and
every file it points a reader at exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from connectors import load_catalog

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_connector_table_lists_every_connector_in_the_catalog() -> None:
    table = README.split("| connector | auth | actions |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| ([a-z_]+) \|", table, flags=re.MULTILINE)
    catalog = load_catalog()
    assert sorted(listed) == sorted(set(catalog) | set(catalog.receivers))  # + the webhook-only ones
    for connector in catalog.values():
        row = next(line for line in table.splitlines() if line.startswith(f"| {connector.slug} |"))
        for action in connector.actions:
            assert action in row, f"{connector.slug}: {action} is missing from the README"


def test_every_file_the_readme_names_exists() -> None:
    named = set(
        re.findall(r"`((?:server|connectors|auth|storage|clients|tests|bench|scripts)/[\w./-]+)`", README)
    )
    named |= set(re.findall(r"\]\((?!https?:)([^)#]+)\)", README))
    assert named, "the README names no files: the pattern is wrong"
    missing = sorted(path for path in named if not (ROOT / path).exists() and "<" not in path)
    assert missing == []


def test_code_and_docs_name_no_document_outside_the_repository() -> None:
    """A reader is never sent to a document they do not have."""
    here = {
        path.name
        for path in ROOT.rglob("*.md")
        if ".venv" not in path.parts and "node_modules" not in path.parts
    }
    problems = []
    for folder in ("server", "connectors", "auth", "storage", "clients", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".yaml", ".ts", ".html", ".js", ".md", ""} or not path.is_file():
                continue
            if "node_modules" in path.parts or path.name == "schema.d.ts":
                continue
            for name in re.findall(r"\b([\w-]+\.md)\b", path.read_text(errors="ignore")):
                if name not in here:
                    problems.append(f"{path.relative_to(ROOT)} names {name}")
    assert problems == []
