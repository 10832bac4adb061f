"""The per-sweep results table: one row per trial, its config and its final metrics (Parquet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ignite_mbo import baselines
from ignite_mbo.atomic import atomic_write
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError, shown
from ignite_mbo.protocol import PROTOCOL_DEVIATIONS

SUMMARY_COLUMNS = (
    "score_100th", "score_80th", "score_50th", "score_mean", "num_candidates", "sharpness_train",
    "sharpness_candidates", "final_lambda", "regularizer_affects_search", "wall_time_s", "cpu_time_s",
    "mlflow_run_id",
)


def results_table(trials: Any) -> pd.DataFrame:
    """One row per finished (or failed) trial; each has ``config`` (a TrialConfig), ``metrics``, ``error``
    and ``path``. ``config.*`` columns keep the config's types (see :func:`typed_column`)."""
    rows = []
    for trial in trials:
        config: TrialConfig = trial.config
        metrics = trial.metrics or {}
        row = {
            "trial_id": metrics.get("trial_id", Path(trial.path).name),
            "status": "ERROR" if trial.error else "TERMINATED",
            "error": raised(trial.error) if trial.error else "",
            "task": config.task,
            "baseline": config.baseline,
            "regularizer": config.regularizer.name,
            "seed": config.seed,
        }
        row.update({column: metrics.get(column) if not trial.error else None for column in SUMMARY_COLUMNS})
        row[PROTOCOL_DEVIATIONS] = str(metrics.get(PROTOCOL_DEVIATIONS) or "")
        row.update({f"config.{key}": value for key, value in config.flat().items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in [c for c in table.columns if c.startswith("config.")]:
        table[column] = typed_column([row.get(column) for row in rows])
    baseline_order = {name: index for index, name in enumerate(baselines.names())}  # the paper's order, not alphabetical
    order = table.assign(_baseline=table["baseline"].map(baseline_order))
    order = order.sort_values(["task", "_baseline", "regularizer", "seed"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def raised(error: BaseException) -> str:
    """What a failed trial raised, as ``Type: message`` (at most 1,000 characters): the error inside Ray's
    ``RayTaskError``, whose own text starts with the actor's name in terminal colors, not the wrapper."""
    inner = getattr(error, "cause", None)
    error = inner if isinstance(inner, BaseException) else error
    return f"{type(error).__name__}: {error}"[:1000]


def typed_column(values: list[Any]) -> pd.Series:
    """A config column with its values' type: booleans, integers, floats (a mix of ints and floats) or
    text, missing values as nulls (a regularizer without ε, say); lists, mappings and mixed types
    as JSON text."""
    present = [value for value in values if value is not None]
    kinds = {type(value) for value in present}
    if kinds <= {bool}:
        return pd.Series(values, dtype="boolean")
    if kinds <= {int}:
        return pd.Series(values, dtype="Int64")
    if kinds <= {int, float}:
        return pd.Series(values, dtype="Float64")
    if kinds <= {str}:
        return pd.Series(values, dtype="string")
    return pd.Series([None if value is None else json.dumps(value, sort_keys=True) for value in values],
                     dtype="string")


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as Parquet atomically (a temp file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda partial: pq.write_table(pa.Table.from_pandas(table, preserve_index=False), partial))


_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
"""Arrow types read back as pandas' nullable types, so an int or bool column with nulls keeps its type."""


def read_table(path: Path) -> pd.DataFrame:
    """A results table written by :func:`write_table`; corrupt or foreign files are a one-line UserError."""
    try:
        table = pq.read_table(path).to_pandas(types_mapper=_NULLABLE.get)
    except (OSError, pa.ArrowException, ValueError) as error:
        kind = "unreadable" if isinstance(error, PermissionError) else "not a Parquet file (corrupt or truncated)"
        raise UserError(f"{path} is {kind}; pass the results.parquet an 'ignite-mbo sweep' wrote") from None
    missing = [c for c in ("trial_id", "status", "task", "baseline", "regularizer", "seed") if c not in table.columns]
    if missing:
        raise UserError(f"{path} is not a results table of 'ignite-mbo sweep' (no {', '.join(missing)} column); "
                        "pass the results.parquet a sweep wrote")
    numbers = [c for c in table.columns if c.startswith("score_") or c == "seed"]
    for column in numbers:  # an edited or foreign table: refused, not reported as inf or dropped unsaid
        values = pd.to_numeric(table[column], errors="coerce")
        bad = (values.isna() & table[column].notna()) | values.isin([float("inf"), float("-inf")])
        if bad.any():
            raise UserError(f"{path}: column {column} holds {shown(table[column][bad].iloc[0])} for a trial, which "
                            "no sweep writes (the table was edited or is corrupt); pass the results.parquet a sweep "
                            "wrote, or run the sweep again")
    if PROTOCOL_DEVIATIONS not in table.columns:
        table[PROTOCOL_DEVIATIONS] = ""
    return table
