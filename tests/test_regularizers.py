"""The IGNITE regularizer against an independent, functional computation of the same update."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from ignite_mbo.baselines import names as baseline_names
from ignite_mbo.errors import UserError
from ignite_mbo.regularizers import IgniteConfig, build, parse_config


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).double()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(32, 5, generator=generator, dtype=torch.float64),
            torch.randn(32, 1, generator=generator, dtype=torch.float64))


def regularized_grads(model: nn.Module, regularizer, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    stats = regularizer.backward(model, lambda: (((model(x) - y) ** 2).mean(), None), lambda: model(x).mean())
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
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-9)  # FD amplifies rounding
    assert float(stats["grad_norm"]) == pytest.approx(norm, rel=1e-12)
    assert float(stats["sharpness"]) == pytest.approx(0.05 * norm, rel=1e-12)


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
    regularized_grads(model, regularizer, x, y)
    assert regularizer.lambdas() == [pytest.approx(0.01 + 0.5 * (0.05 * norm - 0.001))]

    paper = build("ignite", initial_lambda=0.01, lambda_lr=0.5, epsilon=100.0)  # the reference lets λ go negative
    projected = build("ignite", initial_lambda=0.01, lambda_lr=0.5, epsilon=100.0, project_lambda=True)
    regularized_grads(small_model(), paper, x, y)
    regularized_grads(small_model(), projected, x, y)
    assert paper.lambdas()[0] < 0.0 and projected.lambdas() == [0.0]


def test_ignite2_keeps_lambda_fixed_at_published_value():
    x, y = batch()
    regularizer = build("ignite2")
    for _ in range(3):
        regularized_grads(small_model(), regularizer, x, y)
    assert regularizer.lambdas() == [pytest.approx(0.01)]
    assert regularizer.state_dict() == {"lambda": [pytest.approx(0.01)]}


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
    assert float(stats["grad_norm"]) > 0


def test_published_defaults():
    ignite, ignite2 = parse_config("ignite"), parse_config("ignite2")
    assert (ignite.epsilon, ignite.initial_lambda, ignite.lambda_lr, ignite.rho, ignite.radius) == (0.1, 1e-3, 1e-3, 0.05, 0.05)
    assert (ignite2.initial_lambda, ignite2.lambda_lr, ignite2.rho, ignite2.radius) == (0.01, 0.0, 0.2, 0.2)
    assert isinstance(ignite, IgniteConfig) and ignite.hvp == "finite_difference" and not ignite.project_lambda


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("magic", {}, "unknown regularizer 'magic'"),
        ("ignite", {"rho": -1.0}, "rho"),
        ("ignite", {"epsilon": "big"}, "epsilon"),
        ("ignite", {"hvp": "magic"}, "hvp"),
        ("none", {"rho": 0.1}, "unknown option"),
        ("ignite2", {"lambda_lr": 0.1}, "lambda_lr"),
        ("ignite", {"radius": 1e300}, "radius"),
        ("ignite", {"rho": float("nan")}, "rho"),
        ("ignite", {"initial_lambda": float("inf")}, "initial_lambda"),
    ],
)
def test_bad_hyperparameters_give_one_line_errors(name, options, needle):
    with pytest.raises(UserError) as error:
        build(name, **options)
    assert needle in str(error.value) and "\n" not in str(error.value)


# ---- stacked members: each member gets exactly its own regularized gradient and its own λ ----------

def stacked_pair() -> tuple[nn.Module, list[nn.Module]]:
    """A 2-member GaussianEnsemble and the same two members as separate 1-member models (float64)."""
    from ignite_mbo.models import GaussianEnsemble

    def generators():
        return [torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)]

    stacked = GaussianEnsemble(5, 8, 2, generators=generators()).double()
    singles = [GaussianEnsemble(5, 8, 2, generators=[g]).double() for g in generators()]
    return stacked, singles


@pytest.mark.parametrize("hvp", ["finite_difference", "exact"])
def test_stacked_members_get_their_own_gradients_and_lambdas(hvp):
    from ignite_mbo.models import gaussian_nll

    stacked, singles = stacked_pair()
    x, y = batch()
    xs = torch.stack([x, x.flip(0)])  # each member its own batch
    ys = torch.stack([y, y.flip(0)])
    weights = torch.rand(2, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    options = dict(initial_lambda=0.5, lambda_lr=0.1, epsilon=0.01, hvp=hvp)

    regularizer = build("ignite", **options)
    regularizer.backward(stacked, lambda: gaussian_nll(stacked, xs, ys, weights),
                         lambda: stacked.predict_mean(xs).mean(dim=(1, 2)))
    for m, single in enumerate(singles):
        own = build("ignite", **options)
        own.backward(single, lambda m=m, single=single: (gaussian_nll(single, xs[m:m + 1], ys[m:m + 1],
                                                                        weights[m:m + 1])[0], None),
                     lambda m=m, single=single: single.predict_mean(xs[m:m + 1]).mean(dim=(1, 2)))
        for (name, p), q in zip(stacked.named_parameters(), single.parameters(), strict=True):
            torch.testing.assert_close(p.grad[m:m + 1], q.grad, rtol=1e-9, atol=1e-12, msg=name)
        assert regularizer.lambdas()[m] == pytest.approx(own.lambdas()[0], rel=1e-9)


def test_shared_forward_gives_the_same_gradient_as_a_second_forward():
    from ignite_mbo.models import gaussian_nll

    stacked, _ = stacked_pair()
    x, y = batch()
    grads = []
    for share in (True, False):
        model = copy.deepcopy(stacked)
        def loss(model=model, share=share):
            value, mean = gaussian_nll(model, x, y, torch.ones(2, 32, dtype=torch.float64))
            return value, mean if share else None

        build("ignite", initial_lambda=0.5).backward(model, loss, lambda model=model: model.predict_mean(x).mean(dim=(1, 2)))
        grads.append([p.grad for p in model.parameters()])
    for shared, separate in zip(*grads, strict=True):
        torch.testing.assert_close(shared, separate, rtol=1e-12, atol=1e-14)


# ---- SAM, L1, L2 and BOSS against independent computations (torch.func, float64) -------------------

def as_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def mse_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda p: ((functional_call(model, p, (x,)) - y) ** 2).mean()


def assert_grads_close(got: dict, expected: dict, **tolerance) -> None:
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], **(tolerance or {"rtol": 1e-9, "atol": 1e-12}), msg=name)


def test_sam_is_the_loss_gradient_at_the_ascent_point():
    model = small_model()
    x, y = batch()
    params, loss = as_dict(model), mse_of(model, x, y)
    g = grad(loss)(params)
    norm = torch.sqrt(sum((v**2).sum() for v in g.values()))
    expected = grad(loss)({name: params[name] + 0.2 * g[name] / norm for name in params})
    got, stats = regularized_grads(model, build("sam", rho=0.2), x, y)
    assert_grads_close(got, expected)
    assert float(stats["grad_norm"]) == pytest.approx(float(norm), rel=1e-12)
    assert any(not torch.allclose(got[name], g[name]) for name in g)  # the ascent step matters
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), params[name])  # β restored bit for bit


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_weight_penalties_add_their_gradient(name):
    model = small_model()
    x, y = batch()
    params, loss = as_dict(model), mse_of(model, x, y)
    power = 1 if name == "l1" else 2
    expected = grad(lambda p: loss(p) + 0.3 * sum((v.abs() ** power).sum() for v in p.values()))(params)
    got, _ = regularized_grads(model, build(name, coefficient=0.3), x, y)
    assert_grads_close(got, expected)


SIGMA = 0.1
BOSS_OPTIONS = dict(sensitivity_weight=2.0, alpha=0.1, n_gamma=7, omega_mu_init=5e-4, omega_sigma_init=SIGMA,
                    omega_sigma_upper=1.0)
"""A strong, wide perturbation, so that the penalty moves the gradient visibly."""


def test_boss_gradient_matches_independent_computation():
    """The reference differentiates the penalty exactly (double backprop): our ``hvp="exact"``."""
    model = small_model()
    x, y = batch()
    params, loss = as_dict(model), mse_of(model, x, y)
    regularizer = build("boss", hvp="exact", **BOSS_OPTIONS)
    got, _ = regularized_grads(model, regularizer, x, y)
    gamma = 5e-4 + SIGMA * regularizer.noise[0, 0]  # step 0's draws, from ω₀ = (μ₀, σ₀)

    def mean(p):
        return functional_call(model, p, (x,)).mean()

    def penalty(p):
        s = sum(v.sum() for v in grad(mean)(p).values())
        return torch.clamp((gamma * s / (0.1 * mean(p))) ** 2, max=1.0).mean()

    expected = grad(lambda p: loss(p) + 2.0 * penalty(p))(params)
    assert_grads_close(got, expected, rtol=1e-8, atol=1e-11)
    plain = grad(loss)(params)
    assert any(not torch.allclose(expected[name], plain[name]) for name in plain)


def test_boss_finite_difference_approaches_exact():
    x, y = batch()
    exact, _ = regularized_grads(small_model(), build("boss", hvp="exact", **BOSS_OPTIONS), x, y)
    fd, _ = regularized_grads(small_model(), build("boss", radius=1e-5, **BOSS_OPTIONS), x, y)
    plain, _ = regularized_grads(small_model(), build("none"), x, y)
    assert any(not torch.allclose(exact[name], plain[name]) for name in plain)
    assert_grads_close(fd, exact, rtol=1e-3, atol=1e-6)


def test_boss_omega_step_matches_an_adam_fit_of_phi():
    """Φ takes 5 Adam steps (torch.optim.Adam here) on this step's (γ, z); ω ascends E[Φ(γ)], clipped."""
    model = small_model()
    x, y = batch()
    regularizer = build("boss", **BOSS_OPTIONS)
    regularizer._start(1, torch.device("cpu"), torch.float64)
    phi = [t.detach().clone().requires_grad_(True) for t in regularizer.phi]
    gamma = 5e-4 + SIGMA * regularizer.noise[0, 0]
    s = sum(g.sum() for g in torch.autograd.grad(model(x).mean(), list(model.parameters())))
    with torch.no_grad():
        sensitive = ((gamma * s).abs() > (0.1 * model(x).mean()).abs()).double()
    assert 0 < sensitive.sum() < len(sensitive)  # both classes present: Φ has something to fit

    def phi_of(g):
        return torch.sigmoid(torch.relu(g[:, None] @ phi[0][0] + phi[1][0]) @ phi[2][0] + phi[3][0])[:, 0]

    adam = torch.optim.Adam(phi, lr=1e-3, eps=1e-7)
    for _ in range(5):
        adam.zero_grad()
        torch.nn.functional.binary_cross_entropy(phi_of(gamma), sensitive).backward()
        adam.step()
    probe = gamma.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(phi_of(probe).sum(), probe)
    mu = min(max(5e-4 + 1e-2 * float(slope.mean()), -1e-3), 1e-3)
    sigma = min(max(SIGMA + 1e-2 * float((slope * (gamma - 5e-4) / SIGMA).mean()), 1e-5), 1.0)

    regularized_grads(model, regularizer, x, y)
    for mine, reference in zip(regularizer.phi, phi, strict=True):
        torch.testing.assert_close(mine.detach(), reference.detach(), rtol=1e-7, atol=1e-10)
    assert regularizer.omegas() == [(pytest.approx(mu, rel=1e-9), pytest.approx(sigma, rel=1e-9))]


