"""An overall deadline on each of MLflow's HTTP calls.

``MLFLOW_HTTP_REQUEST_TIMEOUT`` is handed to ``requests`` as its ``timeout``, which bounds the connect and
each socket read, not the whole answer: a server that sends its headers and then one byte a second
would hold a run, a sweep or a report for ever. :func:`install` wraps MLflow's one HTTP entry point
(``mlflow.utils.rest_utils._get_http_response_with_retries``, used by ``http_request`` for the tracking
and artifact REST calls) so that the call, retries included, ends within :func:`deadline_s`; past it,
``requests.exceptions.Timeout`` is raised, which MLflow reports as a timeout (one line, ``store_guard``).

No call follows a redirect (MLflow's own default does, and ``requests`` would send a 307's body, metrics and
tags, to whatever host the server names): an answer 3xx raises :class:`RedirectRefused`, whose text is the
one line ``store_guard.store_failure`` prints. Inside :func:`short_calls` (closing a run after the store
failed) each call is tried once, with a short timeout, and ends by a shared deadline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any
from urllib.parse import urljoin, urlsplit

_WRAPPED = "_ignite_mbo_deadline"
_ALLOW_REDIRECTS_AT = 3
"""The index in ``*args`` of ``allow_redirects`` (after backoff_jitter, retry_codes, raise_on_status)."""
_SHORT: ContextVar[tuple[float, float] | None] = ContextVar("ignite_mbo_short_calls", default=None)


class RedirectRefused(Exception):
    """The MLflow server answered a redirect, which is not followed; the text is the one line to print."""


def _mask(text: str) -> str:
    from ignite_mbo.store_guard import mask  # store_guard imports this module

    return mask(text)


def redirect_refused(url: str, status: int, location: str | None) -> RedirectRefused:
    """The error for an answer ``status`` (3xx) with ``Location: location`` to a call of ``url``."""
    parts = urlsplit(url)
    server = _mask(f"{parts.scheme}://{parts.netloc}")
    target = _mask(" ".join(urljoin(url, location).split())[:200]) if location else "no Location"
    return RedirectRefused(f"the MLflow server at {server} answered a redirect (HTTP {status} to {target}); "
                           "ignite-mbo does not follow redirects (credentials stay with the host you named): "
                           "point --tracking-uri at the final address")


@contextmanager
def short_calls(timeout_s: float, until: float) -> Iterator[None]:
    """Within the block, each MLflow HTTP call of this thread is tried once, times out after ``timeout_s``,
    and ends by ``until`` (``time.monotonic()``) at the latest."""
    token = _SHORT.set((timeout_s, until))
    try:
        yield
    finally:
        _SHORT.reset(token)


def deadline_s(timeout: Any, max_retries: Any, backoff_factor: Any) -> float:
    """Seconds a call may take in all: each try's timeout, the back-off between tries, and 5 s of slack."""
    try:
        per_try = float(timeout if timeout is not None else os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", 120))
        retries = int(max_retries or 0)
        backoff = float(backoff_factor or 0)
    except (TypeError, ValueError):
        return 600.0
    return per_try * (retries + 1) + sum(min(backoff * 2**attempt, 120.0) for attempt in range(retries)) + 5.0


def install(rest_utils: ModuleType) -> None:
    """Wrap the HTTP entry point of MLflow's ``rest_utils`` (handed over by ``mlflow_store``, the one module
    that imports MLflow) once per process; a no-op when MLflow has no such function."""
    original = getattr(rest_utils, "_get_http_response_with_retries", None)
    if original is None or getattr(original, _WRAPPED, False):
        return

    def bounded(method: str, url: str, max_retries: Any, backoff_factor: Any, *args: Any, **kwargs: Any) -> Any:
        import requests

        if len(args) > _ALLOW_REDIRECTS_AT:
            args = (*args[:_ALLOW_REDIRECTS_AT], False, *args[_ALLOW_REDIRECTS_AT + 1:])
        else:
            kwargs["allow_redirects"] = False  # whatever MLFLOW_ALLOW_HTTP_REDIRECTS says
        short = _SHORT.get()
        if short is not None:  # closing a run after a failure: one quick try
            try:
                per_try = float(kwargs.get("timeout") or os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
            except (TypeError, ValueError):  # a (connect, read) pair
                per_try = short[0]
            kwargs["timeout"] = min(per_try, short[0])
            max_retries = 0
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["response"] = original(method, url, max_retries, backoff_factor, *args, **kwargs)
            except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                outcome["error"] = error

        limit = deadline_s(kwargs.get("timeout"), max_retries, backoff_factor)
        if short is not None:
            limit = min(limit, short[1] - time.monotonic())
            if limit <= 0:
                raise requests.exceptions.Timeout("no time left to close the run (timed out)")
        worker = threading.Thread(target=call, name="ignite-mbo-mlflow-http", daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            raise requests.exceptions.Timeout(f"no complete answer within {limit:g} s (timed out)")
        if "error" in outcome:
            raise outcome["error"]
        response = outcome["response"]
        if 300 <= getattr(response, "status_code", 0) < 400 and response.status_code != 304:
            response.close()
            raise redirect_refused(url, response.status_code, response.headers.get("Location"))
        return response

    setattr(bounded, _WRAPPED, True)
    setattr(rest_utils, "_get_http_response_with_retries", bounded)  # noqa: B010 - a module attribute
