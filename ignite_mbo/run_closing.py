"""Closing a run (FAILED, KILLED, FINISHED) when the tracking store has just failed: a few short tries, then one line.

A server that answered HTTP 500 for a few seconds gets the run closed rather than left RUNNING; one that stays
broken gets a one-line error saying the run may show RUNNING and how to close it later.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ignite_mbo import http_deadline, store_guard
from ignite_mbo.errors import UserError

CLOSE_BUDGET_S = 15.0
"""Seconds that closing a run (FAILED, KILLED, FINISHED) may take in all while the tracking store fails: a
server that answered HTTP 500 for a few seconds gets the run closed, not left RUNNING."""
CLOSE_CALL_TIMEOUT_S = 5.0
"""Seconds one HTTP call may take while closing a run (tried once each time, see ``http_deadline.short_calls``)."""
GAVE_UP_FOR_S = 120.0
"""After closing a run gave up, later closes in this process get one try each, not a budget of their own."""
_CLOSING: ContextVar[bool] = ContextVar("ignite_mbo_closing", default=False)
_gave_up_at = [float("-inf")]


def worth_retrying(error: BaseException) -> bool:
    """Whether closing a run may succeed on a later try after ``error``: the store failed (HTTP 5xx or 429, no
    answer in time, an answer that is not MLflow's), not a full disk, a redirect or a refusal (4xx)."""
    from ignite_mbo.platform.full_disk import is_disk_full

    if store_guard.store_failure(error) is None or is_disk_full(error):
        return False
    if store_guard.in_chain(error, http_deadline.RedirectRefused) is not None:
        return False
    status_of = getattr(error, "get_http_status_code", None)  # MlflowException's (only mlflow_store imports MLflow)
    code = status_of() if callable(status_of) else 500
    return not (400 <= code < 500 and code != 429)


def closing(attempt: Callable[[], None], what: str, status: str, later: str) -> None:
    """``attempt()``, which closes ``what`` (a run) as ``status``; when the store fails, tried again (each HTTP
    call once, short) for :data:`CLOSE_BUDGET_S` in all. Still failing, or redirected: a one-line UserError
    naming the failure the run is closed after (else the closing one), that the run may show RUNNING, and
    ``later`` (how to close it later). A close inside another (a sweep's trial runs) shares its tries."""
    if _CLOSING.get():
        attempt()
        return
    after = sys.exception()  # the failure the run is closed after, if any
    recent = time.monotonic() - _gave_up_at[0] < GAVE_UP_FOR_S
    until = time.monotonic() + (CLOSE_CALL_TIMEOUT_S if recent else CLOSE_BUDGET_S)
    token = _CLOSING.set(True)
    try:
        pause = 0.5
        while True:
            try:
                with http_deadline.short_calls(CLOSE_CALL_TIMEOUT_S, until):
                    attempt()
                return
            except Exception as error:  # noqa: BLE001 - a bug or a full disk is raised as it is
                redirected = store_guard.in_chain(error, http_deadline.RedirectRefused) is not None
                retry = not redirected and worth_retrying(error)
                if retry and time.monotonic() + pause < until:
                    time.sleep(pause)
                    pause = min(2 * pause, 4.0)
                    continue
                if not (retry or redirected):
                    raise
                _gave_up_at[0] = time.monotonic()
                line = (store_guard.store_failure(after) if after is not None else None) or store_guard.store_failure(error)
                raise UserError(f"{line}; {what} could not be marked {status} either, so it may show RUNNING: "
                                f"{later}") from error
    finally:
        _CLOSING.reset(token)


@contextmanager
def closed_if_it_fails(close: Callable[[str, str], None]) -> Iterator[None]:
    """The first writes to a run just created: if one fails, ``close(status, reason)`` ends the run FAILED (KILLED
    when a signal stopped it) rather than leaving it RUNNING, and the failure goes on."""
    try:
        yield
    except BaseException as error:
        close("FAILED" if isinstance(error, Exception) else "KILLED", f"{type(error).__name__}: {error}")
        raise
