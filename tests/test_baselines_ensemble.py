"""ens-mean, ens-min, reinforce and cma-es at quick fidelity: valid designs, determinism, method properties."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ignite_mbo import tasks
from ignite_mbo.baselines import load
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import (
    SmallEnsembleSettings, ensemble_mean, mean_of_members, member_predictions, min_of_members,
    train_small_ensemble,
)
from ignite_mbo.config import TrialConfig
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.regularizers import NoneConfig
from ignite_mbo.tasks import Task
from ignite_mbo.trial import TrialResult, run_trial

BASELINES = ("ens-mean", "ens-min", "reinforce", "cma-es")
REGULARIZERS = ("none", "ignite", "ignite2")
SUMMARY_KEYS = ("score_100th", "score_80th", "score_50th", "score_mean", "sharpness_train", "sharpness_candidates")

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
    """A quick trial (TF-Bind-8 unless told), memoised unless ``fresh``; returns the result and what it logged."""
    cache: dict[tuple, Run] = {}

    def _run(baseline: str, regularizer: str = "none", task: Task | None = None, seed: int = 0,
             fresh: bool = False) -> Run:
        task = task or tf_bind_8
        key = (baseline, regularizer, task.task_id, seed)
        if fresh or key not in cache:
            logged: Logged = []
            config = TrialConfig.parse(dict(task=task.task_id, baseline=baseline, regularizer={"name": regularizer},
                                            seed=seed, fidelity="quick"))
            result = run_trial(config, task=task, log=lambda metrics, step: logged.append((step, dict(metrics))))
            if fresh:
                return result, logged
            cache[key] = (result, logged)
        return cache[key]

    return _run


def series(logged: Logged, key: str) -> list[float]:
    return [metrics[key] for _, metrics in logged if key in metrics]


def assert_valid(result: TrialResult, task: Task) -> None:
    designs = result.proposal.designs
    assert designs.shape == (128, *task.design_shape)
    if task.is_discrete:
        assert np.issubdtype(designs.dtype, np.integer)
        assert designs.min() >= 0 and designs.max() < task.num_classes
    else:
        assert designs.dtype == np.float32 and np.isfinite(designs).all()
    for key in SUMMARY_KEYS:
        assert math.isfinite(result.summary[key]), key
    assert result.summary["num_candidates"] == 128
    assert len(result.proposal.surrogates) == 5
    assert all(math.isfinite(value) for value in result.proposal.metrics.values())


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("baseline", BASELINES)
def test_tf_bind_8_every_regularizer(run, tf_bind_8: Task, baseline: str, regularizer: str) -> None:
    result, _ = run(baseline, regularizer)
    assert_valid(result, tf_bind_8)


@pytest.mark.parametrize("baseline", BASELINES)
def test_regularizer_is_used(run, baseline: str) -> None:
    plain, ignite = run(baseline, "none")[0], run(baseline, "ignite")[0]
    assert plain.summary["final_lambda"] == 0.0
    assert ignite.summary["final_lambda"] != plain.summary["final_lambda"]
    regularizers = [s.regularizer for s in ignite.proposal.surrogates]
    assert len({id(r) for r in regularizers}) == len(regularizers)  # one regularizer per member


@pytest.mark.parametrize("baseline", BASELINES)
def test_tf_bind_10(run, tf_bind_10: Task, baseline: str) -> None:
    assert_valid(run(baseline, "ignite", task=tf_bind_10)[0], tf_bind_10)


@pytest.mark.parametrize("baseline", BASELINES)
def test_ackley(run, ackley: Task, baseline: str) -> None:
    assert_valid(run(baseline, "ignite", task=ackley)[0], ackley)


@pytest.mark.parametrize("baseline", BASELINES)
def test_same_seed_same_designs(run, baseline: str) -> None:
    first = run(baseline, "ignite")[0]
    again = run(baseline, "ignite", fresh=True)[0]
    np.testing.assert_array_equal(first.proposal.designs, again.proposal.designs)


def test_seed_changes_designs(run) -> None:
    assert not np.array_equal(run("cma-es", seed=0)[0].proposal.designs, run("cma-es", seed=1)[0].proposal.designs)


def test_small_ensemble_members(tf_bind_8: Task) -> None:
    space = DesignSpace.for_task(tf_bind_8)
    ctx = Context(new_regularizer=NoneConfig().build, seed=0, device=torch.device("cpu"))
    settings = SmallEnsembleSettings(hidden_size=16, epochs=1, batch_size=1024)
    members = train_small_ensemble(tf_bind_8, space, ctx, settings)
    assert len(members) == 5
    linear = [m for m in members[0].model.modules() if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linear] == [16, 2]  # one hidden layer, then the Gaussian head
    x = space.encode(tf_bind_8.x[:64])
    with torch.no_grad():
        predictions = member_predictions(members)(x)
        assert predictions.shape == (64, 5)
        assert predictions.std(dim=1).min() > 0  # bootstrap members differ
        torch.testing.assert_close(ensemble_mean(members)(x), predictions.mean(dim=1, keepdim=True))


def test_aggregations() -> None:
    predictions = torch.tensor([[1.0, 2.0, 6.0], [-1.0, 0.0, 4.0]])
    torch.testing.assert_close(mean_of_members(predictions), torch.tensor([[3.0], [1.0]]))
    torch.testing.assert_close(min_of_members(predictions), torch.tensor([[1.0], [-1.0]]))


def test_ens_mean_and_min_share_the_ensemble_but_not_the_search(run) -> None:
    mean_run, min_run = run("ens-mean")[0], run("ens-min")[0]
    assert mean_run.summary["sharpness_train"] == min_run.summary["sharpness_train"]  # same trained members
    assert not np.array_equal(mean_run.proposal.designs, min_run.proposal.designs)
    # the pessimistic (min) score the ascent climbs is below the average one
    assert min_run.proposal.metrics["final_predicted_score"] < mean_run.proposal.metrics["final_predicted_score"]


@pytest.mark.parametrize("baseline", ["ens-mean", "ens-min"])
def test_ascent_logs_disagreement_every_step(run, baseline: str) -> None:
    result, logged = run(baseline)
    disagreement = series(logged, "search/disagreement")
    assert len(disagreement) == load(baseline).Settings().solver_steps
    assert all(value > 0 for value in disagreement)
    assert result.proposal.metrics["final_disagreement"] > 0


def test_reinforce_policy_learns(run, tf_bind_8: Task) -> None:
    result, logged = run("reinforce")
    entropy, reward = series(logged, "search/entropy"), series(logged, "search/mean_reward")
    assert len(entropy) == len(reward) == load("reinforce").QUICK["iterations"]
    assert entropy[-1] < entropy[0]  # the policy concentrates
    assert np.mean(reward[-5:]) > np.mean(reward[:5])  # on designs the ensemble scores higher
    # a token absent at a position among the 128 best training designs is never proposed there
    best = tf_bind_8.x[np.argsort(-tf_bind_8.y[:, 0], kind="stable")[:128]]
    for position in range(tf_bind_8.design_shape[0]):
        assert set(result.proposal.designs[:, position]) <= set(best[:, position])


def test_cma_es_bookkeeping(run, ackley: Task) -> None:
    result, logged = run("cma-es", "ignite", task=ackley)
    best = series(logged, "search/best_predicted")
    assert len(best) == load("cma-es").QUICK["cma_max_iterations"]
    assert all(later >= earlier for earlier, later in zip(best, best[1:]))  # best-so-far never drops
    # each proposed design is its run's best, scored by the same ensemble (batched fitness lines up per run)
    surrogates = result.proposal.surrogates
    with torch.no_grad():
        predicted = ensemble_mean(surrogates)(surrogates[0].space.encode(result.proposal.designs))
    assert float(predicted.mean()) == pytest.approx(result.proposal.metrics["final_best_predicted"], abs=1e-3)
    assert result.proposal.metrics["final_sigma"] > 0
