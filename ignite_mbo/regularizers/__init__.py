"""Surrogate regularizers: every one trains through the same door (``Context.fit`` -> ``training.fit``
-> ``Regularizer.backward``) and none knows which baseline it serves.

The protocol and the registry are in :mod:`.base`; each regularizer is one module (its settings with
the published defaults, and its class). Importing this package registers the built-ins, then
imports every module named in ``IGNITE_MBO_PLUGINS`` (comma-separated), so that a user's own
regularizer is known wherever a trial runs (Ray workers inherit the variable).
"""

# ruff: noqa: I001 - the built-ins are imported, and so registered, in the order users see: none first
from __future__ import annotations

import importlib
import os

from ignite_mbo.errors import UserError
from ignite_mbo.regularizers.base import (
    CONFIGS, LossClosure, MeanPrediction, Regularizer, RegularizerConfig, RegularizerSettings, build, member_norms,
    num_members, one_line, parse_config, per_member)
from ignite_mbo.regularizers.none import NoneConfig, NoRegularizer
from ignite_mbo.regularizers.ignite import Ignite2Config, IgniteConfig, SharpnessConstraint
from ignite_mbo.regularizers.sam import SamConfig, SharpnessAwareMinimization
from ignite_mbo.regularizers.penalty import L1Config, L2Config, WeightPenalty
from ignite_mbo.regularizers.boss import BossConfig, SurrogateSensitivity

PLUGINS_VARIABLE = "IGNITE_MBO_PLUGINS"

__all__ = [
    "CONFIGS", "PLUGINS_VARIABLE", "BossConfig", "Ignite2Config", "IgniteConfig", "L1Config", "L2Config",
    "LossClosure", "MeanPrediction", "NoRegularizer", "NoneConfig", "Regularizer", "RegularizerConfig",
    "RegularizerSettings", "SamConfig", "SharpnessAwareMinimization", "SharpnessConstraint", "SurrogateSensitivity",
    "WeightPenalty", "build", "load_plugins", "member_norms", "num_members", "one_line", "parse_config", "per_member",
]


def load_plugins(names: str | None = None) -> None:
    """Import each module in ``names`` (default: ``$IGNITE_MBO_PLUGINS``); its settings classes register."""
    for module in (names if names is not None else os.environ.get(PLUGINS_VARIABLE, "")).split(","):
        if module.strip():
            try:
                importlib.import_module(module.strip())
            except ImportError as error:
                raise UserError(f"{PLUGINS_VARIABLE}: cannot import {module.strip()!r} ({error}); fix the "
                                "module name or PYTHONPATH") from None


load_plugins()
