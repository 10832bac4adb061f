"""How a sweep ends when it is told to: SIGINT (Ctrl-C), SIGTERM (``ray job stop``, Kubernetes,
batch schedulers), SIGHUP (the terminal was closed) and SIGQUIT (Ctrl-\\) alike, and the guards of ``--resume``.

The first signal stops the sweep gracefully through Tune (the running trials stop, their runs and
the sweep's run become KILLED, the exact resume command is printed, and the command exits with
128 + the signal: 130, 143, 129 or 131); a second one, while Tune stops or after it, until the command exits, exits
at once with that status and the resume command, taking the local Ray's processes along, once it has marked the
sweep's runs KILLED (within seconds). Once every trial is done
(:class:`Finishing`), a first signal lets the results and report be written; a second exits at once, as above.
Before Tune runs (while Ray starts, while the store is built) and during ``ignite-mbo run``, either signal
raises :class:`Stopped` (:class:`StopOnSignals`), so the command cleans up, prints one line and exits 130 or
143; a second signal does not cut that short clean-up off. ``--resume`` reads Tune's pickled state only under
the sweep folder or the storage path the user gave, and a state that cannot be restored is a one-line error that
leaves the sweep's records as they were.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from ignite_mbo.errors import UserError, first_line
from ignite_mbo.platform.checks import within

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Ctrl-C; ray job stop, Kubernetes, schedulers; the terminal closed; Ctrl-\\ (its default, a core dump, would
leave every run RUNNING and the local Ray's agents behind)."""
IGNORED_AT_START = frozenset(signum for signum in STOPPING_SIGNALS if signal.getsignal(signum) == signal.SIG_IGN)
"""The stopping signals this process was started ignoring (``nohup`` ignores SIGHUP, a script's background job
SIGINT): they stay ignored, as whoever started the command asked (a closed terminal does not stop a nohup'd sweep)."""
CAUGHT = tuple(signum for signum in STOPPING_SIGNALS if signum not in IGNORED_AT_START)
"""The stopping signals the command acts on."""
T = TypeVar("T")
_STOPPING = False
"""Set once a stopped command cleans up (:meth:`StopOnSignals.hold`): Ray's processes are then killed, not shut down."""
_AFTER_FIRST: Callable[[int, FrameType | None], None] | None = None
"""Set once a first signal stopped Tune (:class:`Interruptions`): the handler of every later one, until the exit."""
UNTIL_EXIT = False
"""Set by the ``ignite-mbo`` command: after a first signal stopped Tune, a later one exits at once until the process
exits. A program that calls ``run_sweep`` itself (a notebook) gets its own handlers back when it returns."""


