"""SAM: sharpness-aware minimization of the surrogate's loss (Foret et al., ICLR 2021).

Per minibatch and per member, with the loss L and radius ρ:

    e  = ρ·∇L(β)/‖∇L(β)‖
    ∇  = ∇L(β + e)                     # the gradient at the worst nearby point, applied at β

The IGNITE paper's Table 2 runs SAM "as a loss sharpness regularization with a coefficient equal to
1" (its §5), i.e. exactly this update. The paper gives no ρ for SAM; 0.05 is SAM's own default
(Foret et al.'s published setting, and the IGNITE paper's ρ for its own regularizer).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ignite_mbo.regularizers.base import (
    LossClosure,
    MeanPrediction,
    Positive,
    Regularizer,
    RegularizerSettings,
    Shift,
    Stateless,
    accumulate,
    member_norms,
    num_members,
    trainable,
)


class SharpnessAwareMinimization(Stateless):
    """SAM with each member of a stacked model perturbed along its own normalised loss gradient.

    The loss is evaluated twice per step (at β and at β + e); a loss with state of its own (COMs'
    α step) updates that state on both evaluations.
    """

    def __init__(self, *, rho: float) -> None:
        self.rho = rho
        self.shift = Shift()

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        members = num_members(model)
        params = trainable(model)
        value, _ = loss()
        grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
        used = [p for p, g in zip(params, grads, strict=True) if g is not None]
        g = [gi for gi in grads if gi is not None]
        norm = member_norms(g, members)
        scale = self.rho / norm.clamp_min(torch.finfo(norm.dtype).tiny)  # ρ/‖∇L‖ per member
        with self.shift(used, g, scale, members):  # β + ρ·g/‖g‖, β restored bit for bit after
            perturbed, _ = loss()
            sharp_grads = torch.autograd.grad(perturbed.sum(), params, allow_unused=True)
        accumulate(params, sharp_grads)
        return {"loss": value.detach(), "perturbed_loss": perturbed.detach(), "grad_norm": norm}


class SamConfig(RegularizerSettings):
    """SAM (Foret et al., ICLR 2021) at coefficient 1, as the IGNITE paper's Table 2 runs it (its §5);
    ρ=0.05 is SAM's published default, the paper giving none for SAM."""

    name: Literal["sam"] = "sam"
    rho: Positive = Field(0.05, description="ρ, the radius of SAM's ascent step on the loss")

    def build(self) -> Regularizer:
        return SharpnessAwareMinimization(rho=self.rho)
