"""Published Design-Bench numbers the reproduction check compares against (cited data, not ours).

Source: the README of https://github.com/brandontrabucco/design-baselines, TF-Bind-8, normalised
100th percentile of 128 proposals, mean ± std over 8 trials.

RoMA and ICT have no row yet: a row is added only from a source read, with that source. RoMA's own
paper (NeurIPS 2021) reports no TF-Bind task; the ICT paper (NeurIPS 2023, Table 1) reports ICT and
RoMA on TF-Bind-8 and TF-Bind-10, but its text was not reachable when they were added (the IGNITE
paper's table is an image).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "design-baselines README (https://github.com/brandontrabucco/design-baselines), TF-Bind-8, 8 trials"
TASK = "TFBind8-Exact-v0"
DATASET_BEST = 0.439
"""The best normalised score in TF-Bind-8's training set, as published."""


@dataclass(frozen=True)
class Published:
    baseline: str  # our --baseline name
    name: str  # as the source calls it
    mean: float
    std: float
    n: int = 8


TF_BIND_8_100TH: tuple[Published, ...] = (
    Published("grad-ascent", "Grad.", 0.977, 0.025),
    Published("ens-min", "Grad. Min", 0.984, 0.012),
    Published("ens-mean", "Grad. Mean", 0.986, 0.012),
    Published("reinforce", "REINFORCE", 0.948, 0.028),
    Published("cbas", "CbAS", 0.927, 0.051),
    Published("bo-qei", "BO-qEI", 0.798, 0.083),
    Published("cma-es", "CMA-ES", 0.953, 0.022),
    Published("mins", "MINs", 0.905, 0.052),
    Published("coms", "COMs", 0.945, 0.033),
)

