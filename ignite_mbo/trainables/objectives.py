"""What a search optimises: the objectives a trial reports as the metric ``objective``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Objective:
    """What a search optimises: a metric every trial reports as ``objective``."""

    name: str
    mode: Literal["min", "max"]
    kind: Literal["offline", "benchmark"]
    per_epoch: bool  # measured after every surrogate epoch (schedulers need that)
    description: str

    @property
    def label(self) -> str:
        """How MLflow and the report name it, e.g. ``offline: val_rank_corr (max) - ...``."""
        return f"{self.kind}: {self.name} ({self.mode}) - {self.description}"


OBJECTIVES: dict[str, Objective] = {
    "val_rank_corr": Objective("val_rank_corr", "max", "offline", True,
                               "Spearman correlation of the surrogate on held-out training rows; no oracle"),
    "val_loss": Objective("val_loss", "min", "offline", True, "surrogate loss on held-out training rows; no oracle"),
    "sharpness": Objective("sharpness", "min", "offline", True,
                           "measured surrogate sharpness 0.05·‖∇G‖ on training designs; no oracle"),
    "oracle_score": Objective("oracle_score", "max", "benchmark", False,
                              "100th-percentile normalised oracle score of the proposed designs; "
                              "uses the task oracle, which real offline MBO does not have"),
}


