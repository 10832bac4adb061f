"""Keep each member's best epoch: a fit that ends with the weights of each member's epoch of highest validation
Pearson correlation, as ICT's ``grad.py`` saves a proxy whenever its validation correlation beats the best so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ignite_mbo.regularizers import Regularizer


def pearson(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Pearson's correlation of two vectors; NaN when either is constant (a collapsed model predicts one value)."""
    p, t = predictions - predictions.mean(), targets - targets.mean()
    scale = float(np.sqrt((p * p).sum() * (t * t).sum()))
    return float((p * t).sum() / scale) if scale > 0 else float("nan")


@dataclass
class BestEpochs:
    """Each member's best validation correlation so far, the epoch that reached it, and that epoch's weights and
    regularizer state. Parameters carry a leading member axis (one member: the whole tensor)."""

    members: int
    scores: list[float | None] = field(default_factory=list)
    epochs: list[int | None] = field(default_factory=list)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    regularizer: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = self.scores or [None] * self.members
        self.epochs = self.epochs or [None] * self.members

    def offer(self, epoch: int, scores: list[float], model: nn.Module, regularizer: Regularizer) -> None:
        """Keep this epoch for every member whose score beats its best (a NaN score never does)."""
        better = [m for m, (score, best) in enumerate(zip(scores, self.scores, strict=True))
                  if score == score and (best is None or score > best)]
        if not better:
            return
        state = model.state_dict()
        if not self.model:
            self.model = {key: value.detach().clone() for key, value in state.items()}
            self.regularizer = {key: list(values) for key, values in regularizer.state_dict().items()}
        now = regularizer.state_dict()
        for m in better:
            self.scores[m], self.epochs[m] = scores[m], epoch
            for key, value in state.items():
                self._member(self.model[key], m).copy_(self._member(value.detach(), m))
            for key, values in now.items():
                self.regularizer[key][m] = values[m]

    def restore(self, model: nn.Module, regularizer: Regularizer) -> None:
        """Give every member that had a best epoch its weights and regularizer state from then."""
        kept = [m for m, epoch in enumerate(self.epochs) if epoch is not None]
        if not kept:
            return
        state, now = model.state_dict(), regularizer.state_dict()
        with torch.no_grad():
            for m in kept:
                for key, value in state.items():
                    self._member(value, m).copy_(self._member(self.model[key], m))
                for key, values in now.items():
                    values[m] = self.regularizer[key][m]
        regularizer.load_state_dict(now)

    def _member(self, tensor: torch.Tensor, m: int) -> torch.Tensor:
        return tensor if self.members == 1 else tensor[m]
