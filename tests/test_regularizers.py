"""The IGNITE regularizer against an independent, functional computation of the same update."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from ignite_mbo.errors import UserError
from ignite_mbo.regularizers import IgniteConfig, build, parse_config


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).double()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(32, 5, generator=generator, dtype=torch.float64), torch.randn(32, 1, generator=generator, dtype=torch.float64)


def regularized_grads(model: nn.Module, regularizer, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    loss = ((model(x) - y) ** 2).mean()
    stats = regularizer.backward(model, loss, lambda: model(x).mean())
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, stats


def reference_update(model: nn.Module, x, y, *, lam, rho, radius):
    """∇L + λ(ρ/r)(∇G(β + r g/‖g‖) − g), computed on a dict of parameters with torch.func."""
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_grad = grad(lambda p: ((functional_call(model, p, (x,)) - y) ** 2).mean())(params)
    g_fn = grad(lambda p: functional_call(model, p, (x,)).mean())
    g = g_fn(params)
    norm = torch.sqrt(sum((v**2).sum() for v in g.values()))
    shifted = {name: params[name] + radius * g[name] / norm for name in params}
    g_hat = g_fn(shifted)
    return {name: loss_grad[name] + lam * rho / radius * (g_hat[name] - g[name]) for name in params}, float(norm)


def test_finite_difference_update_matches_independent_computation():
    model = small_model()
    x, y = batch()
    expected, norm = reference_update(model, x, y, lam=0.3, rho=0.05, radius=0.05)
    regularizer = build("ignite", initial_lambda=0.3, lambda_lr=0.0, rho=0.05, radius=0.05)
    got, stats = regularized_grads(model, regularizer, x, y)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)
    assert stats["grad_norm"] == pytest.approx(norm, rel=1e-12)
    assert stats["sharpness"] == pytest.approx(0.05 * norm, rel=1e-12)


def test_finite_difference_and_exact_hvp_agree_for_small_radius():
    x, y = batch()
    fd_model, exact_model = small_model(), small_model()
    fd, _ = regularized_grads(fd_model, build("ignite", initial_lambda=50.0, radius=1e-5), x, y)
    exact, _ = regularized_grads(exact_model, build("ignite", initial_lambda=50.0, hvp="exact"), x, y)
    plain_model = small_model()
    plain, _ = regularized_grads(plain_model, build("none"), x, y)
    assert any(not torch.allclose(exact[name], plain[name]) for name in fd)  # the penalty is not negligible
    for name in fd:
        torch.testing.assert_close(fd[name], exact[name], rtol=1e-3, atol=1e-6)


def test_parameters_are_restored_bit_for_bit():
    model = small_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x, y = batch()
    regularized_grads(model, build("ignite2"), x, y)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name])


def test_lambda_dual_ascent_and_projection():
    model = small_model()
    x, y = batch()
    _, norm = reference_update(model, x, y, lam=0.0, rho=0.05, radius=0.05)
    regularizer = build("ignite", initial_lambda=0.01, lambda_lr=0.5, epsilon=0.001)
    _, stats = regularized_grads(model, regularizer, x, y)
    assert stats["lambda"] == pytest.approx(0.01 + 0.5 * (0.05 * norm - 0.001))

    projected = build("ignite", initial_lambda=0.01, lambda_lr=0.5, epsilon=100.0)
    unprojected = build("ignite", initial_lambda=0.01, lambda_lr=0.5, epsilon=100.0, project_lambda=False)
    assert regularized_grads(small_model(), projected, x, y)[1]["lambda"] == 0.0
    assert regularized_grads(small_model(), unprojected, x, y)[1]["lambda"] < 0.0


def test_ignite2_keeps_lambda_fixed_at_published_value():
    x, y = batch()
    regularizer = build("ignite2")
    for _ in range(3):
        model = small_model()
        _, stats = regularized_grads(model, regularizer, x, y)
    assert stats["lambda"] == 0.01
    assert regularizer.state_dict() == {"lambda": 0.01}


def test_none_is_plain_backward_and_gradients_accumulate_like_backward():
    x, y = batch()
    reference = small_model()
    ((reference(x) - y) ** 2).mean().backward()
    model = small_model()
    got, _ = regularized_grads(model, build("none"), x, y)
    for name, p in reference.named_parameters():
        assert torch.equal(got[name], p.grad)
    # a second call adds to .grad, as loss.backward() would
    again, _ = regularized_grads(model, build("ignite", initial_lambda=0.0), x, y)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(again[name], 2 * p.grad)


class WithUnusedHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = small_model()
        self.unused = nn.Linear(3, 3).double()  # never called in forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_parameters_without_gradient_are_skipped():
    model = WithUnusedHead()
    x, y = batch()
    _, stats = regularized_grads(model, build("ignite"), x, y)
    assert model.unused.weight.grad is None
    assert stats["grad_norm"] > 0


def test_published_defaults():
    ignite, ignite2 = parse_config("ignite"), parse_config("ignite2")
    assert (ignite.epsilon, ignite.initial_lambda, ignite.lambda_lr, ignite.rho, ignite.radius) == (0.1, 1e-3, 1e-3, 0.05, 0.05)
    assert (ignite2.initial_lambda, ignite2.lambda_lr, ignite2.rho, ignite2.radius) == (0.01, 0.0, 0.2, 0.2)
    assert isinstance(ignite, IgniteConfig) and ignite.hvp == "finite_difference" and ignite.project_lambda


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("sam", {}, "unknown regularizer 'sam'"),
        ("ignite", {"rho": -1.0}, "rho"),
        ("ignite", {"epsilon": "big"}, "epsilon"),
        ("ignite", {"hvp": "magic"}, "hvp"),
        ("none", {"rho": 0.1}, "unknown option"),
        ("ignite2", {"lambda_lr": 0.1}, "lambda_lr"),
    ],
)
def test_bad_hyperparameters_give_one_line_errors(name, options, needle):
    with pytest.raises(UserError) as error:
        build(name, **options)
    assert needle in str(error.value) and "\n" not in str(error.value)