def test_boss_state_round_trips():
    x, y = batch()
    first = build("boss", **BOSS_OPTIONS)
    regularized_grads(small_model(), first, x, y)
    second = build("boss", **BOSS_OPTIONS)
    second.load_state_dict(first.state_dict())
    assert second.state_dict() == first.state_dict()
    a, _ = regularized_grads(small_model(), first, x, y)
    b, _ = regularized_grads(small_model(), second, x, y)
    assert_grads_close(a, b, rtol=1e-6, atol=1e-9)  # the state holds float64 values as Python floats


@pytest.mark.parametrize("name", ["sam", "l1", "l2", "boss", "boss-exact"])
def test_stacked_members_get_their_own_perturbation_and_state(name):
    """Each member of a stacked ensemble gets exactly the gradient it would get alone (BOSS: its own ω, Φ, draws)."""
    from ignite_mbo.models import gaussian_nll

    stacked, singles = stacked_pair()
    x, y = batch()
    xs, ys = torch.stack([x, x.flip(0)]), torch.stack([y, y.flip(0)])
    weights = torch.rand(2, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    name, options = ("boss", {**BOSS_OPTIONS, "hvp": name.removeprefix("boss-")}) if name.startswith("boss-") else (
        name, BOSS_OPTIONS if name == "boss" else {})
    regularizer = build(name, **options)
    if name == "boss":
        regularizer._start(2, torch.device("cpu"), torch.float64)
        start = {"noise": regularizer.noise.clone(), "phi": [t.detach().clone() for t in regularizer.phi]}
    regularizer.backward(stacked, lambda: gaussian_nll(stacked, xs, ys, weights),
                         lambda: stacked.predict_mean(xs).mean(dim=(1, 2)))
    for m, single in enumerate(singles):
        own = build(name, **options)
        if name == "boss":
            own._start(1, torch.device("cpu"), torch.float64)
            own.noise = start["noise"][:, m:m + 1].clone()
            own.phi = [t[m:m + 1].clone().requires_grad_(True) for t in start["phi"]]
        pick = slice(m, m + 1)
        own.backward(single, lambda single=single, pick=pick: gaussian_nll(single, xs[pick], ys[pick], weights[pick]),
                     lambda single=single, pick=pick: single.predict_mean(xs[pick]).mean(dim=(1, 2)))
        for (parameter, p), q in zip(stacked.named_parameters(), single.parameters(), strict=True):
            torch.testing.assert_close(p.grad[m:m + 1], q.grad, rtol=1e-9, atol=1e-12, msg=parameter)
        if name == "boss":
            assert regularizer.omegas()[m] == pytest.approx(own.omegas()[0], rel=1e-9)


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [("sam", {"rho": 0.0}, "rho"), ("l1", {"coefficient": -1.0}, "coefficient"), ("l2", {"rho": 0.1}, "unknown option"),
     ("boss", {"n_gamma": 0}, "n_gamma"), ("boss", {"omega_sigma_lower": 0.5}, "omega_sigma_lower")],
)
def test_new_regularizers_reject_bad_hyperparameters(name, options, needle):
    with pytest.raises(UserError) as error:
        build(name, **options)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_published_defaults_of_the_rivals():
    sam, l1, l2, boss = (parse_config(name) for name in ("sam", "l1", "l2", "boss"))
    assert sam.rho == 0.05 and l1.coefficient == 0.01 and l2.coefficient == 0.01
    assert (boss.sensitivity_weight, boss.alpha, boss.n_gamma, boss.lr_omega) == (1e-3, 0.1, 100, 1e-2)
    assert (boss.omega_mu_init, boss.omega_sigma_init, boss.omega_mu_bound) == (0.0, 1e-3, 1e-3)
    assert (boss.omega_sigma_lower, boss.omega_sigma_upper) == (1e-5, 1e-2)


