"""The paper's claims put to the test: cell counts, cannot-change cells, rivals, sharpness, sensitivity,
cost; inputs from sweep folders, results tables and benchmarks/trials.py records; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ignite_mbo.cli import main
from ignite_mbo.platform.report import build_report, claims, compare, inputs
from ignite_mbo.platform.report.commands import claims_text, report_sources

TASK = "TFBind8-Exact-v0"
SEEDS = range(8)
JITTER = np.array([0.003, -0.002, 0.001, 0.0, -0.001, 0.002, -0.003, 0.001])


def record(baseline: str, regularizer: str, seed: int, score: float, **extra: object) -> dict:
    """One benchmarks/trials.py record."""
    return {"task": TASK, "baseline": baseline, "regularizer": regularizer, "seed": seed, "fidelity": "full",
            "options": {}, "score_100th": score, "score_80th": score - 0.2, "score_50th": score - 0.3,
            "score_mean": score - 0.3, "sharpness_candidates": 0.3, "regularizer_affects_search": True,
            "protocol_deviations": "", "wall_time_s": 100.0, **extra}


def evidence() -> list[dict]:
    """reinforce: ignite clearly better (8 seeds), sharper-less, 20 % slower; sam slightly worse than
    ignite; cbas: ignite clearly worse; coms: identical designs; mins: search never queries the model."""
    rows = []
    for seed in SEEDS:
        j = float(JITTER[seed])
        rows += [record("reinforce", "none", seed, 0.90 + j, sharpness_candidates=0.40 + j),
                 record("reinforce", "ignite", seed, 0.93 + j + 0.5 * j, sharpness_candidates=0.30 + j,
                        wall_time_s=120.0),
                 record("reinforce", "sam", seed, 0.92 + j, wall_time_s=150.0),
                 record("cbas", "none", seed, 0.90 + j),
                 record("cbas", "ignite", seed, 0.88 + j),
                 record("coms", "none", seed, 0.95 + j),
                 record("coms", "ignite", seed, 0.95 + j),
                 record("mins", "none", seed, 0.90 + j, regularizer_affects_search=False),
                 record("mins", "ignite", seed, 0.91 + j, regularizer_affects_search=False)]
    return rows


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "cpu_full.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in evidence()))
    return path


def test_cells_are_counted_and_cannot_change_cells_are_never_gains(jsonl: Path) -> None:
    report = build_report(inputs.read_sources([jsonl]))
    cells = {(c.baseline, c.regularizer): c for c in claims.cells(report)}
    assert cells["reinforce", "ignite"].state == "improved" and cells["reinforce", "ignite"].gain.significant
    assert cells["reinforce", "ignite"].gain.n == 8
    assert cells["cbas", "ignite"].state == "dropped" and cells["cbas", "ignite"].gain.significant
    assert cells["coms", "ignite"].state == "cannot change" and "identical" in cells["coms", "ignite"].reason
    assert cells["mins", "ignite"].state == "cannot change" and "never queries" in cells["mins", "ignite"].reason
    text = claims_text([jsonl])
    assert ("- **ignite**: 4 cells: 1 improved (1 told apart from 0), 1 dropped (1 told apart from 0), "
            "0 unchanged, 2 cannot change;") in text
    assert "over the 2 cells that can change" in text, "MINs' +1.1 % is not counted as a gain"
    assert "| TFBind8-Exact-v0 | mins + ignite | +1.11% |" in text and "cannot change: its search never" in text
    assert "Paper: IGNITE improves 35 of 44" in text


def test_rivals_sharpness_and_cost(jsonl: Path) -> None:
    report = build_report(inputs.read_sources([jsonl]))
    text = claims_text([jsonl])
    assert "- ignite above sam in 1 of 1 cell that can change (1 told apart by the paired test)." in text
    [contest] = compare.contests(report)
    assert (contest.baseline, contest.best, contest.second) == ("reinforce", "reinforce + ignite", "reinforce + sam")
    assert contest.best_vs_second.significant and contest.best_vs_second.n == 8
    sharp = {c.baseline: c.sharpness for c in claims.cells(report) if c.regularizer == "ignite"}
    assert sharp["reinforce"] is not None and sharp["reinforce"][0] == pytest.approx(0.30, abs=1e-3)
    assert sharp["reinforce"][1] == pytest.approx(0.40, abs=1e-3) and sharp["reinforce"][2].significant
    assert "Lower with the regularizer in 2 of 5 cells (2 told apart)." in text
    assert ("- **ignite**: +5.0 % wall time per trial on average over 4 cells (range +0.0 % .. +20.0 %; "
            "n=8 seeds per cell).") in text
    assert "- **sam**: +50.0 % wall time" in text
    assert "Not tested: no sweep varied a regularizer setting." in text


def test_cost_reads_cpu_time_where_every_trial_of_the_cell_recorded_it(tmp_path: Path) -> None:
    rows = [record(b, reg, seed, 0.9, wall_time_s=wall, **({"cpu_time_s": cpu} if cpu else {}))
            for seed in SEEDS
            for b, reg, wall, cpu in (("reinforce", "none", 100.0, 50.0), ("reinforce", "ignite", 400.0, 60.0),
                                      ("cbas", "none", 100.0, 50.0), ("cbas", "ignite", 130.0, None))]
    path = tmp_path / "timed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cells = {c.baseline: c for c in claims.cells(build_report(inputs.read_sources([path])))}
    assert cells["reinforce"].overhead_clock == "cpu_time_s" and cells["reinforce"].overhead is not None
    assert cells["reinforce"].overhead.mean == pytest.approx(20.0), "CPU time, not the busy machine's wall time"
    assert cells["cbas"].overhead_clock == "wall_time_s", "one ignite trial without CPU time: wall time for the cell"
    assert cells["cbas"].overhead is not None and cells["cbas"].overhead.mean == pytest.approx(30.0)
    assert "- **ignite**: +25.0 % CPU and wall time per trial" in claims_text([path])


def test_sensitivity_when_epsilon_varied() -> None:
    rows = []
    for seed in SEEDS:
        j = float(JITTER[seed])
        rows.append({"baseline": "reinforce", "regularizer": "none", "seed": seed, "score": 0.9 + j})
        for epsilon, offset in ((0.01, -0.01), (0.1, 0.02)):
            rows.append({"baseline": "reinforce", "regularizer": "ignite", "seed": seed, "score": 0.9 + j + offset,
                         "config.regularizer.epsilon": str(epsilon)})
    table = pd.DataFrame([{"task": TASK, "status": "TERMINATED", "score_100th": r.pop("score"), "score_80th": 0.5,
                           "score_50th": 0.4, "regularizer_affects_search": True, **r} for r in rows])
    text = "\n".join(claims.render(build_report(table)))
    assert "| ignite | epsilon | 0.01 | -1.11% | 1 | 1 |" in text
    assert "| ignite | epsilon | 0.1 | +2.22% | 1 | 0 |" in text


def test_small_n_is_warned_about_and_nothing_is_told_apart() -> None:
    rows = [record("reinforce", reg, seed, 0.9 + 0.05 * (reg == "ignite") + 0.001 * seed)
            for reg in ("none", "ignite") for seed in range(4)]
    report = build_report(inputs.records_table(rows))
    [cell] = claims.cells(report)
    assert cell.state == "improved" and cell.gain.n == 4 and not cell.gain.significant
    text = "\n".join(claims.render(report))
    assert "**Warning:** n=4 is too few for any conclusion" in text
    assert "1 improved (0 told apart from 0)" in text


def test_jsonl_records_keep_options_apart_and_sources_combine(tmp_path: Path, jsonl: Path) -> None:
    credit = tmp_path / "credit.jsonl"
    credit.write_text("".join(json.dumps(record("reinforce", reg, seed, 0.8, options={"per_design_credit": True}))
                              + "\n" for reg in ("none", "ignite") for seed in SEEDS))
    report = build_report(inputs.read_sources([jsonl, credit]))
    rows = set(report.long["row"])
    assert "reinforce + ignite (baseline_options.per_design_credit=true)" in rows
    assert "reinforce + ignite (baseline_options.per_design_credit=default)" in rows
    assert "config.sweep" not in report.results.columns, "no trial is in both sources: they pair freely"
    again = tmp_path / "again.jsonl"
    again.write_text(jsonl.read_text())
    twice = build_report(inputs.read_sources([jsonl, again]))
    assert "config.sweep" in twice.results.columns and twice.long["n"].max() == 8


def test_cli_claims_and_report_over_several_sources(tmp_path: Path, jsonl: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["claims", str(jsonl)]) == 0
    assert "### 5. Training-time overhead" in capsys.readouterr().out
    other = tmp_path / "other.jsonl"
    other.write_text(jsonl.read_text())
    assert main(["report", str(jsonl), str(other), "--format", "latex", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert r"\begin{tabular}" in out and r"$\pm$" in out and r"(+3.3\%*)" in out and "(sweep=other)" in out
    assert (tmp_path / "out" / "gain_table.tex").read_text() in out
    text, _ = report_sources([jsonl])
    assert "### Regularizers compared" in text and "## The paper's claims, put to the test" in text


@pytest.mark.parametrize(("content", "needle"), [
    ("not json\n", "is not JSON"),
    ('{"task": "TFBind8-Exact-v0"}\n', "lacks baseline, regularizer, seed, score_100th"),
    ("\n", "holds no trial records"),
])
def test_bad_records_are_a_one_line_error(tmp_path: Path, content: str, needle: str,
                                          capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["claims", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert main(["claims", str(tmp_path / "missing")]) == 2
    assert "no results at" in capsys.readouterr().err


SPACE = """
name: claims_quick
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  baseline_options: {hidden_size: 32, epochs: 2}
grid:
  regularizer: [none, ignite]
  seed: [0, 1]
