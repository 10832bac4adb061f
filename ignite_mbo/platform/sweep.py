"""Run a search space as a Ray Tune sweep, recorded in MLflow, summarised as a table and a report.

A sweep runs in phases, one module each: :mod:`~ignite_mbo.platform.plan` validates everything,
:mod:`~ignite_mbo.platform.tuner` builds Tune's Tuner, this module connects to Ray, opens the
parent run and runs the Tuner under a SIGINT handler, and :mod:`~ignite_mbo.platform.finish`
collects the results, reconciles MLflow and writes the table and the report.

A sweep folder ``OUTPUT_DIR/<name>/`` (``<name>-2``, ``-3``, ... when the space ran there before)
holds ``sweep.json`` (:class:`SweepRecord`), ``results.parquet`` (one row per trial) and the
report. Tune's experiment (trial folders, checkpoints, searcher state) is in the same folder unless
``storage_path`` puts it on shared storage (a multi-node cluster needs that). ``resume=True``
restores the newest sweep folder of the space from that experiment and finishes it.

Everything the user gave is validated (:func:`plan_sweep`) before Ray starts, an MLflow run is
created or a file is written. Once the parent run exists, every way out of the sweep closes it:
FINISHED, FAILED with the error, or KILLED when interrupted (SIGINT, SIGTERM, ...).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ignite_mbo import mlflow_store as store
from ignite_mbo.errors import UserError, first_line
from ignite_mbo.platform import folders, full_disk, local_ray, resume_files, signals, sweep_runs
from ignite_mbo.platform.finish import SweepOutcome, collect_results, finish_sweep
from ignite_mbo.platform.plan import SweepPlan, load_tasks, plan_sweep
from ignite_mbo.platform.record import SweepRecord
from ignite_mbo.platform.signals import Interruptions
from ignite_mbo.platform.spaces import MAX_TRIALS
from ignite_mbo.platform.tuner import NonFiniteNoRetry, build_tuner
from ignite_mbo.trainables.params import TrialLookup

INTERRUPTED = "interrupted ({signal}); finish the sweep with --resume"
ABANDONED = "the sweep's process ended without closing this run; --resume runs its trial again"

__all__ = ["SweepInterrupted", "SweepOutcome", "run_sweep"]


class SweepInterrupted(Exception):
    """The sweep was stopped by SIGINT or SIGTERM (``signum``): its state is saved and ``--resume`` finishes it."""

    def __init__(self, sweep_dir: Path, signum: int = signal.SIGINT) -> None:
        super().__init__(f"sweep interrupted; its state is in {sweep_dir}")
        self.sweep_dir = sweep_dir
        self.signum = int(signum)


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto`` inside a Ray job), or start an embedded local Ray.

    ``address="local"`` always starts a fresh instance, so a stale session file from an earlier
    crash cannot break ``num_cpus``; it lets in only holders of a per-sweep token (:mod:`local_ray`).
    Neither streams the trial workers' own output to this console: a trial's error reaches the table, the
    results and MLflow, and Ray's worker logs keep the rest. (Streamed, Ray's SIGTERM to a finished trial's
    worker could print an "Exception ignored" traceback into a sweep that went well.)
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as error:  # noqa: BLE001 - Ray raises anything; SIGINT/SIGTERM (BaseException) go on
            first = first_line(error)
            raise UserError(f"could not join the Ray cluster at {address} ({type(error).__name__}: {first}); "
                            "check that it is a Ray head's address (ray status there) and that its token is "
                            "set here (RAY_AUTH_MODE=token)") from None
    else:
        local_ray.start(num_cpus)


def check_cluster(plan: SweepPlan) -> None:
    """On a cluster: local stores are unreachable from other nodes; resources no node has are an error."""
    import ray

    if not plan.address:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    local = [what for what, uri in (("--tracking-uri", plan.tracking_uri), ("--storage-path", plan.storage_path))
             if "://" not in uri or uri.startswith(("sqlite:", "file:"))]
    if local:
        message = (f"{' and '.join(local)} point(s) at this machine's disk; trials on other nodes of the cluster "
                   "cannot write there: pass --tracking-uri http://HEAD_PRIVATE_IP:5000 (the MLflow server) and "
                   "--storage-path s3://BUCKET/PATH or a shared filesystem (docs/cluster.md)")
        if len(nodes) > 1:
            raise UserError(message)
        print(f"note: {message} (fine while this cluster has one node)", file=sys.stderr)


class SweepRun:
    """The sweep's MLflow parent run and folder, opened after validation; closed on every way out."""

    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        spec = plan.spec
        if plan.resume is not None:  # trial runs its dead process left RUNNING (a full disk, SIGKILL) are closed
            self.record = record = plan.resume
            sweep_runs.close_running_trial_runs(record.tracking_uri, record.experiment, record.parent_run_id, "FAILED",
                                           ABANDONED)
            store.reopen_sweep_run(record.tracking_uri, record.parent_run_id)
            return
        goal = spec.objective_spec
        tags = {f"{store.TAG_PREFIX}num_grid_points": str(len(plan.trials)),
                f"{store.TAG_PREFIX}search_alg": spec.search_alg.name if spec.search_alg else "grid",
                f"{store.TAG_PREFIX}scheduler": spec.scheduler.name if spec.scheduler else "fifo",
                f"{store.TAG_PREFIX}sweep_dir": str(plan.sweep_dir)}
        if goal is not None:
            tags.update({f"{store.TAG_PREFIX}objective": goal.name, f"{store.TAG_PREFIX}objective_mode": goal.mode,
                         f"{store.TAG_PREFIX}objective_kind": goal.label})
        spec_json = spec.model_dump(mode="json")
        parent = store.start_sweep_run(plan.tracking_uri, spec.name, f"sweep:{plan.sweep_dir.name}", spec_json, tags)
        self.record = SweepRecord(spec=spec_json, tracking_uri=plan.tracking_uri, experiment=spec.name,
                                  parent_run_id=parent, storage_path=plan.storage_path,
                                  experiment_path=f"{plan.storage_path.rstrip('/')}/{plan.sweep_dir.name}")
        try:
            plan.sweep_dir.mkdir(parents=True, exist_ok=True)
            self.record.save(plan.sweep_dir)
        except OSError as error:
            self.close("FAILED", f"cannot write {plan.sweep_dir}: {error}")
            raise UserError(f"cannot write the sweep folder {plan.sweep_dir} ({error.strerror}); "
                            "pick another --output-dir") from None

    def close(self, status: str, reason: str | None = None) -> None:
        """Close the parent run (and trial runs left RUNNING) as FINISHED or FAILED with ``reason``."""
        record = self.record
        if reason:
            sweep_runs.close_running_trial_runs(record.tracking_uri, record.experiment, record.parent_run_id,
                                           status, reason)
        store.close_run(record.tracking_uri, record.parent_run_id, status, reason)

    def keep_record(self) -> None:
        """Write ``sweep.json`` again if it no longer reads back. A resumed Tune copies every ``.json`` at the root
        of its experiment folder, the sweep folder by default, with its own state, in place: a disk that fills
        while it does leaves the record empty, and the sweep could not be resumed or reported."""
        try:
            SweepRecord.load(self.plan.sweep_dir)
        except UserError:
            with contextlib.suppress(OSError):
                self.record.save(self.plan.sweep_dir)

    def interrupted(self, since_ms: int, signum: int = signal.SIGINT) -> None:
        """The sweep was interrupted by ``signum`` at ``since_ms``: the trials it stopped and the parent run become
        KILLED, tagged with the signal's name."""
        record, why = self.record, INTERRUPTED.format(signal=signal.Signals(signum).name)
        sweep_runs.mark_interrupted(record.tracking_uri, record.experiment, record.parent_run_id, why, since_ms)
        store.close_run(record.tracking_uri, record.parent_run_id, "KILLED", why, tag="interrupted")


