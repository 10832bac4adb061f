"""Retries shown as they happen: a library's retry warnings as one short line each on stderr, and a wait on a
locked sqlite store said once (:func:`wait_out_lock`, :func:`said_if_slow`).

``huggingface_hub`` retries a failing download for tens of seconds, logging each retry as a warning
(with a long URL); ``ignite-mbo data download`` shows each as ``download: retry 2/5 in 4s (...)``
instead of hiding them or printing the library's raw lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

_RETRY = re.compile(r"(?:Retrying in|Waiting) (?P<wait>[\d.]+)s (?:before retry )?\[Retry (?P<n>\d+)/(?P<of>\d+)\]")
_CAUSE = re.compile(r"^(?:'(?P<error>.*)' thrown|HTTP Error (?P<code>\d+) thrown) while requesting (?P<method>\w+) (?P<url>\S+)")


class RetryLines(logging.Handler):
    """Prints ``download: retry N/M in Xs (cause)`` when the library says it retries; its other warnings as they are."""

    def __init__(self, what: str = "download") -> None:
        super().__init__(logging.WARNING)
        self.what = what
        self.cause = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if cause := _CAUSE.match(message):
            error = cause["error"] or f"HTTP {cause['code']}"
            self.cause = f"{error[:120]}; {cause['url'].split('?')[0][-80:]}"
            return
        if retry := _RETRY.search(message):
            line = f"{self.what}: retry {retry['n']}/{retry['of']} in {float(retry['wait']):g}s"
            print(f"{line} ({self.cause})" if self.cause else line, file=sys.stderr, flush=True)
            self.cause = ""
            return
        print(f"{self.what}: {message.splitlines()[0][:200]}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def retries_shown(logger_name: str = "huggingface_hub", what: str = "download") -> Iterator[None]:
    """While inside: ``logger_name``'s warnings go (only) to a :class:`RetryLines` handler."""
    logger = logging.getLogger(logger_name)
    saved = (logger.level, logger.handlers[:], logger.propagate)
    logger.setLevel(logging.WARNING)
    logger.handlers = [RetryLines(what)]
    logger.propagate = False
    try:
        yield
    finally:
        logger.level, logger.handlers, logger.propagate = saved[0], saved[1], saved[2]


T = TypeVar("T")

LOCKED_FOR_S = 180.0
"""How long a call waits out a sqlite store locked by another writer (a trial, a backup, a ``sqlite3`` shell)."""

LOCKED_NOTE = (f"the tracking store is locked by another program; waiting up to {LOCKED_FOR_S / 60:g} min for it "
               "(close it, e.g. a sqlite3 shell, or press Ctrl-C)")
"""Said once on stderr when a store's lock has held a call for a few seconds, so that the wait is not taken for a
hang (pass 29: ``run`` waited 3 minutes in silence)."""


@contextlib.contextmanager
def said_if_slow(note: str, after_s: float = 6.0) -> Iterator[None]:
    """Print ``note`` (if any) on stderr if the block is still running ``after_s`` seconds in (MLflow's own retries,
    which opening a sqlite store goes through, report nothing while they wait)."""
    if not note:
        yield
        return
    timer = threading.Timer(after_s, lambda: print(note, file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def wait_out_lock(call: Callable[[], T]) -> T:
    """``call()``, retried with backoff (up to 5 s apart) while a sqlite store is locked, for :data:`LOCKED_FOR_S`;
    a wait past about 6 s is said once on stderr (:data:`LOCKED_NOTE`)."""
    deadline, attempt = time.monotonic() + LOCKED_FOR_S, 0
    while True:
        try:
            return call()
        except Exception as error:  # MlflowException or sqlalchemy's OperationalError
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            if attempt == 5:
                print(LOCKED_NOTE, file=sys.stderr, flush=True)
            time.sleep(min(5.0, 0.2 * 2**attempt))
            attempt += 1
