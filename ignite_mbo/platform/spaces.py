"""Search-space YAML: which trials a sweep runs, with what resources, searched how.

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

Everything below is optional (a space with only the keys above is a plain grid sweep):

    variants:                     # alternative sub-grids: trials = grid × (variant 1 ∪ variant 2 ∪ …)
      - {regularizer: [none]}
      - {regularizer: [ignite], regularizer.epsilon: [0.01, 0.1, 1.0]}
    search:                       # Tune distributions, sampled per trial (dotted keys as in grid)
      regularizer.epsilon: {loguniform: [0.01, 1.0]}
      regularizer.lambda_lr: {choice: [0.0001, 0.001, 0.01]}
    num_samples: 8                # without search_alg: samples per grid point; with one: suggestions
    search_alg: {name: optuna, seed: 0}      # optuna (TPE) or random; each suggestion runs on every
                                             # grid point and the searcher sees their mean objective
    scheduler: {name: asha, grace_period: 2} # fifo (default), asha or median; needs an offline objective
    objective: val_rank_corr      # val_rank_corr | val_loss | sharpness (offline) | oracle_score (benchmark)
    failure: {max_retries: 1}     # a trial that raises is retried from its checkpoint this many times
    max_concurrent_trials: 4
    report: {sensitivity: [epsilon, lambda_lr]}  # also plot the gain against these hyperparameters
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from ignite_mbo.config import TrialConfig, assignments, set_dotted
from ignite_mbo.errors import UserError
from ignite_mbo.platform import space_checks
from ignite_mbo.regularizers import one_line
from ignite_mbo.tasks.data import file_kind
from ignite_mbo.trainables.objectives import OBJECTIVES, Objective

__all__ = ["MAX_TRIALS", "OBJECTIVES", "Objective", "SweepSpec", "load_spec", "parse_spec"]


# ---- distributions --------------------------------------------------------------------------------

_NUMERIC_DISTRIBUTIONS = {
    # name: (number of arguments, whether bounds must be > 0, whether values are integers)
    "uniform": (2, False, False),
    "quniform": (3, False, False),
    "loguniform": (2, True, False),
    "qloguniform": (3, True, False),
    "randint": (2, False, True),
    "qrandint": (3, False, True),
    "lograndint": (2, True, True),
    "qlograndint": (3, True, True),
    "randn": (2, False, False),  # mean, sd
}
DISTRIBUTIONS = (*_NUMERIC_DISTRIBUTIONS, "choice")


def _check_distribution(key: str, spec: Any) -> tuple[str, list[Any]]:
    where = f"search.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"{where}: give one distribution as a mapping, e.g. {{loguniform: [0.01, 1.0]}}; "
                         f"one of {', '.join(DISTRIBUTIONS)}")
    ((name, args),) = spec.items()
    if name not in DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown distribution {name!r}; choose one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{where}: {name} takes a non-empty list, e.g. {{{name}: [...]}}")
    if name == "choice":
        return name, args
    count, positive, integer = _NUMERIC_DISTRIBUTIONS[name]
    if len(args) != count or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
                                     for a in args):
        raise ValueError(f"{where}: {name} takes {count} finite numbers (got {args!r})")
    if name != "randn" and args[0] >= args[1]:
        raise ValueError(f"{where}: {name} needs lower < upper (got {args!r})")
    if (name == "randn" and args[1] <= 0) or (count == 3 and args[2] <= 0):  # sd, or q
        raise ValueError(f"{where}: {name} needs {'sd' if name == 'randn' else 'q'} > 0 (got {args!r})")
    if positive and args[0] <= 0:
        raise ValueError(f"{where}: {name} needs bounds > 0 (got {args!r})")
    if integer and not all(float(a).is_integer() for a in args):
        raise ValueError(f"{where}: {name} takes integers (got {args!r})")
    return name, args


def tune_domain(spec: dict[str, list[Any]]) -> Any:
    """The ``ray.tune`` search domain for one validated ``{name: args}`` distribution."""
    from ray import tune

    ((name, args),) = spec.items()
    if name == "choice":
        return tune.choice(args)
    if _NUMERIC_DISTRIBUTIONS[name][2]:
        args = [int(a) for a in args]
    return getattr(tune, name)(*args)


def _representatives(spec: dict[str, list[Any]]) -> list[Any]:
    """Values a distribution can produce, to validate trial configs before anything runs."""
    ((name, args),) = spec.items()
    if name == "choice":
        return list(args)
    if name == "randn":
        return [args[0]]
    low, high = args[0], args[1]
    if _NUMERIC_DISTRIBUTIONS[name][2]:
        return [int(low), int(high) - 1 if name in ("randint", "lograndint") else int(high)]
    return [low, high]


# ---- the spec -------------------------------------------------------------------------------------

class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    gpu: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @field_validator("cpu", "gpu")
    @classmethod
    def _ray_can_schedule(cls, value: float, info: ValidationInfo) -> float:
        return space_checks.check_resource_fraction(f"resources.{info.field_name}", value)


class SearchAlg(BaseModel):
    """``optuna`` (Optuna's TPE sampler through Tune's OptunaSearch) or ``random`` (Tune's own sampler)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["optuna", "random"]
    seed: int | None = None
    sampler: Literal["tpe", "random"] = "tpe"  # optuna only


class Scheduler(BaseModel):
    """Trial scheduler; time is ``surrogate_epochs``, the epochs a trial has trained over all its models."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["fifo", "asha", "median"]
    grace_period: int = Field(default=1, ge=1)
    max_t: int = Field(default=1000, ge=1)  # asha
    reduction_factor: float = Field(default=2.0, gt=1, allow_inf_nan=False)  # asha
    min_samples_required: int = Field(default=3, ge=1)  # median


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_retries: int = Field(default=1, ge=0)


class ReportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sensitivity: list[str] = Field(default_factory=list)


class SweepSpec(BaseModel):
    """A validated search space."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=100)
    description: str = ""
    trial: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[dict[str, list[Any]]] = Field(default_factory=list)
    search: dict[str, dict[str, Any]] = Field(default_factory=dict)
    num_samples: int = Field(default=1, ge=1)
    search_alg: SearchAlg | None = None
    scheduler: Scheduler | None = None
    objective: str | None = None
    failure: Failure = Field(default_factory=Failure)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, gt=0)
    report: ReportOptions = Field(default_factory=ReportOptions)
    _trials: list[TrialConfig] | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ValueError("it names the MLflow experiment and the sweep folder, so it cannot name a folder "
                             "outside OUTPUT_DIR: use letters, digits, '_', '-' and '.', not starting with '.'")
        return name

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, objective: str | None) -> str | None:
        if objective is not None and objective not in OBJECTIVES:
            raise ValueError(f"unknown objective; choose one of {', '.join(OBJECTIVES)}")
        return objective

    @property
    def size_bound(self) -> int:
        """How many trials the space asks for at most (grid × variants × num_samples), without building them."""
        points = 0
        for variant in self.variants or [{}]:
            axes = {**self.grid, **variant}
            points += math.prod(len(values) for values in axes.values())
        return points * self.num_samples

    @property
    def objective_spec(self) -> Objective | None:
        return OBJECTIVES[self.objective] if self.objective else None

    def trials(self) -> list[TrialConfig]:
        """Every grid point as a validated trial config, expanded and validated once per spec.

        The points are the product of ``grid`` with the union of the ``variants``' products, in
        order, identical trials once; two points of one product that make the same trial (a value
        listed twice, spelled two ways: ``1`` and ``1.0``) are refused.
        """
        if self._trials is None:
            trials: dict[str, TrialConfig] = {}
            for number, variant in enumerate(self.variants or [{}], start=1):
                axes = {**self.grid, **variant}
                keys = list(axes)
                points = []
                for values in itertools.product(*(axes[key] for key in keys)):
                    raw: dict[str, Any] = {}  # setting by setting: each is given once (check_settings_given_once)
                    for key, value in [*self.trial.items(), *zip(keys, values, strict=True)]:
                        for setting, leaf in assignments(key, copy.deepcopy(value)):
                            set_dotted(raw, setting, leaf)
                    points.append((raw, TrialConfig.parse(raw)))
                distinct = space_checks.distinct_trials(points, f"variant {number}" if self.variants else "grid")
                trials |= {identity: config for identity, config in distinct.items() if identity not in trials}
            self._trials = list(trials.values())
        return self._trials

    def search_domains(self) -> dict[str, Any]:
        """``search`` as ray.tune domains (dotted keys kept as they are)."""
        return {key: tune_domain(spec) for key, spec in self.search.items()}

    def check_search_values(self) -> None:
        """Every grid point with each ``search`` distribution's representative values (ends, choices) is a
        valid trial config; raises UserError naming the first that is not."""
        for config in self.trials():
            for key, spec in self.search.items():
                for value in _representatives(spec):
                    config.with_values({key: value})


