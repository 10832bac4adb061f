"""BOSS: boosting offline optimizers with surrogate sensitivity (Dao et al., ICML 2024).

BOSS penalises how much a random perturbation γ of the surrogate's parameters (along the all-ones
direction, to first order) moves its mean prediction G, relative to α·G. Per minibatch and member:

    s     = Σ_j ∂G/∂β_j                           # G's change per unit shift of every parameter
    γ_k   ~ N(μ, σ²),  k = 1..n_γ                  # ω = (μ, σ): the perturbation distribution
    P     = mean_k min(1, (γ_k·s / (α·G))²)        # the sensitivity penalty (differentiated through s)
    ∇     = ∇(L + λ·P)
    z_k   = 1[|γ_k·s| > |α·G|]                     # which draws moved G by more than α·G

Then ω ascends the chance of a sensitive draw: a small classifier Φ(γ) ≈ P(z = 1 | γ) (one ReLU
layer of 2 units, sigmoid output) takes 5 Adam steps (lr 1e-3) on this step's (γ, z), and
ω ← clip(ω + η_ω·∂E_γ[Φ(γ)]/∂ω) with μ ∈ [−μ_max, μ_max], σ ∈ [σ_min, σ_max].

Written from the description of cuong-dm/BOSS's ``*_BOSS/trainers.py`` (``train_step``,
``update_omega``); its defaults are in :class:`BossConfig`. Where we differ from that code:
- each member of a stacked ensemble has its own ω, Φ and Φ's Adam state (the reference shares one
  ω across its bootstrap members);
- Φ is fitted with the binary cross-entropy of z given Φ(γ) (the reference passes Keras'
  ``BinaryCrossentropy`` its arguments the other way round), and ∂/∂σ is the reparameterised
  mean_k Φ'(γ_k)·(γ_k − μ)/σ (the reference multiplies every deviation by the sum of Φ');
- the standard normal draws come from a fixed pool drawn once per member (member m from seed m)
  and cycled (4096 steps of draws), so that a step captured as a CUDA graph replays new draws.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
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
    num_members,
    per_member,
    trainable,
)

POOL_STEPS = 4096
"""Steps of standard normal draws in the cycled pool."""
PHI_STEPS, PHI_LR, PHI_HIDDEN = 5, 1e-3, 2
"""Φ's Adam steps per minibatch, its learning rate and hidden width (the reference's fixed values)."""
ADAM_BETAS, ADAM_EPSILON = (0.9, 0.999), 1e-7  # Keras' Adam, as the reference


class SurrogateSensitivity:
    """BOSS's penalty λ·P added to the loss, with each member's perturbation distribution ω adapted."""

    def __init__(self, *, sensitivity_weight: float, alpha: float, n_gamma: int, lr_omega: float, omega_mu_init: float,
                 omega_sigma_init: float, omega_mu_bound: float, omega_sigma_lower: float,
                 omega_sigma_upper: float,
                 hvp: Literal["finite_difference", "exact"] = "finite_difference", radius: float = 0.05) -> None:
        self.weight, self.alpha, self.n_gamma, self.lr_omega = sensitivity_weight, alpha, n_gamma, lr_omega
        self.omega_init = (omega_mu_init, omega_sigma_init)
        self.mu_bound, self.sigma_bounds = omega_mu_bound, (omega_sigma_lower, omega_sigma_upper)
        self.hvp, self.radius = hvp, radius
        self.shift = Shift()
        self.omega: torch.Tensor | None = None  # (members, 2): μ, σ
        self.phi: list[torch.Tensor] = []  # w1 (m,1,H), b1 (m,1,H), w2 (m,H,1), b2 (m,1,1)
        self.moments: list[torch.Tensor] = []  # Adam's first then second moments of phi
        self.phi_steps = torch.zeros(())
        self.noise = torch.zeros(0)  # (POOL_STEPS, members, n_gamma) standard normals
        self.cursor = torch.zeros((), dtype=torch.long)

    def _start(self, members: int, device: torch.device, dtype: torch.dtype) -> None:
        """Initial ω, Φ (Glorot-uniform weights, zero biases, as Keras' Dense) and the noise pool, drawn
        in float32 whatever ``dtype`` (so a restored state draws the same); member m draws from seed m,
        so a member's draws do not depend on how many are stacked."""
        limit = math.sqrt(6 / (1 + PHI_HIDDEN))
        draws = []
        for member in range(members):
            generator = torch.Generator().manual_seed(member)
            draws.append(((torch.rand(1, PHI_HIDDEN, generator=generator) * 2 - 1) * limit,
                          (torch.rand(PHI_HIDDEN, 1, generator=generator) * 2 - 1) * limit,
                          torch.randn(POOL_STEPS, self.n_gamma, generator=generator)))
        w1, w2, noise = (torch.stack(parts) for parts in zip(*draws, strict=True))
        self.omega = torch.tensor([self.omega_init] * members, dtype=torch.float64)
        self.phi = [w1, torch.zeros(members, 1, PHI_HIDDEN), w2, torch.zeros(members, 1, 1)]
        self.moments = [torch.zeros_like(t) for t in self.phi * 2]
        self.phi_steps = torch.zeros(())
        self.noise = noise.transpose(0, 1).contiguous()  # (POOL_STEPS, members, n_gamma)
        self.cursor = torch.zeros((), dtype=torch.long)
        self._to(device, dtype)

    def _to(self, device: torch.device, dtype: torch.dtype) -> None:
        assert self.omega is not None
        self.omega = self.omega.to(device, dtype)
        self.phi = [t.detach().to(device, dtype).requires_grad_(True) for t in self.phi]
        self.moments = [t.to(device, dtype) for t in self.moments]
        self.phi_steps, self.noise = self.phi_steps.to(device, dtype), self.noise.to(device, dtype)
        self.cursor = self.cursor.to(device)

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        members = num_members(model)
        params = trainable(model)
        if self.omega is None:
            self._start(members, params[0].device, params[0].dtype)
        elif (self.omega.device, self.omega.dtype) != (params[0].device, params[0].dtype):
            self._to(params[0].device, params[0].dtype)
        assert self.omega is not None
        value, current_mean = loss()
        mean = (mean_prediction() if current_mean is None else current_mean).reshape(members)  # G
        exact = self.hvp == "exact"
        g_all = torch.autograd.grad(mean.sum(), params, retain_graph=True, allow_unused=True, create_graph=exact)
        used = [i for i, gi in enumerate(g_all) if gi is not None]
        g = [g_all[i] for i in used]
        s = torch.stack([gi.detach().reshape(members, -1).sum(dim=1) for gi in g]).sum(dim=0)

        noise = self.noise.index_select(0, self.cursor.reshape(1))[0]  # (members, n_gamma)
        self.cursor.add_(1).remainder_(POOL_STEPS)
        gamma = self.omega[:, :1] + self.omega[:, 1:] * noise
        with torch.enable_grad():  # P on the scalars s and G: its slopes per member
            s_leaf, mean_leaf = s.requires_grad_(True), mean.detach().requires_grad_(True)
            shift, bound = gamma * s_leaf[:, None], self.alpha * mean_leaf[:, None]
            penalty = torch.minimum(torch.ones_like(shift), (shift / _nonzero(bound)) ** 2).mean(dim=1)
            slope_s, slope_mean = torch.autograd.grad(penalty.sum(), [s_leaf, mean_leaf])
        # λ∇P = λ∂P/∂s · H·1 + λ∂P/∂G · ∇G: H·1 either exact, or (ĝ − g)/r with ĝ = ∇G one step r along 1/‖1‖
        used_params, scale = [params[i] for i in used], self.weight * slope_s
        if exact:
            totals: list[torch.Tensor | None] = list(torch.autograd.grad(value.sum(), params, retain_graph=True,
                                                                        allow_unused=True))
            terms = self._exact_hessian_ones(used_params, g, scale, members)
            coefficient = self.weight * slope_mean
        else:
            step = self.radius / math.sqrt(sum(p[0].numel() if members > 1 else p.numel() for p in used_params))
            terms = self._perturbed_gradient(used_params, scale / step, step, members, mean_prediction)
            coefficient = self.weight * slope_mean - scale / step  # ∇L + this·g: one pass when L and G share a graph
            totals = self._loss_plus(params, value, mean if current_mean is not None else None, coefficient)
        if exact or current_mean is None:  # ∇L, then + coefficient·g in one fused pass
            torch._foreach_addcmul_(terms, [gi.detach() for gi in g],
                                    [per_member(coefficient, p, members) for p in used_params])
        both = [k for k, i in enumerate(used) if totals[i] is not None]
        torch._foreach_add_([terms[k] for k in both], [t for k in both if (t := totals[used[k]]) is not None])
        for k, i in enumerate(used):
            totals[i] = terms[k]
        accumulate(params, totals)
        sensitive = (shift.detach().abs() > bound.detach().abs()).to(gamma.dtype)
        self._update_omega(gamma, sensitive)
        return {"loss": value.detach(), "sensitivity_penalty": penalty.detach()}

    @staticmethod
    def _loss_plus(params: list[torch.Tensor], value: torch.Tensor, shared_mean: torch.Tensor | None,
                   coefficient: torch.Tensor) -> list[torch.Tensor | None]:
        """∇(L + coefficient·G) in one traversal of the graph L and G share; ∇L alone without one."""
        if shared_mean is None:
            return list(torch.autograd.grad(value.sum(), params, allow_unused=True))
        return list(torch.autograd.grad((value.sum(), shared_mean), params, allow_unused=True,
                                        grad_outputs=(None, coefficient.reshape(shared_mean.shape))))

    @staticmethod
    def _exact_hessian_ones(params: list[torch.Tensor], g: list[torch.Tensor], scale: torch.Tensor,
                            members: int) -> list[torch.Tensor]:
        """scale·H·1 per parameter, H the Hessian of G and 1 each member's all-ones direction: double backprop."""
        inner = torch.stack([(gi * per_member(scale, p, members)).sum() for gi, p in zip(g, params, strict=True)])
        hessian = torch.autograd.grad(inner.sum(), params, allow_unused=True)
        return [h if h is not None else torch.zeros_like(p) for h, p in zip(hessian, params, strict=True)]

    def _perturbed_gradient(self, params: list[torch.Tensor], weight: torch.Tensor, step: float, members: int,
                            mean_prediction: MeanPrediction) -> list[torch.Tensor]:
        """weight·∇G at β + step·1 per member (β restored bit for bit after), scaled in the backward pass."""
        ones = [torch.ones((), dtype=params[0].dtype, device=params[0].device)] * len(params)
        with self.shift(params, ones, torch.full((members,), step, dtype=params[0].dtype, device=params[0].device),
                        members):
            perturbed = mean_prediction()
            found = torch.autograd.grad(perturbed, params, grad_outputs=weight.reshape(perturbed.shape),
                                        allow_unused=True)
        return [gh if gh is not None else torch.zeros_like(p) for gh, p in zip(found, params, strict=True)]

    def _phi(self, gamma: torch.Tensor) -> torch.Tensor:
        """Φ(γ) per member: (members, n) -> (members, n, 1)."""
        w1, b1, w2, b2 = self.phi
        return torch.sigmoid(torch.relu(gamma[..., None] @ w1 + b1) @ w2 + b2)

    def _update_omega(self, gamma: torch.Tensor, sensitive: torch.Tensor) -> None:
        """Fit Φ to (γ, z) by Adam, then one clipped ascent step of ω on E[Φ(γ)] (all on the device)."""
        assert self.omega is not None
        with torch.enable_grad():
            for _ in range(PHI_STEPS):
                p = self._phi(gamma)[..., 0].clamp(ADAM_EPSILON, 1 - ADAM_EPSILON)
                cross_entropy = -(sensitive * p.log() + (1 - sensitive) * (1 - p).log()).mean(dim=1).sum()
                self._adam(list(torch.autograd.grad(cross_entropy, self.phi)))
            probe = gamma.clone().requires_grad_(True)
            (slope,) = torch.autograd.grad(self._phi(probe).sum(), probe)
        mu, sigma = self.omega[:, :1], self.omega[:, 1:]
        step = torch.cat([slope.mean(dim=1, keepdim=True), (slope * (gamma - mu) / sigma).mean(dim=1, keepdim=True)], 1)
        self.omega.add_(step, alpha=self.lr_omega)
        self.omega[:, 0].clamp_(-self.mu_bound, self.mu_bound)
        self.omega[:, 1].clamp_(*self.sigma_bounds)

    @torch.no_grad()
    def _adam(self, grads: list[torch.Tensor]) -> None:
        first, second = self.moments[:4], self.moments[4:]
        self.phi_steps.add_(1)
        torch._foreach_lerp_(first, grads, 1 - ADAM_BETAS[0])
        torch._foreach_mul_(second, ADAM_BETAS[1])
        torch._foreach_addcmul_(second, grads, grads, value=1 - ADAM_BETAS[1])
        correction1 = 1 - ADAM_BETAS[0] ** self.phi_steps
        correction2 = (1 - ADAM_BETAS[1] ** self.phi_steps).sqrt()
        denominator = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(second), correction2), ADAM_EPSILON)
        torch._foreach_addcdiv_(self.phi, torch._foreach_div(first, correction1), denominator, value=-PHI_LR)

    def lambdas(self) -> list[float]:
        return []

    def omegas(self) -> list[tuple[float, float]]:
        """Each member's (μ, σ) (host values; call between epochs, not per step)."""
        return [] if self.omega is None else [(float(m), float(s)) for m, s in self.omega.cpu()]

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """The state, each tensor with a leading member axis (step counts repeated per member)."""
        assert self.omega is not None
        members = len(self.omega)
        return {"omega": self.omega, "phi_steps": self.phi_steps.expand(members), "cursor": self.cursor.expand(members),
                **{f"phi{i}": t for i, t in enumerate(self.phi)}, **{f"moment{i}": t for i, t in enumerate(self.moments)}}

    def state_dict(self) -> dict[str, list[float]]:
        """One list per state entry, each with one value per member (so a member's state is a slice)."""
        if self.omega is None:
            return {}
        state: dict[str, list[float]] = {}
        for key, tensor in self._state_tensors().items():
            columns = tensor.detach().cpu().reshape(len(self.omega), -1).T
            state |= {f"{key}.{j}": [float(v) for v in column] for j, column in enumerate(columns)}
        return state

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        if not state.get("omega.0"):
            self.omega = None
            return
        members = len(state["omega.0"])
        self._start(members, torch.device("cpu"), torch.float64)  # the model's dtype on the next step
        with torch.no_grad():
            for key, tensor in self._state_tensors().items():
                if key in ("phi_steps", "cursor"):
                    continue
                width = tensor[0].numel()
                values = torch.tensor([state[f"{key}.{j}"] for j in range(width)], dtype=tensor.dtype).T
                tensor.copy_(values.reshape(tensor.shape))
        self.phi_steps.fill_(state["phi_steps.0"][0])
        self.cursor.fill_(int(state["cursor.0"][0]))


