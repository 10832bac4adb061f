"""Design-Bench-compatible tasks on the real data, the logit map and the synthetic task."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ignite_mbo import tasks
from ignite_mbo.errors import UserError
from ignite_mbo.tasks import data
from ignite_mbo.tasks.base import Task
from ignite_mbo.tasks.tfbind import LookupOracle, encode

TF8, TF10 = data.FOLDERS


def load_full(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    shards = sorted(folder.glob(f"{prefix}-x-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    x = np.concatenate([np.load(p) for p in shards])
    y = np.concatenate([np.load(str(p).replace("-x-", "-y-")) for p in shards])
    return x, y


def one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def test_tf_bind_8_matches_design_bench(design_bench_dir):
    task = tasks.make("TFBind8-Exact-v0", data_dir=design_bench_dir)
    assert task.x.shape == (32_898, 8) and task.y.shape == (32_898, 1)
    assert task.is_discrete and task.num_classes == 4 and task.x.dtype == np.int32
    assert (task.y <= 0.43929616).all()
    assert (task.y_min, task.y_max) == (0.0, 1.0)
    x_all, y_all = load_full(design_bench_dir / TF8, "tf_bind_8")
    np.testing.assert_array_equal(task.oracle(x_all), y_all)  # the exact oracle reproduces every row
    assert task.normalize_score(np.array([[0.5]]))[0, 0] == pytest.approx(0.5)
    assert task.max_samples is None and task.subsample(np.random.default_rng(0)) is task


@pytest.fixture(scope="module")
def tf_bind_10(design_bench_dir):
    return tasks.make("TFBind10-Exact-v0", data_dir=design_bench_dir)


@pytest.fixture(scope="module")
def tf_bind_10_rows(design_bench_dir):
    return load_full(design_bench_dir / TF10, "tf_bind_10")


def test_tf_bind_10_oracle_keeps_the_last_duplicate(tf_bind_10, tf_bind_10_rows):
    x_all, y_all = tf_bind_10_rows
    codes = sum(x_all[:, i].astype(np.int64) * 4 ** (9 - i) for i in range(10))
    by_code = pd.Series(y_all[:, 0], index=codes).groupby(level=0)
    assert by_code.size().between(5, 8).all() and len(by_code) == 4**10
    last, first = by_code.last(), by_code.first()
    assert (last != first).any()  # so this test can tell "last wins" from "first wins"
    every_kmer = np.stack(np.unravel_index(np.arange(4**10), (4,) * 10), axis=1).astype(np.int32)
    np.testing.assert_array_equal(tf_bind_10.oracle(every_kmer)[:, 0], last.to_numpy())
    assert (tf_bind_10.y_min, tf_bind_10.y_max) == pytest.approx((-1.8585268, 2.1287067))


def test_tf_bind_10_training_pool_is_every_row_at_or_below_the_median(tf_bind_10, tf_bind_10_rows):
    x_all, y_all = tf_bind_10_rows
    in_pool = y_all[:, 0] <= np.percentile(y_all[:, 0], 50)
    assert tf_bind_10.x.shape == (4_161_482, 10) and tf_bind_10.x.dtype == np.int32
    np.testing.assert_array_equal(tf_bind_10.x, x_all[in_pool])  # in file order
    np.testing.assert_array_equal(tf_bind_10.y, y_all[in_pool])
    assert (tf_bind_10.y <= 0.005328223).all()
    assert tf_bind_10.max_samples == 10_000
    assert tf_bind_10.info == {"full_dataset_rows": 8_321_066, "training_pool_rows": 4_161_482,
                               "training_rows": 4_161_482}


def test_tf_bind_10_subsample_depends_on_the_rng_only(tf_bind_10):
    first = tf_bind_10.subsample(np.random.default_rng(1))
    again = tf_bind_10.subsample(np.random.default_rng(1))
    other = tf_bind_10.subsample(np.random.default_rng(2))
    assert first.x.shape == (10_000, 10) and first.y.shape == (10_000, 1)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.y, other.y)
    assert first.oracle is tf_bind_10.oracle and (first.y_min, first.y_max) == (tf_bind_10.y_min, tf_bind_10.y_max)
    assert first.info["training_pool_rows"] == 4_161_482 and first.info["training_rows"] == 10_000
    assert first.subsample(np.random.default_rng(3)) is first  # already at most max_samples rows


def test_subsample_is_uniform_without_replacement_in_pool_order():
    pool = Task("toy", x=np.arange(10)[:, None], y=np.zeros((10, 1), np.float32), oracle=lambda x: x,
                y_min=0.0, y_max=1.0, max_samples=3)
    rng = np.random.default_rng(0)
    counts = np.zeros(10)
    for _ in range(3_000):
        rows = pool.subsample(rng).x[:, 0]
        assert len(rows) == 3 and (np.diff(rows) > 0).all()  # distinct, in pool order
        counts[rows] += 1
    np.testing.assert_allclose(counts / 3_000, 0.3, atol=0.04)  # each row drawn 30 % of the time


def test_loaders_read_exactly_the_manifest_files(tf10_links_with_strays: Path, design_bench_dir: Path):
    """Stray shards (issue 10's -84 and -old files) change nothing; verify reports them."""
    task = tasks.make("TFBind10-Exact-v0", data_dir=tf10_links_with_strays)
    assert task.y_max == pytest.approx(2.1287067) and len(task.y) == 4_161_482
    strays = [p.name for p in data.unexpected_files(tf10_links_with_strays, [TF10])]
    assert strays == ["tf_bind_10-x-84.npy", "tf_bind_10-x-old.npy", "tf_bind_10-y-84.npy"]


@pytest.fixture
def tf10_links_with_strays(tmp_path: Path, design_bench_dir: Path) -> Path:
    """A data dir linking every real TF-Bind-10 shard, plus a stray extra shard pair with y = 1e6."""
    root = tmp_path / "links"
    (root / TF10).mkdir(parents=True)
    for entry in data.manifest(TF10):
        (root / TF10 / entry.file).symlink_to(entry.path(design_bench_dir))
    np.save(root / TF10 / "tf_bind_10-x-84.npy", np.zeros((5, 10), np.int32))
    np.save(root / TF10 / "tf_bind_10-y-84.npy", np.full((5, 1), 1e6, np.float32))
    (root / TF10 / "tf_bind_10-x-old.npy").write_bytes(b"not an npy file")
    return root


def test_a_missing_or_unreadable_listed_file_refuses_the_run(
    tmp_path: Path, design_bench_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "copy"
    shutil.copytree(design_bench_dir / TF8, root / TF8)
    y_file = root / TF8 / "tf_bind_8-y-0.npy"

    def unreadable(path: Path, *args: object, **kwargs: object) -> np.ndarray:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(np, "load", unreadable)  # the check passes; reading the shard fails
    with pytest.raises(UserError) as exc:
        tasks.make("TFBind8-Exact-v0", data_dir=root)
    assert f"cannot read {root / TF8 / 'tf_bind_8-x-0.npy'} ([Errno 13] Permission denied" in one_line(exc)
    monkeypatch.undo()

    y_file.unlink()
    with pytest.raises(UserError) as exc:
        tasks.make("TFBind8-Exact-v0", data_dir=root)
    assert f"TF-Bind-8 data missing: {y_file} not found" in one_line(exc)


def test_oracle_table_last_occurrence_wins_and_covers_every_kmer():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.stack(np.unravel_index(np.arange(16), (4, 4)), axis=1),
                        rng.integers(0, 4, size=(200, 2))]).astype(np.int32)
    y = rng.normal(size=(len(x), 1)).astype(np.float32)
    expected = {}
    for row, value in zip(map(tuple, x), y[:, 0]):
        expected[row] = value  # a dict keeps the last write
    oracle = LookupOracle.from_rows(x, y)
    np.testing.assert_array_equal(oracle(np.array(list(expected), np.int32))[:, 0], list(expected.values()))
    with pytest.raises(UserError, match="the data covers 15 of 16 2-mers"):
        LookupOracle.from_rows(x[1:16], y[1:16])  # k-mer (0, 0) never occurs


