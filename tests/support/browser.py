"""Headless Chromium for tests of our web pages, driven by Playwright for Python.

The browser is Debian's ``chromium`` package (installed by ``scripts/ensure-browser``);
Playwright's own browser downloads are never used. ``chromium_page_factory()`` launches
the browser once and yields a factory for fresh, isolated pages::

    async with chromium_page_factory() as new_page:
        page = await new_page()                  # new context (own cookies/storage) + page
        await page.goto(url)
        await save_screenshot(page, "connect-page")

    async with chromium_page_factory() as factory:
        context = await factory.new_context()    # several tabs sharing one context
        page = await context.new_page()

Everything is closed when the block exits, also on errors, so no Chromium process
outlives it. When Playwright or Chromium is missing the test is skipped locally, and
fails under CI (``CI`` set), naming ``scripts/ensure-browser`` (or the missing package).
Test modules should import from ``playwright`` only inside the ``async with`` block, so a
missing package skips rather than errors at collection.

Screenshots go to ``$TENDRIL_TEST_ARTIFACTS`` or else ``<repo>/.cache/test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

__all__ = [
    "CHROMIUM_ARGS",
    "PageFactory",
    "artifacts_dir",
    "chromium_page_factory",
    "find_chromium",
    "save_screenshot",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_CHROMIUM_HINT = "Run scripts/ensure-browser (installs Debian's chromium package)."
_PLAYWRIGHT_HINT = "Install the dev dependencies (the 'playwright' package), e.g. make venv."

# Debian's /usr/bin/chromium is a shell wrapper that adds its own flags (remote extensions,
# GPU rasterization, Google API keys) and, with /dev/shm mounted twice, prints a shell error.
# Launch the real binary behind it when it is there.
_DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")

# Playwright already passes most of these (it adds --headless, --no-sandbox, --no-first-run,
# --disable-background-networking, --disable-component-update, --disable-sync and
# --disable-dev-shm-usage, plus a fresh temporary --user-data-dir per launch); they are
# repeated so the list does not depend on Playwright's defaults. Duplicates are harmless.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes renderers otherwise
)

DEFAULT_TIMEOUT_MS = 10_000


def _unavailable(reason: str, hint: str) -> NoReturn:
    message = f"headless Chromium unavailable: {reason}. {hint}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_chromium() -> str | None:
    """Path of the Chromium executable to launch, or None."""
    if _DEBIAN_BINARY.is_file() and os.access(_DEBIAN_BINARY, os.X_OK):
        return str(_DEBIAN_BINARY)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class PageFactory:
    """Call it for a new page in its own fresh context; contexts are closed at exit."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    async def new_context(self, **options: Any) -> BrowserContext:
        context = await self.browser.new_context(**options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        return context

    async def __call__(self, **context_options: Any) -> Page:
        context = await self.new_context(**context_options)
        return await context.new_page()


@asynccontextmanager
async def chromium_page_factory(*, extra_args: tuple[str, ...] = ()) -> AsyncIterator[PageFactory]:
    """Launch headless Chromium once; yield a `PageFactory`. Needs the asyncio event loop."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        _unavailable(f"cannot import playwright ({exc})", _PLAYWRIGHT_HINT)
    executable = find_chromium()
    if executable is None:
        _unavailable(f"no {_DEBIAN_BINARY} and no 'chromium' on PATH", _CHROMIUM_HINT)

    async with AsyncExitStack() as stack:
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            timeout=30_000,
        )
        # Closing the browser closes its contexts; the driver then stops on leaving async_playwright.
        stack.push_async_callback(browser.close)
        yield PageFactory(browser)


def artifacts_dir() -> Path:
    configured = os.environ.get("TENDRIL_TEST_ARTIFACTS")
    path = Path(configured) if configured else REPO_ROOT / ".cache" / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Write a PNG of `page` to the artifacts directory; return its path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.removesuffix(".png")).strip("._") or "screenshot"
    path = artifacts_dir() / f"{stem}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
