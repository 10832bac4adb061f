"""RoMA and ICT: the reference's key choices, the door extensions they use, and a small sweep of both."""

from __future__ import annotations

import math
import os
import subprocess

import numpy as np
import pytest
import torch

from ignite_mbo import training
from ignite_mbo.baselines import ict, roma
from ignite_mbo.baselines.base import Context
from ignite_mbo.models import GaussianEnsemble, StackedMLP, gaussian_nll
from ignite_mbo.regularizers import IgniteConfig, NoRegularizer
from ignite_mbo.streams import Streams
from ignite_mbo.training import FitSettings, draw_splits, fit

from baseline_checks import SMOKE


def small_gaussian(seed: int = 0) -> GaussianEnsemble:
    return GaussianEnsemble(6, 8, 2, activation="softplus", generators=[torch.Generator().manual_seed(seed)])


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=g), torch.randn(32, 1, generator=g), torch.ones(1, 32)


# ---- RoMA ------------------------------------------------------------------------------------------


def test_roma_defaults_are_the_dkitty_script() -> None:
    settings = roma.Settings()
    assert (settings.hidden_size, settings.epochs, settings.batch_size, settings.learning_rate) == (64, 50, 128, 1e-3)
    assert (settings.validation_size, settings.input_noise, settings.clip_norm) == (200, 0.2, 1.0)
    assert (settings.perturbation_steps, settings.perturbation_radius, settings.adaptation_steps) == (20, 5e-3, 100)
    assert (settings.updates, settings.solution_lr, settings.region, settings.alpha) == (500, 3e-3, 4.0, 1.0)


def test_weight_perturbation_climbs_the_nll_within_its_radius_and_spares_the_std_bounds() -> None:
    model = small_gaussian()
    x, y, w = batch()
    loss = roma.RobustLoss(noise=0.0, steps=5, radius=0.05, generator=torch.Generator())
    shift = loss.perturbation(model, x, y, w)
    assert not set(roma.FIXED) & set(shift)
    for name, p in roma.perturbable(model).items():  # five steps of radius/5 · ‖w‖ each: at most radius · ‖w‖
        assert shift[name].norm() <= 0.05 * p.norm() * (1 + 1e-5)
        assert (shift[name].norm() > 0) == (p.norm() > 0)  # zero (fresh) biases stay: steps scale with ‖w‖
    before, _ = gaussian_nll(model, x, y, w)
    after, _ = gaussian_nll(roma.Shifted(model, shift), x, y, w)
    assert after.item() > before.item()


