"""What a trial's record must hold to run it again: its fully resolved settings and the code it ran with.

Every trial run in MLflow gets :func:`record_params` as params (the trial config as given, plus every
effective baseline setting as ``baseline.<name>``, every task option as ``task.<option>``)
and :func:`environment_tags` as tags (package version, git commit, torch / Ray / MLflow / Python
versions); its ``summary.json`` carries both. :func:`config_from_params` turns the params back into
the trial config, which ``ignite-mbo rerun RUN_ID`` runs again.
"""

from __future__ import annotations

import ast
import platform
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ignite_mbo.config import TrialConfig, flatten
from ignite_mbo.errors import UserError, printable

SETTING_PREFIX = "baseline."
"""Params ``baseline.<name>``: the baseline's effective settings (defaults, fidelity and options applied)."""
TASK_PREFIX = "task."
"""Params ``task.<option>``: every task option, defaults filled in."""
TAG_PREFIX = "ignite_mbo."
SOURCE = Path(__file__).resolve().parents[1]
"""The source tree ignite_mbo is imported from."""
_GIVEN = ("baseline_options.", "task_options.", "regularizer.")


def record_params(config: TrialConfig) -> dict[str, Any]:
    """The trial config as given (``config.flat()``), every effective baseline setting and every task option."""
    params = config.flat()
    params.update({f"{SETTING_PREFIX}{key}": value
                   for key, value in config.baseline_settings().model_dump(mode="json").items()})
    params.update(flatten(config.checked_task_options(), TASK_PREFIX))
    return params


def trial_record(config: TrialConfig) -> dict[str, dict[str, Any]]:
    """What a trial's run and ``summary.json`` record: ``params`` (:func:`record_params`) and ``tags``."""
    return {"params": record_params(config), "tags": environment_tags()}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@cache
def git_commit(folder: Path = SOURCE) -> str:
    """The commit of the source tree ``folder`` is in (``<sha>-dirty`` with uncommitted changes to tracked
    files), or ``none`` when it is not a git checkout (an installed wheel, a synced copy)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "none"
    return f"{commit}-dirty" if dirty else commit


@cache
def environment_tags() -> dict[str, str]:
    """Tags naming the code and libraries a trial ran with."""
    return {f"{TAG_PREFIX}version": _version("ignite-mbo"), f"{TAG_PREFIX}git_commit": git_commit(),
            f"{TAG_PREFIX}torch_version": _version("torch"), f"{TAG_PREFIX}ray_version": _version("ray"),
            f"{TAG_PREFIX}mlflow_version": _version("mlflow"), f"{TAG_PREFIX}python_version": platform.python_version()}


def _value(text: str) -> Any:
    """An MLflow param (logged as ``str(value)``) back to its value: numbers, booleans, None, lists; else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            return float(text)  # nan, inf
        except ValueError:
            return text


def config_from_params(params: dict[str, str]) -> tuple[TrialConfig, list[str]]:
    """The trial config a run's params record, and a line for each setting whose effective value the code now
    gives differently (the recorded value is then pinned, so the trial runs as it ran) or that the baseline no
    longer has (it cannot be applied)."""
    if "task" not in params or "baseline" not in params or "seed" not in params:
        raise UserError("the run's params hold no trial config (no 'task', 'baseline' or 'seed'); pass the id of a "
                        "trial run made by ignite-mbo")
    if not params["seed"].isascii() or not params["seed"].isdigit() or len(params["seed"]) > 19:
        raise UserError(f"the run's seed param is {printable(params['seed'][:40])!r}, not a valid seed (a whole "
                        "number, 0 or more: an edited record?); pass the id of a trial run made by ignite-mbo")
    nested: dict[str, Any] = {"task": params["task"], "baseline": params["baseline"],
                              "seed": int(params["seed"]), "fidelity": params.get("fidelity", "full"),
                              "regularizer": {}, "baseline_options": {}, "task_options": {}}
    for key, text in params.items():
        if key.startswith(_GIVEN):
            group, _, name = key.partition(".")
            nested[group][name] = text if name == "name" else _value(text)
    config = TrialConfig.parse(nested)
    lines: list[str] = []
    for prefix, group in ((SETTING_PREFIX, "baseline_options"), (TASK_PREFIX, "task_options")):
        recorded = {key.removeprefix(prefix): _value(text) for key, text in params.items() if key.startswith(prefix)}
        of_baseline = group == "baseline_options"
        now = config.baseline_settings().model_dump(mode="json") if of_baseline else config.checked_task_options()
        label, owner = ("", config.baseline) if of_baseline else ("task option ", config.task)
        changed = [key for key in sorted(recorded) if key in now and now[key] != recorded[key]]
        lines += [f"pinned to the recorded value: {label}{key}: recorded {recorded[key]!r}, now {now[key]!r}"
                  for key in changed]
        lines += [f"not applied: {label}{key} (recorded {recorded[key]!r}) is not a setting of {owner} today"
                  for key in sorted(recorded) if key not in now]
        if changed:
            nested[group] = {**nested[group], **{key: recorded[key] for key in changed}}
            config = TrialConfig.parse(nested)
    return config, lines
