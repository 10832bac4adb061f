"""Closing a sweep's trial runs in MLflow: those a dead sweep left RUNNING, and those an interruption stopped."""

from __future__ import annotations

from ignite_mbo import mlflow_store as store
from ignite_mbo.run_closing import closing


def close_running_trial_runs(tracking_uri: str, experiment: str, parent_run_id: str, status: str,
                             reason: str, tag: str = "error") -> int:
    """Close every trial run of the sweep still RUNNING as ``status`` with ``reason``; how many. A store that
    fails gets a few tries, all the runs together (:func:`run_closing.closing`)."""
    closed = [0]

    def attempt() -> None:
        for run in store.sweep_trial_runs(tracking_uri, experiment, parent_run_id):
            if run.info.status == "RUNNING":
                store.close_run(tracking_uri, run.info.run_id, status, reason, tag=tag)
                closed[0] += 1

    closing(attempt, f"the trial runs of sweep run {parent_run_id}", status,
             "once the tracking store works, run the sweep again with --resume, which closes its runs")
    return closed[0]


def mark_interrupted(tracking_uri: str, experiment: str, parent_run_id: str, reason: str, since_ms: int) -> int:
    """Record the sweep's trials that an interruption at ``since_ms`` (epoch ms) stopped: runs still RUNNING,
    and runs Tune stopped after that moment, become KILLED with tag ``ignite_mbo.interrupted``."""
    marked = 0
    for run in store.sweep_trial_runs(tracking_uri, experiment, parent_run_id):
        explained = {f"{store.TAG_PREFIX}stopped", f"{store.TAG_PREFIX}interrupted"} & set(run.data.tags)
        stopped_now = run.info.status == "KILLED" and not explained and (run.info.end_time or 0) >= since_ms
        if run.info.status == "RUNNING" or stopped_now:
            store.close_run(tracking_uri, run.info.run_id, "KILLED", reason, tag="interrupted")
            marked += 1
    return marked