# ---- every regularizer through every baseline's one door (quick fidelity, shrunk to seconds) --------

@pytest.mark.parametrize("name", ["sam", "l1", "l2", "boss"])
@pytest.mark.parametrize("baseline", baseline_names())
def test_every_baseline_trains_under_every_rival(quick_run, tf_bind_8, baseline, name):
    from baseline_checks import SMOKE, assert_valid

    result, logged = quick_run(baseline, name, options=SMOKE[baseline])
    assert_valid(result, tf_bind_8, baseline)
    assert all(type(s.regularizer).__name__ == type(build(name)).__name__ for s in result.proposal.surrogates)
    assert any(key.endswith("train_loss") for _, metrics in logged for key in metrics)


def test_paper_table2_spaces_pair_every_rival_with_none_by_seed():
    from pathlib import Path

    from ignite_mbo.platform.spaces import load_spec

    folder = Path(__file__).resolve().parents[1] / "search_spaces"
    for file, rivals in [("paper_table2.yaml", ["ignite", "sam", "l1", "l2"]),
                         ("paper_table2_boss.yaml", ["ignite", "sam", "l1", "l2", "boss"])]:
        configs = load_spec(folder / file).trials()
        assert len(configs) == 2 * 2 * (1 + len(rivals)) * 16
        assert {c.baseline for c in configs} == {"grad-ascent", "reinforce"} and {c.fidelity for c in configs} == {"full"}
        cells = {(c.task, c.baseline, c.regularizer.name): sorted(d.seed for d in configs if
                 (d.task, d.baseline, d.regularizer.name) == (c.task, c.baseline, c.regularizer.name)) for c in configs}
        assert {name for _, _, name in cells} == {"none", *rivals}
        assert set(map(tuple, cells.values())) == {tuple(range(16))}
        assert all(c.regularizer == parse_config(c.regularizer.name) for c in configs)  # published settings
