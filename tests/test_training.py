"""The training loop: a stacked ensemble trains exactly as its members one after another, the data
layout follows the reference pipeline, and a non-finite loss fails the fit within its epoch."""

from __future__ import annotations

import pytest
import torch

from ignite_mbo.models import GaussianEnsemble, gaussian_nll
from ignite_mbo.regularizers import build
from ignite_mbo.streams import Streams
from ignite_mbo.training import FitSettings, NonFiniteLossError, draw_splits, fit

ROWS, FEATURES = 240, 6
X = torch.randn(ROWS, FEATURES, generator=torch.Generator().manual_seed(0))
Y = X[:, :1] * 2 - X[:, 1:2] + 0.1 * torch.randn(ROWS, 1, generator=torch.Generator().manual_seed(1))
TOKENS = torch.randint(4, (ROWS, 5), generator=torch.Generator().manual_seed(2))
SETTINGS = FitSettings(epochs=3, batch_size=32, learning_rate=1e-2, validation_size=40)


def ensemble(members: list[int], seed: int = 0, embedding: tuple[int, int] | None = None) -> GaussianEnsemble:
    """The given members of the ensemble whose member m is initialised from stream ``init/m``."""
    streams = Streams(seed)
    generators = {m: streams.torch(f"init/{m}") for m in range(max(members) + 1)}
    inputs = 5 if embedding else FEATURES
    return GaussianEnsemble(inputs, 16, 2, generators=[generators[m] for m in members], embedding=embedding)


def train(model, x, splits, regularizer: str):
    logged: list[tuple[int, dict[str, float]]] = []
    reg = build(regularizer)
    history = fit(model, x, Y, splits, reg, SETTINGS, gaussian_nll, log=lambda m, s: logged.append((s, m)))
    return reg, history, logged


@pytest.mark.parametrize("shared", [True, False], ids=["shared pipeline", "own pipelines"])
@pytest.mark.parametrize("regularizer", ["none", "ignite", "sam", "l1", "l2"])
@pytest.mark.parametrize("inputs", ["features", "tokens"])
def test_stacked_ensemble_equals_member_by_member_training(shared, regularizer, inputs):
    x, embedding = (X, None) if inputs == "features" else (TOKENS, (4, 3))
    splits = draw_splits(ROWS, 3, SETTINGS.validation_size, Streams(7), "fit", bootstrap=True, shared=shared)
    stacked = ensemble([0, 1, 2], embedding=embedding)
    stacked_reg, _, stacked_log = train(stacked, x, splits, regularizer)
    with torch.no_grad():
        stacked_predictions = stacked.predict_mean(x)
    for m in range(3):
        single = ensemble([m], embedding=embedding)
        reg, _, log = train(single, x, splits.member(m), regularizer)
        for (name, p), q in zip(stacked.named_parameters(), single.parameters(), strict=True):
            torch.testing.assert_close(p[m:m + 1], q, rtol=2e-4, atol=2e-5, msg=f"member {m} {name}")
        if regularizer == "ignite":
            assert stacked_reg.lambdas()[m] == pytest.approx(reg.lambdas()[0], rel=1e-4)
            trajectory = [metrics[f"member_{m}/lambda"] for _, metrics in stacked_log]
            assert trajectory == pytest.approx([metrics["lambda"] for _, metrics in log], rel=1e-4)
        with torch.no_grad():
            torch.testing.assert_close(stacked_predictions[m], single.predict_mean(x)[0], rtol=2e-4, atol=2e-5)


def test_bootstrap_counts_and_pipelines():
    shared = draw_splits(100, 4, 20, Streams(0), "a", bootstrap=True, shared=True)
    own = draw_splits(100, 4, 20, Streams(0), "b", bootstrap=True, shared=False)
    for splits in (shared, own):
        assert splits.training.shape == (4, 80) and splits.validation.shape == (4, 20)
        assert torch.equal(splits.weights, splits.weights.round()) and (splits.weights >= 0).all()
        assert (splits.weights.sum(dim=1) == 80).all()  # bincount of 80 draws over the 80 training rows
        assert (splits.weights == 0).any()  # about a third of the rows are left out of each member
        for m in range(4):  # every row is either validation or training, once
            assert sorted(torch.cat([splits.validation[m], splits.training[m]]).tolist()) == list(range(100))
    assert shared.shared and not own.shared
    assert len({tuple(row.tolist()) for row in shared.weights}) == 4  # each member its own counts
    assert len({tuple(row.tolist()) for row in own.validation}) == 4  # each member its own split
    plain = draw_splits(100, 1, 20, Streams(0), "c", bootstrap=False, shared=True)
    assert (plain.weights == 1).all()


def test_zero_weight_rows_still_count_in_g_but_not_in_the_loss():
    model = ensemble([0])
    x, y = X[:8], Y[:8]
    weights = torch.tensor([[1.0, 0, 0, 2, 0, 1, 0, 0]])
    loss, mean = gaussian_nll(model, x, y, weights)
    kept = torch.tensor([0, 3, 3, 5])
    expected, _ = gaussian_nll(model, x[kept], y[kept], torch.ones(1, 4))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(mean, model.predict_mean(x).mean(dim=(1, 2)))  # all 8 rows


