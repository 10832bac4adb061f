"""Design-Bench-compatible tasks on the real data, the logit map and the synthetic task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ignite_mbo import tasks
from ignite_mbo.errors import UserError


def load_full(folder, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    shards = sorted(folder.glob(f"{prefix}-x-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    x = np.concatenate([np.load(p) for p in shards])
    y = np.concatenate([np.load(str(p).replace("-x-", "-y-")) for p in shards])
    return x, y


def test_tf_bind_8_matches_design_bench(design_bench_dir):
    task = tasks.make("TFBind8-Exact-v0", data_dir=design_bench_dir)
    assert task.x.shape == (32_898, 8) and task.y.shape == (32_898, 1)
    assert task.is_discrete and task.num_classes == 4 and task.x.dtype == np.int32
    assert (task.y <= 0.43929616).all()
    assert (task.y_min, task.y_max) == (0.0, 1.0)
    x_all, y_all = load_full(design_bench_dir / "tf_bind_8-SIX6_REF_R1", "tf_bind_8")
    np.testing.assert_array_equal(task.oracle(x_all), y_all)  # the exact oracle reproduces every row
    assert task.normalize_score(np.array([[0.5]]))[0, 0] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tf_bind_10(design_bench_dir):
    return tasks.make("TFBind10-Exact-v0", data_dir=design_bench_dir)


def test_tf_bind_10_oracle_keeps_the_last_duplicate(design_bench_dir, tf_bind_10):
    x_all, y_all = load_full(design_bench_dir / "tf_bind_10-pho4", "tf_bind_10")
    codes = sum(x_all[:, i].astype(np.int64) * 4 ** (9 - i) for i in range(10))
    by_code = pd.Series(y_all[:, 0], index=codes).groupby(level=0)
    assert by_code.size().between(5, 8).all() and len(by_code) == 4**10
    last, first = by_code.last(), by_code.first()
    assert (last != first).any()  # so this test can tell "last wins" from "first wins"
    every_kmer = np.stack(np.unravel_index(np.arange(4**10), (4,) * 10), axis=1).astype(np.int32)
    np.testing.assert_array_equal(tf_bind_10.oracle(every_kmer)[:, 0], last.to_numpy())
    assert (tf_bind_10.y_min, tf_bind_10.y_max) == pytest.approx((-1.8585268, 2.1287067))


def test_tf_bind_10_training_subsample(design_bench_dir, tf_bind_10):
    assert tf_bind_10.x.shape == (10_000, 10)
    assert tf_bind_10.info["training_rows_below_percentile"] == 4_161_482
    assert (tf_bind_10.y <= 0.005328223).all()
    assert tf_bind_10.info["subsample_seed"] == 0 and tf_bind_10.info["max_samples"] == 10_000
    other = tasks.make("TFBind10-Exact-v0", data_dir=design_bench_dir, max_samples=2_000, subsample_seed=1)
    assert other.x.shape == (2_000, 10)
    assert not np.array_equal(other.x, tf_bind_10.x[:2_000])
    again = tasks.make("TFBind10-Exact-v0", data_dir=design_bench_dir, max_samples=2_000, subsample_seed=1)
    np.testing.assert_array_equal(other.x, again.x)  # the recorded seed reproduces the subsample


def test_logits_round_trip_and_layout():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(50, 8)).astype(np.int32)
    logits = tasks.to_logits(x, 4)
    assert logits.shape == (50, 8, 3) and logits.dtype == np.float32
    np.testing.assert_array_equal(tasks.to_integers(logits), x)
    # class 0 is the reference: a token-0 position has all logits equal to log(0.1/0.7) ≈ -1.95
    np.testing.assert_allclose(tasks.to_logits(np.zeros((1, 1), np.int32), 4)[0, 0], np.log(0.1 / 0.7), rtol=1e-6)
    with pytest.raises(TypeError):
        tasks.to_logits(x.astype(np.float32), 4)


def test_synthetic_task_is_continuous_with_closed_form_oracle():
    task = tasks.make("Synthetic-Ackley60-v0")
    assert not task.is_discrete and task.x.shape == (4_000, 60) and task.x.dtype == np.float32
    np.testing.assert_allclose(task.oracle(task.x), task.y, rtol=1e-6)
    assert task.oracle(np.zeros((1, 60)))[0, 0] == pytest.approx(0.0, abs=1e-5)  # the optimum
    assert task.y.max() < task.oracle(np.zeros((1, 60)))[0, 0]


def test_unknown_task_and_missing_data(tmp_path):
    with pytest.raises(UserError, match="unknown task 'TFBind9"):
        tasks.make("TFBind9-Exact-v0")
    with pytest.raises(UserError, match="ignite-mbo data download"):
        tasks.make("TFBind8-Exact-v0", data_dir=tmp_path)