def test_encode_reads_kmers_as_base_4_numbers():
    rng = np.random.default_rng(0)
    for length in (8, 10, 16):
        x = rng.integers(0, 4, size=(100, length))
        expected = sum(x[:, i].astype(np.int64) * 4 ** (length - 1 - i) for i in range(length))
        for dtype in (np.uint8, np.int32, np.int64):
            np.testing.assert_array_equal(encode(x.astype(dtype)), expected)
    with pytest.raises(ValueError, match="tokens in 0..3"):
        encode(np.array([[0, 4]]))


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
    assert task.max_samples is None
    other = tasks.make("Synthetic-Ackley60-v0", data_seed=2**32 - 1)
    assert not np.array_equal(other.x, task.x)


def test_unknown_task_and_missing_data(tmp_path):
    with pytest.raises(UserError, match="unknown task 'TFBind9"):
        tasks.make("TFBind9-Exact-v0")
    with pytest.raises(UserError, match="ignite-mbo data download"):
        tasks.make("TFBind8-Exact-v0", data_dir=tmp_path)


# --- typed task options ---------------------------------------------------------------------


def test_validate_options_fills_defaults():
    assert tasks.validate_options("TFBind10-Exact-v0", {}) == {"max_samples": 10_000}
    assert tasks.validate_options("TFBind10-Exact-v0", {"max_samples": None}) == {"max_samples": None}
    assert tasks.validate_options("TFBind8-Exact-v0", {"max_samples": 500}) == {"max_samples": 500}
    assert tasks.validate_options("Synthetic-Ackley60-v0", {}) == {"data_seed": 0}


