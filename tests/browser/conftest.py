"""The browser tier: headless Chromium driven by selenium against the real app.

Uses Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver;
`.ci/run` installs them). Nothing is downloaded at run time: the driver path is given, so
Selenium Manager is never asked. Missing locally, the tier is skipped and says which packages
to install; in CI (CI=true) a missing browser fails the run instead.

Selenium is synchronous and the app runs on the test's event loop, so every browser call
goes through a thread (`Browser`), or the page would wait for a server that cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import app, start_app, tg  # noqa: F401  (the real app's fixtures)

CHROMIUM = os.environ.get("OPSDECK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OPSDECK_CHROMEDRIVER", "/usr/bin/chromedriver")
PACKAGES = "chromium chromium-driver"
PHONE = {"width": 390, "height": 844, "pixelRatio": 2}
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def missing_browser() -> str | None:
    """Why the tier cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install {PACKAGES}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.fspath)).parents]
    for item in mine:
        item.add_marker(pytest.mark.browser)
    reason = missing_browser()
    if reason is not None and os.environ.get("CI") != "true":
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=f"browser tier skipped: {reason}"))
    # with CI=true nothing is skipped: the `browsers` fixture fails, naming what is missing


class Browser:
    """One Chromium profile (its own user-data dir, so its own cookies) on a phone screen."""

    def __init__(self, root: Path, name: str, *, dark: bool = False) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = root / f"profile-{name}"
        self.downloads = root / f"downloads-{name}"
        self.downloads.mkdir(parents=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={PHONE['width']},{PHONE['height']}")
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
                "download.directory_upgrade": True,
                "safebrowsing.enabled": False,
                # a second download from one page is "automatic" to Chromium's limiter
                "profile.default_content_setting_values.automatic_downloads": 1,
            },
        )
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        # headless Chromium saves downloads only where the DevTools protocol says; named by
        # their GUID, as a second download of the same name is otherwise never written
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {
                "behavior": "allowAndName",
                "downloadPath": str(self.downloads),
                "eventsEnabled": True,
            },
        )
        if dark:
            self.driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
            )

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def text(self) -> str:
        from selenium.webdriver.common.by import By

        return await self.run(lambda: self.driver.find_element(By.TAG_NAME, "body").text)

    async def title(self) -> str:
        return await self.run(lambda: self.driver.title)

    async def click(self, text: str, *, new_page: bool = False) -> None:
        """Click the button or link showing `text`; `new_page`: wait for the page it opens
        (a download leaves the page as it is, so there is nothing to wait for then)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        def click() -> None:
            old = self.driver.find_element(By.TAG_NAME, "html")
            for element in self.driver.find_elements(By.CSS_SELECTOR, "button, a"):
                if element.text.strip() == text:
                    element.click()
                    break
            else:
                raise AssertionError(f"no button {text!r} on {self.driver.current_url}")
            if new_page:
                WebDriverWait(self.driver, 15).until(expected_conditions.staleness_of(old))

        await self.run(click)

    async def screenshot(self, path: Path) -> bytes:
        png = await self.run(self.driver.get_screenshot_as_png)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, png)
        return png

    async def wait_download(self, count: int, timeout: float = 15.0) -> list[Path]:
        """Wait until `count` finished files are in the download dir; return them, oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            done = [
                p
                for p in self.downloads.iterdir()
                if not p.name.endswith((".crdownload", ".tmp")) and not p.name.startswith(".")
            ]
            partial = [p for p in self.downloads.iterdir() if p.name.endswith(".crdownload")]
            if len(done) >= count and not partial:
                return sorted(done, key=lambda p: p.stat().st_mtime_ns)
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} download(s) expected, found {done + partial}")
            await asyncio.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
async def browsers(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """`await browsers("a")`: a fresh Chromium profile; all are closed after the test."""
    reason = missing_browser()
    if reason is not None:  # only reached with CI=true: CI installs the browser (.ci/run)
        pytest.fail(f"CI=true but the browser tier cannot run: {reason}")
    opened: list[Browser] = []

    async def open_browser(name: str, *, dark: bool = False) -> Browser:
        browser = await asyncio.to_thread(Browser, tmp_path, name, dark=dark)
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        await asyncio.to_thread(browser.close)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where page screenshots go: OPSDECK_SCREENSHOT_DIR (e.g. docs/screenshots, to refresh
    the README's pictures) or the test's own temporary directory."""
    target = os.environ.get("OPSDECK_SCREENSHOT_DIR")
    return Path(target) if target else tmp_path / "screenshots"
