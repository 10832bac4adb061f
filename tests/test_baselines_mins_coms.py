"""MINs and COMs at quick fidelity: valid designs on every task, determinism, method properties."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ignite_mbo import tasks
from ignite_mbo.baselines import coms, mins
from ignite_mbo.config import TrialConfig
from ignite_mbo.tasks import Task
from ignite_mbo.trial import TrialResult, run_trial

BASELINES = ("mins", "coms")
REGULARIZERS = ("none", "ignite", "ignite2")
SCORE_KEYS = ("score_100th", "score_80th", "score_50th", "score_mean", "sharpness_train", "sharpness_candidates")

Run = tuple[TrialResult, list[tuple[int, dict[str, float]]]]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These runs are tiny: on a shared 2-core machine intra-op threads only contend (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tf_bind_8(design_bench_dir: Path) -> Task:
    return tasks.make("TFBind8-Exact-v0", design_bench_dir)


@pytest.fixture(scope="module")
def tf_bind_10(design_bench_dir: Path) -> Task:
    return tasks.make("TFBind10-Exact-v0", design_bench_dir)


@pytest.fixture(scope="module")
def run(tf_bind_8: Task) -> Callable[..., Run]:
    """Run a quick trial once per (baseline, regularizer, seed, task); returns the result and its logged metrics."""
    cache: dict[tuple, Run] = {}

    def _run(baseline: str, regularizer: str = "none", seed: int = 0, task: Task | None = None,
             fresh: bool = False) -> Run:
        task = task or tf_bind_8
        key = (baseline, regularizer, seed, task.task_id)
        if fresh or key not in cache:
            logged: list[tuple[int, dict[str, float]]] = []
            config = TrialConfig.parse(dict(task=task.task_id, baseline=baseline, regularizer={"name": regularizer},
                                            seed=seed, fidelity="quick"))
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
    assert result.summary["num_candidates"] == 128
    for key in SCORE_KEYS:
        assert math.isfinite(result.summary[key]), key
    assert len(result.proposal.surrogates) == 1


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("baseline", BASELINES)
def test_quick_tf_bind_8(run, tf_bind_8: Task, baseline: str, regularizer: str) -> None:
    result, _ = run(baseline, regularizer)
    assert_valid(result, tf_bind_8)
    assert result.summary["regularizer_affects_search"] is (baseline == "coms")


@pytest.mark.parametrize("baseline", BASELINES)
def test_continuous_task(run, baseline: str) -> None:
    task = tasks.make("Synthetic-Ackley60-v0")
    result, _ = run(baseline, "ignite", task=task)
    assert_valid(result, task)


@pytest.mark.parametrize("baseline", BASELINES)
def test_tf_bind_10(run, tf_bind_10: Task, baseline: str) -> None:
    result, _ = run(baseline, "ignite", task=tf_bind_10)
    assert_valid(result, tf_bind_10)


@pytest.mark.parametrize("baseline", BASELINES)
def test_same_seed_same_designs(run, baseline: str) -> None:
    first, _ = run(baseline, "ignite")
    again, _ = run(baseline, "ignite", fresh=True)
    np.testing.assert_array_equal(first.proposal.designs, again.proposal.designs)
    assert first.summary["final_lambda"] == again.summary["final_lambda"]


@pytest.mark.parametrize("baseline", BASELINES)
def test_regularizer_trains_the_surrogate(run, baseline: str) -> None:
    plain, _ = run(baseline, "none")
    ignite, _ = run(baseline, "ignite")
    assert plain.summary["final_lambda"] == 0.0
    assert ignite.summary["final_lambda"] > 0.0
    assert ignite.summary["final_lambda"] != pytest.approx(1e-3)  # λ moved by dual ascent
    assert "constraint_sharpness" in ignite.proposal.surrogates[0].history[-1]


# ---- COMs -------------------------------------------------------------------------------------


def test_coms_logs_alpha_gap_and_mse_per_epoch(run) -> None:
    result, logged = run("coms", "ignite")
    epochs = coms.Settings(**coms.QUICK).epochs
    per_epoch = [metrics for _, metrics in logged if "coms/alpha" in metrics]
    assert len(per_epoch) == epochs
    for metrics in per_epoch:
        for key in ("alpha", "train_overestimation", "train_mse", "val_overestimation", "val_mse"):
            assert math.isfinite(metrics[f"coms/{key}"]), key
    assert result.proposal.surrogates[0].history[-1]["coms/alpha"] == result.summary["final_alpha"]
    assert result.summary["final_alpha"] != pytest.approx(coms.Settings().initial_alpha)  # α adapted


def test_coms_search_climbs_the_regularized_model(run) -> None:
    plain, _ = run("coms", "none")
    ignite2, _ = run("coms", "ignite2")
    assert plain.summary["regularizer_affects_search"] and ignite2.summary["regularizer_affects_search"]
    weights = [result.proposal.surrogates[0].model.net[1].weight for result in (plain, ignite2)]
    assert not torch.equal(*weights)  # the regularizer changed the model the search climbs


@pytest.mark.parametrize(("gap", "grows"), [(5.0, True), (-1.0, False)])
def test_coms_dual_ascent_direction(gap: float, grows: bool) -> None:
    """α rises while the overestimation gap exceeds τ and falls below it."""
    loss = coms.ConservativeLoss(initial_alpha=0.1, alpha_lr=0.01, overestimation_limit=2.0,
                                 particle_lr=0.1, particle_steps=1)
    loss._dual_step(gap)
    assert (loss.alpha > 0.1) is grows


def test_coms_adversarial_designs_climb_the_model() -> None:
    torch.manual_seed(0)
    model = coms.ForwardModel(6, hidden_size=16)
    loss = coms.ConservativeLoss(initial_alpha=0.1, alpha_lr=0.01, overestimation_limit=2.0,
                                 particle_lr=0.05, particle_steps=10)
    x = torch.randn(32, 6)
    with torch.no_grad():  # as in the validation pass: the ascent must still work
        climbed = loss.adversarial_designs(model, x)
        assert model(climbed).mean() > model(x).mean()
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    model.train()
    value = loss(model, x, y).item()
    mse = ((model(x) - y) ** 2).mean().item()
    assert value != pytest.approx(mse)  # the conservative term is in the loss
    assert loss.alpha != pytest.approx(0.1)  # one dual step per training batch


# ---- MINs -------------------------------------------------------------------------------------


def test_mins_designs_do_not_depend_on_the_regularizer(run) -> None:
    results = [run("mins", regularizer)[0] for regularizer in REGULARIZERS]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].proposal.designs, other.proposal.designs)
    lambdas = {result.summary["final_lambda"] for result in results}
    assert len(lambdas) == 3  # ... although each trained a differently regularized forward model
    assert not any(result.summary["regularizer_affects_search"] for result in results)


def test_mins_other_seed_other_designs(run) -> None:
    seed_0, seed_1 = run("mins", "none")[0], run("mins", "none", seed=1)[0]
    assert not np.array_equal(seed_0.proposal.designs, seed_1.proposal.designs)


def test_mins_logs_gan_losses_per_epoch(run) -> None:
    result, logged = run("mins", "ignite")
    per_epoch = [metrics for _, metrics in logged if "gan/generator_loss" in metrics]
    assert len(per_epoch) == mins.Settings(**mins.QUICK).gan_epochs
    for metrics in per_epoch:
        for key in ("gan/generator_loss", "gan/critic_loss", "gan/wasserstein", "gan/penalty"):
            assert math.isfinite(metrics[key]), key
    temps = [metrics["gan/temp"] for metrics in per_epoch]
    assert temps[0] == mins.Settings().start_temp and temps[-1] == mins.Settings().final_temp
    assert any("forward/lambda" in metrics for _, metrics in logged)
    assert math.isfinite(result.summary["final_generator_loss"])


def test_mins_score_weights_favour_high_scores() -> None:
    y = np.random.default_rng(0).normal(size=(5000, 1)).astype(np.float32)
    weights = mins.score_weights(y, base_temp=0.1)
    assert weights.shape == y.shape and (weights >= 0).all() and (weights <= 5.0).all()
    order = np.argsort(y[:, 0])
    assert weights[order[-50:]].mean() > weights[order[:2500]].mean()


def test_mins_one_hot_space_round_trip(tf_bind_8: Task) -> None:
    space = mins.OneHotSpace(num_classes=tf_bind_8.num_classes)
    features = space.encode(tf_bind_8.x[:10])
    assert features.shape == (10, 8, 4) and torch.all(features.sum(-1) == 1)
    np.testing.assert_array_equal(space.decode(features), tf_bind_8.x[:10])


def test_mins_relaxed_samples_are_distributions() -> None:
    logits = torch.randn(16, 8, 4)
    sample = mins.relaxed_one_hot(logits, 0.5, torch.Generator().manual_seed(0))
    assert torch.allclose(sample.sum(-1), torch.ones(16, 8))
    hard = mins.relaxed_one_hot(logits, 1e-3, torch.Generator().manual_seed(0))
    assert torch.allclose(hard.max(-1).values, torch.ones(16, 8), atol=1e-3)
