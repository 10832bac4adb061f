"""Cleaning up the processes a test started (Ray heads and workers, job drivers, servers), the headless
browser that the UI tests drive, fake HTTP servers on 127.0.0.1 and small tmpfs disks."""

from __future__ import annotations

import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
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


def marked(marker: str, value: str) -> list[int]:
    """The processes, other than this one, whose environment has ``marker=value`` (zombies excluded)."""
    needle, found = f"{marker}={value}".encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except (OSError, PermissionError, IndexError):
            continue
    return found


def kill_marked(marker: str, value: str) -> None:
    """SIGKILL every process, other than this one, whose environment has ``marker=value``."""
    for pid in marked(marker, value):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
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


Reply = Callable[[http.server.BaseHTTPRequestHandler], None]


def answer(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    """Answer a fake server's request with ``status`` and a JSON ``body``."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def http_servers() -> Iterator[Callable[[Reply], str]]:
    """Yields ``start(reply)``: an HTTP server on 127.0.0.1 whose every GET, HEAD and POST runs
    ``reply(handler)``, returning its URL; every server started is shut down on exit."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(reply: Reply) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                reply(self)

            do_HEAD = do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` (e.g. "64m") mounted at ``mount`` (made) for the block, or None where mounting is
    refused (it needs root: the suite runs as root in CI)."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def stop_when(process: subprocess.Popen, ready: Callable[[], bool], signum: int = signal.SIGTERM, *,
              group: bool = False, timeout_s: float = 120.0) -> tuple[str, float]:
    """Wait until ``ready()`` (polled every 0.5 s, at most ``timeout_s``), send ``signum`` to ``process`` (to its
    whole process group with ``group``); once it exits, its stderr and the seconds it took to exit after the
    signal. It is killed if it outlives ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.5)
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        sent = time.monotonic()
        err = process.communicate(timeout=timeout_s)[1]
        return str(err), time.monotonic() - sent
    finally:
        process.kill()


def ray_starting(process: subprocess.Popen, then_s: float) -> Callable[[], bool]:
    """A ``ready`` for :func:`stop_when`: the sweep's first stderr line says Ray is starting, ``then_s`` seconds ago."""
    def ready() -> bool:
        assert process.stderr is not None
        line = process.stderr.readline()  # "running 1 trials -> ... (starting Ray)"
        assert "starting Ray" in line, line
        time.sleep(then_s)
        return True

    return ready


def trial_runs_started(db: Path) -> bool:
    """Whether the sqlite store ``db`` holds a trial's run yet (the sweep is training)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            rows = connection.execute("select count(*) from tags where key = 'ignite_mbo.kind' and value = 'trial'")
            return bool(rows.fetchone()[0])
    except sqlite3.Error:
        return False


def metrics_logged(db: Path) -> int:
    """How many metric values the sqlite store ``db`` holds (0 before it exists)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute("select count(*) from metrics").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_run(folder: Path, store: Path, design_bench_dir: Path, **popen: Any) -> subprocess.Popen:
    """``ignite-mbo run`` with a long training recorded to ``store``, once its run is RUNNING and has logged metrics;
    ``popen`` goes to ``subprocess.Popen`` (``preexec_fn``: how the command is started)."""
    argv = [sys.executable, "-m", "ignite_mbo.cli", "run", "--fidelity", "quick", "--quiet", "--threads", "1",
            "--set", "epochs=100000", "--tracking-uri", f"sqlite:///{store}"]
    process = subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}, **popen)
    deadline = time.monotonic() + 120
    while metrics_logged(store) == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return process
