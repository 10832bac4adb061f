"""A continuous task with a closed-form oracle, so continuous code paths run without any data."""

from __future__ import annotations

import os

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ignite_mbo.tasks.base import Task

DIM = 60
BOUND = 5.0  # designs live in [-BOUND, BOUND]^DIM
NUM_SAMPLES = 10_000
TRAINING_FRACTION = 0.4  # keep the worst 40 %, as Design-Bench does for its morphology tasks


class SyntheticOptions(BaseModel):
    """Options of ``Synthetic-Ackley60-v0``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    data_seed: int = Field(
        0, ge=0, lt=2**32, strict=True, description="seed of the 10,000 random designs (an integer in [0, 2**32))"
    )


def negative_ackley(x: np.ndarray) -> np.ndarray:
    """The Ackley function, negated so that larger is better (maximum 0 at the origin); (n, d) -> (n, 1)."""
    x = np.asarray(x, dtype=np.float64)
    dim = x.shape[1]
    term_1 = -20.0 * np.exp(-0.2 * np.sqrt(np.sum(x**2, axis=1) / dim))
    term_2 = -np.exp(np.sum(np.cos(2 * np.pi * x), axis=1) / dim)
    return -(term_1 + term_2 + 20.0 + np.e)[:, None].astype(np.float32)


def make_synthetic(data_dir: str | os.PathLike[str] | None = None, data_seed: int = 0) -> Task:
    """``Synthetic-Ackley60-v0``: 10,000 uniform designs in [-5, 5]^60, train on the bottom 40 %.

    ``data_dir`` is accepted for a uniform signature and ignored: nothing is read from disk.
    """
    rng = np.random.default_rng(data_seed)
    x_all = rng.uniform(-BOUND, BOUND, size=(NUM_SAMPLES, DIM)).astype(np.float32)
    y_all = negative_ackley(x_all)
    threshold = np.percentile(y_all[:, 0], 100 * TRAINING_FRACTION)
    rows = np.flatnonzero(y_all[:, 0] <= threshold)
    return Task(
        task_id="Synthetic-Ackley60-v0",
        x=x_all[rows],
        y=y_all[rows],
        oracle=negative_ackley,
        y_min=float(y_all.min()),
        y_max=float(y_all.max()),
        info={"full_dataset_rows": NUM_SAMPLES, "training_pool_rows": len(rows), "training_rows": len(rows),
              "data_seed": data_seed, "bounds": [-BOUND, BOUND]},
    )
