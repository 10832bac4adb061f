"""Run many trials without Ray or MLflow, N at a time, appending one JSON line per finished trial.

    python benchmarks/trials.py OUT.jsonl --baselines cma-es bo-qei --regularizers none --seeds 0-7 \
        [--task TFBind8-Exact-v0] [--fidelity full] [--workers 2] [--threads 1] [--deadline 3600] [--set epochs=10]

Trials already in OUT.jsonl are skipped, so a killed run resumes; with ``--checkpoints DIR`` a
trial killed midway also goes on from its last checkpoint (a finished surrogate, or a long fit's
last save between epochs: ``ignite_mbo.checkpoints``), and its ``cpu_time_s`` includes what the
killed attempts spent up to that save. Each worker is a process with
``--threads`` torch threads; on a GPU machine every worker shares the visible GPU (fractional
packing). ``--deadline`` (seconds) stops starting new trials after that time. The last line printed
is a throughput summary: trials finished, wall time and trials per hour. Each row records its wall
time, the worker process's CPU time (``cpu_time_s``: what the trial cost on a shared machine) and the
commit of the code that ran it (``code``: costs change with the code, scores should not). Used for the background
reproduction runs on the CPU and by ``benchmarks/device_check.sh`` on a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` or ``"0,3,5"`` -> seeds."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(seed) for seed in text.split(",")]


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(job.pop("threads"))
    code = job.pop("code")
    from ignite_mbo.checkpoints import CheckpointStore
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.trial import run_trial

    folder = job.pop("checkpoint_dir", None)
    config = TrialConfig.parse(job)
    started = time.time()
    store = CheckpointStore(folder) if folder else None
    with store.activate() if store else nullcontext():
        result = run_trial(config, device=os.environ.get("IGNITE_MBO_DEVICE", "auto"))
    return {"task": config.task, "baseline": config.baseline, "regularizer": config.regularizer.name,
            "seed": config.seed, "fidelity": config.fidelity, "options": config.baseline_options,
            "started": started, **result.summary, "code": code}


def code_version() -> str:
    """The short commit of this checkout, with ``+dirty`` when it has uncommitted changes; ``unknown`` without git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def key(row: dict[str, Any]) -> tuple:
    return (row["task"], row["baseline"], row["regularizer"], row["seed"], row["fidelity"],
            json.dumps(row.get("options", {}), sort_keys=True))


def checkpoint_dir(root: Path | None, row: dict[str, Any]) -> str | None:
    """The trial's own checkpoint folder under ``root`` (named after its key), or None without one."""
    return None if root is None else str(root / hashlib.sha256(repr(key(row)).encode()).hexdigest()[:16])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="TFBind8-Exact-v0")
    parser.add_argument("--baselines", nargs="+", required=True)
    parser.add_argument("--regularizers", nargs="+", default=["none"])
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--fidelity", default="full")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=float("inf"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--checkpoints", type=Path, metavar="DIR",
                        help="keep each trial's checkpoints here, so a killed trial goes on from its last save")
    parser.add_argument("--order", choices=["seed", "baseline"], default="seed",
                        help="seed: every baseline's early seeds first; baseline: as listed, all its seeds first")
    args = parser.parse_args()

    options = {k: json.loads(v) for k, v in (pair.split("=", 1) for pair in args.set)}
    done = set()
    if args.out.exists():
        done = {key(json.loads(line)) for line in args.out.read_text().splitlines() if line.strip()}
    jobs = []
    grid = [(seed, baseline) for seed in parse_seeds(args.seeds) for baseline in args.baselines]
    if args.order == "baseline":
        grid.sort(key=lambda pair: args.baselines.index(pair[1]))
    for seed, baseline in grid:
        for regularizer in args.regularizers:
            job = {"task": args.task, "baseline": baseline, "regularizer": {"name": regularizer}, "seed": seed,
                   "fidelity": args.fidelity, "baseline_options": options}
            row = {"task": args.task, "baseline": baseline, "regularizer": regularizer, "seed": seed,
                   "fidelity": args.fidelity, "options": options}
            if key(row) not in done:
                jobs.append({**job, "threads": args.threads, "checkpoint_dir": checkpoint_dir(args.checkpoints, row)})

    # A SIGTERM (kill, a session's end) unwinds like Ctrl-C, so the pool below terminates its workers: a
    # worker left behind would go on training unseen, its row never written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    code = code_version()
    jobs = [{**job, "code": code} for job in jobs]
    started = time.time()
    context = mp.get_context("spawn")
    with context.Pool(args.workers, maxtasksperchild=1) as pool:
        pending: list[Any] = []
        for job in jobs:
            while len(pending) >= args.workers:
                pending = _collect(pending, args.out)
                time.sleep(0.2)
            if time.time() - started > args.deadline:
                break
            pending.append((pool.apply_async(run_one, (job,)), job["checkpoint_dir"]))
        while pending:
            pending = _collect(pending, args.out)
            time.sleep(0.2)
    finished = _count(args.out) - len(done)
    wall = time.time() - started
    print(f"throughput: {finished} trials in {wall:.0f} s with {args.workers} workers: "
          f"{3600 * finished / max(wall, 1e-9):.1f} trials/hour", flush=True)


def _collect(pending: list, out: Path) -> list:
    still = []
    for handle, folder in pending:
        if not handle.ready():
            still.append((handle, folder))
            continue
        try:
            row = handle.get()
        except Exception as error:  # noqa: BLE001 - report and go on with the other trials
            print(f"trial failed: {type(error).__name__}: {error}", flush=True)
            continue
        with out.open("a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if folder:  # recorded: its checkpoints are no longer needed
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{row['baseline']:>11} {row['regularizer']:>7} seed {row['seed']}: "
              f"100th {row['score_100th']:.3f} 80th {row['score_80th']:.3f} 50th {row['score_50th']:.3f} "
              f"({row['wall_time_s']:.0f} s wall, {row['cpu_time_s']:.0f} s CPU)", flush=True)
    return still


def _count(out: Path) -> int:
    return sum(1 for line in out.read_text().splitlines() if line.strip()) if out.exists() else 0


if __name__ == "__main__":
    main()
