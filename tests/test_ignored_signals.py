"""A command started ignoring a stopping signal (``nohup`` ignores SIGHUP; a script's background job, SIGINT) keeps
ignoring it, as whoever started it asked: a closed terminal does not stop a nohup'd sweep. The others still stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from processes import metrics_logged, start_run

IN_EVERY_GUARD = """
import os, signal, time
from ignite_mbo.platform.signals import Interruptions, StopOnSignals, noted_until_imported

def hangup(where):
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.2)
    print("went on", where, flush=True)

with noted_until_imported():
    hangup("importing")
with StopOnSignals():
    hangup("starting Ray")
    with Interruptions("to finish the sweep run: X --resume"):
        hangup("with Tune running")
with StopOnSignals():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
"""


def ignoring_sighup() -> None:
    """What ``nohup`` does before it starts the command."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_a_signal_ignored_at_start_stays_ignored_in_every_phase_and_the_others_still_stop() -> None:
    """Before: each guard installed its handler over the inherited SIG_IGN, so closing the terminal of a nohup'd sweep
    stopped it (129), and a background job of a script stopped on the Ctrl-C meant for the script."""
    done = subprocess.run([sys.executable, "-c", IN_EVERY_GUARD], capture_output=True, text=True, timeout=60,
                          preexec_fn=ignoring_sighup)
    assert done.stdout.splitlines() == ["went on importing", "went on starting Ray", "went on with Tune running"], done
    assert done.returncode == 1 and "Stopped: stopped by SIGTERM" in done.stderr, done  # SIGTERM is still caught


@pytest.mark.slow
def test_a_nohup_run_keeps_training_through_a_hangup_and_stops_on_sigterm(tmp_path, design_bench_dir) -> None:
    """`nohup ignite-mbo run ...`: SIGHUP (the terminal closed) changes nothing; SIGTERM then stops it as usual."""
    store = tmp_path / "mlflow.db"
    process = start_run(tmp_path, store, design_bench_dir, preexec_fn=ignoring_sighup)
    try:
        process.send_signal(signal.SIGHUP)
        before = metrics_logged(store)
        time.sleep(3)
        assert process.poll() is None and metrics_logged(store) > before, "SIGHUP stopped the nohup'd run"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and "SIGTERM" in err and "SIGHUP" not in err, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_the_tests_start_commands_as_a_terminal_would(signum) -> None:
    """conftest undoes a SIG_IGN that pytest inherited (CI as a background job), or the signal tests would not run."""
    probe = f"import signal; print(signal.getsignal(signal.{signal.Signals(signum).name}) == signal.SIG_IGN)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_a_program_whose_call_was_stopped_gets_its_own_handlers_back() -> None:
    """Before: a notebook whose run_sweep a signal stopped kept SIGINT and SIGTERM ignored for good (the kernel's
    interrupt did nothing after), and the commands it started later inherited that and could not be stopped."""
    from ignite_mbo.platform.signals import StopOnSignals, Stopped

    own = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Stopped), StopOnSignals() as stop:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except Stopped:
            stop.hold(signal.SIGTERM)  # what run_sweep does as it cleans up
            raise
    assert {signum: signal.getsignal(signum) for signum in own} == own


SHUTDOWN_THEN_SIGTERM = """
import os, signal, time
import ray
from ignite_mbo.platform.signals import ray_keeps_our_handlers

with ray_keeps_our_handlers():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
signal.signal(signal.SIGTERM, lambda signum, frame: print("our handler ran", flush=True))
ray.shutdown()  # as a stopped sweep exits
os.kill(os.getpid(), signal.SIGTERM)  # the second signal
time.sleep(0.5)
os._exit(0)
"""


@pytest.mark.slow
def test_a_sigterm_after_ray_shut_down_reaches_our_handler() -> None:
    """Pass 14: SIGINT then SIGTERM to the group during --resume killed the command silently (-15, no resume line):
    ray.shutdown reset SIGTERM to its default below Python (its core worker's fatal-signal handler, uninstalled)."""
    done = subprocess.run([sys.executable, "-c", SHUTDOWN_THEN_SIGTERM], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and done.stdout.strip() == "our handler ran", (done.returncode, done.stderr[-2000:])
