"""Rendering a built report: markdown tables, the bar chart, the sensitivity plot, files written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ignite_mbo.atomic import atomic_write, atomic_write_all, new_folders
from ignite_mbo.errors import UserError
from ignite_mbo.platform.report import claims, compare, reproduction, stats
from ignite_mbo.platform.report.build import (
    DAGGER,
    DAGGER_NOTE,
    DEVIATION_MARK,
    PERCENTILES,
    REGULARIZER_ORDER,
    Report,
    _is_regularizer_column,
    build_report,
)

ARTIFACT_NAMES = ("gain_table.md", "gain_table.csv", "gain_table.png")
REPRODUCTION_FILE = "reproduction_check.csv"
SIGNIFICANT = "*"
_COLORS = {"none": "0.65", "ignite": "tab:blue", "ignite2": "tab:orange"}
_OTHER_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def cell_table(report: Report, percentile: str) -> pd.DataFrame:
    """Row label × task table of formatted cells; '—' where a row has no runs on a task."""
    long = report.long[report.long["percentile"] == percentile]
    table = pd.DataFrame("—", index=pd.Index(report.rows, dtype=object), columns=pd.Index(report.tasks, dtype=object))
    for cell in long.to_dict("records"):
        table.loc[cell["row"], cell["task"]] = _format_cell(cell, report.n_max)
    return table.loc[[row for row in report.rows if (table.loc[row] != "—").any()]]


def render_markdown(report: Report) -> str:
    """One table per percentile, the gains with their uncertainty, the reproduction check, the footnotes."""
    lines = ["## IGNITE gain report", ""]
    if report.objective_kind:
        lines += [f"Objective: {report.objective_kind}", ""]
    for percentile in PERCENTILES:
        table = cell_table(report, percentile)
        lines += [
            f"### {percentile} percentile (n = {report.n_max} seed{'s' if report.n_max > 1 else ''} per cell "
            "unless marked [n=k])",
            "",
            _md_row(["baseline + regularizer", *table.columns]),
            _md_row(["---"] * (len(table.columns) + 1)),
            *(_md_row([label, *table.loc[label]]) for label in table.index),
            "",
        ]
    lines += _gains_section(report)
    lines += compare.render(compare.contests(report))
    check = reproduction.render(reproduction.compare(report.results))
    if check:
        lines += [check]
    for note in notes(report):
        lines += [note, ""]
    if claims.cells(report):
        lines += claims.render(report)
    return "\n".join(lines)


def _gains_section(report: Report) -> list[str]:
    gains = report.long[(report.long["percentile"] == "100th") & report.long["gain_pct"].notna()]
    if gains.empty:
        return []
    lines = ["### Gains over none, 100th percentile (paired by seed)", "",
             "| baseline + regularizer | task | gain | 95% t-interval | sign-flip p | n |",
             "| --- | --- | --- | --- | --- | --- |"]
    for g in gains.to_dict("records"):
        ci = "—" if math.isnan(g["gain_ci_low"]) else f"{g['gain_ci_low']:+.1f}% .. {g['gain_ci_high']:+.1f}%"
        p = "—" if math.isnan(g["p_value"]) else f"{g['p_value']:.3g}"
        mark = f" {SIGNIFICANT}" if g["significant"] else ""
        lines.append(_md_row([g["row"], g["task"], f"{g['gain_pct']:+.1f}%{mark}", ci, p, str(g["paired_n"])]))
    lines += ["", f"{SIGNIFICANT}: the {stats.TEST_NAME} printed beside it gives p < {stats.ALPHA:g} "
              f"(exact over all 2^n sign patterns up to n = {stats.EXACT_UP_TO}). The interval is the "
              "t-interval of the mean paired difference, scaled like the gain.", ""]
    fewest = int(gains["paired_n"].min())
    if fewest < stats.min_pairs():
        lines += [f"**Warning:** {stats.too_few_warning(fewest)}.", ""]
    return lines


def render_figure(report: Report) -> bytes:
    """The 100th-percentile gain over none of each regularized row with its t-interval, one subplot per
    task (PNG); the axis spans the gains, with 0 drawn."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    data = report.long[(report.long["percentile"] == "100th") & report.long["gain_pct"].notna()]
    tasks = [task for task in report.tasks if (data["task"] == task).any()] or report.tasks
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(max(7, 5 * ncols), 4.5 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = _regularizer_colors(data["regularizer"])
    for ax, task in zip(axes, tasks, strict=False):
        bars = data[data["task"] == task].to_dict("records")
        xs = _bar_positions([bar["baseline"] for bar in bars])
        for x, bar in zip(xs, bars, strict=True):
            low, high = bar["gain_ci_low"], bar["gain_ci_high"]
            error = None if math.isnan(low) else [[bar["gain_pct"] - low], [high - bar["gain_pct"]]]
            ax.bar(x, bar["gain_pct"], yerr=error, capsize=3, color=colors[bar["regularizer"]], edgecolor="black",
                   hatch=None if bar["affects_search"] else "//")
            up = bar["gain_pct"] >= 0
            end = (high if up else low) if not math.isnan(low) else bar["gain_pct"]
            ax.annotate(f"n={bar['paired_n']}{' ' + SIGNIFICANT if bar['significant'] else ''}", (x, end),
                        xytext=(0, 2 if up else -2), textcoords="offset points", ha="center",
                        va="bottom" if up else "top", fontsize=7)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(xs, [bar["row"] for bar in bars], rotation=60, ha="right", fontsize=7)
        ax.set_title(task)
        ax.set_ylabel("gain over none, 100th pct. (%), 95% t-interval")
        if not bars:
            ax.text(0.5, 0.5, "no paired gains", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=c, edgecolor="black", label=r) for r, c in colors.items()]
    if not data["affects_search"].all():
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label=f"{DAGGER} search never queries the regularized model"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_report(report: Report, out_dir: Path, extra: dict[str, bytes] | None = None) -> list[Path]:
    """Write gain_table.{md,csv,png} (and reproduction_check.csv, and the ``extra`` files) into ``out_dir``: all
    are rendered before any is written, and written all or none (pass 24: a ``.tex`` written after them failed
    alone on a full disk and left them behind)."""
    contents = {
        "gain_table.md": render_markdown(report).encode(),
        "gain_table.csv": report.long.to_csv(index=False).encode(),
        "gain_table.png": render_figure(report),
    }
    comparisons = reproduction.compare(report.results)
    if comparisons:
        contents[REPRODUCTION_FILE] = reproduction.to_frame(comparisons).to_csv(index=False).encode()
    contents |= extra or {}
    out_dir = Path(out_dir)
    with new_folders(out_dir):  # a full disk: no file of the report is written, no folder made for it left
        return atomic_write_all({out_dir / name: data for name, data in contents.items()})


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
        raise UserError(f"no paired gains for {column}; the sweep needs regularized and `none` trials with shared seeds")
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
    write_atomic(out_path, buffer.getvalue())
    return out_path


