"""How long building TF-Bind-10 takes, new against old, measured in one run.

    IGNITE_MBO_DATA_DIR=DIR OMP_NUM_THREADS=1 python benchmarks/tfbind10_build.py [--repeats 3]

Prints the median of ``--repeats`` builds (after one warm-up build, so the files are in the page
cache) for:

- new, fresh process: ``tasks.make`` in a new Python process, as a trial worker meets it; this
  includes the sha256 check of all 168 shards (the imports are not timed);
- new, same process: a repeated build, where each shard's sha256 is already known;
- old: the previous algorithm, kept below for the comparison (sha256 of every shard on every
  build, ``np.load`` + concatenate, int64 matmul encoding, ``np.unique`` on the reversed codes).

Each line gives wall-clock seconds and, in brackets, the CPU seconds of the process (all its
threads): on a shared machine the wall time grows with the load, the CPU time much less.
It also checks that old and new give the same oracle table, training pool and y range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ignite_mbo import tasks
from ignite_mbo.tasks import data
from ignite_mbo.tasks.tfbind import TRAINING_PERCENTILE

TARGET_S = 1.5
TASK_ID = "TFBind10-Exact-v0"
FRESH_PROCESS_CODE = """
import sys, time
from ignite_mbo import tasks
started, cpu = time.perf_counter(), time.process_time()
tasks.make("TFBind10-Exact-v0", sys.argv[1])
print(time.perf_counter() - started, time.process_time() - cpu)
"""


def old_build(data_dir: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The previous TF-Bind-10 build (before the subsample): (oracle table, pool rows, y_min, y_max)."""
    data._SHA256_SEEN.clear()  # the old code hashed every shard on every build
    folder = data.require("tf_bind_10-pho4", data_dir)
    num_shards = len(list(folder.glob("tf_bind_10-x-*.npy")))
    x_all = np.concatenate([np.load(folder / f"tf_bind_10-x-{k}.npy") for k in range(num_shards)])
    y_all = np.concatenate([np.load(folder / f"tf_bind_10-y-{k}.npy") for k in range(num_shards)])
    rows = np.flatnonzero(y_all[:, 0] <= np.percentile(y_all[:, 0], TRAINING_PERCENTILE))
    codes = x_all.astype(np.int64) @ (4 ** np.arange(9, -1, -1, dtype=np.int64))
    _, first_in_reversed = np.unique(codes[::-1], return_index=True)
    table = y_all[len(codes) - 1 - first_in_reversed, 0].astype(np.float32)
    return table, rows, float(y_all.min()), float(y_all.max())


Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def median(timings: list[Timing]) -> Timing:
    return statistics.median(t[0] for t in timings), statistics.median(t[1] for t in timings)


def timed(build: Callable[[], object]) -> Timing:
    started, cpu = time.perf_counter(), time.process_time()
    build()
    return time.perf_counter() - started, time.process_time() - cpu


def fresh_process(data_dir: Path) -> Timing:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS_CODE, str(data_dir)],
                         check=True, capture_output=True, text=True, env=env).stdout
    wall, cpu = out.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def show(timing: Timing) -> str:
    return f"{timing[0]:.2f} s  [{timing[1]:.2f} s CPU]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="Design-Bench data dir (default: $IGNITE_MBO_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data_dir = data.resolve_data_dir(args.data_dir)

    new = tasks.make(TASK_ID, data_dir)  # warm-up: page cache, sha256 of every shard
    table, pool, y_min, y_max = old_build(data_dir)
    every_kmer = np.stack(np.unravel_index(np.arange(4**10), (4,) * 10), axis=1).astype(np.int32)
    assert np.array_equal(new.oracle(every_kmer)[:, 0], table), "old and new oracle tables differ"
    assert len(new.y) == len(pool) and (new.y_min, new.y_max) == (y_min, y_max)

    fresh = median([fresh_process(data_dir) for _ in range(args.repeats)])
    same = median([timed(lambda: tasks.make(TASK_ID, data_dir)) for _ in range(args.repeats)])
    old = median([timed(lambda: old_build(data_dir)) for _ in range(args.repeats)])
    print(f"TF-Bind-10 build, median of {args.repeats} (warm page cache, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}):")
    print(f"  new, fresh process (sha256 of 168 shards included): {show(fresh)}")
    print(f"  new, same process (sha256 already known):           {show(same)}")
    print(f"  old (hashes every build):                           {show(old)}")
    print(f"  old / new, wall: {old[0] / fresh[0]:.1f}x against a fresh process, "
          f"{old[0] / same[0]:.1f}x in the same process")
    verdict = "met" if fresh[0] <= TARGET_S else "NOT met"
    print(f"  target <= {TARGET_S} s (wall) for a fresh-process build: {verdict}")


if __name__ == "__main__":
    main()
