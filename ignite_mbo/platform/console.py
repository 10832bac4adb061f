"""What people see in the terminal: the sweep's table of trials, and a progress bar for one trial.

The sweep prints one row per trial as it ends (baseline, regularizer, task, seed, status, epochs,
score_100th) instead of Ray Tune's status boxes; ``run`` shows a tqdm bar on stderr per phase
(surrogate epochs, search steps) with its ETA.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, TextIO

from ray import tune

from ignite_mbo.trainables.params import TrialLookup, short_task

COLUMNS = (("baseline", 12), ("regularizer", 11), ("task", 9), ("seed", 5), ("status", 11), ("epochs", 6),
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


class TrialTable(tune.Callback):
    """Prints one header, then one row per trial as it ends, and a count line at the end."""

    def __init__(self, lookup: TrialLookup) -> None:
        self.lookup = lookup  # no stream kept: Tune pickles its callbacks with the experiment's state
        self.epochs: dict[str, int] = {}
        self.printed_header = False

    def _print(self, cells: list[str]) -> None:
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
        self._print([config.baseline, config.regularizer.name, short_task(config.task), str(config.seed), status,
                     str(self.epochs.get(trial.trial_id, 0)), value])

    def setup(self, *args: Any, **info: Any) -> None:
        self.header()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self.epochs[trial.trial_id] = int(result.get("surrogate_epochs", 0) or 0)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        done = result.get("trial_completed")
        self.row(trial, "finished" if done else "stopped", result.get("score_100th") if done else None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.row(trial, "error")


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
