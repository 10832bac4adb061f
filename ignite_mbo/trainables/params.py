"""How a sweep's trials travel through Ray Tune, and the one way back to their :class:`TrialConfig`.

The driver expands a search space once into a list of trial configs. Tune carries each one as its
JSON dump under ``params["trial"]`` (a grid search), or as the index ``__trial_index__`` into that
list (a search algorithm, through Tune's ``Repeater``); sampled values of the space's ``search``
section ride along under ``params["search"]`` as dotted keys. :func:`trial_config` turns a trial's
params back into its config, on the worker (one validation) and on the driver through a
:class:`TrialLookup` (its own configs as they are; a sampled one validated once).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ignite_mbo.config import TrialConfig, set_dotted

TRIAL_INDEX = "__trial_index__"
"""Set by Tune's ``Repeater`` (search algorithms): which of the sweep's trials a suggestion runs on."""


def carried(config: TrialConfig) -> dict[str, Any]:
    """What Tune carries for ``config`` in a grid search: its JSON dump."""
    return config.model_dump(mode="json")


def sampled_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The values Tune sampled for the space's ``search`` section, as plain Python scalars."""
    search = params.get("search")
    return {key: value.item() if hasattr(value, "item") else value
            for key, value in (search.items() if isinstance(search, dict) else ())}


def trial_config(params: Mapping[str, Any], trials: Sequence[TrialConfig]) -> TrialConfig:
    """The trial config a Tune trial's ``params`` stand for (see the module docstring).

    A grid point's dump is validated once; a trial picked by index is the driver's own config,
    validated again only when sampled values are set on it.
    """
    values = sampled_values(params)
    dump = params.get("trial")
    if isinstance(dump, dict) and "grid_search" not in dump:
        raw = copy.deepcopy(dump)
        for key, value in values.items():
            set_dotted(raw, key, value)
        return TrialConfig.parse(raw)
    index = params.get(TRIAL_INDEX, 0)
    if not isinstance(index, int) or not 0 <= index < len(trials):
        raise ValueError(f"trial index {index!r} is not one of the sweep's {len(trials)} trials")
    return trials[index].with_values(values) if values else trials[index]


def _key(params: Mapping[str, Any]) -> str:
    dump = params.get("trial")
    return json.dumps({"trial": dump if isinstance(dump, dict) and "grid_search" not in dump else None,
                       "index": params.get(TRIAL_INDEX), "search": sampled_values(params)},
                      sort_keys=True, default=str)


def _planned(trials: list[TrialConfig]) -> dict[str, TrialConfig]:
    return {_key({"trial": carried(config)}): config for config in trials}


class TrialLookup:
    """The driver's :func:`trial_config`: its planned trials come back as they are (no validation),
    a trial with sampled values is validated once and remembered."""

    def __init__(self, trials: Sequence[TrialConfig]) -> None:
        self.trials = list(trials)
        self.known = _planned(self.trials)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks: keep that small
        return {"trials": self.trials}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.trials = state["trials"]
        self.known = _planned(self.trials)

    def __call__(self, params: Mapping[str, Any]) -> TrialConfig:
        key = _key(params)
        if key not in self.known:
            self.known[key] = trial_config(params, self.trials)
        return self.known[key]


def short_task(task: str) -> str:
    """``TFBind8-Exact-v0`` -> ``TFBind8``."""
    return task.split("-", 1)[0]


def run_name(config: TrialConfig, index: str | None = None) -> str:
    """A short, distinct MLflow run name: ``grad-ascent ignite TFBind8 s3`` (``#00007``, the Tune trial's
    number, when several trials share those four)."""
    text = f"{config.baseline} {config.regularizer.name} {short_task(config.task)} s{config.seed}"
    return text if index is None else f"{text} #{index}"
