"""Tests for the paper-style gain report (ignite_mbo.platform.report)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ignite_mbo.errors import UserError
from ignite_mbo.platform.report import (
    Report,
    build_report,
    paired_gain,
    plot_sensitivity,
    render_markdown,
    write_report,
)
from ignite_mbo.platform.report import render as rendering

TASK_A, TASK_B = "TFBind8-Exact-v0", "AntMorphology-Exact-v0"
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}  # per seed: sample std over 3 seeds is exactly 0.01
BASE = {(TASK_A, "grad-ascent"): 0.80, (TASK_B, "grad-ascent"): 0.60, (TASK_A, "mins"): 0.70, (TASK_B, "mins"): 0.50}
OFFSET = {"none": 0.0, "ignite": 0.02, "ignite2": 0.04}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trial(task: str, baseline: str, regularizer: str, seed: int, score: float, **extra: object) -> dict:
    return {
        "task": task,
        "baseline": baseline,
        "regularizer": regularizer,
        "seed": seed,
        "status": "TERMINATED",
        "score_100th": score,
        "score_80th": score - 0.1,
        "score_50th": score - 0.2,
        "regularizer_affects_search": baseline != "mins",
        "objective_kind": "oracle (benchmark mode)",
        **extra,
    }


@pytest.fixture
def results() -> pd.DataFrame:
    """2 tasks × 2 baselines × 3 regularizers × 3 seeds, minus one seed, plus one ERROR trial."""
    trials = [
        _trial(task, baseline, reg, seed, BASE[task, baseline] + OFFSET[reg] + NOISE[seed])
        for (task, baseline) in BASE
        for reg in OFFSET
        for seed in NOISE
        if (task, baseline, reg, seed) != (TASK_B, "grad-ascent", "ignite", 2)
    ]
    trials.append(_trial(TASK_A, "grad-ascent", "ignite", 3, 99.0, status="ERROR"))
    return pd.DataFrame(trials)


def _cell(report: Report, task: str, row: str, percentile: str = "100th") -> dict:
    long = report.long
    hit = long[(long["task"] == task) & (long["row"] == row) & (long["percentile"] == percentile)]
    assert len(hit) == 1, (task, row, percentile)
    return hit.iloc[0].to_dict()


def test_means_std_and_paired_gains(results: pd.DataFrame) -> None:
    report = build_report(results)
    none_a = _cell(report, TASK_A, "grad-ascent + none")
    assert none_a["mean"] == pytest.approx(0.80) and none_a["std"] == pytest.approx(0.01)
    assert none_a["n"] == 3 and math.isnan(none_a["gain_pct"])

    ignite_a = _cell(report, TASK_A, "grad-ascent + ignite")  # the ERROR trial (99.0) is ignored
    assert ignite_a["mean"] == pytest.approx(0.82) and ignite_a["n"] == 3
    assert ignite_a["gain_pct"] == pytest.approx(100 * 0.02 / 0.80) and ignite_a["paired_n"] == 3
    assert _cell(report, TASK_A, "grad-ascent + ignite2")["gain_pct"] == pytest.approx(5.0)
    assert _cell(report, TASK_A, "grad-ascent + ignite", "50th")["gain_pct"] == pytest.approx(100 * 0.02 / 0.60)

    # Seed 2 is missing: the gain pairs seeds 0 and 1 only (0.61, 0.62 vs 0.59, 0.60).
    ignite_b = _cell(report, TASK_B, "grad-ascent + ignite")
    assert ignite_b["mean"] == pytest.approx(0.615) and ignite_b["n"] == 2
    assert ignite_b["std"] == pytest.approx(0.005 * math.sqrt(2))
    assert ignite_b["gain_pct"] == pytest.approx(100 * 0.02 / 0.595) and ignite_b["paired_n"] == 2

    mins_b = _cell(report, TASK_B, "mins + ignite2 †", "80th")
    assert mins_b["mean"] == pytest.approx(0.44) and mins_b["gain_pct"] == pytest.approx(10.0)
    assert len(report.long) == 2 * 2 * 3 * 3  # tasks × baselines × regularizers × percentiles


def test_rows_ordered_and_only_mins_marked(results: pd.DataFrame) -> None:
    report = build_report(results.iloc[::-1])  # order comes from first appearance, not row order
    assert list(rendering.cell_table(report, "100th").index) == [
        "mins + none †",
        "mins + ignite †",
        "mins + ignite2 †",
        "grad-ascent + none",
        "grad-ascent + ignite",
        "grad-ascent + ignite2",
    ]
    assert list(rendering.cell_table(report, "100th").columns) == [TASK_B, TASK_A]
    long = report.long
    assert (long["row"].str.contains("†") == (long["baseline"] == "mins")).all()
    assert (long["affects_search"] == (long["baseline"] != "mins")).all()


def test_markdown_cells_and_footnotes(results: pd.DataFrame) -> None:
    md = render_markdown(build_report(results))
    for heading in ("### 100th percentile", "### 80th percentile", "### 50th percentile"):
        assert heading in md
    assert "Objective: oracle (benchmark mode)" in md
    assert f"| baseline + regularizer | {TASK_A} | {TASK_B} |" in md
    assert "| grad-ascent + none | 0.800 ± 0.010 | 0.600 ± 0.010 |" in md
    # every seed gains exactly the offset, yet 3 seeds cannot reach p < 0.05: no mark, and a warning
    assert "| grad-ascent + ignite | 0.820 ± 0.010 (+2.5%) | 0.615 ± 0.007 [n=2] (+3.4%) |" in md
    assert "| mins + ignite † | 0.720 ± 0.010 (+2.9%) | 0.520 ± 0.010 (+4.0%) |" in md
    assert "| grad-ascent + ignite | 0.620 ± 0.010 (+3.3%) |" in md  # 50th percentile
    assert "%*" not in md and "% *" not in md
    assert "**Warning:** n=2 is too few for any conclusion" in md
    assert "sample std (ddof=1)" in md
    assert "1 trial(s) that did not finish" in md
    assert "† the regularized model does not feed this baseline's search" in md


def test_no_dagger_note_without_marked_rows(results: pd.DataFrame) -> None:
    md = render_markdown(build_report(results[results["baseline"] != "mins"]))
    assert "†" not in md


def test_varying_hyperparameters_split_rows_and_pair_within_config() -> None:
    trials = []
    for fidelity, base in (("low", 0.5), ("high", 0.6)):
        for seed in (0, 1):
            common = {"config.fidelity": fidelity, "config.seed": seed, "config.regularizer.eta_lambda": 0.01}
            noise = 0.01 * seed
            trials.append(_trial(TASK_A, "grad-ascent", "none", seed, base + noise, **common))
            for epsilon, offset in ((10.0, 0.03), (2.0, 0.01)):  # text "10.0" < "2.0": order must be numeric
                trials.append(
                    _trial(TASK_A, "grad-ascent", "ignite", seed, base + offset + noise,
                           **common, **{"config.regularizer.epsilon": epsilon})
                )
    table = pd.DataFrame(trials)
    config = [c for c in table.columns if c.startswith("config.")]
    table[config] = table[config].astype(str)  # as the sweep's results table stores them ("None" for none)
    report = build_report(table)
    assert list(rendering.cell_table(report, "100th").index) == [
        "grad-ascent + none (fidelity=high)",
        "grad-ascent + none (fidelity=low)",
        "grad-ascent + ignite (epsilon=2, fidelity=high)",
        "grad-ascent + ignite (epsilon=2, fidelity=low)",
        "grad-ascent + ignite (epsilon=10, fidelity=high)",
        "grad-ascent + ignite (epsilon=10, fidelity=low)",
    ]
    gains = report.long[report.long["percentile"] == "100th"].set_index("row")["gain_pct"]
    assert gains["grad-ascent + ignite (epsilon=2, fidelity=low)"] == pytest.approx(100 * 0.01 / 0.505)
    assert gains["grad-ascent + ignite (epsilon=2, fidelity=high)"] == pytest.approx(100 * 0.01 / 0.605)
    assert gains["grad-ascent + ignite (epsilon=10, fidelity=low)"] == pytest.approx(100 * 0.03 / 0.505)
    assert report.long["config.regularizer.epsilon"].dropna().tolist() == [2, 2, 10, 10] * 3


def test_write_produces_the_report_files_atomically(results: pd.DataFrame, tmp_path: Path) -> None:
    report = build_report(results)
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["gain_table.md", "gain_table.csv", "gain_table.png", "reproduction_check.csv"]
    assert paths[0].read_text() == render_markdown(report)
    csv = pd.read_csv(paths[1])
    assert len(csv) == len(report.long) and "gain_pct" in csv.columns
    assert paths[2].read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_write_leaves_nothing_when_rendering_fails(
    results: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(report: Report) -> bytes:
        raise RuntimeError("render failed")

    monkeypatch.setattr(rendering, "render_figure", broken)
    with pytest.raises(RuntimeError):
        write_report(build_report(results), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (pd.DataFrame(), "empty"),
        (pd.DataFrame([{"task": TASK_A, "seed": 0}]), "lacks column(s) baseline"),
        ("only_errors", "no finished trials"),
        ("no_scores", "have no scores"),
    ],
)
def test_bad_input_raises_user_error(results: pd.DataFrame, table: object, needle: str) -> None:
    if isinstance(table, str):
        no_scores = {"score_100th": None, "score_80th": None, "score_50th": None}
        table = results.assign(status="ERROR") if table == "only_errors" else results.assign(**no_scores)
    with pytest.raises(UserError) as info:
        build_report(table)
    message = str(info.value)
    assert needle in message and "\n" not in message and "ignite-mbo sweep" in message


def test_plot_sensitivity(tmp_path: Path) -> None:
    trials = [_trial(TASK_A, "grad-ascent", "none", seed, 0.5 + 0.01 * seed) for seed in (0, 1)]
    trials += [
        _trial(TASK_A, "grad-ascent", "ignite", seed, 0.5 + 0.01 * seed + eps, **{"config.regularizer.epsilon": eps})
        for eps in (0.01, 0.1, 1.0)
        for seed in (0, 1)
    ]
    table = pd.DataFrame(trials).astype({"config.regularizer.epsilon": str})
    out = plot_sensitivity(table, "epsilon", tmp_path / "sens.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(UserError, match="no regularizer column 'lr'"):
        plot_sensitivity(table, "lr", tmp_path / "bad.png")


# ---- gains with their uncertainty --------------------------------------------------------------------

def test_paired_gain_has_a_t_interval_and_an_exact_sign_flip_p_value() -> None:
    seeds = pd.Index(range(8))
    none = pd.Series([0.80, 0.82, 0.78, 0.81, 0.79, 0.80, 0.83, 0.77], index=seeds)
    noisy = none + pd.Series([0.05, -0.04, 0.06, -0.05, 0.04, -0.03, 0.05, -0.02], index=seeds)
    gain = paired_gain(noisy, none)
    assert gain.n == 8 and gain.pct == pytest.approx(100 * 0.0075 / none.mean())
    assert gain.low < 0 < gain.high and not gain.significant, "+0.9% over noisy seeds: the interval spans 0"
    assert 0.2 < gain.p_value <= 1.0
    better = paired_gain(none + 0.02 + 0.001 * pd.Series(range(8), index=seeds), none)
    assert better.significant and better.low > 0 and better.p_value == pytest.approx(2 / 2**8)
    assert math.isnan(paired_gain(none.iloc[:1], none).low), "one seed: no interval"
    four = paired_gain(none.iloc[:4] + 0.05, none.iloc[:4])
    assert four.low > 0 and four.p_value == pytest.approx(2 / 2**4) and not four.significant


def test_report_lists_gains_with_interval_p_and_n(results: pd.DataFrame) -> None:
    md = render_markdown(build_report(results))
    assert "### Gains over none, 100th percentile (paired by seed)" in md
    assert "| grad-ascent + ignite | TFBind8-Exact-v0 | +2.5% | +2.5% .. +2.5% | 0.25 | 3 |" in md
    assert "| grad-ascent + ignite | AntMorphology-Exact-v0 | +3.4% | +3.4% .. +3.4% | 0.5 | 2 |" in md


def test_a_clear_effect_over_enough_seeds_is_marked() -> None:
    trials = [_trial(TASK_A, "grad-ascent", reg, seed, 0.8 + 0.001 * (seed % 5) + OFFSET[reg] + 0.002 * (seed % 3))
              for reg in ("none", "ignite") for seed in range(8)]
    md = render_markdown(build_report(pd.DataFrame(trials)))
    assert "| grad-ascent + ignite | TFBind8-Exact-v0 | +2.5% * |" in md and "0.00781 | 8 |" in md
    assert "Warning" not in md.split("## The paper's claims")[0]


# ---- protocol deviations and the reproduction check ---------------------------------------------------

def test_rows_with_protocol_deviations_are_marked_with_a_footnote(results: pd.DataFrame) -> None:
    table = results.assign(protocol_deviations="")
    table.loc[table["baseline"] == "mins", "protocol_deviations"] = "pytorch_init,true_mean"
    report = build_report(table)
    md = render_markdown(report)
    assert "| mins + none † ‡ |" in md and "| grad-ascent + none |" in md
    note = ("‡ ran settings that differ from the paper's protocol: mins + none †, mins + ignite †, mins + ignite2 †: "
            "pytorch_init, true_mean.")
    assert note in md and md.count("‡ ran settings") == 1, "one footnote for all marked rows"
    assert set(report.long.loc[report.long["baseline"] == "grad-ascent", "protocol_deviations"]) == {""}
    assert "‡" not in render_markdown(build_report(results)), "a missing column means the paper's protocol"


def test_reproduction_check_against_published_design_bench_numbers(tmp_path: Path) -> None:
    scores = {"grad-ascent": [0.97, 0.98, 0.99], "coms": [0.90, 0.88, 0.89], "cbas": [0.70, 0.72, 0.71]}
    table = pd.DataFrame([_trial(TASK_A, baseline, "none", seed, score, **{"config.fidelity": "full"})
                          for baseline, values in scores.items() for seed, score in enumerate(values)])
    md = render_markdown(build_report(table))
    assert "### Reproduction check: TF-Bind-8, regularizer none, 100th percentile" in md
    assert "| grad-ascent (Grad.) | 0.980 ± 0.010, n=3 | 0.977 ± 0.025, n=8 | 0.1σ | within 1σ |" in md
    assert "| coms (COMs) | 0.890 ± 0.010, n=3 | 0.945 ± 0.033, n=8 | 1.7σ | within 2σ |" in md
    assert "| cbas (CbAS) | 0.710 ± 0.010, n=3 | 0.927 ± 0.051, n=8 | 4.3σ | off |" in md
    assert "design-baselines" in md and "8 trials" in md and "dataset best 0.439" in md
    paths = write_report(build_report(table), tmp_path)
    check = pd.read_csv(tmp_path / "reproduction_check.csv")
    assert tmp_path / "reproduction_check.csv" in paths
    assert list(check["verdict"]) == ["within 1σ", "off", "within 2σ"]  # in the published table's order


def test_reproduction_check_compares_only_full_fidelity_at_the_papers_protocol() -> None:
    trials = [_trial(TASK_A, "coms", "none", seed, 0.7, **{"config.fidelity": "quick"}) for seed in range(3)]
    trials += [_trial(TASK_A, "cbas", "none", seed, 0.7, protocol_deviations="epochs", **{"config.fidelity": "full"})
               for seed in range(3)]
    trials += [_trial(TASK_A, "cbas", "none", seed + 3, 0.9, **{"config.fidelity": "full"}) for seed in range(2)]
    md = render_markdown(build_report(pd.DataFrame(trials)))
    assert "| coms (COMs) | 0.700 ± 0.000, n=3 | 0.945 ± 0.033, n=8 | — | not comparable: quick fidelity |" in md
    assert "| cbas (CbAS) | 0.900 ± 0.000, n=2 | 0.927 ± 0.051, n=8 | 0.5σ | within 1σ |" in md, \
        "only the full-fidelity trials at the protocol are compared"
    only_deviating = render_markdown(build_report(pd.DataFrame(trials[3:6])))
    assert "not comparable: settings differ from the paper's protocol (epochs)" in only_deviating


def test_reproduction_check_covers_roma_and_ict_on_both_tf_binds_with_their_source() -> None:
    full = {"config.fidelity": "full"}
    trials = [_trial("TFBind10-Exact-v0", "ict", "none", seed, score, **full)
              for seed, score in enumerate([0.65, 0.67, 0.66])]
    trials += [_trial(TASK_A, "roma", "none", seed, score, **full) for seed, score in enumerate([0.94, 0.95])]
    md = render_markdown(build_report(pd.DataFrame(trials)))
    assert "### Reproduction check: TF-Bind-10, regularizer none, 100th percentile" in md
    assert "| ict (ICT) | 0.660 ± 0.010, n=3 | 0.659 ± 0.024, n=8 | 0.0σ | within 1σ |" in md
    assert "| roma (RoMA) | 0.945 ± 0.007, n=2 | 0.665 ± 0.000, n=8 | — | published σ is 0: no distance in σ |" in md
    assert md.count("Learning to Rank, ICLR 2025") == 2, "each task's table names its source"


# ---- training curves across seeds ---------------------------------------------------------------------

def test_curves_average_members_and_plot_one_file_per_regularized_row(tmp_path: Path) -> None:
    from ignite_mbo.platform.report import plots

    histories = {"surrogate.member_0.lambda": [(0, 1.0), (1, 3.0)], "surrogate.member_1.lambda": [(0, 3.0), (1, 5.0)],
                 "surrogate.sharpness": [(0, 0.2), (1, 0.1)], "surrogate.val_loss": [(0, 9.0)]}
    curves = plots.curves_per_trial(histories)
    assert set(curves) == {"lambda", "sharpness"}
    assert curves["lambda"].tolist() == [2.0, 4.0] and curves["sharpness"].index.tolist() == [0, 1]

    trials = [_trial(TASK_A, "grad-ascent", reg, seed, 0.8, mlflow_run_id=f"{reg}-{seed}",
                     **{"config.regularizer.epsilon": "0.1" if reg == "ignite" else "None"})
              for reg in ("none", "ignite") for seed in (0, 1)]
    asked: list[str] = []

    def read(run_id: str) -> dict:
        asked.append(run_id)
        return histories

    paths = plots.plot_curves(build_report(pd.DataFrame(trials)).results, read, tmp_path / "curves")
    assert [p.name for p in paths] == ["curves_TFBind8-Exact-v0_grad-ascent_ignite.png"]
    assert paths[0].read_bytes().startswith(PNG_MAGIC) and sorted(asked) == ["ignite-0", "ignite-1"]
    assert plots._epsilon(pd.DataFrame(trials[2:])) == 0.1
    assert plots.plot_curves(build_report(pd.DataFrame(trials)).results, lambda run_id: {}, tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


def test_typed_results_columns_read_as_well_as_text_ones() -> None:
    """The sweep writes config columns with their types (nullable: ε is missing for none)."""
    from ignite_mbo.platform.report import claims, plots
    from ignite_mbo.platform.results import typed_column

    trials = [_trial(TASK_A, "grad-ascent", reg, seed, 0.8 + 0.01 * (reg == "ignite") + 0.001 * seed,
                     wall_time_s=10.0, sharpness_candidates=0.2, **{
                         "config.fidelity": "full", "config.seed": seed,
                         "config.regularizer.epsilon": 0.1 if reg == "ignite" else None})
              for reg in ("none", "ignite") for seed in range(6)]
    table = pd.DataFrame(trials)
    for column in [c for c in table.columns if c.startswith("config.")]:
        table[column] = typed_column([t[column] for t in trials])
    table["regularizer_affects_search"] = pd.array([True] * len(trials), dtype="boolean")
    assert str(table["config.regularizer.epsilon"].dtype) == "Float64"
    report = build_report(table)
    md = render_markdown(report)
    assert "| grad-ascent + ignite | TFBind8-Exact-v0 | +1.2% * |" in md and "0.0312 | 6 |" in md
    assert "| grad-ascent (Grad.) | 0.802 ± 0.002, n=6 | 0.977 ± 0.025, n=8 | 7.0σ | off |" in md
    [cell] = claims.cells(report)
    assert cell.state == "improved" and cell.gain.significant
    assert plots._epsilon(report.results[report.results["regularizer"] == "ignite"]) == 0.1
