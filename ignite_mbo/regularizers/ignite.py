"""IGNITE: train a surrogate under a constraint on the norm of its gradient (NeurIPS 2024).

The surrogate's parameters β minimise the loss L(β) subject to ρ‖∇_β G(β)‖ ≤ ε, where G(β) is the
mean prediction over the minibatch. Per minibatch, with the Lagrange multiplier λ:

    g  = ∇G(β)
    ĝ  = ∇G(β + r·g/‖g‖)
    ∇  = ∇L + λ·(ρ/r)·(ĝ − g)            # (ρ/r)(ĝ − g) ≈ ρ·H g/‖g‖ = ∇(ρ‖∇G‖)
    λ ← λ + η_λ·(ρ‖g‖ − ε)               # dual ascent; IGNITE-2 keeps λ fixed
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from ignite_mbo.regularizers.base import (
    LossClosure,
    MeanPrediction,
    NonNegative,
    Positive,
    Radius,
    Regularizer,
    RegularizerSettings,
    Shift,
    accumulate,
    member_norms,
    num_members,
    per_member,
    trainable,
)


class SharpnessConstraint:
    """IGNITE (``lambda_lr > 0``: λ by dual ascent) and IGNITE-2 (``lambda_lr = 0``: λ fixed).

    Each member of a stacked model has its own λ. ``hvp="finite_difference"`` is the paper's
    two-gradient estimate; ``"exact"`` differentiates ρ‖∇G‖ by double backpropagation.
    ``project_lambda`` keeps λ ≥ 0, as the multiplier of an inequality constraint must be; the
    paper's code lets λ go negative (the default here). λ is updated inside ``backward`` right
    after the gradient is formed from the old λ, which is the same as after the optimizer step.
    """

    def __init__(self, *, epsilon: float, initial_lambda: float, lambda_lr: float, rho: float, radius: float,
                 hvp: Literal["finite_difference", "exact"] = "finite_difference", project_lambda: bool = False) -> None:
        self.epsilon = epsilon
        self.initial_lambda = initial_lambda
        self.lambda_lr = lambda_lr
        self.rho = rho
        self.radius = radius
        self.hvp = hvp
        self.project_lambda = project_lambda
        self.lam: torch.Tensor | None = None  # (members,), on the model's device once training starts
        self.shift = Shift()

    def _lambda(self, members: int, device: torch.device) -> torch.Tensor:
        if self.lam is None:
            self.lam = torch.full((members,), float(self.initial_lambda))
        if self.lam.device != device:
            self.lam = self.lam.to(device)
        return self.lam

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        members = num_members(model)
        params = trainable(model)
        lam = self._lambda(members, params[0].device)
        value, current_mean = loss()
        mean = mean_prediction() if current_mean is None else current_mean
        exact = self.hvp == "exact"
        g_all = torch.autograd.grad(mean.sum(), params, retain_graph=True, allow_unused=True, create_graph=exact)
        used = [i for i, gi in enumerate(g_all) if gi is not None]
        used_params = [params[i] for i in used]
        g = [g_all[i] for i in used]
        norm = member_norms([t.detach() for t in g], members)
        inverse_norm = 1 / norm.clamp_min(torch.finfo(norm.dtype).tiny)  # 1/‖g‖ per member
        weight = lam.to(mean.dtype)  # λ before this step's update, as the reference
        if exact:
            totals = self._exact(params, value, used_params, g, weight * (self.rho * inverse_norm), members)
        else:
            totals = self._finite_difference(params, value, mean if current_mean is not None else None, used,
                                             [t.detach() for t in g], inverse_norm, weight, members, mean_prediction)
        accumulate(params, totals)

        sharpness = self.rho * norm
        lam.add_(self.lambda_lr * (sharpness - self.epsilon))  # in place: a captured CUDA graph keeps updating it
        if self.project_lambda:
            lam.clamp_min_(0.0)
        return {"loss": value.detach(), "sharpness": sharpness, "grad_norm": norm}

    def _finite_difference(self, params: list[torch.Tensor], value: torch.Tensor, shared_mean: torch.Tensor | None,
                           used: list[int], g: list[torch.Tensor], inverse_norm: torch.Tensor, lam: torch.Tensor,
                           members: int, mean_prediction: MeanPrediction) -> Sequence[torch.Tensor | None]:
        """∇L + c·(∇G(β + r·g/‖g‖) − g) per parameter, c = λρ/r per member: the paper's finite difference.

        ∇L − c·g is one backward pass through the graph L and G share (else ∇L, then one fused pass);
        c·ĝ comes scaled out of the perturbed backward pass, so one fused add combines them.
        """
        coefficient = lam * (self.rho / self.radius)
        used_params = [params[i] for i in used]
        if shared_mean is not None:  # ∇(L − c·G): both seeds in one traversal of the shared graph
            totals = list(torch.autograd.grad((value.sum(), shared_mean), params, allow_unused=True,
                                              grad_outputs=(None, -coefficient.reshape(shared_mean.shape))))
        else:
            totals = list(torch.autograd.grad(value.sum(), params, allow_unused=True))
            scales = [per_member(-coefficient, p, members) for p in used_params]
            reached = [k for k, i in enumerate(used) if totals[i] is not None]
            if reached:
                torch._foreach_addcmul_([totals[used[k]] for k in reached], [g[k] for k in reached],
                                        [scales[k] for k in reached])
            for k, i in enumerate(used):
                if totals[i] is None:  # G reaches it, L does not
                    totals[i] = g[k] * scales[k]
        with self.shift(used_params, g, self.radius * inverse_norm, members):
            perturbed = mean_prediction()
            g_hat = torch.autograd.grad(perturbed, used_params, grad_outputs=coefficient.reshape(perturbed.shape),
                                        allow_unused=True)  # c·ĝ
        found = [k for k, gh in enumerate(g_hat) if gh is not None]
        if found:
            torch._foreach_add_([totals[used[k]] for k in found], [g_hat[k] for k in found])
        return totals

    def _exact(self, params: list[torch.Tensor], value: torch.Tensor, used_params: list[torch.Tensor],
               g: list[torch.Tensor], weight: torch.Tensor, members: int) -> Sequence[torch.Tensor | None]:
        """∇L + λρ·H·g/‖g‖ = ∇(L + λρ‖∇G‖) per parameter, by double backpropagation, in one backward pass
        (``weight`` = λρ/‖g‖ per member)."""
        direction = [gi.detach() * per_member(weight, p, members) for gi, p in zip(g, used_params, strict=True)]
        inner = torch.stack([(gi * d).sum() for gi, d in zip(g, direction, strict=True)]).sum()
        return torch.autograd.grad((value.sum(), inner), params, allow_unused=True)

    def lambdas(self) -> list[float]:
        """Each member's current λ (host values; call between epochs, not per step)."""
        return [] if self.lam is None else [float(v) for v in self.lam.cpu()]

    def state_dict(self) -> dict[str, list[float]]:
        return {"lambda": self.lambdas()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        values = state.get("lambda") or []
        self.lam = torch.tensor(values, dtype=torch.float32) if values else None


class IgniteConfig(RegularizerSettings):
    """IGNITE, published settings (the paper's §5 and cuong-dm/IGNITE's scripts): ε=0.1, λ₀=1e-3,
    η_λ=1e-3, ρ=0.05, r=0.05."""

    name: Literal["ignite"] = "ignite"
    epsilon: Positive = Field(0.1, description="ε, the bound on the sharpness ρ‖∇G‖")
    initial_lambda: NonNegative = Field(1e-3, description="λ₀, the initial Lagrange multiplier (IGNITE-2: fixed λ)")
    lambda_lr: NonNegative = Field(1e-3, description="η_λ, the dual-ascent step of λ (0 keeps λ fixed)")
    rho: Positive = Field(0.05, description="ρ, the sharpness scale")
    radius: Radius = Field(0.05, description="r, the finite-difference perturbation radius")
    hvp: Literal["finite_difference", "exact"] = Field(
        "finite_difference", description="Hessian-vector product: the paper's finite difference, or exact double backprop")
    project_lambda: bool = Field(False, description="keep λ ≥ 0, as a constraint's multiplier must be (the official "
                                                    "code lets λ go negative)")

    def build(self) -> Regularizer:
        return SharpnessConstraint(**self.model_dump(exclude={"name"}))


class Ignite2Config(IgniteConfig):
    """IGNITE-2, published settings (the paper's Appendix G.4): λ fixed at 0.01, ρ=0.2, r=0.2
    (ε only enters the logged violation)."""

    name: Literal["ignite2"] = "ignite2"  # type: ignore[assignment]
    initial_lambda: NonNegative = Field(0.01, description="λ, fixed")
    lambda_lr: float = Field(0.0, description="0: λ is fixed")
    rho: Positive = Field(0.2, description="ρ, the sharpness scale")
    radius: Radius = Field(0.2, description="r, the finite-difference perturbation radius")

    @field_validator("lambda_lr")
    @classmethod
    def _lambda_stays_fixed(cls, value: float) -> float:
        if value != 0:
            raise ValueError("IGNITE-2 keeps λ fixed, so its lambda_lr is 0; use the regularizer ignite for a λ that "
                             "moves")
        return value
