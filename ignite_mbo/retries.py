"""Retries shown as they happen: a library's retry warnings as one short line each on stderr.

``huggingface_hub`` retries a failing download for tens of seconds, logging each retry as a warning
(with a long URL); ``ignite-mbo data download`` shows each as ``download: retry 2/5 in 4s (...)``
instead of hiding them or printing the library's raw lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator

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
