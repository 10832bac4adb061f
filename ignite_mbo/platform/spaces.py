"""Search-space YAML: which trials a sweep runs and with what resources.

    name: quick
    description: GA with and without IGNITE on TF-Bind-8
    trial:                        # fixed part of every trial's config (see TrialConfig)
      task: TFBind8-Exact-v0
      baseline: grad-ascent
      fidelity: quick
    grid:                         # cartesian product; dotted keys reach into nested fields
      regularizer: [none, ignite, {name: ignite2, rho: 0.1}]
      seed: [0, 1, 2, 3]
    resources: {cpu: 1, gpu: 0}   # per trial; fractional gpu packs trials onto one GPU
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.regularizers import one_line


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)


class SweepSpec(BaseModel):
    """A validated search space."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    trial: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, gt=0)

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every grid point as a nested config dict (regularizer names expanded to ``{name: ...}``)."""
        keys = list(self.grid)
        configs = []
        for values in itertools.product(*(self.grid[key] for key in keys)):
            config = _normalise(self.trial)
            for key, value in zip(keys, values, strict=True):
                _set_dotted(config, key, value)
            configs.append(_normalise(config))
        return configs or [_normalise(self.trial)]


def _set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if isinstance(node, str):  # "regularizer: ignite" then "regularizer.epsilon"
            raise UserError(f"grid key {dotted_key!r} reaches into {part!r}, which is not a mapping")
    node[leaf] = value


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    config = {key: (dict(value) if isinstance(value, dict) else value) for key, value in config.items()}
    if isinstance(config.get("regularizer"), str):
        config["regularizer"] = {"name": config["regularizer"]}
    return config


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a search-space YAML; every trial config is validated up front."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search space {path} not found; pass a YAML file such as search_spaces/quick.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}; fix the syntax and run again") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must be a YAML mapping with at least 'name' and 'trial'; see search_spaces/quick.yaml")
    try:
        spec = SweepSpec(**raw)
    except ValidationError as error:
        raise UserError(f"{path}: {one_line(error)}") from None
    for config in spec.trial_configs():
        try:
            TrialConfig.parse(config)
        except UserError as error:
            raise UserError(f"{path}: {error}") from None
    return spec
