"""A trial's configuration, validated: what the CLI builds from flags and a sweep from YAML.

:class:`TrialConfig` is the one record of a trial, from the search space to the report. Dotted keys
(``regularizer.epsilon``, ``baseline_options.epochs``) reach into its nested fields
(:func:`set_dotted`, :meth:`TrialConfig.with_values`); a regularizer given by name alone
(``regularizer: ignite``) stands for ``{name: ignite}`` (:func:`regularizer_mapping`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ignite_mbo import baselines, tasks
from ignite_mbo.baselines.base import BaselineSettings
from ignite_mbo.errors import UserError
from ignite_mbo.limits import refuse_trial_booleans
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
        value = regularizer_mapping(value)
        if isinstance(value, dict) and value.get("name") not in CONFIGS:
            raise ValueError(f"unknown regularizer {value.get('name')!r}; choose one of {', '.join(CONFIGS)}")
        return value

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, baseline: str) -> str:
        if baselines.find(baseline) is None:
            raise ValueError(f"unknown baseline; choose one of {', '.join(baselines.names())}")
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
        return baselines.load(self.baseline).settings(self.fidelity, self.baseline_options)

    def with_values(self, values: Mapping[str, Any]) -> TrialConfig:
        """A copy with ``values`` (dotted keys, e.g. sampled ``regularizer.epsilon``) set, validated."""
        raw = self.model_dump(mode="json")
        for key, value in values.items():
            set_dotted(raw, key, value)
        return TrialConfig.parse(raw)

    def flat(self) -> dict[str, Any]:
        """The config as flat ``a.b`` keys with typed values (MLflow params, results-table columns)."""
        return flatten(self.model_dump(mode="json"))


def regularizer_mapping(value: Any) -> Any:
    """``"ignite"`` -> ``{"name": "ignite"}``; anything else as it is."""
    return {"name": value} if isinstance(value, str) else value


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """``config["a"]["b"] = value`` for ``dotted_key="a.b"`` on a raw (JSON-like) trial config.

    A regularizer given by name becomes a mapping first, so ``regularizer: ignite`` then
    ``regularizer.epsilon: 0.1`` is ``{name: ignite, epsilon: 0.1}``.
    """
    *parents, leaf = dotted_key.split(".")
    node = config
    for depth, part in enumerate(parents):
        if part == "regularizer":
            node[part] = regularizer_mapping(node.get(part, "none"))
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            options = f"{part}_options" if depth == 0 and f"{part}_options" in TrialConfig.model_fields else None
            fix = f"; its options go under '{options}.{dotted_key.split('.', 1)[1]}'" if options else ""
            raise UserError(f"key {dotted_key!r} reaches into {part!r}, which is not a mapping{fix}")
    node[leaf] = regularizer_mapping(value) if dotted_key == "regularizer" else value


def assignments(key: str, value: Any) -> list[tuple[str, Any]]:
    """``key: value`` as the single dotted settings it gives: ``("baseline_options", {"epochs": 3})`` ->
    ``[("baseline_options.epochs", 3)]``; a regularizer given by name gives ``regularizer.name``."""
    if key == "regularizer" and isinstance(value, str):
        return [("regularizer.name", value)]
    if isinstance(value, dict) and value:
        return [item for sub, inner in value.items() for item in assignments(f"{key}.{sub}", inner)]
    return [(key, value)]


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
