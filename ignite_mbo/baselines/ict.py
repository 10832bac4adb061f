"""ICT: Importance-aware Co-Teaching: three proxies fine-tune each other on pseudo-labels along the search.

Reference: Yuan, Chen, Liu, Neiswanger & Liu, "Importance-aware Co-teaching for Offline Model-based
Optimization", NeurIPS 2023; ``mila-iqia/Importance-aware-Co-teaching`` (``grad.py`` pre-trains
the proxies, ``ICT.py`` runs the README's TF-Bind-8 command: ``--alpha=1e-3 --beta=3e-1
--if_coteach=True --if_reweight=True --Tmax=100 --reweight_mode=full --num_coteaching=8``).

Pre-training: three 2×2048 ReLU MLPs, one output, each on its own 90 % of the rows (MSE, Adam 0.1
with a cosine decay over 200 epochs, batch 128), on z-scored logits and z-scored scores. Each proxy
ends at its epoch of highest validation Pearson correlation, as ``grad.py`` saves a proxy only when
that beats its best: at Adam 0.1 the full-size proxies collapse to a constant within ~70 epochs.

Co-teaching: one candidate starts at the best training design and takes ``search_steps`` Adam
steps (0.1) up the proxies' mean. After each step, ``neighbours`` points around it (the candidate
with one N(0, 0.1²) number added to all its features, per point) get pseudo-labels from each
proxy; then three rounds, each with one proxy as the labeller and the other two as students, each
student taking one Adam step (1e-3, its own optimizer) on its squared errors to the labeller's
labels. As the reference runs it, that step sums the errors of all ``neighbours`` points, scaled by
the mean of the importance weights: the small-loss exchange and the meta-learned weights act only
on the virtual step that sets those weights, whose gradient is the same for every weight
(broadcasting, ``(K, 1) × (k,)``), so each weight ends at 1 ± β/k and their mean scales the loss by
at most ±3.75 %. Adam normalises a scale away, so we take it as 1 and skip the virtual step.

Search: the 128 best training designs each take ``search_steps`` Adam steps (0.1) up the mean of
the fine-tuned proxies (one Adam on the batch: Adam is per coordinate, the objective a sum).

Regularized model: the three proxies, stacked, through ``Context.fit`` (G: each proxy's mean
prediction on the clean batch); each co-teaching step goes through ``Context.step`` under that
proxy's own regularizer state (G on the pseudo-labelled points). docs/fidelity.md lists every choice.
"""

from __future__ import annotations