def _format_cell(cell: dict[str, Any], n_max: int) -> str:
    """``0.925 ± 0.020 [n=2] (+1.4%*, 1 paired)``; the bracket/suffix only when they say something."""
    text = f"{cell['mean']:.3f}" if cell["n"] == 1 else f"{cell['mean']:.3f} ± {cell['std']:.3f}"
    if cell["n"] < n_max:
        text += f" [n={cell['n']}]"
    if not math.isnan(cell["gain_pct"]):
        mark = SIGNIFICANT if cell["significant"] else ""
        paired = f", {cell['paired_n']} paired" if cell["paired_n"] < cell["n"] else ""
        text += f" ({cell['gain_pct']:+.1f}%{mark}{paired})"
    return text


def notes(report: Report) -> list[str]:
    n_max = report.n_max
    notes = [
        ("Cells: mean ± sample std (ddof=1) over seeds of finished trials; "
         f"[n=k] marks cells with fewer than {n_max} seeds (n=1 has no std). "
         if n_max > 1 else "Cells: one seed each, so no std. ")
        + "In parentheses: gain over the same baseline with regularizer none on the same task and "
        "non-regularizer config, 100 · mean(reg − none) / |mean(none)| over the seeds both ran "
        f"(\"k paired\" when that is fewer than the cell's seeds; {SIGNIFICANT} when the {stats.TEST_NAME} "
        f"gives p < {stats.ALPHA:g}); no gain where no such none run exists."
    ]
    if report.n_ignored:
        notes.append(f"{report.n_ignored} trial(s) that did not finish (status other than TERMINATED) are left out.")
    if report.long["row"].str.contains(DAGGER).any():
        notes.append(DAGGER_NOTE)
    by_names: dict[str, list[str]] = {}
    for row, names in report.deviations.items():
        by_names.setdefault(names, []).append(row.removesuffix(" " + DEVIATION_MARK))
    if by_names:
        notes.append(f"{DEVIATION_MARK} ran settings that differ from the paper's protocol: " + "; ".join(
            f"{', '.join(rows)}: {names}" for names, rows in by_names.items()) + ".")
    return notes


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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`ignite_mbo.atomic.atomic_write`)."""
    atomic_write(path, lambda partial: partial.write_bytes(data))
