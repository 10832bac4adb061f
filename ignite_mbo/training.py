"""The one surrogate training loop: every baseline trains its regularized model(s) through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ignite_mbo import checkpoints
from ignite_mbo.models import gaussian_nll
from ignite_mbo.regularizers import Regularizer

SHARPNESS_RHO = 0.05
"""ρ used to *measure* sharpness ρ‖∇_β G‖ for every regularizer alike, so numbers compare across runs."""

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
MetricLogger = Callable[[dict[str, float], int], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the trial fails at once with this reason."""


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 3e-4
    validation_size: int = 200


def mean_gradient_norm(model: nn.Module, x: torch.Tensor, batch_size: int = 128, max_batches: int = 64) -> float:
    """Mean over batches of ‖∇_β G(β)‖, G the mean prediction on the batch (x in feature space)."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = []
    for start in range(0, min(len(x), batch_size * max_batches), batch_size):
        g = torch.autograd.grad(model.predict_mean(x[start:start + batch_size]).mean(), params, allow_unused=True)
        norms.append(float(torch.sqrt(sum((gi**2).sum() for gi in g if gi is not None))))
    return float(np.mean(norms))


def train_surrogate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    regularizer: Regularizer,
    settings: FitSettings,
    *,
    generator: torch.Generator,
    loss_fn: LossFn = gaussian_nll,
    bootstrap: bool = False,
    log: MetricLogger | None = None,
    prefix: str = "",
) -> list[dict[str, float]]:
    """Fit ``model`` to (x, y) with Adam, calling ``regularizer.backward`` in place of ``loss.backward``.

    A random ``validation_size`` rows are held out; with ``bootstrap`` the remaining rows are
    resampled with replacement (one ensemble member). Returns one metrics dict per epoch (also
    sent to ``log`` with ``prefix``): train/validation loss, validation Spearman correlation, λ,
    the constraint's sharpness as the regularizer saw it, and the measured sharpness
    ``SHARPNESS_RHO·‖∇G‖`` on a fixed training batch.

    Inside a trial with an active :mod:`ignite_mbo.checkpoints` store, a surrogate this call
    trained in an earlier attempt of the trial is restored instead of trained again.
    """
    store = checkpoints.active()
    if store is None:
        return _train(model, x, y, regularizer, settings, generator=generator, loss_fn=loss_fn,
                      bootstrap=bootstrap, log=log, prefix=prefix)
    key = checkpoints.fingerprint(model, x, y, settings, bootstrap=bootstrap, prefix=prefix,
                                  regularizer=regularizer, loss_fn=loss_fn)
    history = store.restore_surrogate(key, model, regularizer, loss_fn, generator, log, prefix)
    if history is None:
        history = _train(model, x, y, regularizer, settings, generator=generator, loss_fn=loss_fn,
                         bootstrap=bootstrap, log=log, prefix=prefix)
        store.save_surrogate(key, model, regularizer, loss_fn, generator, history)
    return history


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    regularizer: Regularizer,
    settings: FitSettings,
    *,
    generator: torch.Generator,
    loss_fn: LossFn,
    bootstrap: bool,
    log: MetricLogger | None,
    prefix: str,
) -> list[dict[str, float]]:
    device = next(model.parameters()).device
    order = torch.randperm(len(x), generator=generator)
    val_rows, train_rows = order[: settings.validation_size], order[settings.validation_size:]
    if bootstrap:
        train_rows = train_rows[torch.randint(len(train_rows), (len(train_rows),), generator=generator)]
    x, y = x.to(device), y.to(device)
    x_val, y_val = x[val_rows.to(device)], y[val_rows.to(device)]
    probe = x[train_rows[: settings.batch_size].to(device)]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)

    history = []
    for epoch in range(settings.epochs):
        model.train()
        losses, constraint = [], []
        stats: dict[str, float] = {}
        for batch in train_rows[torch.randperm(len(train_rows), generator=generator)].split(settings.batch_size):
            xb, yb = x[batch.to(device)], y[batch.to(device)]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, xb, yb)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"{prefix}training loss became {float(loss)} at epoch {epoch}")
            stats = regularizer.backward(model, loss, lambda xb=xb: model.predict_mean(xb).mean())
            optimizer.step()
            losses.append(loss.item())
            if "sharpness" in stats:
                constraint.append(stats["sharpness"])

        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model, x_val, y_val))
            val_mean = model.predict_mean(x_val).squeeze(-1).cpu().numpy()
        metrics = {
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "val_rank_corr": float(spearmanr(val_mean, y_val.squeeze(-1).cpu().numpy()).statistic),
            "lambda": stats.get("lambda", 0.0),
            "sharpness": SHARPNESS_RHO * mean_gradient_norm(model, probe),
        }
        if constraint:
            metrics["constraint_sharpness"] = float(np.mean(constraint))
        history.append(metrics)
        if log is not None:
            log({prefix + key: value for key, value in metrics.items()}, epoch)
    return history
