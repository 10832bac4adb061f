"""The paper's five claims about IGNITE, each beside what the given sweeps measured.

A **cell** is one task × baseline row with a regularizer (each hyperparameter setting its own cell),
compared seed for seed with the same task × baseline and config under ``none``. A cell is

- **cannot change** when the regularizer cannot affect the search: the trials record
  ``regularizer_affects_search`` False (MINs' search never queries the regularized model), or every
  recorded score (100th/80th/50th percentile, mean) is identical seed for seed, i.e. the designs are;
- otherwise **improved** / **dropped** by the sign of its paired 100th-percentile gain, or
  **unchanged** when ``|gain| < UNCHANGED_PCT``.

Cannot-change cells are never counted as gains. Every count also says how many cells the
sign-flip test tells apart from 0 (:mod:`stats`). Sharpness is the trials' ``sharpness_candidates``
(ρ‖∇G‖ at the proposed designs, ρ = 0.05 for every regularizer); cost is the trials' own
``cpu_time_s`` where every trial of the cell and its ``none`` recorded one (what it cost on a shared
machine), otherwise ``wall_time_s`` (the whole trial: training, search, scoring), paired by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ignite_mbo.platform.report import compare, stats
from ignite_mbo.platform.report.build import Gain, Report, _is_regularizer_column, _param_name, paired_gain

UNCHANGED_PCT = 0.05
"""|gain| below this (in %) is 'unchanged': it prints as +0.0 %."""
IDENTICAL_COLUMNS = ("score_100th", "score_80th", "score_50th", "score_mean")
PAPER = {
    "gains": "IGNITE improves 35 of 44 task × baseline cells at the 100th percentile (mean +1.91 %, up to "
             "+9.6 %); 4 drop (worst −0.7 %) and 5 are unchanged. On the discrete tasks 17 of 22 improve. "
             "IGNITE-2 improves 34 of 44.",
    "rivals": "IGNITE beats SAM, L1 and L2 on the same surrogates (Table 2).",
    "sharpness": "IGNITE lowers the surrogate's sharpness on unseen designs (Table 3).",
    "sensitivity": "ε = 0.1 with η_λ = 1e-3 is best; ε = 0.01 or 0.05 gives negative gains (Fig. 2).",
    "cost": "IGNITE adds 14.91 % training time on average.",
}
"""The paper's claims (NeurIPS 2024, 'Incorporating Surrogate Gradient Norm to Improve Offline Optimization
Techniques'), as its text states them."""
CLAIMED = "ignite"
"""The regularizer the claims are about; every other regularizer in the data is its rival."""


@dataclass(frozen=True)
class Cell:
    """One regularized task × baseline row against ``none``, paired by seed."""

    task: str
    baseline: str
    regularizer: str
    row: str
    gain: Gain
    state: str
    """'improved', 'dropped', 'unchanged' or 'cannot change'."""
    reason: str
    """Why a cell cannot change ('' otherwise)."""
    sharpness: tuple[float, float, stats.PairedTest] | None
    """Mean sharpness at the proposed designs with and without the regularizer, and the paired test."""
    overhead: stats.PairedTest | None
    """Time per trial, regularized − none, in % of none's mean."""
    overhead_clock: str | None = None
    """Which timing ``overhead`` compares (one of :data:`CLOCKS`)."""


def cells(report: Report) -> list[Cell]:
    """Every regularized row that has ``none`` trials to pair with, in report order."""
    done = report.results
    found = []
    for (task, row), group in done[done["regularizer"] != "none"].groupby(["task", "_row"], sort=False):
        baseline, regularizer = group["baseline"].iloc[0], group["regularizer"].iloc[0]
        none = done[(done["task"] == task) & (done["baseline"] == baseline) & (done["regularizer"] == "none")
                    & (done["_pair"] == group["_pair"].iloc[0])]
        if none.empty:
            continue
        gain = paired_gain(compare.per_seed(group), compare.per_seed(none))
        reason = _cannot_change(group, none)
        if reason:
            state = "cannot change"
        elif math.isnan(gain.pct):
            continue
        else:
            state = "unchanged" if abs(gain.pct) < UNCHANGED_PCT else ("improved" if gain.pct > 0 else "dropped")
        sharpness = None
        if "sharpness_candidates" in done.columns:
            with_, without = (compare.per_seed(g, "sharpness_candidates") for g in (group, none))
            if len(with_) and len(without):
                sharpness = (float(with_.mean()), float(without.mean()), compare.paired(with_, without))
        found.append(Cell(task, baseline, regularizer, row, gain, state, reason, sharpness, _overhead(group, none),
                          clock(group, none)))
    return found


