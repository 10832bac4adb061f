"""What a baseline receives and returns, the one door through which it trains regularized
surrogates (:meth:`Context.fit`), and the search pieces several baselines share."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ignite_mbo import checkpoints
from ignite_mbo.design_space import DesignSpace, TargetScaler, TokenSpace
from ignite_mbo.errors import UserError
from ignite_mbo.models import GaussianEnsemble, StackedMLP, gaussian_nll
from ignite_mbo.progress import SILENT, Progress
from ignite_mbo.regularizers import LossClosure, NoneConfig, Regularizer, RegularizerConfig, one_line
from ignite_mbo.streams import Streams
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, Loss, MetricLogger, Splits, draw_splits, fit

# Bounded setting types: bad values fail validation before a trial starts, never mid-run.
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Size = Annotated[int, Field(ge=1, le=65_536)]
Rate = Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False)]
Scale = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Layers = Annotated[int, Field(ge=1, le=16)]
ValidationSize = Annotated[int, Field(ge=2, le=1_000_000)]


class BaselineSettings(BaseModel):
    """Base for each baseline's hyperparameters; defaults are the paper's protocol at full fidelity.

    A setting whose default is the reference code's behaviour and whose other value is a fix we
    believe in (e.g. REINFORCE's ``per_design_credit``) is a named deviation from that protocol:
    docs/fidelity.md lists them all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_designs: Count = Field(128, description="designs proposed to the oracle (the paper's k=128)")


SettingsT = TypeVar("SettingsT", bound=BaselineSettings)


@dataclass(frozen=True)
class Baseline(Generic[SettingsT]):
    """One baseline, declared once as ``BASELINE = Baseline(...)`` at the end of its module.

    The package finds every module that declares one (no list of names to edit), and mypy checks
    that ``propose`` takes the module's own ``settings_type``. ``quick`` overrides the full-fidelity
    defaults for tests and smoke sweeps; ``per_task_defaults`` gives the paper's value of a setting
    whose default ``None`` means "depends on the task" (task id -> value).
    """

    name: str  # the command-line name, e.g. "grad-ascent"
    settings_type: type[SettingsT]
    propose: Callable[[Task, SettingsT, Context], Proposal]
    order: int  # position in listings and report tables: the paper's order, later baselines after
    quick: Mapping[str, Any] = field(default_factory=dict)
    per_task_defaults: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fields = self.settings_type.model_fields
        for name in self.per_task_defaults:
            if name not in fields or fields[name].default is not None:
                raise TypeError(f"{self.name}: per-task default {name!r} must be a setting whose default is None")
        self.settings_type(**self.quick)  # a typo in the quick values fails at import, not in a sweep

    def settings(self, fidelity: Literal["quick", "full"] = "full",
                 options: Mapping[str, Any] | None = None) -> SettingsT:
        """The full-fidelity defaults, the quick values if asked, then ``options``; bad options raise
        a one-line UserError (an unknown name lists the valid ones and suggests the closest)."""
        options = dict(options or {})
        fields = self.settings_type.model_fields
        unknown = [name for name in options if name not in fields]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown option {unknown[0]!r} for baseline {self.name!r}; {hint}its settings are "
                            f"{', '.join(fields)} (see 'ignite-mbo baselines {self.name}')")
        try:
            return self.settings_type(**{**(self.quick if fidelity == "quick" else {}), **options})
        except ValidationError as error:
            raise UserError(f"baseline {self.name!r} options: {one_line(error)}") from None

    def paper_value(self, name: str, task_id: str) -> Any:
        """Setting ``name``'s value in the paper's protocol on task ``task_id``."""
        if name in self.per_task_defaults:
            return self.per_task_defaults[name](task_id)
        return self.settings_type.model_fields[name].default


@dataclass
class TrainedSurrogate:
    """A trained (possibly stacked) regularized model, the space its inputs live in, and its record."""

    model: StackedMLP
    space: DesignSpace
    regularizer: Regularizer
    history: list[dict[str, float]]  # per epoch, averaged over the model's members


@dataclass
class Proposal:
    """A baseline's answer: raw designs for the oracle, and the regularized models behind them."""

    designs: np.ndarray
    surrogates: list[TrainedSurrogate]
    metrics: dict[str, float] = field(default_factory=dict)
    regularizer_affects_search: bool = True


def _ignore(metrics: dict[str, float], step: int) -> None:
    pass


