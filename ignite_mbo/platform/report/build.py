"""Building the gain report from a sweep's results table: numbers only (rendering is in ``render``).

Input is a sweep's results table (one row per Ray Tune trial). Only ``TERMINATED`` trials count.
Each cell is the mean ± sample std (ddof=1) over seeds of one normalised-score percentile; a
regularized cell also has its gain over the same baseline with regularizer ``none`` on the same
task and non-regularizer config, with seeds paired: ``100 · mean_s(reg_s − none_s) / |mean_s(none_s)|``
over the seeds both ran, the 95 % t-interval of that gain and the exact sign-flip p-value of the
paired differences (:mod:`stats`); ``significant`` follows that p-value.

Config columns (``config.*``) define rows: a column that varies inside one (task, baseline,
regularizer) group is added to the row label (``grad-ascent + ignite (epsilon=0.05)``).
Regularizer columns (``config.regularizer``, ``config.regularizer.*``, ``config.regularizer_*``)
are ignored when pairing with ``none``; every other config column must match. Columns whose last
dotted part is ``seed`` are seeds, not config. Several trials with the same seed in one cell are
averaged into one value for that seed. A row whose trials ran baseline settings that differ from
the paper's protocol (column ``protocol_deviations``) is marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ignite_mbo import evaluation
from ignite_mbo.errors import UserError
from ignite_mbo.platform.report import stats

PERCENTILES = tuple(f"{rank}th" for rank in evaluation.PERCENTILES)
"""The score percentiles a trial reports, as labels: ``100th``, ``80th``, ``50th``."""
REQUIRED_COLUMNS = (
    "task", "baseline", "regularizer", "seed", "status",
    *(f"score_{p}" for p in PERCENTILES),
    "regularizer_affects_search",
)
REGULARIZER_ORDER = ("none", "ignite", "ignite2")
DAGGER = "†"
DAGGER_NOTE = (
    f"{DAGGER} the regularized model does not feed this baseline's search: "
    "differences are seed noise, not gains"
)
DEVIATION_MARK = "‡"
LONG_COLUMNS = (
    "task", "row", "baseline", "regularizer", "percentile", "mean", "std", "n",
    "gain_pct", "gain_ci_low", "gain_ci_high", "p_value", "significant", "paired_n",
    "affects_search", "protocol_deviations",
)

Params = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Report:
    """A built gain report.

    ``long`` is the numeric long form (``LONG_COLUMNS`` plus one column per regularizer config
    column); ``tasks`` and ``rows`` give the tables' column and row order; ``deviations`` maps
    each marked row to the protocol deviations its trials ran with.
    """

    long: pd.DataFrame
    tasks: list[str]
    rows: list[str]
    n_max: int
    n_ignored: int
    deviations: dict[str, str]
    objective_kind: str | None
    results: pd.DataFrame
    """The finished trials the report was built from (for the reproduction check)."""


@dataclass(frozen=True)
class Gain:
    """A paired-by-seed gain in %: its 95 % t-interval, the exact sign-flip p-value and n (see :mod:`stats`).

    The interval is the t-interval of the mean difference, scaled like the gain by ``100 / |mean(none)|``.
    """

    pct: float
    low: float
    high: float
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        """Told apart from 0 by the sign-flip test printed beside it (p < ALPHA)."""
        return bool(self.p_value < stats.ALPHA)


NO_GAIN = Gain(math.nan, math.nan, math.nan, math.nan, 0)


def paired_gain(regularized: pd.Series, none: pd.Series) -> Gain:
    """The gain of ``regularized`` over ``none`` (scores indexed by seed) on the seeds both have."""
    seeds = regularized.index.intersection(none.index)
    reg = regularized[seeds].to_numpy(dtype=float)
    ref = none[seeds].to_numpy(dtype=float)
    if len(seeds) == 0 or ref.mean() == 0.0:
        return Gain(math.nan, math.nan, math.nan, math.nan, len(seeds))
    test = stats.paired_test(reg - ref)
    scale = 100.0 / abs(float(ref.mean()))
    return Gain(scale * test.mean, scale * test.low, scale * test.high, test.p_value, test.n)


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
    deviations = {label: ", ".join(sorted({name for text in group["_deviations"] for name in text.split(",") if name}))
                  for label, group in done.groupby("_row", sort=False)}
    deviations = {label: names for label, names in deviations.items() if names}
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
    display: dict[str, str] = {}
    for label in row_order:
        display[label] = label + (f" {DAGGER}" if label in marked else "") + (
            f" {DEVIATION_MARK}" if label in deviations else "")
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
                gain = NO_GAIN
                reference = none_seeds.get((task, baseline, group["_pair"].iloc[0], p))
                if regularizer != "none" and reference is not None:
                    gain = paired_gain(seeds, reference)
                records.append({
                    "task": task, "row": display[label], "baseline": baseline, "regularizer": regularizer,
                    "percentile": p, "mean": float(seeds.mean()),
                    "std": float(seeds.std(ddof=1)) if len(seeds) > 1 else math.nan,
                    "n": len(seeds), "gain_pct": gain.pct, "gain_ci_low": gain.low, "gain_ci_high": gain.high,
                    "p_value": gain.p_value, "significant": gain.significant, "paired_n": gain.n,
                    "affects_search": bool(group["_affects"].all()),
                    "protocol_deviations": deviations.get(label, ""),
                    **{c: group[c].iloc[0] for c in reg_cols},
                })
    long = pd.DataFrame.from_records(records, columns=[*LONG_COLUMNS, *reg_cols])
    if long.empty:
        raise UserError(
            "the finished trials have no scores (score_100th/80th/50th are empty); check the "
            "trials' final metrics in MLflow and rerun `ignite-mbo sweep ...`"
        )
    return Report(long, tasks, [display[label] for label in row_order], int(long["n"].max()), n_ignored,
                  {display[label]: names for label, names in deviations.items()}, _objective_kind(done), done)


def _finished_trials(results: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The TERMINATED trials (a copy, key columns as str) and how many trials were left out."""
    if len(results) == 0:
        raise UserError("results table is empty; run `ignite-mbo sweep ...` first and pass its results table")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise UserError(f"results table lacks column(s) {', '.join(missing)}; "
                        "pass the results table written by `ignite-mbo sweep`")
    finished = results["status"].astype(str) == "TERMINATED"
    if not finished.any():
        raise UserError("results table has no finished trials; run `ignite-mbo sweep ...` first "
                        "or check the sweep's errors in MLflow")
    done = results[finished].copy()
    for column in ("task", "baseline", "regularizer"):
        done[column] = done[column].astype(str)
    for p in PERCENTILES:
        done[f"score_{p}"] = pd.to_numeric(done[f"score_{p}"], errors="coerce")
    done["_affects"] = [not _is_false(v) for v in done["regularizer_affects_search"]]
    column = done["protocol_deviations"] if "protocol_deviations" in done.columns else pd.Series("", index=done.index)
    done["_deviations"] = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).replace(" ", "")
                           for v in column]
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
    """A row label's setting value; a setting the trial did not record ran at its default."""
    if value is None or (isinstance(value, float) and value != value):
        return "default"
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


def _objective_kind(done: pd.DataFrame) -> str | None:
    if "objective_kind" not in done.columns:
        return None
    kinds = [str(v).strip() for v in done["objective_kind"].dropna()]
    return "; ".join(dict.fromkeys(k for k in kinds if k)) or None




def _per_seed(group: pd.DataFrame, percentile: str) -> pd.Series:
    """Score per seed (trials sharing a seed averaged), NaN scores dropped."""
    return group.groupby("seed")[f"score_{percentile}"].mean().dropna()
