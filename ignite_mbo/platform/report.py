"""Paper-style gain report: mean ± std per (baseline + regularizer) × task, with paired-seed gains.

Input is a sweep's results table (one row per Ray Tune trial). Only ``TERMINATED`` trials count.
Each cell is the mean ± sample std (ddof=1) over seeds of one normalised-score percentile; a
regularized cell also shows its gain over the same baseline with regularizer ``none`` on the same
task and non-regularizer config, with seeds paired: ``100 · mean_s(reg_s − none_s) / |mean_s(none_s)|``
over the seeds both ran.

Config columns (``config.*``) define rows: a column that varies inside one (task, baseline,
regularizer) group is added to the row label (``grad-ascent + ignite (epsilon=0.05)``).
Regularizer columns (``config.regularizer``, ``config.regularizer.*``, ``config.regularizer_*``)
are ignored when pairing with ``none``; every other config column must match. Columns whose last
dotted part is ``seed`` are seeds, not config. Several trials with the same seed in one cell are
averaged into one value for that seed.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ignite_mbo.errors import UserError

PERCENTILES = ("100th", "80th", "50th")
REQUIRED_COLUMNS = (
    "task",
    "baseline",
    "regularizer",
    "seed",
    "status",
    *(f"score_{p}" for p in PERCENTILES),
    "regularizer_affects_search",
)
REGULARIZER_ORDER = ("none", "ignite", "ignite2")
DAGGER = "†"
DAGGER_NOTE = (
    f"{DAGGER} the regularized model does not feed this baseline's search: "
    "differences are seed noise, not gains"
)
LONG_COLUMNS = (
    "task",
    "row",
    "baseline",
    "regularizer",
    "percentile",
    "mean",
    "std",
    "n",
    "gain_pct",
    "paired_n",
    "affects_search",
)
ARTIFACT_NAMES = ("gain_table.md", "gain_table.csv", "gain_table.png")
_COLORS = {"none": "0.65", "ignite": "tab:blue", "ignite2": "tab:orange"}
_OTHER_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")

Params = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Report:
    """A built gain report.

    ``long`` is the numeric long form (``LONG_COLUMNS`` plus one column per regularizer config
    column); ``tables`` maps each percentile to a row-label × task table of formatted cells.
    """

    long: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    objective_kind: str | None

    def to_markdown(self) -> str:
        """One markdown table per percentile, then the footnotes."""
        lines = ["## IGNITE gain report", ""]
        if self.objective_kind:
            lines += [f"Objective: {self.objective_kind}", ""]
        for percentile, table in self.tables.items():
            lines += [
                f"### {percentile} percentile",
                "",
                _md_row(["baseline + regularizer", *table.columns]),
                _md_row(["---"] * (len(table.columns) + 1)),
                *(_md_row([label, *table.loc[label]]) for label in table.index),
                "",
            ]
        for note in self.notes:
            lines += [note, ""]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """Write gain_table.{md,csv,png} into ``out_dir``; all are rendered before any is written."""
        contents = [
            self.to_markdown().encode(),
            self.long.to_csv(index=False).encode(),
            self._figure_png(),
        ]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / name for name in ARTIFACT_NAMES]
        for path, data in zip(paths, contents):
            _write_atomic(path, data)
        return paths

    def _figure_png(self) -> bytes:
        """Grouped bars of the 100th-percentile mean per row, one subplot per task."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        data = self.long[self.long["percentile"] == "100th"]
        tasks = list(self.tables["100th"].columns)
        ncols = min(3, len(tasks))
        nrows = math.ceil(len(tasks) / ncols)
        fig = Figure(figsize=(5 * ncols, 4.5 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        colors = _regularizer_colors(data["regularizer"])
        for ax, task in zip(axes, tasks):
            bars = data[data["task"] == task].to_dict("records")
            xs = _bar_positions([bar["baseline"] for bar in bars])
            for x, bar in zip(xs, bars):
                std = 0.0 if math.isnan(bar["std"]) else bar["std"]
                ax.bar(
                    x,
                    bar["mean"],
                    yerr=std,
                    capsize=3,
                    color=colors[bar["regularizer"]],
                    edgecolor="black",
                    hatch=None if bar["affects_search"] else "//",
                )
                if not math.isnan(bar["gain_pct"]):
                    ax.annotate(
                        f"{bar['gain_pct']:+.1f}%",
                        (x, bar["mean"] + std),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                    )
            ax.set_xticks(xs, [bar["row"] for bar in bars], rotation=60, ha="right", fontsize=7)
            ax.set_title(task)
            ax.set_ylabel("normalised score, 100th pct. (mean ± std)")
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        handles = [Patch(facecolor=c, edgecolor="black", label=r) for r, c in colors.items()]
        if not data["affects_search"].all():
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label=DAGGER_NOTE))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        return buffer.getvalue()


