"""One typed trial record from the search space to the results table: a trial's config is validated
once on the driver and once on the worker, every driver-side consumer gets the same TrialConfig back,
and results.parquet keeps the config's types."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.tune.search.variant_generator import generate_variants

from ignite_mbo.config import TrialConfig
from ignite_mbo.platform.console import TrialTable
from ignite_mbo.platform.finish import collect_results
from ignite_mbo.platform.plan import plan_sweep
from ignite_mbo.platform.report import build_report
from ignite_mbo.platform.results import read_table, write_table
from ignite_mbo.platform.tuner import TrialNamer, search_setup
from ignite_mbo.trainables.params import TrialLookup, run_name, trial_config

SPACE = """
name: epsilon_once
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  baseline_options: {epochs: 3}
grid:
  regularizer: [none, {name: ignite, epsilon: 0.123, project_lambda: true}]
  seed: [0, 1]
"""
EPSILON = 0.123


class CountingValidator:
    """Stands in for TrialConfig's pydantic validator and records what each validation was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[Any] = []

    def validate_python(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(data)
        return self.inner.validate_python(data, *args, **kwargs)

    def validate_json(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(data)
        return self.inner.validate_json(data, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def epsilon_validations(self) -> int:
        """Validations of a config carrying the space's ε."""
        return sum(str(EPSILON) in repr(data) for data in self.seen)


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> CountingValidator:
    counting = CountingValidator(TrialConfig.__pydantic_validator__)
    monkeypatch.setattr(TrialConfig, "__pydantic_validator__", counting)
    return counting


@dataclass
class FakeTrial:
    """What the driver-side consumers read from a Tune trial or result."""

    config: dict[str, Any]
    trial_id: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    path: str = ""
    last_result: dict[str, Any] = field(default_factory=dict)


def tune_trials(plan: Any) -> list[FakeTrial]:
    """The trials Tune makes of the plan's param_space (its own variant generator, no Ray)."""
    param_space, _, _, _ = search_setup(plan.spec, plan.trials)
    trials = []
    for number, (_, params) in enumerate(generate_variants(param_space)):
        trial_id = f"abc_{number:05d}"
        metrics = {"trial_id": trial_id, "trial_completed": 1, "score_100th": 0.9 + number / 100,
                   "score_80th": 0.8, "score_50th": 0.5, "score_mean": 0.5, "num_candidates": 128,
                   "regularizer_affects_search": True, "protocol_deviations": "fidelity=quick"}
        trials.append(FakeTrial(params, trial_id, metrics, path=f"/tmp/x/trial_{trial_id}",
                                last_result=metrics))
    return trials


def plan(tmp_path: Path) -> Any:
    (tmp_path / "space.yaml").write_text(SPACE)
    return plan_sweep(tmp_path / "space.yaml", output_dir=tmp_path / "out",
                      tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_epsilon_from_a_yaml_space_is_validated_once_on_the_driver_and_once_on_the_worker(
        tmp_path: Path, counter: CountingValidator, capsys: pytest.CaptureFixture[str]) -> None:
    planned = plan(tmp_path)
    regularized = [config for config in planned.trials if config.regularizer.name == "ignite"]
    assert len(planned.trials) == 4 and len(regularized) == 2
    assert counter.epsilon_validations() == 2, "the driver validates each trial with ε once, while planning"

    trials = tune_trials(planned)
    assert len(trials) == 4
    lookup = TrialLookup(planned.trials)
    namer, table = TrialNamer(lookup), TrialTable(lookup)
    for trial in trials:
        namer(trial)
        table.on_trial_complete(0, [], trial)
    results = collect_results(trials, lookup, planned.spec)
    assert counter.epsilon_validations() == 2, "run names, the console table and the results reuse the plan's configs"
    assert "ignite" in capsys.readouterr().out

    shipped = pickle.loads(pickle.dumps(planned.trials))  # what tune.with_parameters hands a worker
    before = len(counter.seen)
    on_worker = [trial_config(trial.config, shipped) for trial in trials]
    assert len(counter.seen) - before == 4, "the worker validates each trial it receives once"
    assert counter.epsilon_validations() == 2 + 2
    assert sorted(on_worker, key=run_name) == sorted(planned.trials, key=run_name)
    assert {getattr(config.regularizer, "epsilon", None) for config in on_worker} == {None, EPSILON}
    assert sorted(results["config.regularizer.epsilon"].dropna()) == [EPSILON, EPSILON]


def test_a_sampled_value_is_validated_once_by_the_drivers_lookup(counter: CountingValidator) -> None:
    trials = [TrialConfig.parse({"regularizer": "ignite", "seed": seed}) for seed in (0, 1)]
    lookup = TrialLookup(trials)
    before = len(counter.seen)
    params = {"__trial_index__": 1, "search": {"regularizer.epsilon": EPSILON}}
    first, again = lookup(params), lookup(dict(params))
    assert first is again and first.seed == 1 and first.regularizer.epsilon == EPSILON  # type: ignore[union-attr]
    assert len(counter.seen) - before == 1
    assert lookup({"__trial_index__": 0}) is trials[0], "a planned trial comes back as it is"
    with pytest.raises(ValueError, match="not one of the sweep's 2 trials"):
        trial_config({"__trial_index__": 2}, trials)


def test_results_parquet_keeps_float_int_and_bool_config_columns(tmp_path: Path) -> None:
    planned = plan(tmp_path)
    trials = tune_trials(planned)
    table = collect_results(trials, TrialLookup(planned.trials), planned.spec)
    path = tmp_path / "results.parquet"
    write_table(table, path)
    schema = pq.read_schema(path)
    assert schema.field("config.regularizer.epsilon").type == pa.float64()
    assert schema.field("config.seed").type == pa.int64() and schema.field("seed").type == pa.int64()
    assert schema.field("config.baseline_options.epochs").type == pa.int64()
    assert schema.field("config.regularizer.project_lambda").type == pa.bool_()
    name_type = schema.field("config.regularizer.name").type
    assert pa.types.is_string(name_type) or pa.types.is_large_string(name_type)

    read = read_table(path)
    ignite = read[read["regularizer"] == "ignite"]
    assert ignite["config.regularizer.project_lambda"].tolist() == [True, True]
    assert read.loc[read["regularizer"] == "none", "config.regularizer.project_lambda"].isna().all()
    assert read["config.seed"].tolist() == read["seed"].tolist() and set(read["seed"]) == {0, 1}
    report = build_report(read)
    assert [row.split(" ")[2] for row in report.rows] == ["none", "ignite"], "one row each: ε does not vary"
    gains = report.long[(report.long["regularizer"] == "ignite") & (report.long["percentile"] == "100th")]
    assert gains["paired_n"].tolist() == [2], "ignite pairs with none on both seeds: the typed columns match"


def test_an_epoch_end_is_an_explicit_signal_and_a_restored_surrogate_replays_it(tmp_path: Path) -> None:
    import torch

    from ignite_mbo.baselines.base import Context
    from ignite_mbo.checkpoints import CheckpointStore
    from ignite_mbo.design_space import DesignSpace
    from ignite_mbo.models import GaussianEnsemble, gaussian_nll
    from ignite_mbo.progress import EpochMetrics
    from ignite_mbo.regularizers import IgniteConfig
    from ignite_mbo.streams import Streams
    from ignite_mbo.training import FitSettings, draw_splits

    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    y = x[:, :1] + 0.1 * torch.randn(200, 1, generator=torch.Generator().manual_seed(1))
    settings = FitSettings(epochs=3, batch_size=64, learning_rate=1e-2, validation_size=40)

    def attempt() -> tuple[list[tuple[int, bool, list[str]]], CheckpointStore]:
        seen: list[tuple[int, bool, list[str]]] = []
        store = CheckpointStore(tmp_path)
        ctx = Context(Streams(0), regularizer=IgniteConfig(),
                      log=store.wrap_log(lambda metrics, step: seen.append(
                          (step, isinstance(metrics, EpochMetrics), sorted(metrics)))))
        with store.activate():
            model = GaussianEnsemble(6, 16, 2, generators=ctx.generators("m/init", 2))
            splits = draw_splits(len(x), 2, 40, ctx.streams, "m", bootstrap=True, shared=False)
            ctx.fit("m", model, DesignSpace((6,), None), x, y, settings, splits, loss=gaussian_nll)
        return seen, store

    trained, first = attempt()
    restored, second = attempt()
    assert (first.trained, second.restored) == (1, 1)
    assert [(step, end) for step, end, _ in trained] == [(0, True), (1, True), (2, True)]
    assert restored == trained, "the restore replays each epoch's metrics with its end-of-epoch signal"


def test_a_trial_that_failed_before_it_reported_keeps_its_row(tmp_path: Path) -> None:
    """Pass 7: Tune's Result takes its config from the trial's last report, so a trial whose MLflow run could not
    even be made (a full store) had none, was left out, and the sweep refused to finish ("0 of 4 trials")."""
    planned = plan(tmp_path)
    trials = tune_trials(planned)
    silent = trials[1]
    configs = SimpleNamespace(trials=[SimpleNamespace(path=trial.path, config=trial.config) for trial in trials])
    silent.config, silent.metrics = None, {}  # what Ray gives for it
    silent.error = RuntimeError("database or disk is full")

    class Grid(list):  # a ResultGrid: its results, and Tune's trials behind them
        _experiment_analysis = configs

    table = collect_results(Grid(trials), TrialLookup(planned.trials), planned.spec)
    assert len(table) == 4 and list(table["status"]).count("ERROR") == 1
    assert any(trial_id.endswith("abc_00001") for trial_id in table["trial_id"]), "its id, from its folder's name"
    assert len(collect_results(trials, TrialLookup(planned.trials), planned.spec)) == 3, "without Tune's trials"
