"""The embedded Ray a sweep starts on this machine when no ``--address`` is given.

Two locks keep others out. Ray starts in its single-machine mode (:func:`loopback_only`), so every one of
its servers listens on 127.0.0.1 only (in its default mode on Linux, Ray 2.60 turns 127.0.0.1 into this
machine's outside address and binds most servers to every interface). And it runs with Ray's token
authentication on (``RAY_AUTH_MODE=token``): a fresh random token for each sweep, held only in the
environment of this process and the Ray processes it starts (no token file is written), so another
user's process on this machine that does not hold the token cannot join it or run a task.

Its processes (GCS, raylet, monitors) each lead a process group of their own, so a signal sent to the
sweep's group (the terminal closed, ``timeout``, a scheduler's ``kill -- -PGID``) reaches only the sweep, which
stops its trials and then Ray; otherwise the GCS would die first and the sweep would wait 60 s for it and fail.
Ray ties their lives to the sweep's process all the same (Linux's parent-death signal).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ignite_mbo.errors import UserError, first_line

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch between its cluster mode and its single-machine mode (``0``), which binds loopback only."""


def start(num_cpus: int | None = None) -> None:
    """Start a fresh local Ray on 127.0.0.1 that accepts only clients holding this sweep's token.

    ``address="local"`` always starts a new instance, so a stale session file from an earlier crash
    cannot break ``num_cpus``. A ``RAY_AUTH_TOKEN`` already in the environment is kept (the user
    chose it); otherwise a new one is made.
    """
    import ray
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    os.environ[AUTH_MODE_ENV] = "token"
    if not os.environ.get(TOKEN_ENV):
        os.environ[TOKEN_ENV] = secrets.token_urlsafe(32)
    Config.initialize("")  # Ray caches the mode when first imported: read it again, as Ray itself does
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        with own_process_groups(), loopback_only():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    except Exception as error:  # noqa: BLE001 - Ray raises anything; SIGINT/SIGTERM (BaseException) go on
        raise start_failure(error) from None


@contextmanager
def loopback_only() -> Iterator[None]:
    """While active, Ray starts in its single-machine mode (its default on macOS and Windows): the node's address
    is 127.0.0.1, not this machine's outside address, and every server of it (GCS, raylet, workers, the dashboard
    agent, the metrics exporters) listens on 127.0.0.1 only. Put back afterwards: a later ``ray.init`` of a
    notebook's own joins clusters as Ray's default does."""
    import ray._private.ray_constants as ray_constants

    given, enabled = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False  # Ray's processes read the first
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled
        if given is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = given


@contextmanager
def own_process_groups() -> Iterator[None]:
    """While active, each process Ray starts (``services.ConsolePopen``) leads a process group of its own."""
    import ray._private.services as services

    original = services.ConsolePopen

    class InItsOwnGroup(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    setattr(services, "ConsolePopen", InItsOwnGroup)  # noqa: B010 - a class attribute mypy will not let be set
    try:
        yield
    finally:
        setattr(services, "ConsolePopen", original)  # noqa: B010


def ray_temp_folder() -> Path:
    """Where Ray keeps its sessions' logs and sockets on this machine: RAY_TMPDIR, else TMPDIR, else /tmp."""
    return Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp")


def start_failure(error: Exception) -> UserError:
    """A one-line error for a local Ray that did not start, naming its temporary folder when that is the cause."""
    folder = ray_temp_folder()
    which = "RAY_TMPDIR" if os.environ.get("RAY_TMPDIR") else "TMPDIR"
    if not folder.is_dir():
        return UserError(f"Ray could not start: its temporary folder {folder} ({which}) is not a folder; "
                         "point RAY_TMPDIR at a writable folder")
    first = first_line(error)
    if "AF_UNIX path length" in str(error):  # Ray's sockets live under the folder: a socket path has 107 bytes
        return UserError(f"Ray could not start: its temporary folder {folder} ({which}) is too long a path for its "
                         f"sockets ({first}); point RAY_TMPDIR at a short path such as /tmp")
    return UserError(f"Ray could not start ({type(error).__name__}: {first}); check that {folder} ({which}) is a "
                     "writable folder with free space, and that ray.init works on this machine")