def run_sweep(
    spec_path: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
    output_dir: str | Path = "ignite_mbo_results", data_dir: str | None = None,
    gpus_per_trial: float | None = None, num_cpus: int | None = None, resume: bool = False,
    max_retries: int | None = None, overrides: dict[str, Any] | None = None, storage_path: str | None = None,
    max_trials: int = MAX_TRIALS, resume_hint: str = "run the same command with --resume to finish it",
    quiet: bool = False,
) -> SweepOutcome:
    """Run every trial of the search space (or finish an interrupted sweep); write the table and report.

    Raises :class:`SweepInterrupted` after a first SIGINT (the parent run is KILLED, the sweep can
    be resumed), UserError on bad input (before anything is written).
    """
    from ignite_mbo.platform.console import announce

    plan = plan_sweep(spec_path, address=address, tracking_uri=tracking_uri, output_dir=output_dir,
                      gpus_per_trial=gpus_per_trial, num_cpus=num_cpus, resume=resume, max_retries=max_retries,
                      overrides=overrides, storage_path=storage_path, max_trials=max_trials)
    total = len(plan.trials) * plan.spec.num_samples
    tasks = load_tasks(plan.trials, data_dir, plan.spec.search)  # bounds of the task and the machine: before a word
    if not quiet:
        announce(plan.sweep_dir, total, resume=plan.resume is not None)
    output = plan.sweep_dir.parent
    made_output = not output.exists()  # removed again if the sweep stops while starting and leaves it empty
    with signals.StopOnSignals() as stop:  # a stopping signal before Tune runs: one line, the claim released
        if plan.resume is None:  # made and owned before the store is touched (two sweeps never share one)
            folders.prepare_storage(plan.storage_path)
            plan.sweep_dir = folders.claim_sweep_folder(output, plan.spec.name)
        else:
            folders.check_room_to_resume(plan.sweep_dir, plan.resume.experiment_path)
        try:
            with folders.held(plan.sweep_dir):
                return _run_started(plan, tasks, total, address=address, num_cpus=num_cpus, resume_hint=resume_hint,
                                    quiet=quiet, stop=stop)
        except BaseException as error:  # stopped, or failed, before the sweep wrote a file: the claim given back
            stopped = isinstance(error, (signals.Stopped, KeyboardInterrupt))
            if stopped:
                stop.hold(getattr(error, "signum", signal.SIGINT))
            released = plan.resume is None and folders.release_claim(plan.sweep_dir)
            signals.shutdown_ray()  # now: what Ray prints as it stops (a log it cannot write) comes before our line
            if released and made_output:
                with contextlib.suppress(OSError):
                    output.rmdir()  # only if empty
            if stopped and plan.resume is not None:  # the sweep is as it was: its resume command is printed
                raise SweepInterrupted(plan.sweep_dir, getattr(error, "signum", signal.SIGINT)) from None
            raise


