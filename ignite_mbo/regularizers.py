"""IGNITE: train a surrogate under a constraint on the norm of its gradient (NeurIPS 2024).

The surrogate's parameters β minimise the loss L(β) subject to ρ‖∇_β G(β)‖ ≤ ε, where G(β) is the
mean prediction over the minibatch. Per minibatch, with the Lagrange multiplier λ:

    g  = ∇G(β)
    ĝ  = ∇G(β + r·g/‖g‖)
    ∇  = ∇L + λ·(ρ/r)·(ĝ − g)            # (ρ/r)(ĝ − g) ≈ ρ·H g/‖g‖ = ∇(ρ‖∇G‖)
    λ ← λ + η_λ·(ρ‖g‖ − ε)               # dual ascent; IGNITE-2 keeps λ fixed

A regularizer's ``backward(model, loss, mean_prediction)`` replaces ``loss.backward()`` in any
training loop, for any ``nn.Module`` and any loss: baselines never know which one they got.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from ignite_mbo.errors import UserError

MeanPrediction = Callable[[], torch.Tensor]
"""Recomputes G at the model's current parameters: one value per member, shape (members,)."""


def num_members(model: nn.Module) -> int:
    """How many independent members ``model`` stacks (its ``num_members``; 1 for a plain module).

    A stacked model gives every parameter a leading member axis; a plain module is one member.
    """
    return int(getattr(model, "num_members", 1))


def member_norms(tensors: list[torch.Tensor], members: int) -> torch.Tensor:
    """The global L2 norm of each member's slice of ``tensors``, shape (members,)."""
    norms = torch.stack([torch.linalg.vector_norm(t.reshape(members, -1), dim=1) for t in tensors])
    return torch.linalg.vector_norm(norms, dim=0)


def per_member(values: torch.Tensor, like: torch.Tensor, members: int) -> torch.Tensor:
    """(members,) values shaped to broadcast against a parameter ``like`` (a scalar for one plain member)."""
    if members == 1:
        return values.reshape(())
    return values.reshape(members, *[1] * (like.dim() - 1))


class Regularizer(Protocol):
    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction, *,
                 current_mean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Accumulate each member's regularized gradient of ``loss`` (members,) into ``.grad``.

        ``current_mean`` is G at the current parameters when the loss's forward pass already gave it
        (saves a forward); else ``mean_prediction()`` computes it. Returns per-member statistics as
        device tensors (no host synchronisation).
        """
        ...

    def lambdas(self) -> list[float]:
        """Each member's λ (empty without a constraint)."""
        ...

    def state_dict(self) -> dict[str, list[float]]: ...

    def load_state_dict(self, state: dict[str, list[float]]) -> None: ...