resources: {cpu: 1, gpu: 0}
"""


@pytest.mark.slow
def test_claims_on_a_quick_sweep(tmp_path: Path, design_bench_dir: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}
    sweep = subprocess.run(["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", "sqlite:///mlflow.db",
                            "--output-dir", "out", "--num-cpus", "2", "--quiet"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    completed = subprocess.run(["ignite-mbo", "claims", "out/claims_quick"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = completed.stdout
    assert "- **ignite**: 1 cell:" in text and "| TFBind8-Exact-v0 | grad-ascent + ignite |" in text
    assert "**Warning:** n=2 is too few for any conclusion" in text
    assert "| 2 | no |" in text, "n printed, and 2 seeds are never told apart from 0"
    assert "Lower with the regularizer in" in text and "CPU time per trial" in text, "sweeps record cpu_time_s"

    report = subprocess.run(["ignite-mbo", "report", "out/claims_quick", "--format", "latex"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert r"\begin{tabular}" in report.stdout and (tmp_path / "out/claims_quick/gain_table.tex").is_file()
    curves = sorted(p.name for p in (tmp_path / "out/claims_quick/curves").iterdir())
    assert curves == ["curves_TFBind8-Exact-v0_grad-ascent_ignite.png"], "λ and sharpness across seeds, from MLflow"


def test_best_per_cell_is_named_even_without_ignite() -> None:
    rows = [record("reinforce", reg, seed, 0.9 + offset + float(JITTER[seed]))
            for reg, offset in (("none", 0.0), ("sam", 0.01), ("l2", 0.02)) for seed in SEEDS]
    text = "\n".join(claims.render(build_report(inputs.records_table(rows))))
    assert "Not tested: these sweeps did not run ignite beside another regularizer." in text
    assert "Best per cell: TFBind8-Exact-v0 / reinforce: l2 (told apart from sam, p=0.00781, n=8)." in text


def test_rivals_are_compared_only_where_both_cells_can_change(tmp_path: Path) -> None:
    """REINFORCE with the reference loss: every regularizer gives the same designs, so its cell is no contest."""
    rows = [record("reinforce", r, seed, 0.90 + float(JITTER[seed])) for seed in SEEDS for r in ("none", "ignite", "sam")]
    rows += [record("grad-ascent", r, seed, score + float(JITTER[seed])) for seed in SEEDS
             for r, score in (("none", 0.90), ("ignite", 0.93), ("sam", 0.91))]
    path = tmp_path / "trials.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert "ignite above sam in 1 of 1 cell that can change" in claims_text([path])


def test_cost_is_a_share_of_the_paired_seeds_none_time_only(tmp_path: Path) -> None:
    """One IGNITE seed against 8 `none` seeds, one of them slow (a busy machine): the overhead is that seed's,
    not a difference over the mean of seeds it is not paired with (which read −246 % for a partial sweep)."""
    rows = [record("reinforce", "none", seed, 0.9, wall_time_s=1000.0 if seed == 0 else 100.0) for seed in SEEDS]
    rows.append(record("reinforce", "ignite", 1, 0.9, wall_time_s=150.0))
    path = tmp_path / "partial.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    [cell] = claims.cells(build_report(inputs.read_sources([path])))
    assert cell.overhead is not None and cell.overhead.n == 1
    assert cell.overhead.mean == pytest.approx(50.0)