def _cannot_change(group: pd.DataFrame, none: pd.DataFrame) -> str:
    if not group["_affects"].all():
        return "its search never queries the regularized model"
    columns = [c for c in IDENTICAL_COLUMNS if c in group.columns]
    pairs = [(compare.per_seed(group, c), compare.per_seed(none, c)) for c in columns]
    seeds = pairs[0][0].index.intersection(pairs[0][1].index)
    if len(seeds) and all(np.array_equal(a[seeds].to_numpy(), b[seeds].to_numpy()) for a, b in pairs):
        return "identical scores, so identical designs, seed for seed"
    return ""


CLOCKS = ("cpu_time_s", "wall_time_s")
"""The trial timings the cost claim reads, preferred first."""


def clock(group: pd.DataFrame, none: pd.DataFrame) -> str | None:
    """The first of :data:`CLOCKS` recorded by every trial of ``group`` and ``none``, else None."""
    for column in CLOCKS:
        if all(column in g.columns and g[column].notna().all() for g in (group, none)):
            return column
    return None


def _overhead(group: pd.DataFrame, none: pd.DataFrame) -> stats.PairedTest | None:
    column = clock(group, none)
    if column is None:
        return None
    with_, without = (compare.per_seed(g, column) for g in (group, none))
    paired_none = without[with_.index.intersection(without.index)]  # the seeds the test pairs, no others
    if not len(paired_none) or paired_none.mean() <= 0:
        return None
    test = compare.paired(with_, without)
    scale = 100.0 / float(paired_none.mean())
    return stats.PairedTest(scale * test.mean, scale * test.low, scale * test.high, test.p_value, test.n)


def render(report: Report) -> list[str]:
    """The claims section: each claim of the paper beside what these sweeps measured."""
    found = cells(report)
    lines = ["## The paper's claims, put to the test", ""]
    if not found:
        return lines + ["Nothing to test: no regularized trials with `none` trials of the same task, "
                        "baseline and seeds to pair with.", ""]
    small = sorted({c.gain.n for c in found if c.gain.n < stats.min_pairs()})
    if small:
        lines += [f"**Warning:** {stats.too_few_warning(small[0])}. Cells with n < {stats.min_pairs()} "
                  "show their gains, but none can be told apart from 0.", ""]
    lines += _gains(found) + _rivals(report, found) + _sharpness(found) + _sensitivity(report) + _cost(found)
    return lines


