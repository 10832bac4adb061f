"""Regularizers side by side: per task × baseline, which row is best and whether it beats the second.

The rows of one task × baseline (with the same non-regularizer config) are ``none`` and every
regularizer that ran, each hyperparameter setting its own row; names come from the data. Rows are
ranked by their mean 100th-percentile score over seeds; the best and the second are compared seed for
seed on the seeds both ran (:func:`stats.paired_test`). Each row's gain over ``none`` is in the
report's gains section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ignite_mbo.platform.report import stats
from ignite_mbo.platform.report.build import Report


@dataclass(frozen=True)
class Contest:
    """One task × baseline: its rows by mean score, best first, and the paired test of best − second."""

    task: str
    baseline: str
    ranking: list[tuple[str, float, int]]
    """(row, mean 100th-percentile score, seeds), best first."""
    best_vs_second: stats.PairedTest

    @property
    def best(self) -> str:
        return self.ranking[0][0]

    @property
    def second(self) -> str:
        return self.ranking[1][0]


def per_seed(trials: pd.DataFrame, column: str = "score_100th") -> pd.Series:
    """``column`` per seed (trials sharing a seed averaged), NaNs dropped."""
    return pd.to_numeric(trials[column], errors="coerce").groupby(trials["seed"]).mean().dropna()


def paired(a: pd.Series, b: pd.Series) -> stats.PairedTest:
    """The paired test of ``a − b`` (values per seed) on the seeds both have."""
    seeds = a.index.intersection(b.index)
    return stats.paired_test(a[seeds].to_numpy(dtype=float) - b[seeds].to_numpy(dtype=float))


def contests(report: Report) -> list[Contest]:
    """Every task × baseline × config with at least two regularizers besides ``none`` (report order)."""
    done = report.results
    found = []
    for (task, baseline, _), group in done.groupby(["task", "baseline", "_pair"], sort=False):
        rows = {row: per_seed(trials) for row, trials in group.groupby("_row", sort=False)}
        rows = {row: seeds for row, seeds in rows.items() if len(seeds)}
        regularized = group.loc[group["regularizer"] != "none", "_row"].unique()
        if len(regularized) < 2 or len(rows) < 2:
            continue
        ranking = sorted(((row, float(seeds.mean()), len(seeds)) for row, seeds in rows.items()),
                         key=lambda entry: -entry[1])
        found.append(Contest(task, baseline, ranking, paired(rows[ranking[0][0]], rows[ranking[1][0]])))
    return found


def render(found: list[Contest]) -> list[str]:
    """The comparison as markdown lines (none when no task × baseline ran two regularizers)."""
    if not found:
        return []
    lines = ["### Regularizers compared, 100th percentile (paired by seed)", "",
             "| task | baseline | ranking (mean score, n) | best − second | 95% t-interval | sign-flip p | n | "
             "best told apart from second |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in found:
        ranking = ", ".join(f"{row.removeprefix(c.baseline + ' + ')} {mean:.3f} (n={n})" for row, mean, n in c.ranking)
        test = c.best_vs_second
        interval = "—" if math.isnan(test.low) else f"{test.low:+.4f} .. {test.high:+.4f}"
        p = "—" if math.isnan(test.p_value) else f"{test.p_value:.3g}"
        told = "yes" if test.significant else ("no (n too small)" if test.too_few else "no")
        difference = "—" if math.isnan(test.mean) else f"{test.mean:+.4f}"
        lines.append(f"| {c.task} | {c.baseline} | {ranking} | {difference} | {interval} | {p} | {test.n} | "
                     f"{told} |")
    lines += ["", f"Best and second compared seed for seed on the seeds both ran: the {stats.TEST_NAME} "
              f"(exact up to {stats.EXACT_UP_TO} seeds); told apart when p < {stats.ALPHA:g}.", ""]
    return lines
