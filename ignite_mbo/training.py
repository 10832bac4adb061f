"""The one surrogate training loop: every baseline trains its regularized model(s) through it.

A model may stack several independent members (an ensemble, see :mod:`ignite_mbo.models`); they
train together, each on its own rows with its own bootstrap weights, minibatch order, Adam state
and IGNITE λ, exactly as if trained one after another. The data layout follows design-baselines'
``build_pipeline``: shuffle the rows, hold out the first ``validation_size``, give the rest
bootstrap counts (``bootstraps=1`` per member: Σ w·loss / Σ w), reshuffle every epoch.

The loop never waits for the device inside an epoch: losses, the non-finite check and the
regularizer's statistics stay on the device and are read once per epoch.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy.stats import spearmanr

from ignite_mbo.best_epochs import BestEpochs, pearson
from ignite_mbo.models import StackedMLP, gaussian_nll
from ignite_mbo.progress import SILENT, EpochMetrics, MetricLogger, Progress
from ignite_mbo.regularizers import Regularizer, member_norms, num_members
from ignite_mbo.streams import Streams

SHARPNESS_RHO = 0.05
"""ρ used to *measure* sharpness ρ‖∇_β G‖ for every regularizer alike, so numbers compare across runs."""

KERAS_ADAM_EPSILON = 1e-7
"""``tf.keras.optimizers.Adam``'s ε (PyTorch's default is 1e-8); every reference model trains with it."""


def keras_adam(parameters: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), *,
               capturable: bool = False) -> torch.optim.Adam:
    """Adam as Keras configures it (ε = 1e-7). On the CPU the fused kernel (one pass over the
    parameters: 3× faster than the per-op path on a 2.6 M-parameter layer); on CUDA the per-op path,
    ``capturable`` when the step is replayed as a CUDA graph."""
    parameters = list(parameters)
    cpu = all(p.device.type == "cpu" for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=KERAS_ADAM_EPSILON, capturable=capturable,
                            fused=True if cpu else None)



@dataclass
class FitState:
    """Where a fit got to at an epoch's end: enough to go on exactly as if it had never stopped."""

    epochs_done: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    orders: list[torch.Tensor]  # the minibatch-order generators' states
    regularizer: dict[str, list[float]]
    history: list[dict[str, float]]
    best: BestEpochs | None = None


class FitCheckpoint(Protocol):
    """Saves a long fit between epochs (:mod:`ignite_mbo.checkpoints`), so a stopped trial goes on from there."""

    def load(self) -> FitState | None:
        """The state an earlier attempt saved, if any."""
        ...

    def save(self, state: Callable[[], FitState]) -> None:
        """Called at every epoch's end; builds ``state()`` only when it decides to write."""
        ...


class Loss(Protocol):
    def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor,
                 weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-member weighted loss (members,), and G (members,), the mean prediction on the clean
        batch, when the same forward pass gives it (None otherwise: the regularizer recomputes it).

        A loss with state of its own may also define ``epoch_metrics() -> dict[str, float]``: the
        loop adds them (for the whole model, not per member) to each epoch's record.
        """
        ...


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the trial fails at once with this reason."""


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 3e-4
    validation_size: int = 200
    clip_norm: float | None = None
    """Clip each parameter's gradient (per member) to this norm before the step (``tf.clip_by_norm``; RoMA)."""
    cosine_schedule: bool = False
    """Learning rate lr·(1 + cos(π·epoch/epochs))/2, set at the start of each epoch (ICT's proxies)."""
    keep_best: bool = False
    """End each member at its epoch of highest validation Pearson correlation (ICT's proxies: :mod:`best_epochs`)."""


@dataclass(frozen=True)
class Splits:
    """Which rows each member validates and trains on, its bootstrap weights and its epoch-order seed.

    ``validation`` (members, V) and ``training`` (members, T) are row indices, ``weights`` (members,
    T) bootstrap counts of the training rows (all ones without bootstrap).
    """

    validation: torch.Tensor
    training: torch.Tensor
    weights: torch.Tensor
    order_seeds: tuple[int, ...]

    @property
    def num_members(self) -> int:
        return len(self.order_seeds)

    @property
    def shared(self) -> bool:
        """Whether every member sees the same rows in the same order (then one batch feeds them all)."""
        return len(set(self.order_seeds)) == 1 and bool((self.training == self.training[:1]).all())

    def member(self, index: int) -> Splits:
        """Member ``index`` alone: training it on this gives exactly its part of the stacked training."""
        pick = slice(index, index + 1)
        return Splits(self.validation[pick], self.training[pick], self.weights[pick], (self.order_seeds[index],))


