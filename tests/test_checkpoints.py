"""The checkpoint store, in process, through ``Context.fit``: a retried trial restores the fits an
earlier attempt finished (by name) and trains the rest, with the same results as one clean attempt.

Each attempt is two fits in a row, ``first`` and ``second``, of a 2-member ensemble on toy data; a
retry is a fresh ``CheckpointStore`` on the same folder and fresh random streams from the same seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from ignite_mbo import checkpoints
from ignite_mbo.baselines.base import Context, TrainedSurrogate
from ignite_mbo.baselines.coms import ConservativeLoss
from ignite_mbo.checkpoints import CheckpointStore
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.models import GaussianEnsemble, StackedMLP, gaussian_nll
from ignite_mbo.progress import EpochMetrics
from ignite_mbo.regularizers import IgniteConfig
from ignite_mbo.streams import Streams
from ignite_mbo.training import FitSettings, draw_splits

X = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
Y = X[:, :1] * 2 + 0.1 * torch.randn(300, 1, generator=torch.Generator().manual_seed(1))
SPACE = DesignSpace((6,), None)
FIT = FitSettings(epochs=3, batch_size=64, learning_rate=1e-2, validation_size=50)
NAMES = ("first", "second")


@dataclass
class Attempt:
    surrogates: list[TrainedSurrogate]
    losses: list[Any]
    logged: list[tuple[int, dict[str, float]]]


def gaussian_model(ctx: Context, name: str) -> GaussianEnsemble:
    return GaussianEnsemble(6, 16, 2, generators=ctx.generators(f"{name}/init", 2))


class Stopped(Exception):
    """The attempt was stopped (a lost node, a signal) while it trained."""


def attempt(store: CheckpointStore | None, fit: FitSettings = FIT, loss: Callable[[], Any] = lambda: gaussian_nll,
            model: Callable[[Context, str], torch.nn.Module] = gaussian_model,
            stop_at: tuple[str, int] | None = None) -> Attempt:
    """One attempt of a trial: the two fits, each with a fresh ``loss()``, logged through the store;
    ``stop_at=(name, epoch)`` stops it as fit ``name`` logs that epoch (before any save at its end)."""
    logged: list[tuple[int, dict[str, float]]] = []

    def log(metrics: dict[str, float], step: int) -> None:
        if stop_at and isinstance(metrics, EpochMetrics) and step == stop_at[1] and f"{stop_at[0]}/" in next(iter(metrics)):
            raise Stopped
        logged.append((step, dict(metrics)))

    ctx = Context(Streams(0), regularizer=IgniteConfig(epsilon=0.01), log=store.wrap_log(log) if store else log)
    surrogates, losses = [], []
    with store.activate() if store else nullcontext():
        for name in NAMES:
            network = model(ctx, name)
            members = getattr(network, "num_members", 1)
            splits = draw_splits(len(X), members, fit.validation_size, ctx.streams, name, bootstrap=True,
                                 shared=False)
            losses.append(loss())
            surrogates.append(ctx.fit(name, network, SPACE, X, Y, fit, splits, loss=losses[-1]))
    return Attempt(surrogates, losses, logged)


def assert_same(got: Attempt, expected: Attempt) -> None:
    """Same weights, λs, histories and logged metrics (each logged once)."""
    for a, b in zip(got.surrogates, expected.surrogates, strict=True):
        state_a, state_b = a.model.state_dict(), b.model.state_dict()
        assert state_a.keys() == state_b.keys()
        assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
        assert a.regularizer.lambdas() == b.regularizer.lambdas() and len(a.regularizer.lambdas()) == 2
        assert a.history == b.history
    assert got.logged == expected.logged


def drop(folder, name: str) -> None:
    """Forget fit ``name`` in the folder's state, as if the attempt had died before saving it."""
    state = json.loads((folder / "state.json").read_text())
    del state["surrogates"][name]
    (folder / "state.json").write_text(json.dumps(state))


def test_restored_fits_equal_trained_ones_and_log_the_same_metrics_once(tmp_path) -> None:
    reference = attempt(None)
    saves: list[str] = []
    first = CheckpointStore(tmp_path, on_save=saves.append)
    assert_same(attempt(first), reference)
    assert (first.restored, first.trained) == (0, 2) and saves == ["first trained", "second trained"]

    retry = CheckpointStore(tmp_path)  # a fresh store on the same folder
    again = attempt(retry)
    assert (retry.restored, retry.trained) == (2, 0)
    assert_same(again, reference)  # weights, λ, history, and the metrics replayed exactly once
    assert all(not surrogate.model.training for surrogate in again.surrogates)


def test_a_half_done_attempt_restores_the_first_fit_and_trains_the_second(tmp_path) -> None:
    reference = attempt(None)
    attempt(CheckpointStore(tmp_path))
    drop(tmp_path, "second")
    retry = CheckpointStore(tmp_path)
    assert_same(attempt(retry), reference)  # named streams: training "second" needs no RNG state of "first"
    assert (retry.restored, retry.trained) == (1, 1)


LONG_FIT = FitSettings(epochs=5, batch_size=64, learning_rate=1e-2, validation_size=50, cosine_schedule=True)
KEEP_BEST = FitSettings(epochs=5, batch_size=64, learning_rate=0.3, validation_size=50, keep_best=True)


