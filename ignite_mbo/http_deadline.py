"""An overall deadline on each of MLflow's HTTP calls.

``MLFLOW_HTTP_REQUEST_TIMEOUT`` is handed to ``requests`` as its ``timeout``, which bounds the connect and
each socket read, not the whole answer: a server that sends its headers and then one byte a second
would hold a run, a sweep or a report for ever. :func:`install` wraps MLflow's one HTTP entry point
(``mlflow.utils.rest_utils._get_http_response_with_retries``, used by ``http_request`` for the tracking
and artifact REST calls) so that the call, retries included, ends within :func:`deadline_s`; past it,
``requests.exceptions.Timeout`` is raised, which MLflow reports as a timeout (one line, ``store_guard``).
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

_WRAPPED = "_ignite_mbo_deadline"


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

        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["response"] = original(method, url, max_retries, backoff_factor, *args, **kwargs)
            except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                outcome["error"] = error

        limit = deadline_s(kwargs.get("timeout"), max_retries, backoff_factor)
        worker = threading.Thread(target=call, name="ignite-mbo-mlflow-http", daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            raise requests.exceptions.Timeout(f"no complete answer within {limit:g} s (timed out)")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]

    setattr(bounded, _WRAPPED, True)
    setattr(rest_utils, "_get_http_response_with_retries", bounded)  # noqa: B010 - a module attribute
