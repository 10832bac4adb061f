"""CbAS and BO-qEI at quick fidelity: valid designs on every task, determinism, method properties."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ignite_mbo import tasks
from ignite_mbo.baselines import bo_qei, cbas
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import train_small_ensemble
from ignite_mbo.config import TrialConfig
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.regularizers import build
from ignite_mbo.tasks import Task
from ignite_mbo.trial import TrialResult, run_trial

BASELINES = ("cbas", "bo-qei")
REGULARIZERS = ("none", "ignite", "ignite2")
FINITE_KEYS = ("score_100th", "score_80th", "score_50th", "score_mean", "sharpness_train", "sharpness_candidates",
               "final_predicted_mean")

Logged = list[tuple[int, dict[str, float]]]
Run = tuple[TrialResult, Logged]


@pytest.fixture(scope="module")
def tf_bind_8(design_bench_dir: Path) -> Task:
    return tasks.make("TFBind8-Exact-v0", design_bench_dir)


@pytest.fixture(scope="module")
def tf_bind_10(design_bench_dir: Path) -> Task:
    return tasks.make("TFBind10-Exact-v0", design_bench_dir)


@pytest.fixture(scope="module")
def ackley() -> Task:
    return tasks.make("Synthetic-Ackley60-v0")


@pytest.fixture(scope="module")
def run(tf_bind_8: Task) -> Callable[..., Run]:
    """A quick trial, cached per (baseline, regularizer, task) unless ``fresh``; with its logged metrics."""
    cache: dict[tuple[str, str, str], Run] = {}

    def _run(baseline: str, regularizer: str = "none", task: Task | None = None, fresh: bool = False) -> Run:
        task = task or tf_bind_8
        key = (baseline, regularizer, task.task_id)
        if fresh or key not in cache:
            logged: Logged = []
            config = TrialConfig.parse(dict(task=task.task_id, baseline=baseline, regularizer={"name": regularizer},
                                            fidelity="quick"))
            result = run_trial(config, task=task, log=lambda metrics, step: logged.append((step, dict(metrics))))
            if fresh:
                return result, logged
            cache[key] = (result, logged)
        return cache[key]

    return _run


def assert_valid(result: TrialResult, task: Task) -> None:
    designs = result.proposal.designs
    assert designs.shape == (128, *task.design_shape)
    if task.is_discrete:
        assert np.issubdtype(designs.dtype, np.integer)
        assert designs.min() >= 0 and designs.max() < task.num_classes
    else:
        assert designs.dtype == np.float32 and np.isfinite(designs).all()
    for key in FINITE_KEYS:
        assert math.isfinite(result.summary[key]), key
    assert len(result.proposal.surrogates) == 5
    assert result.summary["regularizer_affects_search"] is True


def series(logged: Logged, key: str) -> list[float]:
    return [metrics[key] for _, metrics in logged if key in metrics]


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("baseline", BASELINES)
def test_quick_tf_bind_8(run, tf_bind_8: Task, baseline: str, regularizer: str) -> None:
    result, _ = run(baseline, regularizer)
    assert_valid(result, tf_bind_8)


@pytest.mark.parametrize("baseline", BASELINES)
def test_regularizer_reaches_every_ensemble_member(run, baseline: str) -> None:
    plain, ignite = run(baseline, "none")[0], run(baseline, "ignite")[0]
    assert plain.summary["final_lambda"] == 0.0
    assert ignite.summary["final_lambda"] != 0.0
    lambdas = [s.regularizer.state_dict()["lambda"] for s in ignite.proposal.surrogates]
    assert len(set(lambdas)) == 5  # five regularizers, one per member, each updated on its own bootstrap


@pytest.mark.parametrize("baseline", BASELINES)
def test_continuous_and_tf_bind_10(run, ackley: Task, tf_bind_10: Task, baseline: str) -> None:
    for task in (ackley, tf_bind_10):
        assert_valid(run(baseline, task=task)[0], task)


@pytest.mark.parametrize("baseline", BASELINES)
def test_same_seed_same_designs(run, baseline: str) -> None:
    first, first_logged = run(baseline, "ignite")
    again, again_logged = run(baseline, "ignite", fresh=True)
    np.testing.assert_array_equal(first.proposal.designs, again.proposal.designs)
    assert first_logged == again_logged


def test_cbas_logs_each_iteration(run) -> None:
    result, logged = run("cbas")
    iterations = cbas.Settings(**cbas.QUICK).iterations
    for key in ("cbas/gamma", "cbas/predicted_mean", "cbas/ess"):
        values = series(logged, key)
        assert len(values) == iterations and all(math.isfinite(v) for v in values), key
    samples = cbas.Settings(**cbas.QUICK).online_batches * cbas.Settings(**cbas.QUICK).vae_batch_size
    assert all(1.0 <= ess <= samples for ess in series(logged, "cbas/ess"))
    assert result.summary["final_gamma"] == series(logged, "cbas/gamma")[-1]


def test_cbas_weights_favour_designs_the_ensemble_scores_above_gamma(ackley: Task) -> None:
    """At the first iteration q = p, so the weights are the ensemble's P(y > γ), rescaled to mean 1."""
    settings = cbas.Settings(**{**cbas.QUICK, "online_batches": 4, "epochs": 3})
    ctx = Context(new_regularizer=lambda: build("none"), seed=0, device=torch.device("cpu"))
    space = DesignSpace.for_task(ackley)
    surrogates = train_small_ensemble(ackley, space, ctx, settings)
    prior = cbas.DesignVAE(ackley.design_shape, None, settings)
    search = cbas.CbAS(ackley, space, surrogates, prior, settings, ctx, ctx.generator(1))
    x, weights, stats = search.weighted_samples()
    assert x.shape == (2000, 60) and weights.shape == (2000,)
    assert torch.all(weights >= 0) and weights.mean().item() == pytest.approx(1.0, rel=1e-4)
    means, stds = cbas.ensemble_predictive(surrogates, x)
    exceed = torch.special.ndtr((means - stats["gamma"]) / stds).mean(dim=1)
    torch.testing.assert_close(weights, exceed / exceed.mean(), rtol=1e-4, atol=1e-6)
    above = means.mean(dim=1) > stats["gamma"]
    assert weights[above].mean() > weights[~above].mean()