@pytest.mark.parametrize("fit", [LONG_FIT, KEEP_BEST], ids=["cosine", "keep best"])
def test_a_fit_stopped_midway_goes_on_from_its_last_save_with_the_same_result(fit, tmp_path, monkeypatch) -> None:
    """Saved between epochs (here after every one), a stopped fit resumes where it was saved: same
    weights, λ, Adam state, minibatch orders and best epochs so far, so the same result and log as an
    unbroken attempt."""
    monkeypatch.setattr(checkpoints, "PARTIAL_SAVE_EVERY_S", 0.0)
    reference = attempt(None, fit=fit)
    if fit.keep_best:  # a member of "second" kept an epoch before the stop, which the resumed fit must remember
        assert min(value for key, value in reference.logged[-1][1].items() if key.endswith("kept_epoch")) < 3
    with pytest.raises(Stopped):
        attempt(CheckpointStore(tmp_path), fit=fit, stop_at=("second", 3))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["partial"]["second"]["epochs_done"] == 3 and state["cpu_time_s"] > 0
    assert (tmp_path / "second.partial.pt").is_file()

    retry = CheckpointStore(tmp_path)
    assert retry.cpu_time_before == state["cpu_time_s"]  # the stopped attempt's cost is kept
    resumed = attempt(retry, fit=fit)
    assert_same(resumed, reference)
    assert (retry.restored, retry.trained) == (1, 1)
    assert not (tmp_path / "second.partial.pt").exists()  # the finished fit replaces its partial save
    assert json.loads((tmp_path / "state.json").read_text())["partial"] == {}


def test_a_fit_is_saved_midway_only_when_the_interval_has_passed(tmp_path) -> None:
    with pytest.raises(Stopped):  # the default interval (minutes) never passes in this toy fit
        attempt(CheckpointStore(tmp_path), fit=LONG_FIT, stop_at=("second", 3))
    assert json.loads((tmp_path / "state.json").read_text())["partial"] == {}


def test_a_changed_call_is_trained_again(tmp_path) -> None:
    attempt(CheckpointStore(tmp_path))
    retry = CheckpointStore(tmp_path)
    changed = attempt(retry, fit=FitSettings(epochs=2, batch_size=64, learning_rate=1e-2, validation_size=50))
    assert (retry.restored, retry.trained) == (0, 2)
    assert [len(surrogate.history) for surrogate in changed.surrogates] == [2, 2]


def conservative_loss() -> ConservativeLoss:
    return ConservativeLoss(initial_alpha=0.1, alpha_lr=0.01, overestimation_limit=2.0, particle_lr=0.1,
                            particle_steps=2)


def forward_model(ctx: Context, name: str) -> StackedMLP:
    return StackedMLP(6, 16, 2, 1, activation="relu", generators=ctx.generators(f"{name}/init", 1))


def test_a_stateful_loss_with_state_dict_is_restored(tmp_path) -> None:
    """COMs' loss carries α and α's Adam state: both come back with the model."""
    reference = attempt(None, loss=conservative_loss, model=forward_model)
    attempt(CheckpointStore(tmp_path), loss=conservative_loss, model=forward_model)
    retry = CheckpointStore(tmp_path)
    restored = attempt(retry, loss=conservative_loss, model=forward_model)
    assert (retry.restored, retry.trained) == (2, 0)
    for got, expected in zip(restored.losses, reference.losses, strict=True):
        assert got.alpha == expected.alpha != pytest.approx(0.1)
        got_state = got.alpha_optimizer.state_dict()["state"]
        expected_state = expected.alpha_optimizer.state_dict()["state"]
        assert got_state.keys() == expected_state.keys() == {0}
        assert all(torch.equal(got_state[0][key], expected_state[0][key]) for key in expected_state[0])
    for got, expected in zip(restored.surrogates, reference.surrogates, strict=True):
        assert got.history == expected.history and "alpha" in got.history[-1]
        assert all(torch.equal(a, b) for a, b in zip(got.model.parameters(), expected.model.parameters(), strict=True))
    assert restored.logged == reference.logged


class CountingLoss:
    """A loss with state of its own and no ``state_dict``: the store cannot save it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model, x, y, weights):
        self.calls += 1
        return gaussian_nll(model, x, y, weights)


def test_a_stateful_loss_without_state_dict_is_trained_again(tmp_path) -> None:
    attempt(CheckpointStore(tmp_path), loss=CountingLoss)
    retry = CheckpointStore(tmp_path)
    again = attempt(retry, loss=CountingLoss)
    assert (retry.restored, retry.trained) == (0, 2)
    assert all(loss.calls > 0 for loss in again.losses)


def test_the_store_records_how_far_the_search_got(tmp_path) -> None:
    store = CheckpointStore(tmp_path)
    attempt(store)
    log = store.wrap_log(lambda metrics, step: None)
    log({"search/predicted_mean": 0.5}, 7)
    store.save("search step")
    assert CheckpointStore(tmp_path).state["search"] == {"last_logged_step": 7, "surrogates_trained": 2}
    assert "search logged step 7" in store.progress()
