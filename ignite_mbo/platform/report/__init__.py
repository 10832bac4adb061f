"""The gain report of a sweep: :mod:`build` computes it, :mod:`render` writes it, :mod:`reproduction`
compares against published numbers; it is logged under ``report/`` of the sweep's MLflow run."""

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
