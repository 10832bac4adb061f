"""How a trial reports while it runs: its progress to whoever shows it, its metrics to whoever records them.

Baselines and the training loop call ``progress.phase(name, total)`` when a phase starts and
``progress.advance()`` after each unit of it; the CLI shows a bar, Ray Tune and tests pass
:data:`SILENT`. Progress is for people: metrics go through the trial's ``log`` (a
:data:`MetricLogger`) instead. The metrics that end a surrogate's training epoch come as
:class:`EpochMetrics`, the explicit epoch-end signal (the scheduler's clock, MLflow's flush).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MetricLogger = Callable[[dict[str, float], int], None]
"""``log(metrics, step)``: receives a trial's metrics at a step."""


class EpochMetrics(dict[str, float]):
    """The metrics ``training.fit`` logs once at the end of each surrogate training epoch: a logger
    tells an epoch's end by this type (``isinstance(metrics, EpochMetrics)``), not by metric names."""


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None:
        """A new phase of ``total`` units starts (e.g. ``"surrogate 2/5 epochs"``, 100)."""
        ...

    def advance(self, units: int = 1) -> None:
        """``units`` more units of the current phase are done."""
        ...


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, units: int = 1) -> None:
        pass


SILENT: Progress = _Silent()
