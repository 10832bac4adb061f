"""TF-Bind-8 and TF-Bind-10, exactly as Design-Bench defines them.

Both datasets hold the full landscape (every 4^k k-mer), so the exact oracle is a table lookup.
Design-Bench builds that table by walking the rows in shard order, so when a k-mer occurs more
than once (TF-Bind-10 has each 10-mer 5 to 8 times, with different y) the *last* occurrence wins.
The shards are exactly the files the package manifest lists, read in its order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ignite_mbo.errors import UserError
from ignite_mbo.tasks.base import Task
from ignite_mbo.tasks.data import manifest, require

NUM_CLASSES = 4  # A/C/G/T (tokens 0..3)
TRAINING_PERCENTILE = 50.0  # Design-Bench keeps the rows with y at or below the median
TF_BIND_10_MAX_SAMPLES = 10_000  # the paper trains each run on a fresh subsample of this size


class TFBind8Options(BaseModel):
    """Options of ``TFBind8-Exact-v0``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_samples: int | None = Field(
        None, ge=1, strict=True,
        description="rows each run draws from the training pool (an integer >= 1; null: all 32,898)",
    )


class TFBind10Options(BaseModel):
    """Options of ``TFBind10-Exact-v0``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_samples: int | None = Field(
        TF_BIND_10_MAX_SAMPLES, ge=1, strict=True,
        description="rows each run draws from the 4,161,482-row training pool (an integer >= 1; null: all)",
    )


@dataclass(frozen=True, eq=False)
class LookupOracle:
    """Exact oracle: ``table[code(x)]`` where ``code`` reads a k-mer as a base-``num_classes`` number."""

    table: np.ndarray  # float32 (num_classes ** length,)
    length: int
    num_classes: int = NUM_CLASSES

    @classmethod
    def from_rows(cls, x: np.ndarray, y: np.ndarray, num_classes: int = NUM_CLASSES) -> LookupOracle:
        """Build the table from every row of the full dataset; the last occurrence of a k-mer wins."""
        return cls.from_codes(encode(x, num_classes), y, x.shape[1], num_classes)

    @classmethod
    def from_codes(cls, codes: np.ndarray, y: np.ndarray, length: int, num_classes: int = NUM_CLASSES) -> LookupOracle:
        """``from_rows`` for rows already encoded (``codes = encode(x)``).

        Each row's index is scattered into the slot of its k-mer. numpy does not promise which of
        several writes to one slot survives, so an O(n) pass checks it: a row that finds an earlier
        row in its slot proves a later duplicate lost. When no row does, each slot holds the
        largest index with its code, i.e. the last occurrence.
        """
        index = np.int32 if len(codes) <= np.iinfo(np.int32).max else np.int64
        rows = np.arange(len(codes), dtype=index)
        last_row = np.full(num_classes**length, -1, dtype=index)
        last_row[codes] = rows
        if not (last_row[codes] >= rows).all():
            raise RuntimeError("numpy's scatter kept an earlier duplicate, so last-wins does not hold")
        covered = np.count_nonzero(last_row >= 0)
        if covered != len(last_row):
            raise UserError(
                f"the data covers {covered} of {len(last_row)} {length}-mers; "
                "the files are incomplete: run 'ignite-mbo data verify'"
            )
        return cls(table=y[last_row, 0].astype(np.float32), length=length, num_classes=num_classes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.length or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"oracle expects integer designs of shape (n, {self.length}), got {x.dtype} {x.shape}")
        return self.table[encode(x, self.num_classes)][:, None]


def encode(x: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Tokens (n, length) in 0..num_classes-1 -> codes, position 0 the most significant digit.

    A matrix-vector product in int32 when the codes fit (4^10 does), else int64.
    """
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"expected tokens in 0..{num_classes - 1}")
    dtype = np.int32 if num_classes ** x.shape[1] <= np.iinfo(np.int32).max else np.int64
    powers = num_classes ** np.arange(x.shape[1] - 1, -1, -1, dtype=dtype)
    return x.astype(dtype, copy=False) @ powers


