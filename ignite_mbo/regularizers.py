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
"""Recomputes G(β), the mean surrogate prediction on the current batch, at the current parameters."""


class Regularizer(Protocol):
    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction) -> dict[str, float]:
        """Accumulate the (regularized) gradient of ``loss`` into each parameter's ``.grad``."""
        ...

    def state_dict(self) -> dict[str, float]: ...

    def load_state_dict(self, state: dict[str, float]) -> None: ...


class NoRegularizer:
    """Plain ``loss.backward()``: the unregularized baseline (measures nothing extra per batch)."""

    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction) -> dict[str, float]:
        loss.backward()
        return {"lambda": 0.0}

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        pass


class SharpnessConstraint:
    """IGNITE (``lambda_lr > 0``: λ by dual ascent) and IGNITE-2 (``lambda_lr = 0``: λ fixed).

    ``hvp="finite_difference"`` is the paper's two-gradient estimate; ``"exact"`` differentiates
    ρ‖∇G‖ by double backpropagation. ``project_lambda`` keeps λ ≥ 0 as a Lagrange multiplier of an
    inequality constraint must be (the official code lets it go negative: pass False for that).
    λ is updated inside ``backward`` right after the gradient is formed from the old λ, which is
    the same as updating it after the optimizer step.
    """

    def __init__(
        self,
        *,
        epsilon: float,
        initial_lambda: float,
        lambda_lr: float,
        rho: float,
        radius: float,
        hvp: Literal["finite_difference", "exact"] = "finite_difference",
        project_lambda: bool = True,
    ) -> None:
        self.epsilon = epsilon
        self.lam = initial_lambda
        self.lambda_lr = lambda_lr
        self.rho = rho
        self.radius = radius
        self.hvp = hvp
        self.project_lambda = project_lambda

    def backward(self, model: nn.Module, loss: torch.Tensor, mean_prediction: MeanPrediction) -> dict[str, float]:
        params = [p for p in model.parameters() if p.requires_grad]
        loss_grads = torch.autograd.grad(loss, params, allow_unused=True)
        g = torch.autograd.grad(mean_prediction(), params, allow_unused=True, create_graph=self.hvp == "exact")
        used = [i for i, gi in enumerate(g) if gi is not None]
        grad_norm = torch.sqrt(sum((g[i].detach() ** 2).sum() for i in used)) if used else torch.tensor(0.0)

        penalty: dict[int, torch.Tensor] = {}
        if grad_norm > 0:
            penalty = self._constraint_gradient(params, g, used, grad_norm, mean_prediction)
        for i, p in enumerate(params):
            parts = [t for t in (loss_grads[i], None if i not in penalty else self.lam * penalty[i]) if t is not None]
            if not parts:
                continue
            total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
            p.grad = total.detach().clone() if p.grad is None else p.grad + total.detach()

        sharpness = self.rho * float(grad_norm)
        self.lam += self.lambda_lr * (sharpness - self.epsilon)
        if self.project_lambda:
            self.lam = max(self.lam, 0.0)
        return {"lambda": self.lam, "sharpness": sharpness, "grad_norm": float(grad_norm)}

    def _constraint_gradient(
        self,
        params: list[nn.Parameter],
        g: tuple[torch.Tensor | None, ...],
        used: list[int],
        grad_norm: torch.Tensor,
        mean_prediction: MeanPrediction,
    ) -> dict[int, torch.Tensor]:
        """∇_β(ρ‖∇G‖) for each parameter index that G depends on."""
        if self.hvp == "exact":
            direction = [g[i].detach() / grad_norm for i in used]
            hessian_direction = torch.autograd.grad(
                sum((g[i] * d).sum() for i, d in zip(used, direction, strict=True)),
                [params[i] for i in used],
                allow_unused=True,
            )
            return {i: self.rho * (h if h is not None else torch.zeros_like(params[i])) for i, h in zip(used, hessian_direction, strict=True)}

        saved = {i: params[i].detach().clone() for i in used}
        with torch.no_grad():
            for i in used:
                params[i].add_(g[i], alpha=self.radius / float(grad_norm))
        try:
            g_hat = torch.autograd.grad(mean_prediction(), [params[i] for i in used], allow_unused=True)
        finally:
            with torch.no_grad():
                for i in used:
                    params[i].copy_(saved[i])
        scale = self.rho / self.radius
        return {
            i: scale * ((gh if gh is not None else torch.zeros_like(g[i])) - g[i])
            for i, gh in zip(used, g_hat, strict=True)
        }

    def state_dict(self) -> dict[str, float]:
        return {"lambda": self.lam}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.lam = float(state["lambda"])


# ---- validated configuration: what a CLI flag or a search-space YAML may say ----------------------

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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
    radius: _Positive = 0.05
    hvp: Literal["finite_difference", "exact"] = "finite_difference"
    project_lambda: bool = True

    def build(self) -> Regularizer:
        return SharpnessConstraint(**self.model_dump(exclude={"name"}))


class Ignite2Config(IgniteConfig):
    """IGNITE-2, published settings: λ fixed at 0.01, ρ=0.2, r=0.2 (ε only enters the logged violation)."""

    name: Literal["ignite2"] = "ignite2"  # type: ignore[assignment]
    initial_lambda: _NonNegative = 0.01
    lambda_lr: Literal[0.0] = 0.0  # type: ignore[assignment]
    rho: _Positive = 0.2
    radius: _Positive = 0.2


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
        hint = "unknown option; remove it or check its spelling" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {hint} (got {got!r})" if item["type"] != "missing" else f"{where}: required")
    return "; ".join(parts)
