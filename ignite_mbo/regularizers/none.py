"""No regularizer: a plain backward of the loss, the baseline every other regularizer is compared to."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ignite_mbo.regularizers.base import LossClosure, MeanPrediction, Regularizer, RegularizerSettings


class NoRegularizer:
    """Plain backward of the loss: the unregularized baseline (measures nothing extra per batch)."""

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        value, _ = loss()
        value.sum().backward()
        return {"loss": value.detach()}

    def lambdas(self) -> list[float]:
        return []

    def state_dict(self) -> dict[str, list[float]]:
        return {}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        pass


class NoneConfig(RegularizerSettings):
    """No regularizer (no hyperparameters)."""

    name: Literal["none"] = "none"

    def build(self) -> Regularizer:
        return NoRegularizer()
