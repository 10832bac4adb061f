"""From a Ray Tune trial's parameters to the nested trial config they stand for.

The sweep's driver builds Tune's ``param_space`` from a search space; a trial (on any worker) turns
its parameters back into a trial config with :func:`resolve_params`. Dotted keys reach into nested
fields (``regularizer.epsilon``, ``baseline_options.epochs``).
"""

from __future__ import annotations

import copy
from typing import Any

from ignite_mbo.errors import UserError

TRIAL_INDEX = "__trial_index__"
"""Set by Tune's ``Repeater`` (search algorithms): which grid point a suggestion runs on."""


def resolve_params(params: dict[str, Any], grid: list[dict[str, Any]]) -> dict[str, Any]:
    """A Tune trial's config dict -> the nested trial config it stands for.

    ``params["trial"]`` is the grid point (a grid search), or the ``Repeater``'s index picks it
    from ``grid`` (a search algorithm); sampled ``params["search"]`` values are then set on it.
    """
    trial = params.get("trial")
    if isinstance(trial, dict) and "grid_search" not in trial:
        config = copy.deepcopy(trial)
    else:
        index = params.get(TRIAL_INDEX, 0)
        config = copy.deepcopy(grid[int(index)] if isinstance(index, int) and 0 <= index < len(grid) else {})
    search = params.get("search")
    for key, value in (search.items() if isinstance(search, dict) else ()):
        set_dotted(config, key, value.item() if hasattr(value, "item") else value)
    return normalise(config)


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """``config["a"]["b"] = value`` for ``dotted_key="a.b"`` (``regularizer: ignite`` becomes a mapping)."""
    *parents, leaf = dotted_key.split(".")
    node = config
    for part in parents:
        if part == "regularizer" and not isinstance(node.get(part), dict):  # "regularizer: ignite", then ".epsilon"
            node[part] = {"name": node.get(part, "none")}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"key {dotted_key!r} reaches into {part!r}, which is not a mapping")
    node[leaf] = value


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with a regularizer name expanded to ``{"name": ...}``."""
    config = {key: (copy.deepcopy(value) if isinstance(value, dict) else value) for key, value in config.items()}
    if isinstance(config.get("regularizer"), str):
        config["regularizer"] = {"name": config["regularizer"]}
    return config


def short_task(task: str) -> str:
    """``TFBind8-Exact-v0`` -> ``TFBind8``."""
    return task.split("-", 1)[0]


def run_name(config: dict[str, Any], index: str | None = None) -> str:
    """A short, distinct MLflow run name: ``grad-ascent ignite TFBind8 s3`` (``#00007``, the Tune trial's
    number, when several trials share those four)."""
    regularizer = config.get("regularizer") or {}
    name = regularizer.get("name", "none") if isinstance(regularizer, dict) else str(regularizer)
    task = short_task(str(config.get("task", "TFBind8")))
    text = f"{config.get('baseline', 'grad-ascent')} {name} {task} s{config.get('seed', 0)}"
    return text if index is None else f"{text} #{index}"