def test_training_gradient_is_taken_at_the_perturbed_weights() -> None:
    model = small_gaussian()
    x, y, w = batch()
    loss = roma.RobustLoss(noise=0.0, steps=3, radius=0.1, generator=torch.Generator())
    shift = loss.perturbation(model, x, y, w)
    model.train()
    value, mean = loss(model, x, y, w)
    assert mean is None  # G comes from the regularizer's clean forward, at the unperturbed weights
    grads = torch.autograd.grad(value.sum(), list(model.parameters()))

    moved = small_gaussian()
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p.add_(shift.get(name, torch.zeros_like(p)))
    expected = torch.autograd.grad(gaussian_nll(moved, x, y, w)[0].sum(), list(moved.parameters()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_validation_uses_the_model_itself_with_input_noise() -> None:
    model = small_gaussian().eval()
    x, y, w = batch()
    quiet = roma.RobustLoss(noise=0.0, steps=3, radius=0.1, generator=torch.Generator())
    torch.testing.assert_close(quiet(model, x, y, w)[0], gaussian_nll(model, x, y, w)[0])
    noisy = roma.RobustLoss(noise=0.2, steps=3, radius=0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(noisy(model, x, y, w)[0], gaussian_nll(model, x, y, w)[0])


def test_adaptation_smooths_the_model_at_the_designs() -> None:
    model = small_gaussian()
    x, _, _ = batch()
    with torch.no_grad():
        labels = model.predict_mean(x)
    settings = roma.Settings(adaptation_steps=20, perturbation_radius=0.2, alpha=0.0)

    def gradient_norm(distribution) -> float:
        designs = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(distribution(designs)[0].sum(), designs)
        return float(grad.norm(dim=1).mean())

    adapted = roma.Shifted(model, roma.adapt(model, x, labels, settings))
    assert gradient_norm(adapted.distribution) < gradient_norm(model.distribution)


# ---- ICT -------------------------------------------------------------------------------------------


def test_ict_defaults_are_the_readme_command() -> None:
    settings = ict.Settings()
    assert (settings.hidden_size, settings.epochs, settings.batch_size, settings.learning_rate) == (2048, 200, 128, 0.1)
    assert settings.validation_fraction == 0.1
    assert (settings.search_steps, settings.search_lr, settings.neighbours) == (100, 0.1, 128)
    assert (settings.neighbour_noise, settings.fine_tune_lr) == (0.1, 1e-3)


def test_each_proxy_labels_once_and_learns_twice_in_the_reference_order() -> None:
    assert ict.ROUNDS == ((2, (0, 1)), (1, (0, 2)), (0, (1, 2)))
    assert sorted(student for _, students in ict.ROUNDS for student in students) == [0, 0, 1, 1, 2, 2]


def test_a_neighbour_shifts_every_feature_by_one_number() -> None:
    candidate = torch.randn(1, 24)
    points = ict.neighbourhood(candidate, 64, 0.1, torch.Generator().manual_seed(0))
    shifts = points - candidate
    assert points.shape == (64, 24)
    torch.testing.assert_close(shifts, shifts[:, :1].expand(-1, 24))
    assert 0.05 < float(shifts[:, 0].std()) < 0.2


def stacked(members: int = 3) -> StackedMLP:
    return StackedMLP(6, 8, 2, 1, activation="relu", generators=[torch.Generator().manual_seed(m) for m in range(members)])


def test_a_member_view_trains_that_member_only() -> None:
    model = stacked()
    before = [p.detach().clone() for p in model.parameters()]
    view = ict.member_view(model, 1)
    optimizer = torch.optim.Adam(view.parameters(), lr=0.1)
    x, y, _ = batch()
    ((view(x)[0] - y) ** 2).sum().backward()
    optimizer.step()
    for p, old in zip(model.parameters(), before, strict=True):
        assert not torch.equal(p[1], old[1])
        assert torch.equal(p[0], old[0]) and torch.equal(p[2], old[2])


def test_co_teaching_steps_on_all_neighbours_under_each_proxys_regularizer() -> None:
    model = stacked()
    ctx = Context(Streams(0), regularizer=IgniteConfig())
    fitted = ctx.regularizer.build()
    fitted.load_state_dict({"lambda": [0.1, 0.2, 0.3]})
    proxies = [ict.Proxy(model, m, fitted, 1e-3, ctx) for m in range(3)]
    assert [p.regularizer.lambdas() for p in proxies] == [[pytest.approx(0.1)], [pytest.approx(0.2)], [pytest.approx(0.3)]]

    settings = ict.Settings(neighbours=16)
    candidate = torch.randn(1, 6)
    points = ict.neighbourhood(candidate, 16, 0.1, torch.Generator().manual_seed(5))
    with torch.no_grad():
        first = float(((proxies[0].model(points) - proxies[2].model(points)) ** 2).sum())
    losses = ict.co_teach(proxies, candidate, settings, ctx, torch.Generator().manual_seed(5))
    assert losses["co_teaching/loss_0_from_2"] == pytest.approx(first, rel=1e-5)  # a sum over all 16, no selection
    assert len(losses) == 6
    assert all(p.regularizer.lambdas()[0] != pytest.approx(lam) for p, lam in zip(proxies, (0.1, 0.2, 0.3), strict=True))


# ---- the door extensions ---------------------------------------------------------------------------


def test_clip_norm_bounds_each_members_gradient_of_each_parameter() -> None:
    model = stacked(2)
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    model.kernels[0].grad[1] = 1e-4
    training._clip_per_member(model, 1.0)
    for p in model.parameters():
        norms = p.grad.flatten(1).norm(dim=1)
        assert norms[0] == pytest.approx(1.0, rel=1e-5)
    assert model.kernels[0].grad[1].norm() < 1e-2  # a small gradient is left as it is


def test_cosine_schedule_decays_the_learning_rate_by_epoch(monkeypatch) -> None:
    seen: list[torch.optim.Optimizer] = []
    original = training.keras_adam

    def capture(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(training, "keras_adam", capture)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    splits = draw_splits(64, 3, 8, Streams(0), "t", bootstrap=False, shared=False)
    fit(stacked(), x, y, splits, NoRegularizer(), FitSettings(4, 16, 0.1, 8, cosine_schedule=True), ict.squared_error)
    assert seen[0].param_groups[0]["lr"] == pytest.approx(0.1 * (1 + math.cos(math.pi * 3 / 4)) / 2)


# ---- both, end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["roma", "ict"])
def test_quick_run_logs_its_search(quick_run, baseline: str) -> None:
    result, logged = quick_run(baseline, "ignite", options=SMOKE[baseline])
    keys = {key for _, metrics in logged for key in metrics}
    assert ("search/predicted_mean" if baseline == "roma" else "co_teaching/predicted") in keys
    if baseline == "ict":  # each proxy ends at its best validation epoch, as grad.py keeps it
        assert {key for key in keys if key.endswith("kept_epoch")} == {f"ict/member_{m}/kept_epoch"
                                                                        for m in range(3)}
    assert np.isfinite(result.summary["final_predicted_mean"])


SPACE = """
name: roma_ict
trial:
  task: TFBind8-Exact-v0
  fidelity: quick
  seed: 0
  regularizer: ignite
variants:
  - {{baseline: [roma], baseline_options: [{roma}]}}
  - {{baseline: [ict], baseline_options: [{ict}]}}
resources: {{cpu: 1, gpu: 0}}
"""


@pytest.mark.slow
def test_a_sweep_runs_both(tmp_path, design_bench_dir) -> None:
    (tmp_path / "space.yaml").write_text(SPACE.format(roma=SMOKE["roma"], ict=SMOKE["ict"]))
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}
    completed = subprocess.run(
        ["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", "sqlite:///mlflow.db", "--output-dir", "out",
         "--num-cpus", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "roma" in completed.stdout and "ict" in completed.stdout
