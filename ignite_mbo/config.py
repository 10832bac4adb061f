"""A trial's configuration, validated: what the CLI builds from flags and a sweep from YAML."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ignite_mbo import baselines, tasks
from ignite_mbo.baselines.base import BaselineSettings
from ignite_mbo.errors import UserError
from ignite_mbo.regularizers import CONFIGS, NoneConfig, RegularizerConfig, one_line
from ignite_mbo.tasks import REGISTRY

Fidelity = Literal["quick", "full"]


class TrialConfig(BaseModel):
    """One trial: a task, a baseline with its options, a regularizer with its hyperparameters, a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field("TFBind8-Exact-v0", description="the offline MBO task")
    baseline: str = Field("grad-ascent", description="the search method (see 'ignite-mbo baselines')")
    regularizer: RegularizerConfig = Field(default_factory=NoneConfig, description="how the surrogates are "
                                           "regularized, with its hyperparameters")
    seed: int = Field(default=0, ge=0, lt=2**32, description="trial seed, 0 <= seed < 2**32")
    fidelity: Fidelity = Field("full", description="full: the published settings; quick: small models for smoke tests")
    task_options: dict[str, Any] = Field(default_factory=dict, description="the task's options")
    baseline_options: dict[str, Any] = Field(default_factory=dict, description="the baseline's settings that "
                                             "differ from its defaults (and quick values)")

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in REGISTRY:
            raise ValueError(f"unknown task; choose one of {', '.join(REGISTRY)}")
        return task

    @field_validator("regularizer", mode="before")
    @classmethod
    def _known_regularizer(cls, value: Any) -> Any:
        if isinstance(value, str):  # "ignite" is short for {"name": "ignite"}
            value = {"name": value}
        if isinstance(value, dict) and value.get("name") not in CONFIGS:
            raise ValueError(f"unknown regularizer {value.get('name')!r}; choose one of {', '.join(CONFIGS)}")
        return value

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, baseline: str) -> str:
        if baseline not in baselines.names():
            raise ValueError(f"unknown baseline; choose one of {', '.join(baselines.names())}")
        return baseline

    @classmethod
    def parse(cls, values: dict[str, Any]) -> TrialConfig:
        """Validate ``values``; bad input raises a one-line UserError naming the field."""
        try:
            config = cls(**values)
        except ValidationError as error:
            raise UserError(f"invalid trial config: {one_line(error)}") from None
        config.baseline_settings()
        config.checked_task_options()
        return config

    def checked_task_options(self) -> dict[str, Any]:
        """``task_options`` validated against the task's own typed options (no disk access), defaults filled in."""
        return tasks.validate_options(self.task, dict(self.task_options))

    def baseline_settings(self) -> BaselineSettings:
        """The baseline's settings: full-fidelity defaults, the QUICK overrides if asked, then ``baseline_options``."""
        return baselines.load(self.baseline).settings(self.fidelity, self.baseline_options)

    def flat(self) -> dict[str, Any]:
        """The config as flat ``a.b`` keys (MLflow params, results-table columns)."""
        return flatten(self.model_dump(mode="json"))


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