def build_report(results: pd.DataFrame) -> Report:
    """Build the gain report from a sweep's results table (see the module docstring)."""
    done, n_ignored = _finished_trials(results)
    reg_cols = [c for c in done.columns if _is_regularizer_column(c)]
    other_cols = [c for c in done.columns if _is_config_column(c) and c not in reg_cols]
    for column in reg_cols + other_cols:  # object dtype keeps None as None (a float column would not)
        done[column] = pd.Series([_hashable(v) for v in done[column]], index=done.index, dtype=object)
    varying = _varying_columns(done, reg_cols + other_cols)

    # Row label and pairing key per trial; the row's (baseline, regularizer, params) on the side.
    rows: dict[str, tuple[str, str, Params]] = {}
    labels, pair_keys = [], []
    for trial in done.to_dict("records"):
        baseline, regularizer = trial["baseline"], trial["regularizer"]
        params = tuple((c, trial[c]) for c in varying[(baseline, regularizer)])
        label = _row_label(baseline, regularizer, params)
        rows.setdefault(label, (baseline, regularizer, params))
        labels.append(label)
        pair_keys.append(repr(tuple(trial[c] for c in other_cols)))
    done["_row"] = labels
    done["_pair"] = pair_keys

    marked = set(done.loc[~done["_affects"], "_row"])
    row_order = _ordered_rows(rows, list(dict.fromkeys(done["baseline"])))
    tasks = list(dict.fromkeys(done["task"]))
    groups = {key: g for key, g in done.groupby(["task", "_row"], sort=False)}
    none_seeds = {
        (task, baseline, pair, p): _per_seed(g, p)
        for (task, baseline, pair), g in done[done["regularizer"] == "none"].groupby(
            ["task", "baseline", "_pair"], sort=False
        )
        for p in PERCENTILES
    }

    records = []
    for p in PERCENTILES:
        for label in row_order:
            baseline, regularizer, params = rows[label]
            for task in tasks:
                group = groups.get((task, label))
                if group is None:
                    continue
                seeds = _per_seed(group, p)
                if seeds.empty:
                    continue
                gain, paired_n = math.nan, 0
                reference = none_seeds.get((task, baseline, group["_pair"].iloc[0], p))
                if regularizer != "none" and reference is not None:
                    gain, paired_n = _paired_gain(seeds, reference)
                records.append(
                    {
                        "task": task,
                        "row": f"{label} {DAGGER}" if label in marked else label,
                        "baseline": baseline,
                        "regularizer": regularizer,
                        "percentile": p,
                        "mean": float(seeds.mean()),
                        "std": float(seeds.std(ddof=1)) if len(seeds) > 1 else math.nan,
                        "n": len(seeds),
                        "gain_pct": gain,
                        "paired_n": paired_n,
                        "affects_search": bool(group["_affects"].all()),
                        **{c: group[c].iloc[0] for c in reg_cols},
                    }
                )
    long = pd.DataFrame.from_records(records, columns=[*LONG_COLUMNS, *reg_cols])
    if long.empty:
        raise UserError(
            "the finished trials have no scores (score_100th/80th/50th are empty); check the "
            "trials' final metrics in MLflow and rerun `ignite-mbo sweep ...`"
        )
    n_max = int(long["n"].max())
    tables = {p: _table(long[long["percentile"] == p], tasks, n_max) for p in PERCENTILES}
    return Report(long, tables, _notes(n_max, n_ignored, bool(marked)), _objective_kind(done))