def check_every_trial(plan: SweepPlan, found: int, total: int) -> None:
    """A grid sweep whose Tune results hold fewer trials than planned (a state restored after it was saved on a
    full disk) is an error, before anything is reported or an MLflow run of a missing trial deleted."""
    if not plan.spec.search and plan.spec.search_alg is None and found < total:
        raise UserError(f"Tune's results hold {found} of the sweep's {total} trials (its saved state was cut short, "
                        "e.g. on a full disk); their MLflow runs are kept. Run the sweep again without --resume")


def _run_started(plan: SweepPlan, tasks: Any, total: int, *, address: str | None, num_cpus: int | None,
                 resume_hint: str, quiet: bool, stop: signals.StopOnSignals) -> SweepOutcome:
    """The sweep, once its folder is claimed: Ray, the parent run, Tune, the results."""
    from ignite_mbo.platform.console import TrialTable, quiet_ray

    quiet_ray()
    with signals.ray_keeps_our_handlers():
        connect(address, num_cpus)  # a local Ray that does not start, or a cluster not joined: a UserError
    stop.rearm()  # ours again, should a Ray version install a handler of its own; a stop swallowed meanwhile: raised
    check_cluster(plan)
    callbacks: list[Any] = [NonFiniteNoRetry()]
    restored = None
    if plan.resume is not None:  # a state that cannot be restored leaves the records as they were
        record = plan.resume
        restored = signals.restored(lambda: build_tuner(plan, record, tasks, callbacks), record.experiment_path)
    with full_disk.Ballast(plan.tracking_uri, share=0.25) as ballast:  # room to close the runs if the disk fills
        sweep = SweepRun(plan)
        if not quiet:
            callbacks.append(TrialTable(TrialLookup(plan.trials), total))
        try:
            stop.rearm()  # a signal whose stop Python swallowed since Ray started: raised now, before Tune runs
            with Interruptions(resume_hint, sweep.interrupted) as interruptions:
                tuner = restored or build_tuner(plan, sweep.record, tasks, callbacks)
                results = tuner.fit()
            if interruptions.count:
                sweep.interrupted(interruptions.first_at_ms, interruptions.signum)
                raise SweepInterrupted(plan.sweep_dir, interruptions.signum)
            with signals.Finishing(resume_hint, sweep.interrupted):  # a signal now would leave records half-written
                table = collect_results(results, TrialLookup(plan.trials), plan.spec)
                check_every_trial(plan, len(table), total)
                outcome = finish_sweep(plan.sweep_dir, table, sweep.record, resume_hint)
                signals.shutdown_ray()  # now, not at exit, where a signal would interrupt it halfway
            return outcome
        except SweepInterrupted:
            raise
        except (KeyboardInterrupt, signals.Stopped) as error:
            signum = getattr(error, "signum", signal.SIGINT)
            sweep.interrupted(int(time.time() * 1000) - 60_000, signum)
            raise SweepInterrupted(plan.sweep_dir, signum) from None
        except BaseException as error:
            watched = [plan.sweep_dir, *([Path(plan.storage_path)] if "://" not in plan.storage_path else []),
                       local_ray.ray_temp_folder()]  # Ray's logs: a full disk there fails the trials too
            problem = resume_files.saved_state_problem(sweep.record.experiment_path)  # the printed fix must work
            hint = resume_hint if problem is None else f"run the sweep again without --resume: {problem}"
            try:
                full_disk.fail_sweep(sweep.close, error, ballast, hint, watched)  # one line if a disk is full
            finally:
                sweep.keep_record()  # with the room the ballast gave back
            raise