def exit_status(signum: int) -> int:
    """The shell's status for a command ended by signal ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


class Interruptions:
    """SIGINT or SIGTERM while Tune runs: the first stops the sweep gracefully (through Tune's SIGUSR1
    handler), the second exits at once, also after Tune has stopped, until the command exits (the sweep closes its
    runs, Ray shuts down). ``resume_hint`` is printed either way."""

    count_as_first = True
    """Whether a first signal here makes any later one, after this block, exit at once (Tune stopped early)."""

    CLOSE_WITHIN_S = 10.0
    """How long a second signal waits for the sweep's runs to be marked KILLED before it exits."""

    def __init__(self, resume_hint: str, close_runs: Callable[[int, int], None] | None = None) -> None:
        self.resume_hint = resume_hint
        self.close_runs = close_runs
        self.count = 0
        self.first_at_ms = 0
        self.signum = signal.SIGINT
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interruptions:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's own handler would replace this one
        for signum in CAUGHT:  # installed after Ray's, so Ray's fatal-signal dump never runs
            self.previous[signum] = signal.signal(signum, self._handle)
        self.previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # until this Tune run's own
        return self

    def __exit__(self, *exc: object) -> None:
        global _AFTER_FIRST
        if self.count and self.count_as_first:  # Tune stopped: any later signal, until the exit, is the second
            _AFTER_FIRST = self._handle
        for signum, handler in self.previous.items():
            signal.signal(signum, _AFTER_FIRST if _AFTER_FIRST and signum in STOPPING_SIGNALS else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.first(signal.Signals(signum))
            return
        kill_descendants()  # the trials stop writing before their runs are closed
        self.close_before_exit()
        print(f"\n{signal.Signals(signum).name} again: exited at once; {self.resume_hint}", file=sys.stderr,
              flush=True)
        exit_at_once(signum)

    def close_before_exit(self) -> None:
        """Mark the sweep's runs KILLED (``close_runs``, given when the first signal came) before a second signal
        exits, within :attr:`CLOSE_WITHIN_S`: a store that does not answer in time leaves them RUNNING, and
        ``--resume`` closes them."""
        if self.close_runs is None:
            return
        close_runs, since_ms = self.close_runs, self.first_at_ms or int(time.time() * 1000) - 60_000
        try:
            within(lambda: close_runs(since_ms, self.signum), self.CLOSE_WITHIN_S)
        except Exception:  # noqa: BLE001 - exiting anyway; the line printed next names --resume
            pass

    def first(self, signum: signal.Signals) -> None:
        """The first signal: Tune stops the running trials and saves the sweep."""
        self.signum = signum
        self.first_at_ms = int(time.time() * 1000) - 1000  # slack for clocks of other processes
        print(f"\n{signum.name}: stopping the running trials and saving the sweep "
              "(send it again to exit at once)", file=sys.stderr, flush=True)
        if signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL:  # Tune has not installed its handler yet
            raise Stopped(signum)  # (SIGUSR1 would kill this process)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop


class Finishing(Interruptions):
    """After Tune: every trial is done and the sweep writes its results, report and runs' ends (seconds). A first
    stopping signal lets that finish, since stopping it would only leave the records half-written; a second
    exits at once."""

    count_as_first = False  # the sweep finishes as usual

    def first(self, signum: signal.Signals) -> None:
        self.signum, self.first_at_ms = signum, int(time.time() * 1000) - 1000
        print(f"\n{signum.name}: every trial is done; writing the results and the report first (seconds; send it "
              "again to exit at once)", file=sys.stderr, flush=True)


def kill_descendants() -> None:
    """SIGKILL this process's children and theirs (the local Ray's processes and its trial workers)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def exit_at_once(signum: int) -> None:
    """Exit with 128 + ``signum`` now, taking this process's own children along (the local Ray's agents would
    outlive an ``os._exit``)."""
    kill_descendants()
    os._exit(exit_status(signum))


def exit_process(status: int) -> NoReturn:
    """Exit with ``status``. Once Ray was imported in this process (and the command shut it down), the exit skips
    the interpreter's teardown, where Ray's half-stopped C++ threads can crash it (a segmentation fault after a
    sweep was stopped by a signal while Ray started), and where the exit hooks of a Ray whose import Ctrl-C cut
    short fail with a traceback."""
    if any(name == "ray" or name.startswith("ray.") for name in sys.modules):
        import logging

        shutdown_ray()  # Ray's processes and their agents go with it (atexit, which would stop them, is skipped)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def shutdown_ray() -> None:
    """Stop the Ray this process started, even half-started (its processes would outlive the command). Ray's
    processes below this one that outlive its shutdown are killed: a Ray stopped while it started can leave its
    agents running, orphaned by their raylet, and listening."""
    if "ray" in sys.modules:
        started = [pid for pid in descendants(os.getpid()) if _is_ray(pid)]
        try:
            if not _STOPPING:  # stopping on a signal, Ray's own shutdown can leave a second one killing the process
                sys.modules["ray"].shutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        for pid in started:
            with contextlib.suppress(OSError):
                if _is_ray(pid):  # still the same Ray process (not a new one under a reused pid)
                    os.kill(pid, signal.SIGKILL)


def _is_ray(pid: int) -> bool:
    """Whether process ``pid`` is one of Ray's (its command line names Ray: ``ray::...``, raylet, gcs_server...)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"ray::") or b"/ray/" in command


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, from ``/proc`` (none where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


class Stopped(BaseException):
    """SIGINT or SIGTERM (``signum``) outside Tune's graceful stop; like KeyboardInterrupt, not an Exception."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


class StopOnSignals:
    """While active, SIGINT and SIGTERM raise :class:`Stopped` in the main thread (``finally`` blocks and
    ``except BaseException`` clean-ups run; the default SIGTERM would kill the process mid-write).
    :meth:`rearm` installs the handlers again after a library replaced them (Ray's core worker installs
    its own fatal-signal handler, which dumps a stack and aborts with 134), and raises the signal again if its
    :class:`Stopped` was swallowed: Python prints and ignores an exception raised inside an at-fork hook (a
    signal that arrives while Ray forks its processes), and the command would go on as if never told to stop."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: int | None = None
        self._unraisable = sys.unraisablehook

    def __enter__(self) -> StopOnSignals:
        global _STOPPING, _AFTER_FIRST
        _STOPPING, _AFTER_FIRST = False, None  # a new command in this process (a test, a notebook): as usual again
        for signum in CAUGHT:
            self.previous[signum] = signal.signal(signum, self._handle)
        self._unraisable, sys.unraisablehook = sys.unraisablehook, self._swallowed
        return self

    def _swallowed(self, unraisable: Any) -> None:
        """Python's report of an exception it ignored: silent for our :class:`Stopped` (:meth:`rearm` raises it
        again), as it was for every other."""
        if not isinstance(unraisable.exc_value, Stopped):
            self._unraisable(unraisable)

    def rearm(self) -> None:
        """Install this handler again (after ``ray.init``); raise :class:`Stopped` if a signal came before."""
        for signum in CAUGHT:
            signal.signal(signum, self._handle)
        if self.received is not None:
            raise Stopped(self.received)

    def hold(self, signum: int) -> None:
        """The command stops on ``signum`` (a :class:`Stopped`, or a KeyboardInterrupt where a library put Python's
        own SIGINT handler back): from now on a stopping signal is ignored, so the clean-up is not cut off."""
        global _STOPPING
        self.received, _STOPPING = self.received or signum, True
        for stopping in STOPPING_SIGNALS:
            signal.signal(stopping, signal.SIG_IGN)

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if isinstance(error, (Stopped, KeyboardInterrupt)):
            self.received = self.received or getattr(error, "signum", signal.SIGINT)
        for signum, handler in self.previous.items():  # the command stopping: a later signal waits for its exit
            if UNTIL_EXIT:  # (a program that called run_sweep gets its own handlers back, stopped or not)
                handler = _AFTER_FIRST or (handler if self.received is None else signal.SIG_IGN)
            signal.signal(signum, handler)
        sys.unraisablehook = self._unraisable

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """The first signal raises :class:`Stopped`; a later one waits: the clean-up it started (Ray's shutdown, the
        sweep folder given back, a new store removed) is short, and cut off it would leave those behind."""
        if self.received is not None:
            return
        self.received = signum
        raise Stopped(signum)


@contextmanager
def noted_until_imported() -> Iterator[None]:
    """While the command imports its libraries (torch), a stopping signal is noted and acts once they are imported
    (KeyboardInterrupt for SIGINT, else :class:`Stopped`): raised inside Python code that C++ called, it aborted
    the process instead (pybind11's ``terminate``, exit 134, one Ctrl-C in 56)."""
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: noted.append(signum)) for signum in CAUGHT}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if noted:
        raise KeyboardInterrupt if noted[0] == signal.SIGINT else Stopped(noted[0])


