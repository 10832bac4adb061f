"""The offline MBO baselines. Each is one module with ``Settings``, ``QUICK`` and ``propose``.

``Settings`` (pydantic) holds the full-fidelity defaults of the method's reference implementation;
``QUICK`` overrides them for tests and smoke sweeps; ``propose(task, settings, ctx)`` trains the
method's surrogate(s) through ``ctx.new_regularizer()`` and returns a :class:`Proposal` of designs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ignite_mbo.baselines.base import Context, Proposal, TrainedSurrogate

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
}
"""Command-line name -> module in this package (imported on first use)."""


def load(name: str) -> ModuleType:
    """The module of baseline ``name`` (a key of ``BASELINES``)."""
    return importlib.import_module(f"{__name__}.{BASELINES[name]}")


__all__ = ["BASELINES", "Context", "Proposal", "TrainedSurrogate", "load"]