@dataclass
class Context:
    """Everything a baseline needs besides the task and its settings.

    ``streams`` gives every random draw its own named stream; ``fit`` is the only way to train a
    regularized surrogate (it owns the regularizer, the data streams, the log prefix and the
    checkpoint); ``log`` takes the baseline's own metrics and ``progress`` its search steps.
    """

    streams: Streams
    device: torch.device = torch.device("cpu")
    regularizer: RegularizerConfig = field(default_factory=NoneConfig)
    log: MetricLogger = _ignore
    progress: Progress = SILENT

    def generators(self, name: str, count: int) -> list[torch.Generator]:
        """``count`` generators from streams ``{name}/0`` .. ``{name}/{count-1}`` (e.g. per-member init)."""
        return [self.streams.torch(f"{name}/{index}") for index in range(count)]

    def fit(self, name: str, model: StackedMLP, space: DesignSpace, x: torch.Tensor, y: torch.Tensor,
            settings: FitSettings, splits: Splits, loss: Loss = gaussian_nll) -> TrainedSurrogate:
        """Train ``model`` (all its members) under a fresh regularizer; metrics are logged as ``{name}/...``.

        Inside a trial with an active checkpoint store, a fit that an earlier attempt finished is
        restored instead of trained again, and one it left unfinished goes on from its last save.
        """
        model.to(self.device)
        regularizer = self.regularizer.build()
        store = checkpoints.active()
        key = checkpoints.fingerprint(model, x, y, settings, regularizer, loss)
        history = store.restore_surrogate(name, key, model, regularizer, loss) if store else None
        if history is None:
            history = fit(model, x, y, splits, regularizer, settings, loss, log=self.log, prefix=f"{name}/",
                          progress=self.progress, checkpoint=store.partial_fit(name, key, loss) if store else None)
            if store:
                store.save_surrogate(name, key, model, regularizer, loss, history)
        return TrainedSurrogate(model.eval(), space, regularizer, history)

    def step(self, model: StackedMLP, regularizer: Regularizer, optimizer: torch.optim.Optimizer,
             loss: LossClosure, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One regularized optimizer step of an already fitted ``model`` on ``loss()`` (members,), G its
        mean prediction on ``x``: how a method fine-tunes a surrogate after :meth:`fit` (ICT's
        co-teaching), under the regularizer (and λ) that fit it. ``loss`` is a closure, as the
        regularizer may evaluate it at perturbed parameters (:data:`regularizers.LossClosure`)."""
        optimizer.zero_grad(set_to_none=True)
        stats = regularizer.backward(model, loss, lambda: model.predict_mean(x).mean(dim=(-2, -1)).reshape(-1))
        optimizer.step()
        return stats

    def fit_gaussian_ensemble(self, name: str, task: Task, space: DesignSpace, settings: FitSettings, *,
                              num_members: int, hidden_size: int, num_layers: int, shared_data: bool,
                              embedding_size: int | None = None) -> TrainedSurrogate:
        """design-baselines' forward models on the task's z-scored scores: ``num_members`` Gaussian
        MLPs stacked, each weighting the rows by its own bootstrap counts (see ``training.draw_splits``);
        ``shared_data`` gives them one validation split and minibatch order. On a :class:`TokenSpace`
        each member embeds the tokens in ``embedding_size`` features."""
        x, y = space.encode(task.x), TargetScaler.fit(task.y).transform(task.y)
        embedding = None
        if isinstance(space, TokenSpace):
            if embedding_size is None:
                raise ValueError("a token space needs an embedding_size")
            embedding = (int(task.num_classes or 0), embedding_size)
        model = GaussianEnsemble(space.num_features, hidden_size, num_layers, embedding=embedding,
                                 generators=self.generators(f"{name}/init", num_members))
        splits = draw_splits(len(x), num_members, settings.validation_size, self.streams, name,
                             bootstrap=True, shared=shared_data)
        return self.fit(name, model, space, x, y, settings, splits)


def epochs_per_task(task_id: str) -> int:
    """The reference's per-task epochs of MINs' GAN and CbAS' prior VAE: 100 on TF-Bind-10, else 200."""
    return 100 if task_id.startswith("TFBind10") else 200


def top_designs(task: Task, count: int) -> np.ndarray:
    """The ``count`` highest-scoring training designs (best first): the usual starting points."""
    return task.x[np.argsort(-task.y[:, 0], kind="stable")[:count]]


def gradient_ascent(score: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, *, steps: int,
                    learning_rate: float, log: MetricLogger | None = None, progress: Progress = SILENT) -> torch.Tensor:
    """``steps`` plain gradient-ascent steps on ``score`` (one score per design, (n, 1)) from ``start``."""
    x = start.clone()
    progress.phase("search steps", steps)
    for step in range(steps):
        x.requires_grad_(True)
        predicted = score(x)
        (grad,) = torch.autograd.grad(predicted.sum(), x)
        x = (x + learning_rate * grad).detach()
        if log is not None and (step % 10 == 0 or step == steps - 1):
            log({"search/predicted_mean": predicted.mean().item()}, step)
        progress.advance()
    return x


def solver_learning_rate(base_rate: float, num_features: int) -> float:
    """design-baselines scales the ascent step by √(number of features)."""
    return base_rate * float(np.sqrt(num_features))
