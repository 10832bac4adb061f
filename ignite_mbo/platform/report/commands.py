"""What ``ignite-mbo report`` over several sweeps and ``ignite-mbo claims`` do (the CLI only parses)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ignite_mbo.errors import UserError
from ignite_mbo.platform.checks import check_printable
from ignite_mbo.platform.report import claims, inputs, plots
from ignite_mbo.platform.report.build import build_report
from ignite_mbo.platform.report.latex import render_latex
from ignite_mbo.platform.report.render import render_markdown, write_atomic, write_report

FORMATS = ("markdown", "latex")
LATEX_FILE = "gain_table.tex"


def report_sources(sources: list[Path], fmt: str = "markdown", output_dir: Path | None = None) -> tuple[str, list[Path]]:
    """One report over every source (sweep folders, results.parquet, trial-record .jsonl), as ``fmt``.

    With ``output_dir`` the report files (and ``gain_table.tex`` for latex) are written there; all are
    rendered before any is written.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if output_dir is not None:  # pass 28: a terminal escape in the folder's name was printed raw
        check_printable("--output-dir", str(output_dir))
    report = build_report(inputs.read_sources(sources))
    text = render_latex(report) if fmt == "latex" else render_markdown(report)
    paths: list[Path] = []
    if output_dir is not None:
        paths = write_report(report, output_dir, {LATEX_FILE: text.encode()} if fmt == "latex" else None)
    return text, paths


def latex_for(sources: list[Path], out_dir: Path) -> Path:
    """Write ``gain_table.tex`` of ``sources`` into ``out_dir`` (next to a sweep's own report)."""
    path = Path(out_dir) / LATEX_FILE
    write_atomic(path, render_latex(build_report(inputs.read_sources(sources))).encode())
    return path


def write_curves(table: pd.DataFrame, tracking_uri: str, out_dir: Path) -> list[Path]:
    """λ and sharpness curves across seeds (read from the trials' MLflow runs) into ``out_dir/curves/``."""
    from ignite_mbo import mlflow_store as store

    def read(run_id: str) -> plots.Histories:
        return store.metric_histories(tracking_uri, run_id, plots.CURVES)

    return plots.plot_curves(build_report(table).results, read, Path(out_dir) / plots.FOLDER)


def claims_text(sources: list[Path]) -> str:
    """The claims section (markdown) over every source."""
    return "\n".join(claims.render(build_report(inputs.read_sources(sources))))
