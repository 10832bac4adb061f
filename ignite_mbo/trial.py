"""Run one trial in-process: build the task, run the baseline, score its designs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ignite_mbo import checkpoints
from ignite_mbo.allocator import keep_freed_memory
from ignite_mbo.baselines import load
from ignite_mbo.baselines.base import Context, Proposal
from ignite_mbo.config import TrialConfig
from ignite_mbo.evaluation import evaluate
from ignite_mbo.progress import SILENT, MetricLogger, Progress
from ignite_mbo.protocol import PROTOCOL_DEVIATIONS, protocol_deviations
from ignite_mbo.streams import Streams
from ignite_mbo.tasks import Task, make


@dataclass
class TrialResult:
    summary: dict[str, float | str | bool]
    proposal: Proposal
    scores: np.ndarray  # normalised oracle score of each proposed design


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` takes the GPU Ray (or the user) made visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run_trial(
    config: TrialConfig, task: Task | None = None, *, data_dir: str | None = None,
    log: MetricLogger | None = None, device: str = "auto", progress: Progress = SILENT,
) -> TrialResult:
    """Run ``config`` once. The same config and seed give the same scores on the same machine (CPU).

    ``task`` is the full task (built once and shared by a sweep's trials); a task with a
    ``max_samples`` budget (TF-Bind-10) is subsampled afresh from the trial's own stream, as the
    reference draws a new training set in every run.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    keep_freed_memory()
    streams = Streams(config.seed)
    if task is None:
        task = make(config.task, data_dir, **config.task_options)
    task = task.subsample(streams.numpy("task/subsample"))
    ctx = Context(streams=streams, device=resolve_device(device), regularizer=config.regularizer,
                  log=log or (lambda metrics, step: None), progress=progress)
    proposal = load(config.baseline).propose(task, config.baseline_settings(), ctx)
    summary, scores = evaluate(task, proposal)
    summary.update(proposal.metrics)
    summary["regularizer_affects_search"] = proposal.regularizer_affects_search
    summary[PROTOCOL_DEVIATIONS] = ",".join(protocol_deviations(config))
    summary["wall_time_s"] = time.perf_counter() - started
    store = checkpoints.active()  # earlier attempts' CPU time, up to their last save, is part of the cost
    summary["cpu_time_s"] = time.process_time() - cpu_started + (store.cpu_time_before if store else 0.0)
    return TrialResult(summary=summary, proposal=proposal, scores=scores)
