"""Cleaning up the processes a test started (Ray heads and workers, job drivers, servers)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


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