@pytest.mark.parametrize(
    ("task_id", "options", "needle"),
    [
        ("TFBind8-Exact-v0", {"bogus": 1}, ("unknown task option 'bogus' for TFBind8-Exact-v0; "
                                            "TFBind8-Exact-v0 takes max_samples: rows each run draws")),
        ("TFBind8-Exact-v0", {"subsample_seed": 1}, "unknown task option 'subsample_seed'"),
        ("TFBind10-Exact-v0", {"max_samples": 0}, "task option max_samples=0 for TFBind10-Exact-v0 is invalid"),
        ("TFBind10-Exact-v0", {"max_samples": -5}, "max_samples=-5"),
        ("TFBind10-Exact-v0", {"max_samples": 2.5}, "max_samples=2.5"),
        ("TFBind10-Exact-v0", {"max_samples": True}, "max_samples=True"),
        ("TFBind10-Exact-v0", {"max_samples": "many"}, "max_samples='many'"),
        ("TFBind10-Exact-v0", {"max_samples": float("nan")}, "max_samples=nan"),
        ("Synthetic-Ackley60-v0", {"data_seed": 2**32}, "data_seed=4294967296"),
        ("Synthetic-Ackley60-v0", {"data_seed": -1}, "data_seed=-1"),
        ("Synthetic-Ackley60-v0", {"data_seed": float("inf")}, "data_seed=inf"),
        ("Synthetic-Ackley60-v0", {"data_dir": "/tmp"}, "unknown task option 'data_dir'"),
        ("TFBind9-Exact-v0", {}, "unknown task 'TFBind9-Exact-v0'"),
    ],
)
def test_bad_task_options_are_one_line_errors(task_id, options, needle):
    with pytest.raises(UserError) as exc:
        tasks.validate_options(task_id, options)
    assert needle in one_line(exc)
    if task_id in tasks.OPTIONS:
        assert f"{task_id} takes " in one_line(exc)  # the fix: what the task accepts


def test_make_checks_options_before_touching_the_disk(tmp_path):
    with pytest.raises(UserError, match="unknown task option 'bogus'"):
        tasks.make("TFBind8-Exact-v0", data_dir=tmp_path / "no-data-here", bogus=1)
    assert list(tmp_path.iterdir()) == []


def test_each_trial_draws_its_own_tf_bind_10_training_set(monkeypatch, tf_bind_10):
    """trial.run_trial subsamples the shared task from the trial's own stream: seeds differ, a seed repeats."""
    import types

    from ignite_mbo import trial
    from ignite_mbo.baselines.base import Proposal
    from ignite_mbo.config import TrialConfig

    seen: dict[int, list[np.ndarray]] = {}

    def propose(task, settings, ctx):
        seen.setdefault(ctx.streams.trial_seed, []).append(task.x)
        return Proposal(designs=task.x[:128], surrogates=[])

    fake = types.SimpleNamespace(propose=propose, Settings=lambda **_: None, QUICK={})
    monkeypatch.setattr(trial, "load", lambda name: fake)
    monkeypatch.setattr(trial, "protocol_deviations", lambda config: [])
    for seed in (0, 0, 1):
        trial.run_trial(TrialConfig.parse({"task": "TFBind10-Exact-v0", "seed": seed}), task=tf_bind_10)
    (first, again), (other,) = seen[0], seen[1]
    assert first.shape == other.shape == (10_000, 10)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