def test_a_nan_loss_fails_the_fit_in_its_epoch():
    calls = {"n": 0}

    def explodes(model, x, y, w):
        calls["n"] += 1
        loss, mean = gaussian_nll(model, x, y, w)
        return (loss * float("nan") if calls["n"] == 9 else loss), mean

    splits = draw_splits(ROWS, 1, SETTINGS.validation_size, Streams(0), "nan", bootstrap=False, shared=True)
    epochs = []
    with pytest.raises(NonFiniteLossError, match="epoch 1"):  # batch 9 of 7 per epoch is in epoch 1
        fit(ensemble([0]), X, Y, splits, build("ignite"), SETTINGS, explodes, log=lambda m, s: epochs.append(s))
    assert epochs == [0]


def test_streams_are_named_distinct_and_reproducible():
    streams = Streams(3)
    first = streams.seed("a/0")
    assert first != streams.seed("a/1")
    assert Streams(3).seed("a/0") == first and Streams(4).seed("a/0") != first
    with pytest.raises(RuntimeError, match="already used"):
        streams.seed("a/0")
    with pytest.raises(ValueError):
        Streams(2**32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by benchmarks/device_check.sh)")
@pytest.mark.parametrize("regularizer", ["none", "ignite", "ignite2", "sam", "l1", "l2", "boss"])
def test_cuda_graph_step_equals_the_eager_step(monkeypatch, recwarn, regularizer):
    """Every regularizer's step captures (no host synchronisation inside) and replays the eager numbers."""
    device = torch.device("cuda")
    splits = draw_splits(ROWS, 2, SETTINGS.validation_size, Streams(7), "fit", bootstrap=True, shared=True)
    results = []
    for graphs in ("0", "1"):
        monkeypatch.setenv("IGNITE_MBO_CUDA_GRAPHS", graphs)
        model = ensemble([0, 1]).to(device)
        reg = build(regularizer)
        history = fit(model, X, Y, splits, reg, SETTINGS, gaussian_nll)
        results.append((model, reg, history))
    (eager, eager_reg, eager_history), (graphed, graphed_reg, graphed_history) = results
    for p, q in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert not [w for w in recwarn if "CUDA graph capture failed" in str(w.message)]
    assert graphed_reg.lambdas() == pytest.approx(eager_reg.lambdas(), rel=1e-4)
    if regularizer == "boss":
        assert graphed_reg.omegas() == pytest.approx(eager_reg.omegas(), rel=1e-4)
    assert graphed_history[-1]["train_loss"] == pytest.approx(eager_history[-1]["train_loss"], rel=1e-4)


def test_embedded_first_layer_is_embedding_flatten_dense():
    """The per-position product tables compute Keras' Dense(Flatten(Embedding(tokens))) and its gradients."""
    model = ensemble([0, 1], embedding=(4, 3)).double()
    tokens = TOKENS[:16]
    fast = model._embedded_first_layer(tokens)  # (members, hidden, batch)
    (d_table, d_kernel) = torch.autograd.grad(fast.square().sum(), [model.embedding, model.kernels[0]])
    embedded = model.embedding[torch.arange(2).view(2, 1, 1), tokens.unsqueeze(0)].flatten(2)  # (members, batch, 15)
    naive = (embedded @ model.kernels[0] + model.biases[0].transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(fast, naive)
    (n_table, n_kernel) = torch.autograd.grad(naive.square().sum(), [model.embedding, model.kernels[0]])
    torch.testing.assert_close(d_table, n_table)
    torch.testing.assert_close(d_kernel, n_kernel)


def test_keep_best_ends_each_member_at_its_epoch_of_best_validation_correlation():
    """ICT's proxies: each member ends with the weights (and λ) of its epoch of highest validation Pearson
    correlation, not its last; the kept epoch is logged."""
    settings = FitSettings(epochs=8, batch_size=32, learning_rate=0.3, validation_size=40, keep_best=True)
    splits = draw_splits(ROWS, 3, settings.validation_size, Streams(7), "fit", bootstrap=False, shared=False)
    model, reg, logged = ensemble([0, 1, 2]), build("ignite"), []
    fit(model, X, Y, splits, reg, settings, gaussian_nll, log=lambda m, s: logged.append((s, m)))
    kept = logged[-1][1]
    for m in range(3):
        scores = [metrics[f"member_{m}/val_pearson"] for _, metrics in logged[:-1]]
        best = max(range(len(scores)), key=lambda epoch: scores[epoch] if scores[epoch] == scores[epoch] else -2)
        assert kept[f"member_{m}/kept_epoch"] == best
        with torch.no_grad():
            prediction = model.predict_mean(X[splits.validation[m]])[m, :, 0]
        now = torch.corrcoef(torch.stack([prediction, Y[splits.validation[m], 0]]))[0, 1]
        assert float(now) == pytest.approx(scores[best], abs=1e-5)
        assert reg.lambdas()[m] == pytest.approx(logged[best][1][f"member_{m}/lambda"])
    assert any(kept[f"member_{m}/kept_epoch"] < settings.epochs - 1 for m in range(3))  # else nothing was tested
