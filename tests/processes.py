"""Cleaning up the processes a test started (Ray heads and workers, job drivers, servers), and the headless
browser that the UI tests drive."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def answers_health(url: str) -> bool:
    """Whether ``url/health`` answers HTTP 200 (an MLflow server or UI that is up)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_up(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str, *,
                  timeout_s: float, interval_s: float = 0.5) -> None:
    """Poll ``ready()`` until it holds; fail with the log's tail if ``process`` exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(interval_s)


def kill_marked(marker: str, value: str) -> None:
    """SIGKILL every process, other than this one, whose environment has ``marker=value``."""
    needle = f"{marker}={value}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, PermissionError):
            continue


@contextmanager
def headless_chromium(height: int) -> Iterator[Any]:
    """Debian's headless Chromium through Selenium, 1600 px wide (.ci/run installs chromium and chromium-driver)."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), \
        "install the browser: apt-get install chromium chromium-driver (as .ci/run does)"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size=1600,{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: Any, url: str, needles: list[str], screenshot: Path, timeout: float) -> str:
    """Open ``url`` afresh, wait until its text shows every needle, save a screenshot; the page's text."""
    driver.get("about:blank")  # a full load, not a route change inside the previous page
    driver.get(url)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(needle in text for needle in needles):
            break
        time.sleep(0.5)
    time.sleep(1)  # let the charts finish drawing for the screenshot
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    missing = [needle for needle in needles if needle not in text]
    assert not missing, f"{url} never showed {missing}; see {screenshot}:\n{text[:2000]}"
    return text