def _nonzero(values: torch.Tensor) -> torch.Tensor:
    """``values`` with exact zeros replaced by the smallest normal number (keeps P finite)."""
    return torch.where(values == 0, torch.full_like(values, torch.finfo(values.dtype).tiny), values)


_Sigma = Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False)]


class BossConfig(RegularizerSettings):
    """BOSS (Dao et al., ICML 2024), published settings: the defaults of every ``*_BOSS/experiments.py``
    in cuong-dm/BOSS for the TF-Bind, D'Kitty and Ant tasks (GA, REINFORCE, CbAS, BO-qEI, CMA-ES, MINs):
    λ=1e-3, α=0.1, n_γ=100, η_ω=1e-2, μ₀=0, σ₀=1e-3, μ_max=1e-3, σ ∈ [1e-5, 1e-2]."""

    name: Literal["boss"] = "boss"
    sensitivity_weight: NonNegative = Field(1e-3, description="λ, the weight of the sensitivity penalty (the "
                                                              "reference's lambda_)")
    alpha: Positive = Field(0.1, description="α: a draw is sensitive when it moves G by more than α·G")
    n_gamma: int = Field(100, ge=1, le=100_000, description="n_γ, perturbation draws per minibatch")
    lr_omega: NonNegative = Field(1e-2, description="η_ω, the ascent step of the perturbation distribution ω")
    omega_mu_init: float = Field(0.0, ge=-1e3, le=1e3, allow_inf_nan=False, description="μ₀, ω's initial mean")
    omega_sigma_init: _Sigma = Field(1e-3, description="σ₀, ω's initial standard deviation")
    omega_mu_bound: NonNegative = Field(1e-3, description="μ_max: μ stays in [−μ_max, μ_max]")
    omega_sigma_lower: _Sigma = Field(1e-5, description="σ_min, σ's lower clip")
    omega_sigma_upper: _Sigma = Field(1e-2, description="σ_max, σ's upper clip")

    hvp: Literal["finite_difference", "exact"] = Field(
        "finite_difference", description="H·1, the penalty's curvature term: a finite difference of ∇G (works "
        "on every model), or exact double backprop (as the reference; not through token embeddings)")
    radius: Radius = Field(0.05, description="r, the finite-difference step along 1/‖1‖ (IGNITE's published r)")

    @model_validator(mode="after")
    def _ordered(self) -> BossConfig:
        if not self.omega_sigma_lower <= self.omega_sigma_upper:
            raise ValueError("omega_sigma_lower must not exceed omega_sigma_upper")
        return self

    def build(self) -> Regularizer:
        return SurrogateSensitivity(**self.model_dump(exclude={"name"}))