def draw_splits(num_rows: int, num_members: int, validation_size: int, streams: Streams, name: str, *,
                bootstrap: bool, shared: bool) -> Splits:
    """Draw each member's split, bootstrap counts and epoch-order seed from streams named after ``name``.

    ``shared``: one split and one epoch order for all members, each with its own bootstrap counts
    (design-baselines' ensembles: one pipeline with ``bootstraps=num_members``); otherwise every
    member has its own pipeline (``bootstraps=1`` each), as grad-ascent's ensembles do.
    """
    if not 0 <= validation_size < num_rows:
        raise ValueError(f"validation_size must be in [0, {num_rows}), got {validation_size}")
    splits = [torch.randperm(num_rows, generator=streams.torch(f"{name}/split" if shared else f"{name}/split/{m}"))
              for m in range(1 if shared else num_members)]
    order_seeds = ((streams.seed(f"{name}/order"),) * num_members if shared
                   else tuple(streams.seed(f"{name}/order/{m}") for m in range(num_members)))
    rows = torch.stack([splits[0 if shared else m] for m in range(num_members)])
    size = num_rows - validation_size
    if bootstrap:
        weights = torch.stack([
            torch.bincount(torch.randint(size, (size,), generator=streams.torch(f"{name}/bootstrap/{m}")),
                           minlength=size).float() for m in range(num_members)])
    else:
        weights = torch.ones(num_members, size)
    return Splits(rows[:, :validation_size], rows[:, validation_size:], weights, order_seeds)


