"""The gain report of a sweep: :mod:`build` computes it, :mod:`render` writes it, :mod:`reproduction`
compares against published numbers; :func:`ignite_mbo.mlflow_store.log_report` logs it to MLflow."""

from ignite_mbo.platform.report.build import Gain, Report, build_report, paired_gain
from ignite_mbo.platform.report.render import (
    ARTIFACT_NAMES,
    plot_sensitivity,
    render_figure,
    render_markdown,
    write_report,
)

__all__ = ["ARTIFACT_NAMES", "Gain", "Report", "build_report", "paired_gain", "plot_sensitivity",
           "render_figure", "render_markdown", "write_report"]
