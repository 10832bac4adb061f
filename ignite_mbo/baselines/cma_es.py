"""CMA-ES on an ensemble's mean prediction, one run from each of the 128 best training designs.

Reference: design-baselines ``cma_es`` as the IGNITE code runs it (``cma_es_IGNITE``, TF-Bind
configs, no VAE). The regularized models are the 5 bootstrap members of the forward-model ensemble
(``ensemble.train_ensemble``), each with its own λ, on z-scored logits (``normalize_xs``). Each run
(``cma.CMAEvolutionStrategy``, σ₀ = 0.5 in those z-units) starts at one design's features,
minimises the negative ensemble mean for at most ``cma_max_iterations`` generations or until
CMA-ES stops itself, and proposes its best evaluated solution.

The 128 runs advance in lockstep so each generation's populations go through the ensemble in one
batched forward (the reference runs them one after another; the result is the same). Each run draws
from its own seeded NumPy generator (cma's ``randn`` option). docs/fidelity.md lists every known
difference from the reference.
"""

from __future__ import annotations

import cma
import numpy as np
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits

from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal, Rate, top_designs
from ignite_mbo.baselines.ensemble import ENSEMBLE_QUICK, EnsembleSettings, Score, ensemble_mean, train_ensemble
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task


class Settings(EnsembleSettings):
    cma_sigma: Rate = Field(0.5, description="initial step size σ₀ of each CMA-ES run, in z-scored features")
    cma_max_iterations: Count = Field(100, description="generations of each run at most (CMA-ES may stop sooner)")


QUICK = {**ENSEMBLE_QUICK, "cma_max_iterations": 10}
"""Quick fidelity: the ensemble's quick settings, a tenth of the generations."""


def new_run(start: np.ndarray, sigma: float, seed: int) -> cma.CMAEvolutionStrategy:
    """A quiet CMA-ES run from ``start`` (flat) drawing from its own seeded generator."""
    rng = np.random.default_rng(seed)
    options = {"seed": np.nan, "verbose": -9, "randn": lambda *shape: rng.standard_normal(shape)}
    return cma.CMAEvolutionStrategy(start, sigma, options)


def search(runs: list[cma.CMAEvolutionStrategy], predict: Score, iterations: int, ctx: Context) -> None:
    """Advance every run in lockstep for ``iterations`` generations, one ensemble forward per generation."""
    ctx.progress.phase("CMA-ES generations", iterations)
    for iteration in range(iterations):
        active = [run for run in runs if not run.stop()]
        if not active:
            break
        populations = [run.ask() for run in active]
        flat = np.concatenate([np.asarray(population) for population in populations])
        with torch.no_grad():
            features = torch.as_tensor(flat, dtype=torch.float32, device=ctx.device)
            fitness = (-predict(features)[:, 0]).cpu().numpy().astype(np.float64)
        offset = 0
        for run, population in zip(active, populations, strict=True):
            run.tell(population, fitness[offset:offset + len(population)].tolist())
            offset += len(population)
        ctx.log({"search/best_predicted": float(np.mean([-run.result.fbest for run in runs])),
                 "search/sigma": float(np.mean([run.sigma for run in runs])),
                 "search/active_runs": float(len(active))}, iteration)
        ctx.progress.advance()


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task, normalize=True)
    surrogate = train_ensemble(task, space, ctx, settings)

    start = space.encode(top_designs(task, settings.num_designs)).numpy().astype(np.float64)
    runs = [new_run(x, settings.cma_sigma, ctx.streams.seed(f"cma/run/{i}")) for i, x in enumerate(start)]
    with threadpool_limits(1, user_api="blas"):  # CMA-ES's small eigendecompositions: extra threads only slow them
        search(runs, ensemble_mean(surrogate), settings.cma_max_iterations, ctx)

    best = torch.as_tensor(np.stack([run.result.xbest for run in runs]), dtype=torch.float32)
    metrics = {"final_sigma": float(np.mean([run.sigma for run in runs])),
               "final_best_predicted": float(np.mean([-run.result.fbest for run in runs])),
               "mean_iterations": float(np.mean([run.countiter for run in runs]))}
    return Proposal(designs=space.decode(best), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("cma-es", Settings, propose, order=7, quick=QUICK)
