"""ens-mean, ens-min, reinforce and cma-es: method properties (the generic checks are in test_baselines.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from baseline_checks import series

from ignite_mbo.baselines import load
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import (
    SmallEnsembleSettings, ensemble_mean, mean_of_members, member_predictions, min_of_members,
    train_small_ensemble,
)
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.regularizers import NoneConfig
from ignite_mbo.tasks import Task


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


def test_ens_mean_and_min_share_the_ensemble_but_not_the_search(quick_run) -> None:
    mean_run, min_run = quick_run("ens-mean")[0], quick_run("ens-min")[0]
    assert mean_run.summary["sharpness_train"] == min_run.summary["sharpness_train"]  # same trained members
    assert not np.array_equal(mean_run.proposal.designs, min_run.proposal.designs)
    # the pessimistic (min) score the ascent climbs is below the average one
    assert min_run.proposal.metrics["final_predicted_score"] < mean_run.proposal.metrics["final_predicted_score"]


@pytest.mark.parametrize("baseline", ["ens-mean", "ens-min"])
def test_ascent_logs_disagreement_every_step(quick_run, baseline: str) -> None:
    result, logged = quick_run(baseline)
    disagreement = series(logged, "search/disagreement")
    assert len(disagreement) == load(baseline).Settings().solver_steps
    assert all(value > 0 for value in disagreement)
    assert result.proposal.metrics["final_disagreement"] > 0


def test_reinforce_policy_learns(quick_run, tf_bind_8: Task) -> None:
    result, logged = quick_run("reinforce")
    entropy, reward = series(logged, "search/entropy"), series(logged, "search/mean_reward")
    assert len(entropy) == len(reward) == load("reinforce").QUICK["iterations"]
    assert entropy[-1] < entropy[0]  # the policy concentrates
    assert np.mean(reward[-5:]) > np.mean(reward[:5])  # on designs the ensemble scores higher
    # a token absent at a position among the 128 best training designs is never proposed there
    best = tf_bind_8.x[np.argsort(-tf_bind_8.y[:, 0], kind="stable")[:128]]
    for position in range(tf_bind_8.design_shape[0]):
        assert set(result.proposal.designs[:, position]) <= set(best[:, position])


def test_cma_es_bookkeeping(quick_run, ackley: Task) -> None:
    result, logged = quick_run("cma-es", "ignite", task=ackley)
    best = series(logged, "search/best_predicted")
    assert len(best) == load("cma-es").QUICK["cma_max_iterations"]
    assert all(later >= earlier for earlier, later in zip(best, best[1:]))  # best-so-far never drops
    # each proposed design is its run's best, scored by the same ensemble (batched fitness lines up per run)
    surrogates = result.proposal.surrogates
    with torch.no_grad():
        predicted = ensemble_mean(surrogates)(surrogates[0].space.encode(result.proposal.designs))
    assert float(predicted.mean()) == pytest.approx(result.proposal.metrics["final_best_predicted"], abs=1e-3)
    assert result.proposal.metrics["final_sigma"] > 0