def _load(path: Path) -> np.ndarray:
    """One shard, memory-mapped: pages are read when used and nothing is copied twice; never a pickle."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read {path} ({problem}); run 'ignite-mbo data verify' and re-download it") from None


def _open_shards(folder_name: str, prefix: str, data_dir: str | os.PathLike[str] | None
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The x and y shards the manifest lists, in its order, after checking every listed file."""
    folder = require(folder_name, data_dir)
    files = [e.file for e in manifest(folder_name)]
    x_shards = [_load(folder / f) for f in files if f.startswith(f"{prefix}-x-")]
    y_shards = [_load(folder / f) for f in files if f.startswith(f"{prefix}-y-")]
    if [len(x) for x in x_shards] != [len(y) for y in y_shards]:
        raise UserError(f"the x and y shards under {folder} differ in length; run 'ignite-mbo data verify'")
    return x_shards, y_shards


def _rows_in_pool(x_shards: list[np.ndarray], in_pool: np.ndarray) -> np.ndarray:
    """The rows of the shards (stacked) where ``in_pool`` is true, copied once into one array."""
    x_pool = np.empty((np.count_nonzero(in_pool), *x_shards[0].shape[1:]), dtype=x_shards[0].dtype)
    start = stop = 0
    for x in x_shards:
        keep = in_pool[start:start + len(x)]
        written = x_pool[stop:stop + np.count_nonzero(keep)]
        np.compress(keep, x, axis=0, out=written)
        start, stop = start + len(x), stop + len(written)
    return x_pool


def _build(task_id: str, folder_name: str, prefix: str, data_dir: str | os.PathLike[str] | None,
           max_samples: int | None) -> Task:
    """The full training pool (rows at or below the median, in file order) and the exact oracle.

    Works shard by shard, so the full x (8.3 M rows for TF-Bind-10) is never copied whole: each
    shard gives its codes for the oracle and its rows of the training pool.
    """
    x_shards, y_shards = _open_shards(folder_name, prefix, data_dir)
    y_all = np.concatenate(y_shards)
    in_pool = y_all[:, 0] <= np.percentile(y_all[:, 0], TRAINING_PERCENTILE)
    codes = np.concatenate([encode(x) for x in x_shards])
    x_pool = _rows_in_pool(x_shards, in_pool)
    return Task(
        task_id=task_id,
        x=x_pool,
        y=np.compress(in_pool, y_all, axis=0),
        oracle=LookupOracle.from_codes(codes, y_all, length=x_shards[0].shape[1]),
        y_min=float(y_all.min()),
        y_max=float(y_all.max()),
        num_classes=NUM_CLASSES,
        info={"full_dataset_rows": len(y_all), "training_pool_rows": len(x_pool), "training_rows": len(x_pool)},
        max_samples=max_samples,
    )


def make_tf_bind_8(data_dir: str | os.PathLike[str] | None = None, max_samples: int | None = None) -> Task:
    """``TFBind8-Exact-v0``: SIX6 binding of all 8-mers; the training pool is the 32,898 rows at or below the median."""
    return _build("TFBind8-Exact-v0", "tf_bind_8-SIX6_REF_R1", "tf_bind_8", data_dir, max_samples)


def make_tf_bind_10(
    data_dir: str | os.PathLike[str] | None = None, max_samples: int | None = TF_BIND_10_MAX_SAMPLES
) -> Task:
    """``TFBind10-Exact-v0``: Pho4 ddG of all 10-mers (84 shards, 8.3 M rows).

    The training pool is the 4,161,482 rows at or below the median; each run draws its own
    ``max_samples`` of them with ``Task.subsample`` (10,000 as in the paper).
    """
    return _build("TFBind10-Exact-v0", "tf_bind_10-pho4", "tf_bind_10", data_dir, max_samples)
