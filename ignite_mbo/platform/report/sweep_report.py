"""A sweep's report as files next to its results, and on its MLflow parent run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ignite_mbo import mlflow_store as store
from ignite_mbo.errors import UserError
from ignite_mbo.platform import report as reporting
from ignite_mbo.platform.record import SweepRecord


def report_sweep(sweep_dir: Path, table: pd.DataFrame, record: SweepRecord | None, *,
                 mlflow: bool = True) -> tuple[str, list[Path]]:
    """Build and write the gain report, reproduction check and sensitivity plots; with ``mlflow``, log
    them to the sweep's parent run (replacing an earlier report). Returns the markdown and the files."""
    report = reporting.build_report(table)
    paths = reporting.write_report(report, sweep_dir)
    markdown = reporting.render_markdown(report)
    params = ((record.spec.get("report") or {}).get("sensitivity") or []) if record else []
    notes = []
    for param in params:
        try:
            paths.append(reporting.plot_sensitivity(table, param, sweep_dir / f"sensitivity_{param}.png"))
            markdown += f"\nSensitivity of the 100th-percentile gain: {paths[-1]}\n"
        except UserError as error:
            notes.append(f"no sensitivity plot for {param}: {error}")
    if notes:
        markdown += "\n" + "\n\n".join(notes) + "\n"
    if mlflow and record is not None:
        store.log_files(record.tracking_uri, record.parent_run_id, paths, "report")  # replaces the earlier ones
    return markdown, paths
