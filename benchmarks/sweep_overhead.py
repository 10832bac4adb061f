"""How close a local sweep comes to ideal parallel time, measured in one run.

    IGNITE_MBO_DATA_DIR=... python benchmarks/sweep_overhead.py [--space search_spaces/quick.yaml] [--num-cpus 2]

Runs ``ignite-mbo sweep SPACE`` (a fresh output folder and MLflow store in a temporary directory)
and prints:
- ideal: the sum of the trials' own wall times (``wall_time_s``: task, training, search, scoring)
  divided by the CPUs, i.e. perfect packing of the trials' work with zero platform cost;
- trial phase: from the first trial's MLflow run start to the last one's end (per-trial platform
  cost: worker start, MLflow logging, artifacts, scheduling gaps);
- the whole command, which adds the fixed start and end (imports, the local Ray, creating the
  MLflow store, the parent run, the report).
The ratios to ideal are the figures; the target is the trial phase within 15 % of ideal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="search_spaces/quick.yaml")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{scratch}/mlflow.db"
        command = [sys.executable, "-m", "ignite_mbo.cli", "sweep", args.space, "--output-dir", f"{scratch}/out",
                   "--tracking-uri", uri, "--num-cpus", str(args.num_cpus), "--quiet"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        whole = time.perf_counter() - start
        table = pd.read_parquet(next(Path(scratch, "out").glob("*/results.parquet")))

        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string="tags.`ignite_mbo.kind` = 'trial'", max_results=10_000)
        phase = (max(run.info.end_time for run in runs) - min(run.info.start_time for run in runs)) / 1000
    ideal = table["wall_time_s"].sum() / args.num_cpus
    print(f"{args.space}: {len(table)} trials on {args.num_cpus} CPUs")
    print(f"  ideal (sum of trial wall times / CPUs): {ideal:7.1f} s")
    print(f"  trial phase (first trial start to last end): {phase:7.1f} s  = ideal x {phase / ideal:.3f}")
    print(f"  whole command: {whole:7.1f} s  = ideal x {whole / ideal:.3f}  (fixed start and end: {whole - phase:.1f} s)")


if __name__ == "__main__":
    main()
