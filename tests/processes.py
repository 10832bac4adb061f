"""Cleaning up the processes a test started (Ray heads and workers, job drivers, servers)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


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
