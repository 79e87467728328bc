"""A real browser for the tests of the report pages: Debian's headless Chromium driven by Playwright.

Without a browser a test cannot vouch for a page: on a laptop the browser tests skip and say why; where
``CI=true`` they fail instead, as a skipped check would otherwise pass a CI run unnoticed
(``scripts/install-browser.sh`` installs what they need).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Debian's package installs /usr/bin/chromium; other systems name it differently.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "scripts/install-browser.sh installs it (Debian's chromium; playwright comes with the dev extra)"


def unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under CI (``CI=true``), where a skip would hide a gap."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    """The Chromium executable on PATH (``CHROMIUM`` overrides), or the test skips (fails under CI)."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            unavailable(f"CHROMIUM={configured}: no such file")
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    unavailable(f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}); {INSTALL_HINT}")
    raise AssertionError("unreachable")


@contextmanager
def launched_browser() -> Iterator[Any]:
    """A headless Chromium with JavaScript on, closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(f"the playwright package is not installed; {INSTALL_HINT}")
    executable = chromium_path()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
            unavailable(f"{executable} did not start: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageProblems:
    """Everything a page must not do: console errors, uncaught exceptions, failed loads, requests off the file."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    off_file: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.console_errors, *self.page_errors, *self.failed, *(f"network request: {url}" for url in self.off_file)]


def open_page(browser: Any, path: Path, width: int = 1280, height: int = 900, ready: str = "main[data-rendered=true]") -> tuple[Any, PageProblems]:
    """Open ``path`` in a fresh page and wait until ``ready`` is there (by default: the report's script has drawn
    it); any request that would leave the file (http, https, ...) is refused and recorded, so a page that needs
    the network fails its test."""
    problems = PageProblems()
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda message: problems.console_errors.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning", "assert") else None)  # fmt: skip
    page.on("pageerror", lambda error: problems.page_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: problems.failed.append(f"failed to load {request.url}: {request.failure}"))

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(("file:", "data:", "about:")):
            request_route.continue_()
        else:
            problems.off_file.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_selector(ready, state="attached", timeout=10_000)
    return page, problems


def distinct_colours(png: bytes) -> int:
    """How many distinct colours a screenshot holds: a blank or failed drawing has one or two."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(np.int32)
    return len(np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]))


def colour_pixels(png: bytes, hex_colour: str, tolerance: int = 40) -> int:
    """How many pixels of a screenshot are close to ``#rrggbb``."""
    import io

    import numpy as np
    from PIL import Image

    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - target).max(axis=2) <= tolerance).sum())