def gradient_norms(model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    """‖∇_β G(β)‖ of each member, G the member's mean prediction on ``x``; shape (members,)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        mean = model.predict_mean(x).mean(dim=(-2, -1)).reshape(-1)
        grads = torch.autograd.grad(mean.sum(), params, allow_unused=True)
    return member_norms([g for g in grads if g is not None], num_members(model))


def _rows(x: torch.Tensor, rows: torch.Tensor, shared: bool) -> torch.Tensor:
    """x at member rows (members, n): one shared (n, ...) batch, or one batch per member."""
    return x[rows[0]] if shared else x[rows]


class _Step:
    """One optimizer step on a minibatch, accumulating the epoch's loss, finiteness and sharpness on
    the device (nothing here waits for the device). The regularizer gets the loss and G as closures
    over the batch, so it may evaluate them again at perturbed parameters (IGNITE, SAM, BOSS)."""

    def __init__(self, model: StackedMLP, loss: Loss, regularizer: Regularizer, optimizer: torch.optim.Optimizer,
                 members: int, device: torch.device) -> None:
        self.model, self.loss, self.regularizer, self.optimizer = model, loss, regularizer, optimizer
        self.loss_sum = torch.zeros(members, device=device)
        self.sharpness_sum = torch.zeros(members, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.constrained = False
        self.clip_norm: float | None = None

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.sharpness_sum.zero_()
        self.finite.fill_(True)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> None:
        model = self.model
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.regularizer.backward(model, lambda: self.loss(model, xb, yb, wb),
                                          lambda: model.predict_mean(xb).mean(dim=(-2, -1)).reshape(-1))
        if self.clip_norm is not None:
            _clip_per_member(model, self.clip_norm)
        self.optimizer.step()
        self.loss_sum.add_(stats["loss"])
        self.finite.logical_and_(torch.isfinite(stats["loss"]).all())
        if "sharpness" in stats:
            self.sharpness_sum.add_(stats["sharpness"])
            self.constrained = True


def _clip_per_member(model: StackedMLP, max_norm: float) -> None:
    """Scale each member's gradient of each parameter down to norm ``max_norm`` where it is larger."""
    for p in model.parameters():
        if p.grad is not None:
            norms = p.grad.flatten(1).norm(dim=1).view(-1, *([1] * (p.grad.dim() - 1)))
            p.grad.mul_((max_norm / norms.clamp_min(1e-12)).clamp_max(1.0))


class _GraphedStep:
    """The same step captured once as a CUDA graph and replayed: one launch per minibatch instead of
    hundreds. Full-size batches replay the graph (after a few eager warm-up steps, which are real
    steps); a smaller last batch runs eagerly. Same arithmetic, same order, same numbers."""

    WARMUP = 3

    def __init__(self, step: _Step) -> None:
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.eager_steps = 0

    def reset(self) -> None:
        self.step.reset()

    def __getattr__(self, name: str):  # the accumulators and flags of the wrapped step
        return getattr(self.step, name)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> None:
        if self.graph is not None and all(a.shape == b.shape for a, b in zip(self.inputs, (xb, yb, wb), strict=True)):
            for static, value in zip(self.inputs, (xb, yb, wb), strict=True):
                static.copy_(value)
            self.graph.replay()
            return
        if self.graph is not None or self.eager_steps < self.WARMUP:
            self.eager_steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step(xb, yb, wb)
            torch.cuda.current_stream().wait_stream(side)
            return
        self.inputs = (xb.clone(), yb.clone(), wb.clone())
        self.step.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.step(*self.inputs)
        except RuntimeError as error:  # nothing ran during the capture: go on eagerly from this batch
            warnings.warn(f"CUDA graph capture failed, training eagerly: {error}", RuntimeWarning, stacklevel=2)
            self.eager_steps, self.WARMUP = 0, 1 << 62
            self.step(xb, yb, wb)
            return
        self.graph = graph
        graph.replay()


def cuda_graphs_enabled(device: torch.device, loss: Loss) -> bool:
    """Capture the step as a CUDA graph on CUDA for the plain Gaussian NLL (losses with state of
    their own or host-side randomness run eagerly); ``IGNITE_MBO_CUDA_GRAPHS=0`` turns it off."""
    return device.type == "cuda" and loss is gaussian_nll and os.environ.get("IGNITE_MBO_CUDA_GRAPHS", "1") != "0"


def fit(model: StackedMLP, x: torch.Tensor, y: torch.Tensor, splits: Splits, regularizer: Regularizer,
        settings: FitSettings, loss: Loss, *, log: MetricLogger | None = None, prefix: str = "",
        progress: Progress = SILENT, checkpoint: FitCheckpoint | None = None) -> list[dict[str, float]]:
    """Train every member of ``model`` on (x, y) with Adam, ``regularizer.backward`` replacing backward.

    ``x`` holds flat features or tokens (rows, ...), ``y`` targets (rows, 1). Returns one dict per
    epoch of the member-averaged metrics; each epoch's per-member metrics go to ``log`` in one call,
    keyed ``{prefix}{name}`` for one member or ``{prefix}member_{m}/{name}``: train/validation loss,
    validation Spearman correlation, λ, the constraint's sharpness as the regularizer saw it, and
    the measured sharpness ``SHARPNESS_RHO·‖∇G‖`` on a fixed training batch. On CUDA the step is a
    replayed CUDA graph where possible (:func:`cuda_graphs_enabled`). A ``checkpoint`` restores what
    an earlier attempt saved and saves between epochs; the result is the same as one unbroken fit.
    """
    device = next(model.parameters()).device
    members, shared = splits.num_members, splits.shared
    if members != num_members(model):
        raise ValueError(f"{members} members' splits for a model of {num_members(model)} members")
    x, y = x.to(device), y.to(device)
    training, weights = splits.training.to(device), splits.weights.to(device)
    validation = splits.validation.to(device)
    orders = [torch.Generator().manual_seed(seed) for seed in splits.order_seeds[: 1 if shared else members]]
    probe = _rows(x, training[:, : settings.batch_size], shared)
    graphed = cuda_graphs_enabled(device, loss) and not settings.cosine_schedule  # a graph bakes the lr in
    optimizer = keras_adam(model.parameters(), settings.learning_rate, capturable=graphed)
    plain = _Step(model, loss, regularizer, optimizer, members, device)
    plain.clip_norm = settings.clip_norm
    step: _Step | _GraphedStep = _GraphedStep(plain) if graphed else plain
    size, batch = training.shape[1], settings.batch_size
    best = BestEpochs(members) if settings.keep_best else None

    history: list[dict[str, float]] = []
    progress.phase(f"{prefix or 'surrogate '}epochs".strip(), settings.epochs)
    saved = checkpoint.load() if checkpoint is not None else None
    first_epoch = saved.epochs_done if saved is not None else 0
    if saved is not None:
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.optimizer)
        for generator, generator_state in zip(orders, saved.orders, strict=True):
            generator.set_state(generator_state)
        regularizer.load_state_dict(saved.regularizer)
        history = saved.history
        if best is not None and saved.best is not None:
            best = saved.best
        progress.advance(saved.epochs_done)

    def member_key(m: int, name: str) -> str:
        return f"{prefix}{'' if members == 1 else f'member_{m}/'}{name}"

    def fit_state(epochs_done: int) -> FitState:
        return FitState(epochs_done, {key: value.detach().cpu() for key, value in model.state_dict().items()},
                        optimizer.state_dict(), [generator.get_state() for generator in orders],
                        regularizer.state_dict(), list(history), best)

    for epoch in range(first_epoch, settings.epochs):
        if settings.cosine_schedule:
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * (1 + float(np.cos(np.pi * epoch / settings.epochs))) / 2
        model.train()
        step.reset()
        order = torch.stack([torch.randperm(size, generator=g) for g in orders]).to(device)
        order = order.expand(members, size) if shared else order
        rows, row_weights = training.gather(1, order), weights.gather(1, order)
        num_batches = 0
        for start in range(0, size, batch):
            step(_rows(x, rows[:, start:start + batch], shared), _rows(y, rows[:, start:start + batch], shared),
                 row_weights[:, start:start + batch])
            num_batches += 1
        if not bool(step.finite):
            raise NonFiniteLossError(f"{prefix}training loss became non-finite in epoch {epoch}")

        per_member = _epoch_metrics(model, loss, x, y, validation, shared, probe,
                                    train_loss=step.loss_sum / num_batches, regularizer=regularizer,
                                    constraint=step.sharpness_sum / num_batches if step.constrained else None,
                                    with_pearson=best is not None)
        if best is not None:
            best.offer(epoch, [metrics["val_pearson"] for metrics in per_member], model, regularizer)
        extra = loss.epoch_metrics() if hasattr(loss, "epoch_metrics") else {}
        history.append({key: float(np.mean([m[key] for m in per_member])) for key in per_member[0]} | extra)
        if log is not None:
            log(EpochMetrics({member_key(m, key): value
                              for m, metrics in enumerate(per_member) for key, value in metrics.items()}
                             | {f"{prefix}{key}": value for key, value in extra.items()}), epoch)
        progress.advance()
        if checkpoint is not None:
            checkpoint.save(functools.partial(fit_state, epoch + 1))
    if best is not None:
        best.restore(model, regularizer)
        if log is not None:
            log({member_key(m, "kept_epoch"): float(kept) for m, kept in enumerate(best.epochs) if kept is not None},
                settings.epochs - 1)
    return history