def log_report_to_mlflow(
    report: Report,
    out_dir: Path,
    tracking_uri: str,
    experiment_name: str,
    parent_run_id: str | None = None,
) -> str:
    """Write the report to ``out_dir`` and log its files under ``report/`` to a run named ``report``.

    The run is created in ``experiment_name`` (created if missing) or, given ``parent_run_id``,
    as a nested child of that run in the parent's experiment. It is tagged
    ``ignite_mbo.kind=report``. Returns the report run's id.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    paths = report.write(out_dir)
    client = MlflowClient(tracking_uri=tracking_uri)
    tags = {"ignite_mbo.kind": "report"}
    if parent_run_id:
        try:
            experiment_id = client.get_run(parent_run_id).info.experiment_id
        except MlflowException as exc:
            raise UserError(
                f"parent run {parent_run_id} not found in {tracking_uri}; "
                "pass the sweep's run id from that tracking store or leave it out"
            ) from exc
        tags["mlflow.parentRunId"] = parent_run_id
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(experiment_name)
        elif experiment.lifecycle_stage == "deleted":
            raise UserError(
                f"MLflow experiment {experiment_name!r} is deleted; restore it "
                f"(`mlflow experiments restore`) or pick another experiment name"
            )
        else:
            experiment_id = experiment.experiment_id
    run_id = client.create_run(experiment_id, tags=tags, run_name="report").info.run_id
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path="report")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def plot_sensitivity(results: pd.DataFrame, param: str, out_path: Path) -> Path:
    """Plot the 100th-percentile gain % against one regularizer hyperparameter.

    ``param`` is a regularizer config column (``config.regularizer.epsilon``) or its short name
    (``epsilon``). One line per (task, baseline, regularizer); cells that differ in other
    hyperparameters are averaged. Written atomically as PNG; returns ``out_path``.
    """
    from matplotlib.figure import Figure

    long = build_report(results).long
    column = param if param in long.columns else f"config.regularizer.{param}"
    if column not in long.columns:
        known = ", ".join(c for c in long.columns if _is_regularizer_column(c)) or "none"
        raise UserError(f"no regularizer column {param!r} in the results; use one of: {known}")
    data = long[(long["percentile"] == "100th") & long["gain_pct"].notna() & long[column].notna()]
    if data.empty:
        raise UserError(
            f"no paired gains for {column}; the sweep needs regularized and `none` trials "
            "with shared seeds"
        )
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    curves = data.groupby(["task", "baseline", "regularizer", column], sort=False)["gain_pct"].mean()
    for (task, baseline, regularizer), curve in curves.groupby(level=[0, 1, 2], sort=False):
        curve = curve.droplevel([0, 1, 2]).sort_index()
        marked = not data.loc[data["baseline"] == baseline, "affects_search"].all()
        label = f"{task} / {baseline}{' ' + DAGGER if marked else ''} + {regularizer}"
        ax.plot(curve.index, curve.to_numpy(), marker="o", ls="--" if marked else "-", label=label)
    values = pd.to_numeric(data[column], errors="coerce")
    if values.notna().all() and values.min() > 0 and values.max() >= 100 * values.min():
        ax.set_xscale("log")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel(column)
    ax.set_ylabel("gain over none, 100th pct. (%)")
    fig.legend(loc="outside lower center", fontsize=7, ncols=2)
    if not data["affects_search"].all():
        ax.set_title(DAGGER_NOTE, fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_path, buffer.getvalue())
    return out_path


def _finished_trials(results: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The TERMINATED trials (a copy, key columns as str) and how many trials were left out."""
    if len(results) == 0:
        raise UserError(
            "results table is empty; run `ignite-mbo sweep ...` first and pass its results table"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise UserError(
            f"results table lacks column(s) {', '.join(missing)}; "
            "pass the results table written by `ignite-mbo sweep`"
        )
    finished = results["status"].astype(str) == "TERMINATED"
    if not finished.any():
        raise UserError(
            "results table has no finished trials; run `ignite-mbo sweep ...` first "
            "or check the sweep's errors in MLflow"
        )
    done = results[finished].copy()
    for column in ("task", "baseline", "regularizer"):
        done[column] = done[column].astype(str)
    for p in PERCENTILES:
        done[f"score_{p}"] = pd.to_numeric(done[f"score_{p}"], errors="coerce")
    done["_affects"] = [not _is_false(v) for v in done["regularizer_affects_search"]]
    return done, int((~finished).sum())


def _is_config_column(column: str) -> bool:
    return column.startswith("config.") and column.rsplit(".", 1)[-1] != "seed"


def _is_regularizer_column(column: str) -> bool:
    return _is_config_column(column) and (
        column == "config.regularizer" or column.startswith(("config.regularizer.", "config.regularizer_"))
    )


def _is_false(value: Any) -> bool:
    """True only for an explicit False (missing means the regularizer may affect the search)."""
    return value is not None and not pd.isna(value) and not bool(value)


def _hashable(value: Any) -> Any:
    """A hashable, comparable form of a config value (arrays/lists → tuples, NaN → None).

    The sweep stores config columns as text, so numeric text becomes a number again and
    ``"None"``/``"nan"``/``""`` become None.
    """
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _parse_text(text: str) -> Any:
    if text in ("", "None", "nan", "NaN"):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _varying_columns(done: pd.DataFrame, columns: list[str]) -> dict[tuple[str, str], list[str]]:
    """Per (baseline, regularizer): config columns that vary inside some task's group."""
    varying: dict[tuple[str, str], list[str]] = {}
    for (_, baseline, regularizer), group in done.groupby(["task", "baseline", "regularizer"], sort=False):
        found = varying.setdefault((baseline, regularizer), [])
        found += [c for c in columns if c not in found and len(set(group[c])) > 1]
    for found in varying.values():  # regularizer params first, then the rest, in column order
        found.sort(key=lambda c: (not _is_regularizer_column(c), columns.index(c)))
    return varying


def _row_label(baseline: str, regularizer: str, params: Params) -> str:
    label = f"{baseline} + {regularizer}"
    if params:
        label += " (" + ", ".join(f"{_param_name(c)}={_format_value(v)}" for c, v in params) + ")"
    return label


def _param_name(column: str) -> str:
    return column.removeprefix("config.regularizer.").removeprefix("config.")


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ordered_rows(rows: dict[str, tuple[str, str, Params]], baselines: list[str]) -> list[str]:
    """Baselines by first appearance; none, ignite, ignite2, then other regularizers; then params."""
    regularizers = list(REGULARIZER_ORDER) + [r for _, r, _ in rows.values() if r not in REGULARIZER_ORDER]

    def key(label: str) -> tuple:
        baseline, regularizer, params = rows[label]
        return baselines.index(baseline), regularizers.index(regularizer), [_sortable(v) for _, v in params]

    return sorted(rows, key=key)


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0, value
    return (2, "") if value is None else (1, str(value))


def _per_seed(group: pd.DataFrame, percentile: str) -> pd.Series:
    """Score per seed (trials sharing a seed averaged), NaN scores dropped."""
    return group.groupby("seed")[f"score_{percentile}"].mean().dropna()


def _paired_gain(regularized: pd.Series, none: pd.Series) -> tuple[float, int]:
    """Gain in % over ``none`` on the seeds both have, and how many seeds that is."""
    seeds = regularized.index.intersection(none.index)
    base = float(none[seeds].mean()) if len(seeds) else 0.0
    if base == 0.0:
        return math.nan, len(seeds)
    return 100.0 * float((regularized[seeds] - none[seeds]).mean()) / abs(base), len(seeds)


def _table(long: pd.DataFrame, tasks: list[str], n_max: int) -> pd.DataFrame:
    """Row label × task table of formatted cells; '—' where a row has no runs on a task."""
    labels = list(dict.fromkeys(long["row"]))
    table = pd.DataFrame("—", index=pd.Index(labels, dtype=object), columns=pd.Index(tasks, dtype=object))
    for cell in long.to_dict("records"):
        table.loc[cell["row"], cell["task"]] = _format_cell(cell, n_max)
    return table


def _format_cell(cell: dict[str, Any], n_max: int) -> str:
    """``0.925 ± 0.020 [n=2] (+1.4%, 1 paired)``; the bracket/suffix only when they say something."""
    text = f"{cell['mean']:.3f}" if cell["n"] == 1 else f"{cell['mean']:.3f} ± {cell['std']:.3f}"
    if cell["n"] < n_max:
        text += f" [n={cell['n']}]"
    if not math.isnan(cell["gain_pct"]):
        paired = f", {cell['paired_n']} paired" if cell["paired_n"] < cell["n"] else ""
        text += f" ({cell['gain_pct']:+.1f}%{paired})"
    return text


def _notes(n_max: int, n_ignored: int, any_marked: bool) -> list[str]:
    notes = [
        ("Cells: mean ± sample std (ddof=1) over seeds of finished trials; "
         f"[n=k] marks cells with fewer than {n_max} seeds (n=1 has no std). "
         if n_max > 1 else "Cells: one seed each, so no std. ")
        + "In parentheses: gain over the same baseline with regularizer none on the same task and "
        "non-regularizer config, 100 · mean(reg − none) / |mean(none)| over the seeds both ran "
        "(\"k paired\" when that is fewer than the cell's seeds); no gain where no such none run exists."
    ]
    if n_ignored:
        notes.append(f"{n_ignored} trial(s) that did not finish (status other than TERMINATED) are left out.")
    if any_marked:
        notes.append(DAGGER_NOTE)
    return notes


def _objective_kind(done: pd.DataFrame) -> str | None:
    if "objective_kind" not in done.columns:
        return None
    kinds = [str(v).strip() for v in done["objective_kind"].dropna()]
    return "; ".join(dict.fromkeys(k for k in kinds if k)) or None


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _bar_positions(baselines: list[str]) -> list[float]:
    """Bar x positions: 1 apart, with an extra gap between baselines."""
    xs: list[float] = []
    for i, baseline in enumerate(baselines):
        gap = 0.6 if i and baseline != baselines[i - 1] else 0.0
        xs.append(xs[-1] + 1.0 + gap if xs else 0.0)
    return xs


def _regularizer_colors(regularizers: pd.Series) -> dict[str, str]:
    present = list(dict.fromkeys(regularizers))
    ordered = [r for r in REGULARIZER_ORDER if r in present] + [r for r in present if r not in REGULARIZER_ORDER]
    others = iter(_OTHER_COLORS * (1 + len(ordered) // len(_OTHER_COLORS)))
    return {r: _COLORS.get(r) or next(others) for r in ordered}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
