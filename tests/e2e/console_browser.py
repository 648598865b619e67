"""Headless Chromium for the console tests: Debian's browser driven by Playwright, never a download.

The tests skip, saying why, when /usr/bin/chromium or the playwright package is missing here;
`scripts/bootstrap-browser` installs both (CI runs it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.runs import REPO

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "console"
WIDE, NARROW = (1280, 900), (390, 844)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/bootstrap-browser"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: run scripts/bootstrap-browser"
    return None


needs_browser = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")


@contextmanager
def browser_context(profile: Path) -> Iterator[BrowserContext]:
    """A Chromium with a fresh profile folder, at the wide viewport, accepting downloads."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": WIDE[0], "height": WIDE[1]}, accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()


def screenshots(page: Page, name: str) -> list[Path]:
    """Full-page screenshots at 1280 and 390 px wide, kept as test artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for width, height in (WIDE, NARROW):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # let the charts follow the resize before the picture
        path = ARTIFACTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size({"width": WIDE[0], "height": WIDE[1]})
    return paths


def no_horizontal_scroll(page: Page) -> bool:
    """True when the page fits its viewport's width (what "works at 390 px" means at least)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/jobs")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/jobs")
