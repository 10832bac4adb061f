"""Summarise benchmarks/trials.py JSONL files: per task, baseline and regularizer, n and mean ± std
(ddof=1) of the normalised 100th/80th/50th percentiles, and the mean trial wall time; then the
platform's reproduction check (the report's own code) on the full-fidelity trials that ran the
paper's protocol, against the published Design-Bench numbers.

    python benchmarks/summarize_trials.py OUT.jsonl [MORE.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from ignite_mbo.platform.report import reproduction


def read_rows(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        if Path(path).is_file():
            rows += [json.loads(line) for line in open(path) if line.strip()]
    return rows


def main() -> None:
    rows = read_rows(sys.argv[1:])
    groups: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["baseline"], row["regularizer"], row["fidelity"])].append(row)
    print(f"{'task':<18} {'baseline':<11} {'reg':<7} {'fid':<5} {'n':>2}  {'100th':>14} {'80th':>14} {'50th':>14} {'wall_s':>7}")
    for (task, baseline, regularizer, fidelity), group in sorted(groups.items()):
        cells = []
        for percentile in ("100th", "80th", "50th"):
            values = np.array([row[f"score_{percentile}"] for row in group])
            std = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells.append(f"{values.mean():.3f} ± {std:.3f}")
        wall = np.mean([row["wall_time_s"] for row in group])
        print(f"{task:<18} {baseline:<11} {regularizer:<7} {fidelity:<5} {len(group):>2}  "
              f"{cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {wall:7.0f}")

    paper = [row for row in rows if row["fidelity"] == "full" and not row.get("protocol_deviations")]
    if paper:
        print()
        trials = pd.DataFrame(paper).rename(columns={"fidelity": "config.fidelity"})  # the results table's name
        print(reproduction.render(reproduction.compare(trials)))


if __name__ == "__main__":
    main()
