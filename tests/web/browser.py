"""Headless Chromium for the console tests: Debian's chromium + chromium-driver through selenium.

Selenium is synchronous and the console is served by the test's own event
loop, so every browser call runs on a worker thread (``await b.call(...)``)
and the loop keeps serving the page meanwhile.  No browser is downloaded:
the binaries come from the Debian packages (.ci/run installs them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_browser() -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


class Browser:
    def __init__(self, driver: Any):
        self.driver = driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def until(self, script: str, *args: Any, timeout: float = 15.0, what: str = "") -> Any:
        """Poll a JS expression (``return ...``) until it is truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.js(script, *args)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or script}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        await self.call(self.driver.save_screenshot, str(path))


def open_browser(width: int = 1280, height: int = 800) -> Browser:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return Browser(webdriver.Chrome(service=Service(CHROMEDRIVER), options=options))