class NoRegularizer:
    """Plain backward of the loss: the unregularized baseline (measures nothing extra per batch)."""

    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction, *,
                 current_mean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        loss.sum().backward()
        return {}

    def lambdas(self) -> list[float]:
        return []

    def state_dict(self) -> dict[str, list[float]]:
        return {}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        pass


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

    def _lambda(self, members: int, device: torch.device) -> torch.Tensor:
        if self.lam is None:
            self.lam = torch.full((members,), float(self.initial_lambda))
        if self.lam.device != device:
            self.lam = self.lam.to(device)
        return self.lam

    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction, *,
                 current_mean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        members = num_members(model)
        params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        lam = self._lambda(members, params[0].device)
        mean = mean_prediction() if current_mean is None else current_mean
        loss_grads = torch.autograd.grad(loss.sum(), params, retain_graph=True, allow_unused=True)
        g_all = torch.autograd.grad(mean.sum(), params, allow_unused=True, create_graph=self.hvp == "exact")
        used = [i for i, gi in enumerate(g_all) if gi is not None]
        used_params = [params[i] for i in used]
        g = [g_all[i] for i in used]
        norm = member_norms([t.detach() for t in g], members)
        step = self.radius / norm.clamp_min(torch.finfo(norm.dtype).tiny)  # r / ‖g‖ per member
        if self.hvp == "exact":
            penalty = self._exact_penalty(used_params, g, step / self.radius, members)
        else:
            penalty = self._finite_difference_penalty(used_params, [t.detach() for t in g], step, members, mean_prediction)

        for i, p in enumerate(params):  # ∇L + λ·penalty, with λ before this step's update, as the reference
            total = loss_grads[i]
            if i in used:
                term = penalty[used.index(i)].mul_(per_member(lam, p, members))
                total = term if total is None else term.add_(total)
            if total is not None:
                p.grad = total if p.grad is None else p.grad + total

        sharpness = self.rho * norm
        lam.add_(self.lambda_lr * (sharpness - self.epsilon))  # in place: a captured CUDA graph keeps updating it
        if self.project_lambda:
            lam.clamp_min_(0.0)
        return {"sharpness": sharpness, "grad_norm": norm}

    def _finite_difference_penalty(self, params: list[torch.Tensor], g: list[torch.Tensor], step: torch.Tensor,
                                   members: int, mean_prediction: MeanPrediction) -> list[torch.Tensor]:
        """(ρ/r)(∇G(β + r·g/‖g‖) − g) per parameter: the paper's finite-difference ρ·H·g/‖g‖."""
        with torch.no_grad():
            saved = torch._foreach_mul(params, 1.0)  # copies, to restore β bit for bit
            for p, gi in zip(params, g, strict=True):
                p.addcmul_(gi, per_member(step, p, members))
        try:
            g_hat = torch.autograd.grad(mean_prediction().sum(), params, allow_unused=True)
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, saved)
        scale = self.rho / self.radius
        return [(gh if gh is not None else torch.zeros_like(gi)).sub_(gi).mul_(scale)
                for gh, gi in zip(g_hat, g, strict=True)]

    def _exact_penalty(self, params: list[torch.Tensor], g: list[torch.Tensor], inverse_norm: torch.Tensor,
                       members: int) -> list[torch.Tensor]:
        """ρ·H·g/‖g‖ = ∇(ρ‖∇G‖) per parameter, by double backpropagation."""
        direction = [gi.detach() * per_member(inverse_norm, p, members) for gi, p in zip(g, params, strict=True)]
        inner = torch.stack([(gi * d).sum() for gi, d in zip(g, direction, strict=True)]).sum()
        hessian_direction = torch.autograd.grad(inner, params, allow_unused=True)
        return [self.rho * (h if h is not None else torch.zeros_like(p)) for h, p in zip(hessian_direction, params, strict=True)]

    def lambdas(self) -> list[float]:
        """Each member's current λ (host values; call between epochs, not per step)."""
        return [] if self.lam is None else [float(v) for v in self.lam.cpu()]

    def state_dict(self) -> dict[str, list[float]]:
        return {"lambda": self.lambdas()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        values = state.get("lambda") or []
        self.lam = torch.tensor(values, dtype=torch.float32) if values else None


# ---- validated configuration: what a CLI flag or a search-space YAML may say ----------------------

_Positive = Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)]
_Radius = Annotated[float, Field(ge=1e-6, le=1e3, allow_inf_nan=False)]
"""Bounded so that no setting overflows a float32 step (ρ/r, r/‖g‖ and λ·penalty stay finite)."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoneConfig(_Config):
    name: Literal["none"] = "none"

    def build(self) -> Regularizer:
        return NoRegularizer()


class IgniteConfig(_Config):
    """IGNITE, published settings: ε=0.1, λ₀=1e-3, η_λ=1e-3, ρ=0.05, r=0.05."""

    name: Literal["ignite"] = "ignite"
    epsilon: _Positive = 0.1
    initial_lambda: _NonNegative = 1e-3
    lambda_lr: _NonNegative = 1e-3
    rho: _Positive = 0.05
    radius: _Radius = 0.05
    hvp: Literal["finite_difference", "exact"] = "finite_difference"
    project_lambda: bool = False

    def build(self) -> Regularizer:
        return SharpnessConstraint(**self.model_dump(exclude={"name"}))


class Ignite2Config(IgniteConfig):
    """IGNITE-2, published settings: λ fixed at 0.01, ρ=0.2, r=0.2 (ε only enters the logged violation)."""

    name: Literal["ignite2"] = "ignite2"  # type: ignore[assignment]
    initial_lambda: _NonNegative = 0.01
    lambda_lr: Annotated[float, Field(ge=0, le=0)] = 0.0  # λ is fixed
    rho: _Positive = 0.2
    radius: _Radius = 0.2


RegularizerConfig = Annotated[NoneConfig | IgniteConfig | Ignite2Config, Field(discriminator="name")]
CONFIGS: dict[str, type[_Config]] = {"none": NoneConfig, "ignite": IgniteConfig, "ignite2": Ignite2Config}


def parse_config(name: str, **hyperparameters: object) -> NoneConfig | IgniteConfig | Ignite2Config:
    """Validate a regularizer name and its hyperparameters; bad input raises a one-line UserError."""
    if name not in CONFIGS:
        raise UserError(f"unknown regularizer {name!r}; choose one of {', '.join(CONFIGS)}")
    try:
        return CONFIGS[name](**hyperparameters)  # type: ignore[return-value]
    except ValidationError as error:
        raise UserError(f"regularizer {name!r}: {one_line(error)}") from None


def build(name: str, **hyperparameters: object) -> Regularizer:
    """A fresh regularizer (``none``, ``ignite`` or ``ignite2``) with validated hyperparameters."""
    return parse_config(name, **hyperparameters).build()


def one_line(error: ValidationError) -> str:
    """Pydantic's errors as one line: ``field: problem (got value)``, joined by ``; ``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "value"
        got = item.get("input")
        hint = ("unknown option; remove it or check its spelling" if item["type"] == "extra_forbidden"
                else item["msg"].removeprefix("Value error, "))
        parts.append(f"{where}: {hint} (got {got!r})" if item["type"] != "missing" else f"{where}: required")
    return "; ".join(parts)
