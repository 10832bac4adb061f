"""The sweep's Ray Tune Tuner: its trainable and resources, how the space becomes Tune's search, trial names.

A grid search carries every trial config as its JSON dump (``param_space["trial"]``); a search
algorithm (Optuna) runs each suggestion on every trial config through Tune's ``Repeater``; sampled
values ride along under ``param_space["search"]`` (:mod:`ignite_mbo.trainables.params`).
"""

from __future__ import annotations

import sys
from typing import Any

from ray import tune

from ignite_mbo import tasks as task_registry
from ignite_mbo.config import TrialConfig
from ignite_mbo.platform.plan import SweepPlan
from ignite_mbo.platform.record import SweepRecord
from ignite_mbo.platform.resume_files import failed_for_a_passing_reason
from ignite_mbo.platform.spaces import SweepSpec
from ignite_mbo.trainables.mbo import NONFINITE, mbo_trainable
from ignite_mbo.trainables.params import TrialLookup, carried, run_name


def effective_resources(spec: SweepSpec, address: str | None) -> dict[str, float]:
    """Per-trial resources; on a local Ray without GPUs a GPU request becomes CPU-only (same space, no change)."""
    import ray

    gpu = spec.resources.gpu
    if gpu > 0 and not address and not ray.cluster_resources().get("GPU"):
        print(f"note: no GPU on this machine; the space's trials run on CPU (resources.gpu={gpu:g} ignored)",
              file=sys.stderr)
        gpu = 0.0
    return {"cpu": spec.resources.cpu, "gpu": gpu}


def build_tuner(plan: SweepPlan, record: SweepRecord, tasks: dict[str, task_registry.Task],
                callbacks: list[Any]) -> Any:
    """A fresh Tuner for the plan, or the interrupted sweep's Tuner restored from its experiment."""
    spec, trials = plan.spec, plan.trials
    numbered = bool(spec.search) or spec.num_samples > 1 or len({run_name(c) for c in trials}) < len(trials)
    trainable = tune.with_resources(
        tune.with_parameters(mbo_trainable, tasks=tasks, tracking_uri=record.tracking_uri,
                             experiment=record.experiment, parent_run_id=record.parent_run_id, trials=trials,
                             objective=spec.objective, numbered_names=numbered),
        effective_resources(spec, plan.address),
    )
    if plan.resume is not None and tune.Tuner.can_restore(record.experiment_path):
        return tune.Tuner.restore(record.experiment_path, trainable, resume_unfinished=True,
                                  resume_errored=failed_for_a_passing_reason(record.experiment_path))
    goal = spec.objective_spec
    param_space, search_alg, num_samples, scheduler = search_setup(spec, trials)
    namer = TrialNamer(TrialLookup(trials))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="objective" if goal else None, mode=goal.mode if goal else None,
            search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True,
            trial_name_creator=namer, trial_dirname_creator=namer),
        run_config=tune.RunConfig(
            name=plan.sweep_dir.name, storage_path=record.storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks),
    )


class NonFiniteNoRetry(tune.Callback):
    """A trial whose loss went NaN/inf fails at once: no retry, whatever ``failure.max_retries`` says.

    The trainable reports a result with ``nonfinite_loss`` just before it raises; that result is
    processed before the error, so the trial's retry budget is zero when Tune handles the error.
    """

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if result.get(NONFINITE):
            trial.max_failures = 0


class TrialNamer:
    """Tune's trial names and folders, e.g. ``grad-ascent_ignite_TFBind8-Exact-v0_s3_00007``."""

    def __init__(self, lookup: TrialLookup) -> None:
        self.lookup = lookup

    def __call__(self, trial: Any) -> str:
        return self.prefix(trial.config) + trial.trial_id

    def prefix(self, params: dict[str, Any]) -> str:
        config = self.lookup(params)
        return f"{config.baseline}_{config.regularizer.name}_{config.task}_s{config.seed}_"


def search_setup(spec: SweepSpec, trials: list[TrialConfig]) -> tuple[dict[str, Any], Any, int, Any]:
    """Tune's ``param_space``, search algorithm, ``num_samples`` and scheduler for ``spec``.

    Without a search algorithm (or with ``random``) the grid points are one ``grid_search`` and
    ``search`` distributions are sampled ``num_samples`` times per point. With ``optuna`` each
    suggestion is repeated on every grid point (Tune's ``Repeater``; ``__trial_index__`` picks the
    point) and Optuna is told the mean objective of the repeats.
    """
    from ray.tune.search import Repeater
    from ray.tune.search.basic_variant import BasicVariantGenerator

    domains = spec.search_domains()
    search_alg: Any = None
    num_samples = spec.num_samples
    if spec.search_alg is not None and spec.search_alg.name == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        seed = spec.search_alg.seed
        sampler = (optuna.samplers.TPESampler(seed=seed) if spec.search_alg.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))
        search_alg = Repeater(OptunaSearch(sampler=sampler), repeat=len(trials), set_index=True)
        param_space: dict[str, Any] = {"search": domains}
        num_samples = spec.num_samples * len(trials)
    else:
        if spec.search_alg is not None:  # random, with a seed for reproducible samples
            search_alg = BasicVariantGenerator(random_state=spec.search_alg.seed)
        param_space = {"trial": tune.grid_search([carried(config) for config in trials])}
        if domains:
            param_space["search"] = domains

    scheduler: Any = None
    if spec.scheduler is not None and spec.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="surrogate_epochs", max_t=spec.scheduler.max_t,
                                  grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor,
                                  stop_last_trials=False)  # a trial past max_t still runs its search
    elif spec.scheduler is not None and spec.scheduler.name == "median":
        from ray.tune.schedulers import MedianStoppingRule

        scheduler = MedianStoppingRule(time_attr="surrogate_epochs", grace_period=spec.scheduler.grace_period,
                                       min_samples_required=spec.scheduler.min_samples_required)
    return param_space, search_alg, num_samples, scheduler