def test_cbas_search_climbs_the_ensemble(ackley: Task) -> None:
    """Refitting q on the weighted samples raises γ and the ensemble's mean prediction of q's samples."""
    config = TrialConfig.parse(dict(task=ackley.task_id, baseline="cbas", fidelity="quick", baseline_options=dict(
        epochs=3, offline_epochs=5, vae_batch_size=100, online_batches=5, online_epochs=5, iterations=6)))
    logged: Logged = []
    run_trial(config, task=ackley, log=lambda metrics, step: logged.append((step, dict(metrics))))
    gamma, predicted = series(logged, "cbas/gamma"), series(logged, "cbas/predicted_mean")
    assert gamma[-1] > gamma[0] and predicted[-1] > predicted[0]


def test_bo_qei_answer_is_the_top_of_its_history(run, ackley: Task) -> None:
    """The answer: the best training designs by score, plus the search points whose labels beat them."""
    result, logged = run("bo-qei", task=ackley)
    settings = bo_qei.Settings(**bo_qei.QUICK)
    designs = result.proposal.designs
    from_search = round(result.summary["final_from_search"] * 128)
    best_first = ackley.x[np.argsort(-ackley.y[:, 0], kind="stable")]
    close = np.isclose(designs[:, None, :], best_first[None, : settings.bo_gp_samples, :], rtol=1e-5, atol=1e-5)
    is_training = close.all(-1)  # encode/decode round trip: equal up to float32 rounding
    assert is_training.any(1).sum() == 128 - from_search
    np.testing.assert_array_equal(np.sort(is_training.any(0).nonzero()[0]), np.arange(128 - from_search))
    low, high = ackley.x.min(0), ackley.x.max(0)
    assert np.all(designs >= low - 1e-4) and np.all(designs <= high + 1e-4)  # qEI searched the data's box

    acquisition, best = series(logged, "bo/acquisition_value"), series(logged, "bo/best_label")
    assert len(acquisition) == len(best) == len(series(logged, "bo/best_ensemble_score")) == settings.bo_iterations
    assert all(math.isfinite(a) and a >= 0 for a in acquisition)
    assert best == sorted(best)