import copy
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from ignite_mbo.baselines.base import (
    Baseline,
    BaselineSettings,
    Context,
    Count,
    Proposal,
    Rate,
    Scale,
    Size,
    top_designs,
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.models import StackedMLP
from ignite_mbo.regularizers import Regularizer
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, draw_splits

NUM_PROXIES = 3
ROUNDS = ((2, (0, 1)), (1, (0, 2)), (0, (1, 2)))
"""(labeller, students) in the reference's order: f3 teaches f1 and f2, then f2 teaches f1 and f3, then f1."""


class Settings(BaselineSettings):
    hidden_size: Size = Field(2048, description="units of each of the two hidden layers of a proxy")
    epochs: Count = Field(200, description="pre-training epochs of the proxies")
    batch_size: Size = Field(128, description="minibatch size of the pre-training")
    learning_rate: Rate = Field(0.1, description="Adam learning rate of the pre-training (cosine decay)")
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(0.1, description="share of the rows each "
                                                                                      "proxy leaves out")
    search_steps: Count = Field(100, description="Adam steps of the search and of co-teaching (Tmax)")
    search_lr: Rate = Field(0.1, description="Adam learning rate of the designs (ft_lr on the discrete tasks)")
    neighbours: Count = Field(128, description="pseudo-labelled points around the candidate per step (K)")
    neighbour_noise: Scale = Field(0.1, description="std of the noise that makes the neighbours (noise_coefficient)")
    fine_tune_lr: Rate = Field(1e-3, description="Adam learning rate of a student's co-teaching step (alpha)")


QUICK = {"hidden_size": 256, "epochs": 20}
"""Quick fidelity: an eighth of the width, a tenth of the epochs; co-teaching and search unchanged."""


def squared_error(model: StackedMLP, x: torch.Tensor, y: torch.Tensor,
                  weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxies' pre-training loss: per-member weighted mean squared error, and G."""
    prediction = model(x)
    errors = ((prediction - y) ** 2)[..., 0]
    return (weights * errors).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12), prediction.mean(dim=(1, 2))


def member_view(model: StackedMLP, member: int) -> StackedMLP:
    """A one-member model whose parameters are views of member ``member``'s: stepping it trains that member."""
    view = copy.deepcopy(model)
    for own, stacked in zip(view.parameters(), model.parameters(), strict=True):
        own.data = stacked.data[member:member + 1]
    view.num_members = 1
    return view


class Proxy:
    """One proxy during co-teaching: its view, its own Adam and its regularizer (λ carried over from fit)."""

    def __init__(self, model: StackedMLP, member: int, fitted: Regularizer, lr: float, ctx: Context) -> None:
        self.model = member_view(model, member)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.regularizer = ctx.regularizer.build()
        self.regularizer.load_state_dict({key: values[member:member + 1]
                                          for key, values in fitted.state_dict().items()})


def neighbourhood(candidate: torch.Tensor, count: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` points around ``candidate`` (1, features): each shifts every feature by one N(0, noise²) draw."""
    shifts = noise * torch.randn(count, 1, generator=generator).to(candidate.device)
    return candidate + shifts


def co_teach(proxies: list[Proxy], candidate: torch.Tensor, settings: Settings, ctx: Context,
             noise: torch.Generator) -> dict[str, float]:
    """One co-teaching pass at ``candidate``: pseudo-labels from every proxy, then the three rounds."""
    points = neighbourhood(candidate, settings.neighbours, settings.neighbour_noise, noise)
    with torch.no_grad():
        labels = [proxy.model(points)[0] for proxy in proxies]
    losses = {}
    for labeller, students in ROUNDS:
        for student in students:
            proxy = proxies[student]

            def loss(proxy: Proxy = proxy, label: torch.Tensor = labels[labeller]) -> tuple[torch.Tensor, None]:
                return ((proxy.model(points)[0] - label) ** 2).sum().reshape(1), None

            stats = ctx.step(proxy.model, proxy.regularizer, proxy.optimizer, loss, points)
            losses[f"co_teaching/loss_{student}_from_{labeller}"] = float(stats["loss"].sum())
    return losses


def mean_prediction(model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    return model(x).mean(dim=0)


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task, normalize=True)
    x, y = space.encode(task.x), TargetScaler.fit(task.y).transform(task.y)
    model = StackedMLP(space.num_features, settings.hidden_size, 2, 1, activation="relu",
                       generators=ctx.generators("ict/init", NUM_PROXIES))
    validation_size = len(x) - int(len(x) * (1 - settings.validation_fraction))
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, validation_size,
                      cosine_schedule=True, keep_best=True)
    splits = draw_splits(len(x), NUM_PROXIES, validation_size, ctx.streams, "ict", bootstrap=False, shared=False)
    surrogate = ctx.fit("ict", model, space, x, y, fit, splits, loss=squared_error)

    proxies = [Proxy(model, m, surrogate.regularizer, settings.fine_tune_lr, ctx) for m in range(NUM_PROXIES)]
    candidate = space.encode(top_designs(task, 1)).to(ctx.device).requires_grad_(True)
    candidate_optimizer = torch.optim.Adam([candidate], lr=settings.search_lr)
    noise = ctx.streams.torch("ict/noise")
    ctx.progress.phase("co-teaching steps", settings.search_steps)
    for step in range(settings.search_steps):
        candidate_optimizer.zero_grad(set_to_none=True)
        (-mean_prediction(model, candidate).sum()).backward()
        candidate_optimizer.step()
        losses = co_teach(proxies, candidate.detach(), settings, ctx, noise)
        if step % 10 == 0 or step == settings.search_steps - 1:
            with torch.no_grad():
                ctx.log(losses | {"co_teaching/predicted": float(mean_prediction(model, candidate).mean())}, step)
        ctx.progress.advance()

    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    designs = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([designs], lr=settings.search_lr)
    ctx.progress.phase("search steps", settings.search_steps)
    for _ in range(settings.search_steps):
        optimizer.zero_grad(set_to_none=True)
        (-mean_prediction(model, designs).sum()).backward()
        optimizer.step()
        ctx.progress.advance()
    with torch.no_grad():
        predictions = model(designs)
    lambdas = [lam for proxy in proxies for lam in proxy.regularizer.lambdas()]
    metrics = {"final_predicted_mean": float(predictions.mean()),
               "final_disagreement": float(predictions.std(dim=0).mean()),
               "final_lambda_mean": float(np.mean(lambdas)) if lambdas else 0.0}
    return Proposal(designs=space.decode(designs.detach()), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("ict", Settings, propose, order=11, quick=QUICK)
