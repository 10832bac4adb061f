"""``ignite-mbo run``: one trial in this process (no Ray), optionally recorded in MLflow and resumable."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from ignite_mbo.errors import UserError, shown_path
from ignite_mbo.platform.signals import Stopped
from ignite_mbo.settings_cli import key_values
from ignite_mbo.store_guard import check_tracking_uri


def add_run_command(commands: Any) -> None:
    """The ``run`` subcommand's flags: the trial's settings (from :class:`TrialConfig`) and how to run it."""
    from ignite_mbo import baselines
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.regularizers import CONFIGS
    from ignite_mbo.settings_cli import add_model_flags, add_regularizer_flags
    from ignite_mbo.tasks import REGISTRY

    run = commands.add_parser("run", help="run one trial in this process (no Ray) and print its summary as JSON",
                              description="Run one trial in this process (no Ray). A progress bar goes to "
                                          "stderr; the summary is the last line of stdout, as JSON.")
    trial_flags = add_model_flags(run, TrialConfig, skip=("task_options", "baseline_options"),
                                  choices={"task": REGISTRY, "baseline": baselines.names(), "regularizer": CONFIGS})
    run.add_argument("--data-dir", help="Design-Bench data folder (default: $IGNITE_MBO_DATA_DIR, else the user cache)")
    hyper = run.add_argument_group("regularizer hyperparameters (default: the published settings)")
    run.set_defaults(trial_flags=trial_flags, regularizer_flags=add_regularizer_flags(hyper, CONFIGS))
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a baseline setting, e.g. --set epochs=10 (repeatable; "
                          "'ignite-mbo baselines NAME' lists them)")
    run.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                     help="task option, e.g. --task-option max_samples=5000 (repeatable)")
    run.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda, cuda:N, mps")
    run.add_argument("--tracking-uri", help="also record the trial in this MLflow store (experiment 'runs'), "
                                            "e.g. sqlite:///mlflow.db")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--checkpoints", type=Path, metavar="DIR",
                     help="save the trial in a folder of DIR named after its settings (trained surrogates; a long "
                          "fit every 10 minutes): the same command after a stop goes on from the last save; the "
                          "folder is removed when the trial finishes")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for torch (default: torch's, one per core); 1 is far faster when other "
                          "jobs share the cores")


def command_run(args: argparse.Namespace) -> int:
    from ignite_mbo import limits, tasks
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.platform import full_disk
    from ignite_mbo.platform.checks import check_device
    from ignite_mbo.platform.console import ProgressBar
    from ignite_mbo.settings_cli import given

    trial = given(args, args.trial_flags)
    hyperparameters = given(args, args.regularizer_flags)
    if hyperparameters:
        trial["regularizer"] = {"name": trial.get("regularizer", "none"), **hyperparameters}
    config = TrialConfig.parse({**trial, "baseline_options": key_values(args.set, "--set"),
                                "task_options": key_values(args.task_option, "--task-option")})  # checks all, once
    check_device(args.device)
    limits.check_threads(args.threads)
    uri = check_tracking_uri(args.tracking_uri) if args.tracking_uri else None
    task = tasks.build(config.task, config.task_options, args.data_dir)
    limits.check_trial(config, task, device=args.device)
    folder = None if args.checkpoints is None else checked_folder(args.checkpoints, config)

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    progress = None if args.quiet else ProgressBar()
    extra: dict[str, Any] = {}
    if progress is not None:
        extra["progress"] = progress
    recorder = None
    if uri is not None:
        from ignite_mbo.mlflow_store import TrialRecorder
        from ignite_mbo.trainables.params import run_name

        recorder = TrialRecorder(uri, "runs", config, run_name=run_name(config))
    with full_disk.Ballast(uri or "", share=0.25) as ballast, full_disk.quiet_store():  # room to close the run
        return _train(config, task, recorder, ballast, args.device, progress, extra, folder)


def checked_folder(root: Path, config: Any) -> Path:
    """The trial's checkpoint folder under ``root``, checked (nothing created); says on stderr what an earlier,
    stopped attempt saved there."""
    from ignite_mbo.checkpoints import left_by_a_stopped_attempt, trial_folder

    existing = next(folder for folder in [root.absolute(), *root.absolute().parents] if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not a folder" if not existing.is_dir() else "cannot be written to"
        raise UserError(f"--checkpoints: {shown_path(existing)} {problem}; pick a folder this user can write to")
    folder = trial_folder(root, config)
    saved = left_by_a_stopped_attempt(folder)
    if saved is not None:
        print(f"ignite-mbo run: going on from {folder} ({saved})", file=sys.stderr)
    return folder


def _only_run_of(folder: Path) -> IO[str]:
    """An exclusive lock on the trial folder ``folder`` (held while the file is open), or one line if another run
    holds it."""
    handle = (folder / "lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another ignite-mbo run is running this trial from {shown_path(folder)}; wait for it to "
                        "end, or stop it and run this command again") from None
    return handle


def _train(config: Any, task: Any, recorder: Any, ballast: Any, device: str, progress: Any, extra: dict[str, Any],
           folder: Path | None) -> int:
    """Train ``config`` on ``task``, recording to ``recorder`` and saving to the checkpoint folder ``folder``; print
    the summary; the exit status."""
    from ignite_mbo.checkpoints import CheckpointStore
    from ignite_mbo.platform import full_disk
    from ignite_mbo.training import NonFiniteLossError
    from ignite_mbo.trial import run_trial

    try:
        with contextlib.ExitStack() as saving:
            log = recorder
            if folder is not None:
                store = CheckpointStore(folder)
                saving.enter_context(_only_run_of(folder))  # closed, the lock is released
                saving.enter_context(store.activate())
                log = store.wrap_log(recorder or (lambda metrics, step: None))  # restored fits log again
            result = run_trial(config, task, log=log, device=device, **extra)
        if recorder is not None:
            from ignite_mbo.trainables.artifacts import write_trial_artifacts

            with tempfile.TemporaryDirectory() as artifacts:
                write_trial_artifacts(result, Path(artifacts))
                recorder.finish(result.summary, Path(artifacts))
    except BaseException as error:
        if recorder is not None:
            status = "KILLED" if isinstance(error, (KeyboardInterrupt, Stopped)) else "FAILED"
            full_disk.close_run(recorder.close, status, error, ballast)  # one line if the disk is full
        if isinstance(error, NonFiniteLossError):
            print(f"ignite-mbo run: failed: {error}; lower the learning rate or check the settings", file=sys.stderr)
            return 1
        raise
    finally:
        if progress is not None:
            progress.close()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)  # the trial finished: nothing to go on from
    print(json.dumps({**result.summary, "config": config.model_dump(mode="json")}, default=float))
    return 0
