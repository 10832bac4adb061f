"""What a regularizer is: the protocol the training loop calls, the registry of configs, and the
per-member helpers every implementation shares.

A regularizer's ``backward(model, loss, mean_prediction)`` replaces ``loss.backward()`` in any
training loop, for any ``nn.Module`` and any loss: baselines never know which one they got.
Both arguments are closures, so a regularizer may evaluate them again at perturbed parameters
(IGNITE's finite difference, SAM's ascent step) without the loop knowing.

A new regularizer is one module: a :class:`RegularizerSettings` subclass (its ``name`` a
``Literal``, its hyperparameters pydantic fields with a ``description``) whose ``build()`` returns
an object of the :class:`Regularizer` protocol. Defining the subclass registers it in
:data:`CONFIGS`; the CLI, the search-space grammar, MLflow params, protocol deviations and the
report read it from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError
from pydantic_core import PydanticCustomError
from torch import nn

from ignite_mbo.errors import UserError, shown

LossClosure = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]
"""Evaluates the loss at the model's current parameters: the per-member loss (members,) and G, the
mean prediction on the clean batch, when the same forward pass gives it (else None). The first
call is the step's loss (a loss with state of its own updates it there); a regularizer may call
it again at perturbed parameters."""

MeanPrediction = Callable[[], torch.Tensor]
"""Recomputes G at the model's current parameters: one value per member, shape (members,)."""


class Regularizer(Protocol):
    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        """Accumulate each member's regularized gradient into ``.grad``; the parameters are left as found.

        Returns per-member statistics as device tensors (no host synchronisation): always
        ``"loss"``, the detached loss at the current parameters; ``"sharpness"`` when the
        regularizer constrains ρ‖∇G‖ (the loop logs it as ``constraint_sharpness``).
        """
        ...

    def lambdas(self) -> list[float]:
        """Each member's λ (empty without a constraint)."""
        ...

    def state_dict(self) -> dict[str, list[float]]: ...

    def load_state_dict(self, state: dict[str, list[float]]) -> None: ...


class Stateless:
    """For a regularizer with no state across steps: no λ to report, nothing to checkpoint."""

    def lambdas(self) -> list[float]:
        return []

    def state_dict(self) -> dict[str, list[float]]:
        return {}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        pass


