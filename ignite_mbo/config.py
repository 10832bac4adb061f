"""A trial's configuration, validated: what the CLI builds from flags and a sweep from YAML."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ignite_mbo import tasks
from ignite_mbo.baselines import BASELINES, load
from ignite_mbo.baselines.base import BaselineSettings
from ignite_mbo.errors import UserError
from ignite_mbo.limits import refuse_trial_booleans
from ignite_mbo.regularizers import CONFIGS, NoneConfig, RegularizerConfig, one_line
from ignite_mbo.tasks import REGISTRY

Fidelity = Literal["quick", "full"]


class TrialConfig(BaseModel):
    """One trial: a task, a baseline with its options, a regularizer with its hyperparameters, a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = "TFBind8-Exact-v0"
    baseline: str = "grad-ascent"
    regularizer: RegularizerConfig = Field(default_factory=NoneConfig)
    seed: int = Field(default=0, ge=0, lt=2**32)
    fidelity: Fidelity = "full"
    task_options: dict[str, Any] = Field(default_factory=dict)
    baseline_options: dict[str, Any] = Field(default_factory=dict)

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
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline; choose one of {', '.join(BASELINES)}")
        return baseline

    @classmethod
    def parse(cls, values: dict[str, Any]) -> TrialConfig:
        """Validate ``values``; bad input raises a one-line UserError naming the field."""
        refuse_trial_booleans(values)
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
        module = load(self.baseline)
        overrides = {**(module.QUICK if self.fidelity == "quick" else {}), **self.baseline_options}
        try:
            return module.Settings(**overrides)
        except ValidationError as error:
            raise UserError(f"baseline {self.baseline!r} options: {one_line(error)}") from None

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
