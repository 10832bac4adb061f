"""Summarise a benchmarks/trials.py JSONL: per task, baseline and regularizer, n and mean ± std
(ddof=1) of the normalised 100th/80th/50th percentiles, and the mean trial wall time.

    python benchmarks/summarize_trials.py OUT.jsonl [MORE.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    groups: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for path in sys.argv[1:]:
        if not Path(path).is_file():
            continue
        for line in open(path):
            if line.strip():
                row = json.loads(line)
                groups[(row["task"], row["baseline"], row["regularizer"], row["fidelity"])].append(row)
    print(f"{'task':<18} {'baseline':<11} {'reg':<7} {'fid':<5} {'n':>2}  {'100th':>14} {'80th':>14} {'50th':>14} {'wall_s':>7}")
    for (task, baseline, regularizer, fidelity), rows in sorted(groups.items()):
        cells = []
        for percentile in ("100th", "80th", "50th"):
            values = np.array([row[f"score_{percentile}"] for row in rows])
            std = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells.append(f"{values.mean():.3f} ± {std:.3f}")
        wall = np.mean([row["wall_time_s"] for row in rows])
        print(f"{task:<18} {baseline:<11} {regularizer:<7} {fidelity:<5} {len(rows):>2}  "
              f"{cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {wall:7.0f}")


if __name__ == "__main__":
    main()
