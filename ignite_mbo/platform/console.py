"""What people see in the terminal: the sweep's table of trials, and a progress bar for one trial.

The sweep says at once how many trials it runs and where (:func:`announce`, stderr), then prints one
row per trial as it ends (baseline, regularizer, task, seed, status, epochs, score_100th) instead of
Ray Tune's status boxes, with a live ``N/M done, ETA`` line on stderr; ``run`` shows a tqdm bar on stderr per phase
(surrogate epochs, search steps) with its ETA.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from ignite_mbo.trainables.params import TrialLookup, short_task

COLUMNS = (("baseline", 12), ("regularizer", 11), ("task", 9), ("seed", 5), ("status", 11), ("epochs", 8),
           ("score_100th", 11))


def quiet_ray() -> None:
    """Keep Ray and Tune from printing what a local sweep does not need (set before Ray starts).

    No TensorBoard/CSV/JSON trial loggers (and so no TensorBoard hint), no Tune status boxes, no
    "Checkpoint successfully created" lines, no Ray startup banners. Errors still show.
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "ray._private", "ray.util"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # trial errors: the table, results and MLflow say why
    warnings.filterwarnings("ignore", module="ray")
    no_color_reset_at_exit()


def no_color_reset_at_exit() -> None:
    """No stray ``ESC[0m`` after the last line: Ray's bundled colorama (``colorama.init`` in Ray's CLI logger)
    writes a colour reset to a terminal at exit; this process prints no colours, so it has nothing to reset."""
    try:
        from colorama import initialise
    except ImportError:
        return
    atexit.unregister(initialise.reset_all)
    initialise.atexit_done = True  # a later colorama.init() registers none either


def announce(folder: Path, total: int, resume: bool) -> None:
    """The sweep's first line, at once (before Ray starts): how many trials, where they go, whether it resumes."""
    where = os.path.relpath(folder) if folder.is_relative_to(Path.cwd()) else str(folder)
    verb = "resuming" if resume else "running"
    print(f"{verb} {total} trials -> {where} (starting Ray)", file=sys.stderr, flush=True)



def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class TrialTable(tune.Callback):
    """Prints one header, then one row per trial as it ends; on stderr a live ``N/M done, ETA`` line.

    On a terminal the status line is rewritten in place (carriage returns, no escape codes) while
    trials run; elsewhere (a Ray job's log, a pipe) it is printed once after each row.
    """

    def __init__(self, lookup: TrialLookup, total: int | None = None) -> None:
        self.lookup = lookup  # no stream kept: Tune pickles its callbacks with the experiment's state
        self.total = total or len(lookup.trials)
        self.epochs: dict[str, int] = {}
        self.printed_header = False
        self.reset()

    def reset(self) -> None:
        """Per session of the sweep (a resumed sweep restores this callback from its pickled state)."""
        self.printed_header = False
        self.started = time.monotonic()
        self.done_before: int | None = None
        self.ended: set[str] = set()
        self.status_width = 0
        self.status_at = 0.0

    def _print(self, cells: list[str]) -> None:
        self.clear_status()
        line = "  ".join(cell[:width].ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))
        print(line.rstrip(), file=sys.stdout, flush=True)

    def header(self) -> None:
        if not self.printed_header:
            self._print([name for name, _ in COLUMNS])
            self._print(["-" * width for _, width in COLUMNS])
            self.printed_header = True

    def row(self, trial: Any, status: str, score: Any = None) -> None:
        self.header()
        config = self.lookup(trial.config)
        value = f"{float(score):.3f}" if isinstance(score, (int, float)) else "-"
        result = trial.last_result or {}
        epochs = max(self.epochs.get(trial.trial_id, 0), int(result.get("surrogate_epochs", 0) or 0))
        restored = result.get("recovered_finished_run") or result.get("restored_surrogates")
        self._print([config.baseline, config.regularizer.name, short_task(config.task), str(config.seed), status,
                     "restored" if restored and not epochs else str(epochs), value])
        self.ended.add(trial.trial_id)
        self.show_status(final=True)

    # ---- the live status line (stderr) ----

    def status_line(self) -> str:
        done = (self.done_before or 0) + len(self.ended)
        line = f"{done}/{self.total} done"
        finished_here, remaining = len(self.ended), self.total - done
        if remaining and finished_here:
            line += f", ETA {duration((time.monotonic() - self.started) / finished_here * remaining)}"
        elif remaining:
            line += f", {duration(time.monotonic() - self.started)} so far"
        return line

    def show_status(self, final: bool = False) -> None:
        terminal = sys.stderr.isatty()
        if not terminal and not final:
            return
        now = time.monotonic()
        if terminal and not final and now - self.status_at < 1.0:
            return
        self.status_at = now
        line = self.status_line()
        if terminal:
            sys.stderr.write("\r" + line.ljust(self.status_width))
            self.status_width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def clear_status(self) -> None:
        if self.status_width and sys.stderr.isatty():
            sys.stderr.write("\r" + " " * self.status_width + "\r")
            sys.stderr.flush()
        self.status_width = 0

    # ---- Tune's callbacks ----

    def setup(self, *args: Any, total_num_samples: int | None = None, **info: Any) -> None:
        self.reset()
        if total_num_samples:
            self.total = total_num_samples
        self.header()

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.done_before is None:  # the first step: what a resumed sweep had finished already
            self.done_before = sum(trial.status in ("TERMINATED", "ERROR") for trial in trials)
            if self.done_before:
                self.clear_status()
                print(f"resuming: {self.done_before} of {self.total} done", file=sys.stderr, flush=True)
        self.show_status()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self.epochs[trial.trial_id] = int(result.get("surrogate_epochs", 0) or 0)
        self.show_status()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        done = result.get("trial_completed")
        self.row(trial, "finished" if done else "stopped", result.get("score_100th") if done else None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.row(trial, "error")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.clear_status()


class ProgressBar:
    """A :class:`ignite_mbo.progress.Progress` shown as a tqdm bar per phase on stderr, with ETA."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def phase(self, name: str, total: int) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, desc=name, file=self.stream, leave=False, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def advance(self, units: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(units)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