@contextmanager
def ray_keeps_our_handlers() -> Iterator[None]:
    """While ``ray.init`` runs, Ray's own SIGTERM handler (a silent ``sys.exit(15)`` that skips every
    clean-up of ours) is not installed, nor its core worker's fatal-signal handler in this process: ``ray.shutdown``
    resets that one's signals to their defaults below Python, and a SIGTERM after it (a second signal while the
    stopped sweep exits) killed the command silently. The handlers in place stay; Ray's own processes keep theirs."""
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils

    original = getattr(ray_utils, "set_sigterm_handler", None)
    if original is None:  # another Ray version: nothing to keep out
        yield
        return
    ray_utils.set_sigterm_handler = lambda handler: None
    disabled, ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER, True
    try:
        yield  # (read as this process's core worker starts; its shutdown uninstalls only what it installed)
    finally:
        ray_utils.set_sigterm_handler = original
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = disabled


def _inside(path: str, root: str) -> bool:
    if "://" in path or "://" in root:
        return path.rstrip("/") == root.rstrip("/") or path.startswith(root.rstrip("/") + "/")
    resolved = Path(path).resolve()
    return resolved == Path(root).resolve() or Path(root).resolve() in resolved.parents


def check_resume_state(experiment_path: str, sweep_dir: Path, storage_path: str | None) -> None:
    """Refuse to unpickle Tune state outside the sweep folder (and its output folder, the default storage)
    or the ``--storage-path`` given now: ``sweep.json`` alone must not point ``--resume`` anywhere."""
    roots = [str(sweep_dir.parent)] + ([storage_path] if storage_path else [])
    if not any(_inside(experiment_path, root) for root in roots):
        raise UserError(f"{sweep_dir / 'sweep.json'} points --resume at Tune state in {experiment_path}, outside "
                        "the sweep folder; if you trust it, pass its parent as --storage-path")


def restored(restore: Callable[[], T], experiment_path: str) -> T:
    """``restore()`` (Tune's ``Tuner.restore``); any failure is a one-line error and nothing is changed."""
    try:
        return restore()
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign pickle raises anything
        first = first_line(error)
        raise UserError(f"cannot restore the sweep's Tune state from {experiment_path} ({type(error).__name__}: "
                        f"{first}); it is corrupt or from another Ray version. The sweep's records are unchanged; "
                        "run it again without --resume") from None
