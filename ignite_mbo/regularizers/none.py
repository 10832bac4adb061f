"""No regularizer: a plain backward of the loss, the baseline every other regularizer is compared to."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ignite_mbo.regularizers.base import LossClosure, MeanPrediction, Regularizer, RegularizerSettings, Stateless


class NoRegularizer(Stateless):
    """Plain backward of the loss: the unregularized baseline (measures nothing extra per batch)."""

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        value, _ = loss()
        value.sum().backward()
        return {"loss": value.detach()}


class NoneConfig(RegularizerSettings):
    """No regularizer (no hyperparameters)."""

    name: Literal["none"] = "none"

    def build(self) -> Regularizer:
        return NoRegularizer()
