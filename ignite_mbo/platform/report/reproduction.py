"""The reproduction check: our unregularized 100th percentile next to the published numbers, task by task.

Only like is compared with like: the published numbers are full-fidelity runs at the paper's
protocol, so a verdict is given only for trials at ``fidelity: full`` with no protocol deviations.
Other trials are listed as "not comparable" with the reason (quick fidelity, changed settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ignite_mbo.platform.report.published import DATASET_BEST, PUBLISHED, TASK, Published

TASK_NAMES = {"TFBind8-Exact-v0": "TF-Bind-8", "TFBind10-Exact-v0": "TF-Bind-10"}


@dataclass(frozen=True)
class Comparison:
    """One baseline: ours (mean ± std over n seeds) against the published mean ± std."""

    published: Published
    mean: float
    std: float
    n: int
    not_comparable: str = ""
    """Why these trials cannot be compared with the published runs ('' when they can)."""

    @property
    def sigmas(self) -> float:
        """|ours − published| in published standard deviations (NaN when the published σ is 0)."""
        if self.published.std == 0:
            return math.nan
        return abs(self.mean - self.published.mean) / self.published.std

    @property
    def verdict(self) -> str:
        if self.not_comparable:
            return f"not comparable: {self.not_comparable}"
        if self.published.std == 0:
            return "published σ is 0: no distance in σ"
        if math.isnan(self.sigmas):
            return "no score"
        if self.sigmas <= 1:
            return "within 1σ"
        return "within 2σ" if self.sigmas <= 2 else "off"


def compare(finished: pd.DataFrame) -> list[Comparison]:
    """Comparisons for every published row with finished unregularized trials of its task in ``finished``.

    A baseline with full-fidelity trials at the paper's protocol is compared on those alone; otherwise
    its trials are summarised with the reason they are not comparable.
    """
    rows = finished[finished["regularizer"].astype(str) == "none"]
    reasons = pd.Series([_not_comparable(row) for row in rows.to_dict("records")], index=rows.index, dtype=object)
    comparisons = []
    for published in PUBLISHED:
        mine = (rows["baseline"].astype(str) == published.baseline) & (rows["task"].astype(str) == published.task)
        comparable = mine & (reasons == "")
        picked = comparable if comparable.any() else mine
        scores = pd.to_numeric(rows.loc[picked, "score_100th"], errors="coerce").dropna()
        if len(scores):
            std = float(scores.std(ddof=1)) if len(scores) > 1 else math.nan
            why = "" if comparable.any() else "; ".join(dict.fromkeys(reasons[picked]))
            comparisons.append(Comparison(published, float(scores.mean()), std, len(scores), why))
    return comparisons


def _not_comparable(trial: dict) -> str:
    """'' for a full-fidelity trial at the paper's protocol, else why it is not comparable."""
    fidelity, deviations = (_text(trial.get(key)) for key in ("config.fidelity", "protocol_deviations"))
    if fidelity != "full":
        return f"{fidelity} fidelity" if fidelity else "fidelity not recorded"
    if deviations:
        return f"settings differ from the paper's protocol ({deviations})"
    return ""


def _text(value: object) -> str:
    """A recorded text value, '' when missing (None, NaN, pd.NA, 'None')."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value).strip()
    return "" if text in ("None", "nan", "<NA>") else text


def render(comparisons: list[Comparison]) -> str:
    """The check as a markdown section, one table per task (empty when there is nothing to compare)."""
    lines: list[str] = []
    for task in dict.fromkeys(c.published.task for c in comparisons):
        rows = [c for c in comparisons if c.published.task == task]
        lines += [
            f"### Reproduction check: {TASK_NAMES.get(task, task)}, regularizer none, 100th percentile",
            "",
            "| baseline | ours (mean ± std, n) | published (mean ± std, n) | distance | verdict |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in rows:
            ours = f"{c.mean:.3f}" + (f" ± {c.std:.3f}" if not math.isnan(c.std) else "") + f", n={c.n}"
            theirs = f"{c.published.mean:.3f} ± {c.published.std:.3f}, n={c.published.n}"
            distance = "—" if c.not_comparable or math.isnan(c.sigmas) else f"{c.sigmas:.1f}σ"
            lines.append(f"| {c.published.baseline} ({c.published.name}) | {ours} | {theirs} | {distance} | "
                         f"{c.verdict} |")
        sources = {source: [c.published.baseline for c in rows if c.published.source == source]
                   for source in dict.fromkeys(c.published.source for c in rows)}
        cited = "; ".join(f"{source} ({', '.join(names)})" for source, names in sources.items())
        best = f"; dataset best {DATASET_BEST}" if task == TASK else ""
        lines += ["", f"Published: {cited}{best}. Distance: |ours − published| in "
                  "published σ; within 1σ / within 2σ / off. Only full-fidelity trials at the paper's protocol are "
                  "compared; others are marked not comparable.", ""]
    return "\n".join(lines)


def to_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """The check as a table (``reproduction_check.csv``)."""
    return pd.DataFrame([{
        "task": c.published.task, "baseline": c.published.baseline, "published_name": c.published.name,
        "mean": c.mean, "std": c.std, "n": c.n, "published_mean": c.published.mean, "published_std": c.published.std,
        "published_n": c.published.n,
        "distance_sigma": math.nan if c.not_comparable else c.sigmas, "verdict": c.verdict, "source": c.published.source,
    } for c in comparisons])
