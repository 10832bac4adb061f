"""L1 and L2 weight penalties: the IGNITE paper's simplest rivals in its Table 2 (§5).

    L2:  ∇ = ∇L + 2c·β            (the penalty c·‖β‖²)
    L1:  ∇ = ∇L + c·sign(β)       (the penalty c·‖β‖₁; its subgradient 0 at β = 0)

over every trainable parameter (weights and biases), each member of a stacked model on its own
slice (the penalty is elementwise). The paper gives no coefficient; ours is 0.01, the λ it found
universal for its own penalty (IGNITE-2, Appendix G.4.2), so the rivals weigh the same. The
penalty's gradient is added in one fused pass over the parameters (``torch._foreach_*``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ignite_mbo.regularizers.base import (
    LossClosure,
    MeanPrediction,
    NonNegative,
    Regularizer,
    RegularizerSettings,
    Stateless,
    trainable,
)


class WeightPenalty(Stateless):
    """The loss's gradient plus the gradient of c·‖β‖₁ (``norm=1``) or c·‖β‖² (``norm=2``)."""

    def __init__(self, *, coefficient: float, norm: Literal[1, 2]) -> None:
        self.coefficient = coefficient
        self.norm = norm

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        value, _ = loss()
        value.sum().backward()
        params = trainable(model)
        with torch.no_grad():
            grads = []
            for p in params:
                if p.grad is None:  # a parameter the loss does not reach still pays its penalty
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
            if self.norm == 2:
                torch._foreach_add_(grads, params, alpha=2 * self.coefficient)
            else:
                torch._foreach_add_(grads, torch._foreach_sign(params), alpha=self.coefficient)
        return {"loss": value.detach()}


class L1Config(RegularizerSettings):
    """L1 weight penalty c·‖β‖₁ (the IGNITE paper's Table 2 rival, §5); c=0.01: the paper gives no
    value, so the λ=0.01 it found universal for its own penalty (Appendix G.4.2)."""

    name: Literal["l1"] = "l1"
    coefficient: NonNegative = Field(0.01, description="c, the weight of the penalty (l1: c·‖β‖₁, l2: c·‖β‖²)")

    def build(self) -> Regularizer:
        return WeightPenalty(coefficient=self.coefficient, norm=1)


class L2Config(RegularizerSettings):
    """L2 weight penalty c·‖β‖² (the IGNITE paper's Table 2 rival, §5); c=0.01: the paper gives no
    value, so the λ=0.01 it found universal for its own penalty (Appendix G.4.2)."""

    name: Literal["l2"] = "l2"
    coefficient: NonNegative = Field(0.01, description="c, the weight of the penalty (l1: c·‖β‖₁, l2: c·‖β‖²)")

    def build(self) -> Regularizer:
        return WeightPenalty(coefficient=self.coefficient, norm=2)