def num_members(model: nn.Module) -> int:
    """How many independent members ``model`` stacks (its ``num_members``; 1 for a plain module).

    A stacked model gives every parameter a leading member axis; a plain module is one member.
    """
    return int(getattr(model, "num_members", 1))


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The parameters a regularizer updates: those that require a gradient."""
    return [p for p in model.parameters() if p.requires_grad]


def member_norms(tensors: list[torch.Tensor], members: int) -> torch.Tensor:
    """The global L2 norm of each member's slice of ``tensors``, shape (members,).

    One fused ``_foreach_norm`` over every tensor (over each member's slice of a stacked one),
    then the norm of those norms.
    """
    if members == 1:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))).reshape(1)
    slices = [s for t in tensors for s in t.unbind(0)]  # parameter-major: row k is tensors[k]'s members
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(slices)).reshape(len(tensors), members), dim=0)


def per_member(values: torch.Tensor, like: torch.Tensor, members: int) -> torch.Tensor:
    """(members,) values shaped to broadcast against a parameter ``like`` (a scalar for one plain member)."""
    if members == 1:
        return values.reshape(())
    return values.reshape(members, *[1] * (like.dim() - 1))


def accumulate(params: list[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    """Add ``grads`` to the parameters' ``.grad`` (as ``backward`` would; None leaves a parameter alone)."""
    for p, g in zip(params, grads, strict=True):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


class Shift:
    """Evaluates at shifted parameters without writing β: a regularizer's ascent or finite-difference step.

    The shifted values go into scratch tensors kept across steps (one per parameter, made on first
    use: fresh large CPU allocations cost a page fault per 4 KiB), which the parameters point at
    (``.data``) within the block; β is never written, so nothing is saved or copied back.
    """

    def __init__(self) -> None:
        self.scratch: list[torch.Tensor] = []

    @contextmanager
    def __call__(self, params: list[torch.Tensor], directions: Sequence[torch.Tensor], scale: torch.Tensor,
                 members: int) -> Iterator[None]:
        """Within the block the parameters are β + scale·direction (``scale`` per member, (members,)); after it
        they are β again, bit for bit."""
        if [(t.shape, t.dtype, t.device) for t in self.scratch] != [(p.shape, p.dtype, p.device) for p in params]:
            self.scratch = [torch.empty_like(p) for p in params]
        with torch.no_grad():
            for p, d, out in zip(params, directions, self.scratch, strict=True):
                torch.addcmul(p, d, per_member(scale, p, members), out=out)
        originals = [p.data for p in params]
        try:
            for p, value in zip(params, self.scratch, strict=True):
                p.data = value
            yield
        finally:
            for p, value in zip(params, originals, strict=True):
                p.data = value


class RegularizerSettings(BaseModel, ABC):
    """Base of every regularizer's validated hyperparameters; a subclass registers itself in CONFIGS.

    A subclass declares ``name: Literal["its-name"] = "its-name"``; its field defaults are the
    published settings (the protocol), and each field has a ``description`` (the CLI's help).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    registry: ClassVar[dict[str, type[RegularizerSettings]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["name"].default
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} must declare name: Literal['...'] = '...'")
        RegularizerSettings.registry[name] = cls

    @abstractmethod
    def build(self) -> Regularizer:
        """A fresh regularizer with these hyperparameters (its state starts at the initial values)."""


CONFIGS = RegularizerSettings.registry
"""Every known regularizer: name -> its settings class (built-ins, plugins, then any defined later)."""


def _validate(value: Any) -> Any:
    """A name, a ``{name: ..., hyperparameter: ...}`` mapping or a settings object -> the registered settings."""
    if isinstance(value, RegularizerSettings):
        return value
    if isinstance(value, str):  # "ignite" is short for {"name": "ignite"}
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise PydanticCustomError("regularizer", "give a regularizer name or a mapping with a 'name' key")
    if value["name"] not in CONFIGS:
        raise PydanticCustomError("regularizer", "unknown regularizer {name!r}; choose one of {known}",
                                  {"name": value["name"], "known": ", ".join(CONFIGS)})
    try:
        return CONFIGS[value["name"]].model_validate(value)
    except ValidationError as error:
        raise PydanticCustomError("regularizer", "{problem}", {"problem": one_line(error)}) from None


RegularizerConfig = Annotated[SerializeAsAny[RegularizerSettings], BeforeValidator(_validate)]
"""A pydantic field type: any registered regularizer's settings, validated through the registry."""


def parse_config(name: str, **hyperparameters: object) -> RegularizerSettings:
    """Validate a regularizer name and its hyperparameters; bad input raises a one-line UserError."""
    if name not in CONFIGS:
        raise UserError(f"unknown regularizer {name!r}; choose one of {', '.join(CONFIGS)}")
    try:
        return CONFIGS[name].model_validate(hyperparameters)
    except ValidationError as error:
        raise UserError(f"regularizer {name!r}: {one_line(error)}") from None


def build(name: str, **hyperparameters: object) -> Regularizer:
    """A fresh regularizer ``name`` (any key of CONFIGS) with validated hyperparameters."""
    return parse_config(name, **hyperparameters).build()


def one_line(error: ValidationError) -> str:
    """Pydantic's errors as one line: ``field: problem (got value)``, joined by ``; ``; a check across fields
    (no field named) says its problem alone, since it names the fields itself."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        got = item.get("input")
        hint = ("unknown option; remove it or check its spelling" if item["type"] == "extra_forbidden"
                else item["msg"].removeprefix("Value error, "))
        if not where:
            parts.append(hint)
        elif item["type"] == "missing":
            parts.append(f"{where}: required")
        elif item["type"] == "regularizer":  # already one line, naming the field and the value
            parts.append(f"{where}: {hint}")
        else:
            parts.append(f"{where}: {hint} (got {shown(got)})")
    return "; ".join(parts)



# ---- bounded hyperparameter types shared by the built-in regularizers -----------------------------

Positive = Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)]
Radius = Annotated[float, Field(ge=1e-6, le=1e3, allow_inf_nan=False)]
"""Bounded so that no setting overflows a float32 step (ρ/r, r/‖g‖ and λ·penalty stay finite)."""