def _check_coherent(spec: SweepSpec) -> None:
    """Cross-field rules (raised as ValueError with a one-line message)."""
    space_checks.check_axes(spec)
    for key, distribution in spec.search.items():
        _check_distribution(key, distribution)
    searching = spec.search_alg is not None or (spec.scheduler is not None and spec.scheduler.name != "fifo")
    if searching and spec.objective is None:
        raise ValueError(f"a search_alg or scheduler needs an explicit objective: one of {', '.join(OBJECTIVES)}")
    if spec.search_alg is not None and spec.search_alg.name == "optuna" and not spec.search:
        raise ValueError("search_alg optuna needs distributions under 'search'")
    if (spec.scheduler is not None and spec.scheduler.name != "fifo" and spec.objective is not None
            and not OBJECTIVES[spec.objective].per_epoch):
        raise ValueError(f"scheduler {spec.scheduler.name} stops trials on per-epoch values, and objective "
                         f"{spec.objective} exists only at the end of a trial: use an offline objective")


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set ``{"trial.fidelity": "quick", "grid.seed": [0, 1]}`` on a raw space mapping.

    Under ``grid`` and ``search`` the rest of the key is one (possibly dotted) axis name.
    """
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        head, _, rest = dotted.partition(".")
        if head in ("grid", "search") and rest:
            section = raw.setdefault(head, {})
            if not isinstance(section, dict):
                raise UserError(f"--override {dotted}: {head!r} is not a mapping in the space")
            section[rest] = value
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--override {dotted}: {part!r} is not a mapping in the space")
        node[leaf] = value
    return raw


MAX_TRIALS = 1000
"""Default cap on a sweep's trials (``--max-trials``): paper_table.yaml, the largest space here, has 864."""
MAX_SPACE_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
"""A space whose aliases expand to more YAML nodes than this is refused (an alias bomb)."""


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses duplicate keys (instead of keeping the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes ``node`` stands for once every alias is expanded (memoised per node)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        size = 1
    sizes[id(node)] = min(size, 10 * MAX_YAML_NODES)
    return sizes[id(node)]


def read_yaml(text: str) -> Any:
    """Parse ``text`` as YAML: safe types only, no duplicate keys, aliases bounded."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise UserError(f"its aliases expand to more than {MAX_YAML_NODES} YAML nodes; write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None, max_trials: int = MAX_TRIALS) -> SweepSpec:
    """Read and validate a search-space YAML; every trial config is validated up front."""
    path = Path(path)
    if not path.is_file():
        if path.exists() or path.is_symlink():
            raise UserError(f"search space {path} is {file_kind(path)}, not a YAML file; pass a YAML file such as "
                            "search_spaces/quick.yaml")
        raise UserError(f"search space {path} not found; pass a YAML file such as search_spaces/quick.yaml")
    if (size := path.stat().st_size) > MAX_SPACE_BYTES:
        raise UserError(f"search space {path} is {size:,} bytes; a search space is a small YAML file (at most "
                        f"{MAX_SPACE_BYTES:,} bytes): list values, not data")
    try:
        text = path.read_text(encoding="utf-8")
        space_checks.check_nesting(text)
        raw = read_yaml(text)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(space_checks.unreadable(path, error)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise UserError(f"{path} is not valid YAML{where}{f' ({problem})' if problem else ''}; "
                        "fix it and run again") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must be a YAML mapping with at least 'name' and 'trial'; see search_spaces/quick.yaml")
    if overrides:
        raw = apply_overrides(raw, overrides)
    return parse_spec(raw, str(path), max_trials)


def parse_spec(raw: dict[str, Any], where: str = "search space", max_trials: int = MAX_TRIALS) -> SweepSpec:
    """Validate a space mapping (as read from YAML) and every trial config it makes."""
    try:
        space_checks.check_raw(raw)
        spec = SweepSpec(**raw)
        space_checks.announce_size(spec, max_trials)
    except ValidationError as error:
        raise UserError(f"{where}: {one_line(error)}; fix it as search_spaces/quick.yaml shows") from None
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    if spec.size_bound > max_trials:
        raise UserError(f"{where}: asks for up to {spec.size_bound} trials (grid × variants × num_samples), more "
                        f"than --max-trials {max_trials}; shrink the space or raise --max-trials")
    try:
        _check_coherent(spec)
        space_checks.check_searcher(spec)
        spec.trials()  # first: its set_dotted says where a key into a named field (task.max_samples) belongs
        space_checks.check_settings_given_once(spec)
        space_checks.check_sensitivity(spec)
        space_checks.dry_draw(spec)
        spec.check_search_values()
    except (UserError, ValueError, RecursionError) as error:  # RecursionError: an alias inside its own anchor
        circular = "a YAML alias refers to its own anchor; write the values out"  # "Circular reference detected"
        cycle = isinstance(error, RecursionError) or "Circular reference" in str(error)
        raise UserError(f"{where}: {circular if cycle else error}") from None
    return spec
