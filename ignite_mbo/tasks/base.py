"""The task record every baseline receives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Oracle(Protocol):
    """Maps designs (n, *shape) to raw scores (n, 1), exactly as the task's ground truth."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Task:
    """An offline MBO task: the training data, the exact oracle and the normalisation constants.

    ``x`` holds integer tokens (n, length) for discrete tasks and float32 (n, dim) for continuous
    ones; ``y`` is float32 (n, 1). ``y_min``/``y_max`` are the min/max of the *full* dataset (not
    just the training subset), the constants Design-Bench uses to normalise reported scores.

    Builders return the whole training pool; a run trains on ``subsample(rng)``, at most
    ``max_samples`` rows of it (``None``: the whole pool).
    """

    task_id: str
    x: np.ndarray
    y: np.ndarray
    oracle: Oracle
    y_min: float
    y_max: float
    num_classes: int | None = None
    info: dict[str, object] = field(default_factory=dict)
    max_samples: int | None = None

    @property
    def is_discrete(self) -> bool:
        return self.num_classes is not None

    @property
    def design_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def normalize_score(self, y: np.ndarray) -> np.ndarray:
        """Map raw oracle scores to [0, 1] by the full dataset's min and max."""
        return (np.asarray(y, dtype=np.float64) - self.y_min) / (self.y_max - self.y_min)

    def subsample(self, rng: np.random.Generator) -> Task:
        """At most ``max_samples`` rows drawn uniformly without replacement, kept in pool order.

        Everything else (oracle, y_min, y_max) is shared; ``info`` records ``training_pool_rows``
        and ``training_rows``. Returns ``self`` when ``max_samples`` is None or covers the pool.
        """
        pool_rows = len(self.y)
        if self.max_samples is None or self.max_samples >= pool_rows:
            return self
        rows = np.sort(rng.choice(pool_rows, size=self.max_samples, replace=False))
        info = {**self.info, "training_pool_rows": pool_rows, "training_rows": len(rows)}
        return dataclasses.replace(self, x=self.x[rows], y=self.y[rows], info=info)
