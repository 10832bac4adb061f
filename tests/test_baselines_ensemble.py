"""ens-mean, ens-min, reinforce and cma-es, and the forward-model ensemble they share: method
properties (the generic checks are in test_baselines.py, the paper's reductions in test_protocol.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ignite_mbo.baselines import load
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import EnsembleSettings, ensemble_mean, token_space, train_ensemble
from ignite_mbo.baselines.grad_ascent import mean_of_members, min_of_members
from ignite_mbo.design_space import DesignSpace, TokenSpace
from ignite_mbo.models import GaussianEnsemble
from ignite_mbo.regularizers import IgniteConfig
from ignite_mbo.streams import Streams
from ignite_mbo.tasks import Task

from baseline_checks import series

ENSEMBLE_GA = {"hidden_size": 64, "epochs": 2, "batch_size": 512}  # small surrogates, the full 200-step search
SMALL_ENSEMBLE = {"hidden_size": 16, "embedding_size": 8, "epochs": 2, "batch_size": 1000}


def test_ensemble_is_one_stacked_model_of_five_members(tf_bind_8: Task) -> None:
    space = token_space(tf_bind_8)
    ctx = Context(Streams(0), regularizer=IgniteConfig())
    surrogate = train_ensemble(tf_bind_8, space, ctx, EnsembleSettings(hidden_size=16, embedding_size=8, epochs=1,
                                                                         batch_size=1000))
    model = surrogate.model
    assert isinstance(model, GaussianEnsemble) and model.num_members == 5
    assert model.embedding.shape == (5, 4, 8)  # each member embeds the 4 tokens with its own table
    assert [tuple(kernel.shape) for kernel in model.kernels] == [(5, 8 * 8, 16), (5, 2, 16)]  # one hidden layer
    # (after an embedding the first kernel is stored (in, out) per member, the others (out, in))
    assert len(surrogate.regularizer.lambdas()) == 5
    x = space.encode(tf_bind_8.x[:64])
    with torch.no_grad():
        predictions = model.predict_mean(x)
        assert predictions.shape == (5, 64, 1)
        assert predictions.std(dim=0).min() > 0  # bootstrap members differ
        torch.testing.assert_close(ensemble_mean(surrogate)(x), predictions.mean(dim=0))


def test_token_space_embeds_discrete_designs_and_z_scores_continuous_ones(tf_bind_8: Task, ackley: Task) -> None:
    tokens = token_space(tf_bind_8)
    assert isinstance(tokens, TokenSpace) and tokens.num_features == 8
    encoded = tokens.encode(tf_bind_8.x[:10])
    assert encoded.dtype == torch.int64 and encoded.shape == (10, 8)
    np.testing.assert_array_equal(tokens.decode(encoded), tf_bind_8.x[:10])

    continuous = token_space(ackley)
    assert type(continuous) is DesignSpace and continuous.mean is not None
    features = continuous.encode(ackley.x)
    torch.testing.assert_close(features.mean(dim=0), torch.zeros(60), atol=1e-4, rtol=0)
    np.testing.assert_allclose(continuous.decode(features), ackley.x, atol=1e-5)


def test_aggregations() -> None:
    predictions = torch.tensor([[1.0, -1.0], [2.0, 0.0], [6.0, 4.0]])[..., None]  # (members, designs, 1)
    torch.testing.assert_close(mean_of_members(predictions), torch.tensor([[3.0], [1.0]]))
    torch.testing.assert_close(min_of_members(predictions), torch.tensor([[1.0], [-1.0]]))


def test_true_mean_and_min_share_the_ensemble_but_not_the_search(quick_run) -> None:
    mean_run = quick_run("ens-mean", options={**ENSEMBLE_GA, "true_mean": True})[0]
    min_run = quick_run("ens-min", options=ENSEMBLE_GA)[0]
    assert mean_run.summary["sharpness_train"] == min_run.summary["sharpness_train"]  # same trained members
    assert not np.array_equal(mean_run.proposal.designs, min_run.proposal.designs)
    # the pessimistic (min) score the ascent climbs is below the average one
    assert min_run.proposal.metrics["final_predicted_score"] < mean_run.proposal.metrics["final_predicted_score"]
    assert min_run.proposal.metrics["final_disagreement"] > 0


@pytest.mark.parametrize("per_design_credit", [False, True])
def test_reinforce_policy(quick_run, tf_bind_8: Task, per_design_credit: bool) -> None:
    """The reference's loss leaves the policy at its initial token frequencies; per-design credit learns."""
    result, logged = quick_run("reinforce", options={**SMALL_ENSEMBLE, "per_design_credit": per_design_credit})
    entropy, reward = series(logged, "search/entropy"), series(logged, "search/mean_reward")
    assert len(entropy) == len(reward) == 3  # iterations 0, 10 and 19 of 20
    if per_design_credit:
        assert entropy[-1] < entropy[0] - 0.1  # the policy concentrates ...
        assert reward[-1] > reward[0]  # ... on designs the ensemble scores higher
    else:
        assert entropy[-1] == pytest.approx(entropy[0], abs=1e-3)
    # a token absent at a position among the 128 best training designs is never proposed there
    best = tf_bind_8.x[np.argsort(-tf_bind_8.y[:, 0], kind="stable")[:128]]
    for position in range(tf_bind_8.design_shape[0]):
        assert set(result.proposal.designs[:, position]) <= set(best[:, position])


def test_reinforce_per_design_credit_finds_designs_the_ensemble_prefers(quick_run) -> None:
    reference = quick_run("reinforce", options={**SMALL_ENSEMBLE, "per_design_credit": False})[0]
    learning = quick_run("reinforce", options={**SMALL_ENSEMBLE, "per_design_credit": True})[0]
    assert learning.proposal.metrics["final_predicted_score"] > reference.proposal.metrics["final_predicted_score"]


def test_cma_es_bookkeeping(quick_run, ackley: Task) -> None:
    result, logged = quick_run("cma-es", "ignite", task=ackley)
    best = series(logged, "search/best_predicted")
    assert len(best) == load("cma-es").quick["cma_max_iterations"]
    assert all(later >= earlier for earlier, later in zip(best, best[1:]))  # best-so-far never drops
    # each proposed design is its run's best, scored by the same ensemble (batched fitness lines up per run)
    (surrogate,) = result.proposal.surrogates
    with torch.no_grad():
        predicted = ensemble_mean(surrogate)(surrogate.space.encode(result.proposal.designs))
    assert float(predicted.mean()) == pytest.approx(result.proposal.metrics["final_best_predicted"], abs=1e-3)
    assert result.proposal.metrics["final_sigma"] > 0