def _gains(found: list[Cell]) -> list[str]:
    lines = ["### 1. Gains at the 100th percentile", "", f"Paper: {PAPER['gains']}", ""]
    for regularizer in dict.fromkeys(c.regularizer for c in found):
        mine = [c for c in found if c.regularizer == regularizer]
        counted = [c for c in mine if c.state != "cannot change"]
        parts = []
        for state in ("improved", "dropped", "unchanged", "cannot change"):
            hits = [c for c in mine if c.state == state]
            told = sum(c.gain.significant for c in hits)
            parts.append(f"{len(hits)} {state}" + (f" ({told} told apart from 0)" if state in ("improved", "dropped")
                                                    else ""))
        text = f"- **{regularizer}**: {_cells(len(mine))}: " + ", ".join(parts)
        if counted:
            gains = [c.gain.pct for c in counted]
            text += (f"; over the {_cells(len(counted))} that can change: mean {np.mean(gains):+.2f} %, "
                     f"best {max(gains):+.2f} %, worst {min(gains):+.2f} %")
        lines.append(text + ".")
    lines += ["", "| task | row | gain | 95% t-interval | sign-flip p | n | told apart from 0 | cell |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in found:
        g = c.gain
        interval = "—" if math.isnan(g.low) else f"{g.low:+.2f}% .. {g.high:+.2f}%"
        p = _p(g.p_value)
        state = f"cannot change: {c.reason}" if c.reason else c.state
        lines.append(f"| {c.task} | {c.row} | {g.pct:+.2f}% | {interval} | {p} | {g.n} | "
                     f"{'yes' if g.significant else 'no'} | {state} |")
    return lines + [""]


def _rivals(report: Report, found: list[Cell]) -> list[str]:
    lines = ["### 2. IGNITE against the other regularizers", "", f"Paper: {PAPER['rivals']}", ""]
    rivals = [r for r in dict.fromkeys(c.regularizer for c in found) if r != CLAIMED]
    if CLAIMED not in {c.regularizer for c in found} or not rivals:
        lines.append(f"Not tested: these sweeps did not run {CLAIMED} beside another regularizer.")
        rivals = []
    done = report.results
    frozen = {(c.task, c.baseline, c.regularizer) for c in found if c.reason}  # cells that cannot change
    for rival in rivals:
        wins = told = total = 0
        for (task, baseline, _), group in done.groupby(["task", "baseline", "_pair"], sort=False):
            mine, theirs = (group[group["regularizer"] == r] for r in (CLAIMED, rival))
            if mine.empty or theirs.empty or {(task, baseline, CLAIMED), (task, baseline, rival)} & frozen:
                continue
            for _, ours in mine.groupby("_row", sort=False):
                for _, other in theirs.groupby("_row", sort=False):
                    test = compare.paired(compare.per_seed(ours), compare.per_seed(other))
                    if test.n:
                        total += 1
                        wins += test.mean > 0
                        told += test.significant and test.mean > 0
        lines.append(f"- {CLAIMED} above {rival} in {wins} of {_cells(total)} that can change "
                     f"({told} told apart by the paired test).")
    best = compare.contests(report)
    if best:
        lines += ["", "Best per cell: " + "; ".join(
            f"{c.task} / {c.baseline}: {c.best.removeprefix(c.baseline + ' + ')} "
            f"({'told apart' if c.best_vs_second.significant else 'not told apart'} from "
            f"{c.second.removeprefix(c.baseline + ' + ')}, p={_p(c.best_vs_second.p_value)}, "
            f"n={c.best_vs_second.n})" for c in best) + "."]
    return lines + [""]


def _sharpness(found: list[Cell]) -> list[str]:
    lines = ["### 3. Sharpness at the proposed designs", "", f"Paper: {PAPER['sharpness']}", ""]
    measured = [c for c in found if c.sharpness is not None]
    if not measured:
        return lines + ["Not measured: the trials record no `sharpness_candidates`.", ""]
    lowered = sum(c.sharpness[0] < c.sharpness[1] for c in measured if c.sharpness)
    told = sum(c.sharpness[2].significant and c.sharpness[0] < c.sharpness[1] for c in measured if c.sharpness)
    lines += [f"Lower with the regularizer in {lowered} of {_cells(len(measured))} ({told} told apart).", "",
              "| task | row | with | without | difference | sign-flip p | n |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in measured:
        with_, without, test = c.sharpness  # type: ignore[misc]
        p = _p(test.p_value)
        lines.append(f"| {c.task} | {c.row} | {with_:.4g} | {without:.4g} | {test.mean:+.4g} | {p} | {test.n} |")
    return lines + ["", "Sharpness: ρ‖∇G‖ (ρ = 0.05) of the trained surrogate(s) at the proposed designs.", ""]


def _sensitivity(report: Report) -> list[str]:
    lines = ["### 4. Sensitivity to the regularizer's settings", "", f"Paper: {PAPER['sensitivity']}", ""]
    long = report.long[(report.long["percentile"] == "100th") & report.long["gain_pct"].notna()
                       & report.long["affects_search"]]
    varied = [c for c in long.columns if _is_regularizer_column(c) and c != "config.regularizer.name"
              and long.groupby(["task", "baseline", "regularizer"])[c].nunique().max() > 1]
    if not varied:
        return lines + ["Not tested: no sweep varied a regularizer setting.", ""]
    lines += ["| regularizer | setting | value | mean gain | cells | cells with a negative gain |",
              "| --- | --- | --- | --- | --- | --- |"]
    for column in varied:
        data = long[long[column].notna()]
        for (regularizer, value), group in data.groupby(["regularizer", column], sort=True):
            lines.append(f"| {regularizer} | {_param_name(column)} | {value} | {group['gain_pct'].mean():+.2f}% | "
                         f"{len(group)} | {int((group['gain_pct'] < 0).sum())} |")
    return lines + ["", "Mean over the cells that ran that value (other settings averaged in); "
                    "cells that cannot change are left out.", ""]


def _cost(found: list[Cell]) -> list[str]:
    lines = ["### 5. Training-time overhead", "", f"Paper: {PAPER['cost']}", ""]
    timed = [c for c in found if c.overhead is not None and c.overhead.n]
    if not timed:
        return lines + ["Not measured: the trials record no `cpu_time_s` or `wall_time_s`.", ""]
    for regularizer in dict.fromkeys(c.regularizer for c in timed):
        tests = [c.overhead for c in timed if c.regularizer == regularizer and c.overhead]
        mine = [t.mean for t in tests]
        seeds = sorted({t.n for t in tests})
        n = f"n={seeds[0]}" if len(seeds) == 1 else f"n={seeds[0]}..{seeds[-1]}"
        clocks = " and ".join(sorted({"CPU" if c.overhead_clock == "cpu_time_s" else "wall"
                                      for c in timed if c.regularizer == regularizer}))
        lines.append(f"- **{regularizer}**: {np.mean(mine):+.1f} % {clocks} time per trial on average over "
                     f"{_cells(len(mine))} (range {min(mine):+.1f} % .. {max(mine):+.1f} %; {n} seeds per cell).")
    return lines + ["", "Whole-trial time (surrogate training, search and scoring) of regularized − none trials, "
                    "paired by seed, in % of none's mean; the training share alone is larger. CPU time where every "
                    "trial of a cell and its none recorded it (`cpu_time_s`), else wall time, which is noisy for "
                    "trials that shared a busy machine.", ""]


def _cells(count: int) -> str:
    return f"{count} cell" + ("" if count == 1 else "s")


def _p(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3g}"
