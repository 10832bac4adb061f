"""The offline MBO baselines. Each is one module that ends with ``BASELINE = Baseline(...)``.

A module's ``Settings`` (pydantic, every field with a description) holds the paper's protocol at full
fidelity (the reference code's settings); ``QUICK`` overrides them for tests and smoke sweeps;
``propose(task, settings, ctx)`` trains the method's regularized surrogate(s) through ``ctx.fit``
and returns a :class:`Proposal` of designs. The declaration ties them together (mypy checks that
``propose`` takes that ``Settings``), and the package finds it: adding a baseline edits no list.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from typing import Any

from ignite_mbo.baselines.base import Baseline, BaselineSettings, Context, Proposal, TrainedSurrogate
from ignite_mbo.errors import UserError


@functools.cache
def registry() -> dict[str, Baseline[Any]]:
    """Every baseline declared in this package, by command-line name, in table order.

    Imports each module of the package once, on first use (so ``import ignite_mbo.baselines`` stays cheap).
    """
    found: dict[str, Baseline[Any]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declared = vars(module).get("BASELINE")
        if isinstance(declared, Baseline):
            if declared.name in found:
                raise TypeError(f"two modules declare the baseline {declared.name!r}")
            found[declared.name] = declared
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def names() -> list[str]:
    """The baselines' command-line names, in table order (the paper's first)."""
    return list(registry())


def find(name: str) -> Baseline[Any] | None:
    """The baseline called ``name``, or None. Tries the module named like it first (``cma-es`` in
    ``cma_es.py``), so a trial imports only its own baseline; else looks through them all."""
    module_name = f"{__name__}.{name.replace('-', '_')}"
    if name.replace("-", "_").isidentifier() and importlib.util.find_spec(module_name) is not None:
        declared = vars(importlib.import_module(module_name)).get("BASELINE")
        if isinstance(declared, Baseline) and declared.name == name:
            return declared
    return registry().get(name)


def load(name: str) -> Baseline[Any]:
    """The baseline called ``name``; an unknown name raises a UserError listing the known ones."""
    found = find(name)
    if found is None:
        raise UserError(f"unknown baseline {name!r}; choose one of {', '.join(names())}")
    return found


__all__ = ["Baseline", "BaselineSettings", "Context", "Proposal", "TrainedSurrogate", "find", "load", "names", "registry"]
