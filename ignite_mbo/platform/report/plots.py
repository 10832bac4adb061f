"""Training curves across seeds: per task × baseline × regularizer row, λ and sharpness per epoch, one
line per seed, with the regularizer's ε drawn.

The curves are the trials' per-epoch MLflow metrics (``…lambda``, ``…sharpness``,
``…constraint_sharpness``), read through :func:`ignite_mbo.mlflow_store.metric_histories` by each
trial's ``mlflow_run_id``. An ensemble's members are averaged per epoch. The sharpness panel shows
the constraint's sharpness as the regularizer saw it when the trials logged it (that is what ε
bounds), else the measured sharpness ρ‖∇G‖ (ρ = 0.05).
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ignite_mbo.platform.report.render import write_atomic

CURVES = ("lambda", "sharpness", "constraint_sharpness")
FOLDER = "curves"
EPSILON_COLUMN = "config.regularizer.epsilon"

Histories = dict[str, list[tuple[int, float]]]


def curves_per_trial(histories: Histories) -> dict[str, pd.Series]:
    """One series per curve name (indexed by epoch), averaged over the members and prefixes that logged it."""
    by_name: dict[str, list[pd.Series]] = defaultdict(list)
    for key, points in histories.items():
        name = key.replace("/", ".").rsplit(".", 1)[-1]
        if name in CURVES and points:
            steps, values = zip(*points, strict=True)
            by_name[name].append(pd.Series(values, index=steps, dtype=float).groupby(level=0).last())
    return {name: pd.concat(series, axis=1).mean(axis=1).sort_index() for name, series in by_name.items()}


def plot_curves(done: pd.DataFrame, read: Callable[[str], Histories], out_dir: Path) -> list[Path]:
    """Write ``curves_<task>_<row>.png`` into ``out_dir`` for each regularized row of ``done`` (a built
    report's trials, with ``_row`` and ``mlflow_run_id``); ``read(run_id)`` returns a run's histories.
    Rows whose trials logged no curves get no file. Returns the files written."""
    if "mlflow_run_id" not in done.columns:
        return []
    figures: dict[Path, bytes] = {}
    for (task, row), group in done[done["regularizer"] != "none"].groupby(["task", "_row"], sort=False):
        per_seed = {seed: curves_per_trial(read(str(run_id)))
                    for seed, run_id in zip(group["seed"], group["mlflow_run_id"], strict=True)
                    if isinstance(run_id, str) and run_id}
        per_seed = {seed: curves for seed, curves in per_seed.items() if curves}
        if per_seed:
            epsilon = _epsilon(group)
            figures[Path(out_dir) / f"curves_{_slug(task)}_{_slug(row)}.png"] = _figure(f"{task}: {row}", per_seed,
                                                                                      epsilon)
    if figures:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    for path, data in figures.items():
        write_atomic(path, data)
    return list(figures)


def _figure(title: str, per_seed: dict[object, dict[str, pd.Series]], epsilon: float | None) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_lambda, ax_sharp = fig.subplots(1, 2)
    for ax in (ax_lambda, ax_sharp):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    constraint = any("constraint_sharpness" in curves for curves in per_seed.values())
    sharp_name = "constraint_sharpness" if constraint else "sharpness"
    for seed, curves in sorted(per_seed.items(), key=lambda item: str(item[0])):
        for ax, name in ((ax_lambda, "lambda"), (ax_sharp, sharp_name)):
            if name in curves:
                ax.plot(curves[name].index, curves[name].to_numpy(), lw=1, alpha=0.8, label=f"seed {seed}")
    if epsilon is not None:
        ax_sharp.axhline(epsilon, color="black", ls="--", lw=1, label=f"ε = {epsilon:g}")
    ax_lambda.set(xlabel="epoch", ylabel="λ", title="Lagrange multiplier λ")
    ax_sharp.set(xlabel="epoch", ylabel="constraint sharpness" if constraint else "ρ‖∇G‖ (ρ=0.05)",
                 title="sharpness (the constraint's)" if constraint else "measured sharpness")
    ax_sharp.legend(fontsize=7, ncols=2)
    fig.suptitle(f"{title} (n={len(per_seed)} seeds)", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _epsilon(group: pd.DataFrame) -> float | None:
    if EPSILON_COLUMN not in group.columns:
        return None
    values = {float(v) for v in pd.to_numeric(group[EPSILON_COLUMN], errors="coerce").dropna()}
    return values.pop() if len(values) == 1 else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
