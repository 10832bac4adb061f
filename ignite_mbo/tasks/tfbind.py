"""TF-Bind-8 and TF-Bind-10, exactly as Design-Bench defines them.

Both datasets hold the full landscape (every 4^k k-mer), so the exact oracle is a table lookup.
Design-Bench builds that table by walking the rows in shard order, so when a k-mer occurs more
than once (TF-Bind-10 has each 10-mer 5 to 8 times, with different y) the *last* occurrence wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ignite_mbo.errors import UserError
from ignite_mbo.tasks.base import Task
from ignite_mbo.tasks.data import require

NUM_CLASSES = 4  # A/C/G/T (tokens 0..3)
TRAINING_PERCENTILE = 50.0  # Design-Bench keeps the rows with y at or below the median


@dataclass(frozen=True, eq=False)
class LookupOracle:
    """Exact oracle: ``table[code(x)]`` where ``code`` reads a k-mer as a base-``num_classes`` number."""

    table: np.ndarray  # float32 (num_classes ** length,)
    length: int
    num_classes: int = NUM_CLASSES

    @classmethod
    def from_rows(cls, x: np.ndarray, y: np.ndarray, num_classes: int = NUM_CLASSES) -> LookupOracle:
        """Build the table from every row of the full dataset; the last occurrence of a k-mer wins."""
        length = x.shape[1]
        codes = encode(x, num_classes)
        reversed_codes = codes[::-1]
        unique_codes, first_in_reversed = np.unique(reversed_codes, return_index=True)
        if len(unique_codes) != num_classes**length:
            raise UserError(
                f"the data covers {len(unique_codes)} of {num_classes**length} {length}-mers; "
                "the files are incomplete: run 'ignite-mbo data verify'"
            )
        last_row = len(codes) - 1 - first_in_reversed
        table = y[last_row, 0].astype(np.float32)  # unique_codes is 0..K-1 in order
        return cls(table=table, length=length, num_classes=num_classes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.length or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"oracle expects integer designs of shape (n, {self.length}), got {x.dtype} {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.num_classes):
            raise ValueError(f"oracle expects tokens in 0..{self.num_classes - 1}")
        return self.table[encode(x, self.num_classes)][:, None]


def encode(x: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Tokens (n, length) -> int64 codes, position 0 the most significant digit."""
    powers = num_classes ** np.arange(x.shape[1] - 1, -1, -1, dtype=np.int64)
    return x.astype(np.int64) @ powers


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); run 'ignite-mbo data verify' and re-download it") from None


def _below_percentile(y: np.ndarray) -> np.ndarray:
    """Indices of the rows with y at or below Design-Bench's training percentile, in file order."""
    threshold = np.percentile(y[:, 0], TRAINING_PERCENTILE)
    return np.flatnonzero(y[:, 0] <= threshold)


def _build(task_id: str, folder_name: str, prefix: str, data_dir: str | os.PathLike[str] | None,
           max_samples: int | None, subsample_seed: int) -> Task:
    """Read every shard in order, keep the rows at or below the median, optionally subsample them."""
    if max_samples is not None and max_samples <= 0:
        raise UserError(f"max_samples must be a positive integer or None, got {max_samples}")
    folder = require(folder_name, data_dir)
    num_shards = len(list(folder.glob(f"{prefix}-x-*.npy")))
    x_all = np.concatenate([_load(folder / f"{prefix}-x-{k}.npy") for k in range(num_shards)])
    y_all = np.concatenate([_load(folder / f"{prefix}-y-{k}.npy") for k in range(num_shards)])
    rows = _below_percentile(y_all)
    info = {"full_dataset_rows": len(y_all), "training_rows_below_percentile": len(rows),
            "max_samples": max_samples, "subsample_seed": subsample_seed}
    if max_samples is not None and max_samples < len(rows):
        rows = np.sort(np.random.default_rng(subsample_seed).choice(rows, size=max_samples, replace=False))
    return Task(
        task_id=task_id,
        x=x_all[rows],
        y=y_all[rows],
        oracle=LookupOracle.from_rows(x_all, y_all),
        y_min=float(y_all.min()),
        y_max=float(y_all.max()),
        num_classes=NUM_CLASSES,
        info=info,
    )


def make_tf_bind_8(
    data_dir: str | os.PathLike[str] | None = None, max_samples: int | None = None, subsample_seed: int = 0
) -> Task:
    """``TFBind8-Exact-v0``: SIX6 binding of all 8-mers; train on the 32,898 rows at or below the median."""
    return _build("TFBind8-Exact-v0", "tf_bind_8-SIX6_REF_R1", "tf_bind_8", data_dir, max_samples, subsample_seed)


def make_tf_bind_10(
    data_dir: str | os.PathLike[str] | None = None, max_samples: int | None = 10_000, subsample_seed: int = 0
) -> Task:
    """``TFBind10-Exact-v0``: Pho4 ddG of all 10-mers (84 shards, 8.3 M rows).

    Training rows are those at or below the median (4,161,482), then a uniform subsample of
    ``max_samples`` of them (10,000 as in the paper; ``None`` keeps them all) drawn with
    ``subsample_seed``, kept in file order.
    """
    return _build("TFBind10-Exact-v0", "tf_bind_10-pho4", "tf_bind_10", data_dir, max_samples, subsample_seed)