@torch.no_grad()
def _epoch_metrics(model: StackedMLP, loss: Loss, x: torch.Tensor, y: torch.Tensor, validation: torch.Tensor,
                   shared: bool, probe: torch.Tensor, *, train_loss: torch.Tensor, regularizer: Regularizer,
                   constraint: torch.Tensor | None, with_pearson: bool = False) -> list[dict[str, float]]:
    """Each member's end-of-epoch metrics (the one place an epoch reads values back from the device)."""
    model.eval()
    x_val, y_val = _rows(x, validation, shared), _rows(y, validation, shared)
    val_loss, _ = loss(model, x_val, y_val, torch.ones(validation.shape, device=x.device))
    predictions = model.predict_mean(x_val)[..., 0].cpu().numpy()
    targets = y[validation][..., 0].cpu().numpy()
    sharpness = (SHARPNESS_RHO * gradient_norms(model, probe)).cpu().numpy()
    lambdas = regularizer.lambdas()
    metrics = []
    for m in range(len(predictions)):
        member = {"train_loss": float(train_loss[m]), "val_loss": float(val_loss[m]),
                  "val_rank_corr": float(spearmanr(predictions[m], targets[m]).statistic),
                  "lambda": float(lambdas[m]) if lambdas else 0.0, "sharpness": float(sharpness[m])}
        if constraint is not None:
            member["constraint_sharpness"] = float(constraint[m])
        if with_pearson:
            member["val_pearson"] = pearson(predictions[m], targets[m])
        metrics.append(member)
    return metrics
