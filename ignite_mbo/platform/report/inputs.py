"""Reading what the report and ``claims`` compare: sweep folders, results tables and trial records.

A source is one of:

- a sweep folder (``OUTPUT_DIR/<name>``, holding ``results.parquet``) or a ``results.parquet`` itself;
- a JSON-lines file of trial records written by ``benchmarks/trials.py`` (one finished trial per line:
  task, baseline, regularizer, seed, fidelity, options and the trial's summary).

Several sources become one table. When the same trial (task, baseline, regularizer, config, seed) is in
more than one source, a ``config.sweep`` column (the source's name) keeps each source's trials apart,
so seeds pair only inside their own sweep; otherwise sources pair with each other (a ``none`` sweep and
an ``ignite`` sweep compare seed for seed).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ignite_mbo.errors import UserError
from ignite_mbo.platform.record import RESULTS_FILE
from ignite_mbo.platform.results import read_table
from ignite_mbo.regularizers.base import one_line
from ignite_mbo.tasks.data import file_kind

SWEEP_COLUMN = "config.sweep"
def _not_infinite(value: float | None) -> float | None:
    if value is not None and math.isinf(value):
        raise ValueError("a score or a time cannot be infinite")
    return value


Score = Annotated[float | None, AfterValidator(_not_infinite)]
"""A finite score; null or NaN for a trial that failed."""
Seconds = Annotated[float | None, Field(ge=0), AfterValidator(_not_infinite)]


class RecordLine(BaseModel):
    """The types of a trial record's fields that the report reads (others pass as they are). A score may be
    null, for a trial that failed."""

    model_config = ConfigDict(strict=True, extra="allow")
    task: Annotated[str, Field(min_length=1)]
    baseline: Annotated[str, Field(min_length=1)]
    regularizer: Annotated[str, Field(min_length=1)]
    fidelity: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    score_100th: Score
    score_80th: Score = None
    score_50th: Score = None
    score_mean: Score = None
    regularizer_affects_search: bool = True
    options: dict[str, Any] = {}
    cpu_time_s: Seconds = None
    wall_time_s: Seconds = None


RECORD_KEYS = tuple(name for name, field in RecordLine.model_fields.items() if field.is_required())
"""Keys every trial record (JSON line) must have."""


def results_path(source: Path) -> Path:
    """The results file a source names: ``source/results.parquet`` for a folder, else ``source``."""
    path = source / RESULTS_FILE if source.is_dir() else source
    if path.is_file():
        return path
    fix = (f"pass a sweep folder made by 'ignite-mbo sweep', its {RESULTS_FILE}, or a .jsonl of trial records "
           "from benchmarks/trials.py")
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path} is a symlink to {os.readlink(path)} that reaches no file (dangling, or a loop); {fix}")
    if path.exists():
        raise UserError(f"{path} is {file_kind(path)}, not a results table; {fix}")
    raise UserError(f"no results at {path}; {fix}")


def read_source(source: Path) -> pd.DataFrame:
    """One source as a results table (see the module docstring)."""
    path = results_path(Path(source))
    return read_records(path) if path.suffix == ".jsonl" else read_table(path)


def read_sources(sources: list[Path]) -> pd.DataFrame:
    """All sources as one results table; ``config.sweep`` only where the same trial is in two sources."""
    if not sources:
        raise UserError("no sweep given; pass one or more sweep folders, results.parquet or .jsonl files")
    tables = [read_source(source) for source in sources]
    if len(tables) == 1:
        return tables[0]
    names = _source_names(sources)
    table = pd.concat([t.assign(**{SWEEP_COLUMN: name}) for t, name in zip(tables, names, strict=True)],
                      ignore_index=True)
    config = sorted(c for c in table.columns if c.startswith("config.") and c != SWEEP_COLUMN
                    and c.rsplit(".", 1)[-1] != "seed")
    keys = ["task", "baseline", "regularizer", "seed", *config]
    as_text = table[keys].apply(lambda column: column.map(str))
    if not (as_text.assign(_source=table[SWEEP_COLUMN]).groupby(keys)["_source"].nunique() > 1).any():
        table = table.drop(columns=SWEEP_COLUMN)
    return table


def read_records(path: Path) -> pd.DataFrame:
    """A ``benchmarks/trials.py`` JSON-lines file as a results table of finished trials."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        raise UserError(f"{path} is unreadable; pass a .jsonl of trial records from benchmarks/trials.py") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:  # not JSON, nested past Python's stack, a 5,000-digit number
            what = "is nested too deep" if isinstance(error, RecursionError) else "is not JSON a record can hold"
            raise UserError(f"{path}:{number} {what}; each line must be one trial record from "
                            "benchmarks/trials.py") from None
        missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            raise UserError(f"{path}:{number} lacks {', '.join(missing)}; each line must be one trial record "
                            "from benchmarks/trials.py")
        try:
            RecordLine.model_validate(record)
        except ValidationError as error:
            raise UserError(f"{path}:{number}: {one_line(error)}; each line must be one trial record from "
                            "benchmarks/trials.py") from None
        rows.append(record)
    if not rows:
        raise UserError(f"{path} holds no trial records; run benchmarks/trials.py into it first")
    return records_table(rows, path.stem)


def records_table(records: list[dict[str, Any]], name: str = "record") -> pd.DataFrame:
    """Trial records (dicts as ``benchmarks/trials.py`` writes them) as a results table of finished trials."""
    return pd.DataFrame([_record_row(record, f"{name}-{number}") for number, record in enumerate(records, start=1)])


def _record_row(record: dict[str, Any], trial_id: str) -> dict[str, Any]:
    options = record.get("options") or {}
    row = {key: value for key, value in record.items() if key != "options"}
    row.update({
        "trial_id": trial_id, "status": "TERMINATED", "error": "",
        "protocol_deviations": str(record.get("protocol_deviations") or ""),
        "config.task": record["task"], "config.baseline": record["baseline"],
        "config.fidelity": record.get("fidelity", ""), "config.regularizer.name": record["regularizer"],
    })
    row.update({f"config.baseline_options.{key}": json.dumps(value) for key, value in sorted(options.items())})
    return row


def _source_names(sources: list[Path]) -> list[str]:
    """Short distinct names: the folder (or file stem), with the parent prepended where two clash."""
    names = [(s if s.is_dir() else (s.parent if s.name == RESULTS_FILE else s.with_suffix(""))).name
             for s in map(Path, sources)]
    if len(set(names)) < len(names):
        names = [str(Path(s).resolve()) for s in sources]
    return names
