"""The offline MBO baselines. Each is one module with ``Settings``, ``QUICK`` and ``propose``.

``Settings`` (pydantic) holds the paper's protocol at full fidelity (the reference code's settings);
``QUICK`` overrides them for tests and smoke sweeps; ``propose(task, settings, ctx)`` trains the
method's regularized surrogate(s) through ``ctx.fit`` and returns a :class:`Proposal` of designs.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, cast

from ignite_mbo.baselines.base import BaselineSettings, Context, Proposal, TrainedSurrogate
from ignite_mbo.tasks import Task

BASELINES: dict[str, str] = {
    "grad-ascent": "grad_ascent",
    "ens-mean": "ens_mean",
    "ens-min": "ens_min",
    "reinforce": "reinforce",
    "cbas": "cbas",
    "bo-qei": "bo_qei",
    "cma-es": "cma_es",
    "mins": "mins",
    "coms": "coms",
    "roma": "roma",
    "ict": "ict",
}
"""Command-line name -> module in this package (imported on first use), in the paper's order."""


class Baseline(Protocol):
    """What every baseline module provides."""

    Settings: type[BaselineSettings]
    QUICK: dict[str, Any]

    def propose(self, task: Task, settings: Any, ctx: Context) -> Proposal: ...


def load(name: str) -> Baseline:
    """The module of baseline ``name`` (a key of ``BASELINES``)."""
    return cast(Baseline, importlib.import_module(f"{__name__}.{BASELINES[name]}"))


__all__ = ["BASELINES", "Baseline", "Context", "Proposal", "TrainedSurrogate", "load"]
