"""Checks of a search space that the schema alone misses, run before the store or a folder is touched.

Each of these once passed ``SweepSpec`` and failed only after ``mlflow.db`` and the sweep folder
were written: a YAML nested too deep for Python's recursion, ``true`` where a count is expected,
a seed Optuna or numpy refuses, a ``quniform`` bound that is not a multiple of its q, an ASHA
``grace_period`` beyond ``max_t``, an ASHA ``reduction_factor`` so near 1 that Ray builds billions of
rungs, a variant axis with no values, and distributions that draw
values a field refuses (``randn`` for a bound that must stay > 0). A huge grid is said at once.
A sampled model size is checked at its largest drawable value against the machine's memory, as a
grid value is (:func:`check_largest_draws`, once the tasks are built).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from typing import Any

import numpy as np
import yaml

from ignite_mbo.config import TrialConfig, assignments, flatten
from ignite_mbo.errors import UserError
from ignite_mbo.limits import SIZE_SETTINGS, check_trial, refuse_booleans

MAX_DEPTH = 50
"""Deepest nesting of mappings and lists a search space may have (the deepest real one has 5)."""
TRIAL_LIMIT = 100_000
"""Trials one sweep may plan whatever ``--max-trials`` says: Tune holds every trial in the driver."""
ANNOUNCE_FROM = 1_000
"""From this many planned trials, the count is printed before the (long) validation starts."""
DRAWS = 64
"""Values drawn from each distribution to check them against the field they set."""
SEED_RANGE = 2**32
MAX_RUNGS = 100
"""Most rungs ASHA may build (floor(log(max_t/grace_period)/log(reduction_factor)) + 1); Ray allocates each."""
ROWS_KEY = "task_options.max_samples"
"""A sampled task option that sets the rows a trial trains on: checked at its smallest and largest draw."""


def check_nesting(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse YAML nested deeper than ``limit``, read as a stream of events (no recursion, no objects)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > limit:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise UserError(f"nested more than {limit} levels deep (line {line}); a search space needs "
                                    "a few levels: flatten it")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # the YAML reader reports syntax errors with their line


def unreadable(path: object, error: OSError | UnicodeDecodeError) -> str:
    """The one-line reason a search space's file could not be read, with its fix."""
    if isinstance(error, UnicodeDecodeError):
        return (f"search space {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                f"{error.start}); save it as UTF-8")
    return f"cannot read search space {path} ({type(error).__name__}); pass a readable YAML file"


def check_raw(raw: dict[str, Any]) -> None:
    """Booleans given where the space expects a number (``num_samples: true`` would run one sample)."""
    from ignite_mbo.platform.spaces import SweepSpec

    refuse_booleans(SweepSpec, raw)


def announce_size(spec: Any, max_trials: int) -> None:
    """Say at once how many trials a big space plans; refuse more than :data:`TRIAL_LIMIT`."""
    planned = spec.size_bound
    if planned > max_trials:
        return  # refused by --max-trials, with its own message
    if planned > TRIAL_LIMIT:
        raise UserError(f"asks for up to {planned:,} trials (grid × variants × num_samples); one sweep plans at "
                        f"most {TRIAL_LIMIT:,} whatever --max-trials says: split the space into several sweeps")
    if planned >= ANNOUNCE_FROM:
        print(f"planning up to {planned:,} trials (grid × variants × num_samples); checking every trial config",
              file=sys.stderr, flush=True)


def check_searcher(spec: Any) -> None:
    """The search algorithm's and the scheduler's own constraints."""
    seed = spec.search_alg.seed if spec.search_alg is not None else None
    if seed is not None and not 0 <= seed < SEED_RANGE:
        raise UserError(f"search_alg.seed {seed} is out of range; use 0 <= seed < 2**32")
    scheduler = spec.scheduler
    if scheduler is not None and scheduler.name == "asha" and scheduler.grace_period > scheduler.max_t:
        raise UserError(f"scheduler.grace_period {scheduler.grace_period} exceeds scheduler.max_t {scheduler.max_t}: "
                        "ASHA would stop no trial early; use grace_period <= max_t")
    if scheduler is not None and scheduler.name == "asha":
        rungs = math.floor(math.log(scheduler.max_t / scheduler.grace_period) / math.log(scheduler.reduction_factor)) + 1
        if rungs > MAX_RUNGS:
            raise UserError(f"scheduler.reduction_factor {scheduler.reduction_factor} with grace_period "
                            f"{scheduler.grace_period} and max_t {scheduler.max_t} makes {rungs:,} ASHA rungs "
                            f"(at most {MAX_RUNGS}); use a reduction_factor of 2 to 4, or a smaller max_t/grace_period")


def check_axes(spec: Any) -> None:
    """Every axis of the grid and of each variant lists at least one value, and each value once (a repeated value
    would collapse into one trial silently)."""
    named_axes = [("grid axis", spec.grid)]
    named_axes += [(f"variant {number}: axis", variant) for number, variant in enumerate(spec.variants, start=1)]
    for where, axes in named_axes:
        for key, values in axes.items():
            if not values:
                raise UserError(f"{where} {key!r} has no values; give at least one or drop the axis")
            seen = [json.dumps(value, sort_keys=True, default=str) for value in values]
            if repeated := [value for value, text in zip(values, seen, strict=True) if seen.count(text) > 1]:
                raise UserError(f"{where} {key!r} lists {repeated[0]!r} more than once; list each value once (a "
                                "repeat is one trial, not two: add seeds to run more)")


def trial_identity(config: TrialConfig) -> str:
    """What makes two trials the same trial: the config with the baseline's settings as the trial will see them
    (``{epochs: 2.0}`` and ``{epochs: 2}``, or a default spelled out, are one trial)."""
    return json.dumps(config.model_dump(mode="json") | {"baseline_options": config.baseline_settings().model_dump(
        mode="json")}, sort_keys=True, default=str)


def distinct_trials(points: list[tuple[dict[str, Any], TrialConfig]], where: str,
                    repeat: str = "a repeat is one trial, not two: add seeds to run more") -> dict[str, TrialConfig]:
    """The trials of one product (raw values, their config) by :func:`trial_identity`; two points that make the same
    trial are refused: one value listed twice, spelled two ways (``seed: [0, '0']``, ``[0.1, 1e-1]``), would run
    twice (pass 25)."""
    trials: dict[str, TrialConfig] = {}
    raws: dict[str, dict[str, Any]] = {}
    for raw, config in points:
        identity = trial_identity(config)
        if identity in trials:
            a, b = flatten(raws[identity]), flatten(raw)
            differ = [key for key in sorted({*a, *b}) if _shown(a, key) != _shown(b, key)]
            both = "; ".join(f"{key}: {_shown(a, key)} and {_shown(b, key)}" for key in differ[:3])
            raise UserError(f"{where}: {both} make the same trial; list each value once, spelled one way ({repeat})")
        trials[identity], raws[identity] = config, raw
    return trials


def _shown(flat: dict[str, Any], key: str) -> str:
    return repr(flat[key]) if key in flat else "the default"


def check_settings_given_once(spec: Any) -> None:
    """Each setting of a trial is given in one place: ``trial``, one grid or variant axis, or ``search``, whatever the
    spelling (``baseline_options.epochs: 2`` and ``baseline_options: {epochs: 3}`` are one setting; so are
    ``regularizer`` and ``regularizer.epsilon`` when search draws the regularizer). Otherwise one value would be
    dropped silently."""
    def settings(key: str, values: list[Any]) -> set[str]:  # an empty mapping ({}) sets nothing
        return {setting for value in values for setting, leaf in assignments(key, value) if leaf != {}}

    fixed = [(f"trial key {key!r}", settings(key, [value])) for key, value in spec.trial.items()]
    fixed += [(f"grid axis {key!r}", settings(key, values)) for key, values in spec.grid.items()]
    searched = [(f"search key {key!r}", {key}) for key in spec.search]
    for number, variant in enumerate(spec.variants or [{}], start=1):
        varied = [(f"variant {number} axis {key!r}", settings(key, values)) for key, values in variant.items()]
        sources = [*fixed, *varied, *searched]
        for first, (where, given) in enumerate(sources):
            for other, also in sources[first + 1:]:
                if both := sorted(a for a in given for b in also if a == b or a.startswith(f"{b}.")
                                  or b.startswith(f"{a}.")):
                    raise UserError(f"{where} and {other} both set {both[0]!r}; give each setting in one place")


def _draws(key: str, distribution: dict[str, list[Any]]) -> list[Any]:
    """Values Tune's domain for ``distribution`` produces (a fixed-seed sample), plus randn's far tails."""
    from ignite_mbo.platform.spaces import tune_domain

    ((name, args),) = distribution.items()
    try:  # Ray checks a q's bounds when it builds the domain, and whether any multiple lies between them on a draw
        drawn = list(tune_domain(distribution).sample(size=DRAWS, random_state=np.random.RandomState(0)))
    except ValueError as error:
        raise UserError(f"search.{key}: Ray Tune refuses {{{name}: {args}}} ({error}); with a q, make both "
                        "bounds multiples of q, with at least one multiple between them") from None
    except (OverflowError, ZeroDivisionError) as error:  # e.g. a subnormal q: the range holds too many steps
        raise UserError(f"search.{key}: Ray Tune cannot draw from {{{name}: {args}}} ({error}); give numbers of a "
                        "usual size (a q that is a sensible step of the range)") from None
    if name == "randn":
        drawn += [args[0] - 6 * args[1], args[0] + 6 * args[1]]
    return [value.item() if isinstance(value, np.generic) else value for value in drawn]


def dry_draw(spec: Any) -> None:
    """Set every ``search`` key to values its distribution draws, on one grid point of each kind
    (task, baseline, regularizer), and validate the trial configs that makes; then the keys together, at every
    corner of their drawn ranges (pass 26: ``bo_raw_samples`` and ``bo_num_restarts``, each fine alone, could
    be drawn in an order the settings refuse, found only once Ray had started)."""
    if not spec.search:
        return
    kinds = {(config.task, config.baseline, config.regularizer.name): config for config in spec.trials()}
    draws: dict[str, list[Any]] = {}
    for key, distribution in spec.search.items():
        ((name, _),) = distribution.items()
        draws[key] = list({repr(value): value for value in _draws(key, distribution)}.values())
        for value in draws[key]:
            for config in kinds.values():
                try:
                    config.with_values({key: value})
                except UserError as error:
                    raise UserError(f"search.{key}: {name} can draw {value!r}, which a trial refuses ({error}); "
                                    "pick a distribution inside the field's bounds") from None
        if name == "choice":  # a choice listed twice, in any spelling ([0.1, 1e-1]), is drawn twice as often
            for config in kinds.values():
                distinct_trials([({key: value}, config.with_values({key: value})) for value in distribution[name]],
                                f"search.{key} choice", repeat="a repeat is drawn twice as often")
    if len(draws) < 2:
        return
    ends = {key: _ends(values) for key, values in draws.items()}
    for corner in itertools.islice(itertools.product(*ends.values()), MAX_CORNERS):
        values = dict(zip(ends, corner, strict=True))
        for config in kinds.values():
            try:
                config.with_values(values)
            except UserError as error:
                together = ", ".join(f"{key} = {value!r}" for key, value in values.items())
                raise UserError(f"search can draw {together} together, which a trial refuses ({error}); pick "
                                "distributions whose values always agree") from None


MAX_CORNERS = 256
"""Corners of the search keys' ranges checked together (2 values per key: all corners of up to 8 keys)."""


def _ends(values: list[Any]) -> list[Any]:
    """The smallest and largest of drawn numbers, or every drawn value when they are not all numbers."""
    numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if len(numbers) != len(values):
        return values[:4]
    return list({repr(value): value for value in (min(numbers), max(numbers))}.values())


def largest_draw(key: str, distribution: dict[str, list[Any]]) -> Any:
    """The largest value ``distribution`` can draw: its upper bound where it has one (Tune's ``randint`` and
    ``lograndint`` exclude it; a q-distribution stops at the last multiple of q), the largest choice, and at
    least the largest of the dry draw (``randn``'s far tail)."""
    ((name, args),) = distribution.items()
    numbers = [value for value in _draws(key, distribution) if isinstance(value, (int, float))]
    if name == "choice":
        numbers += [value for value in args if isinstance(value, (int, float)) and not isinstance(value, bool)]
    elif name in ("randint", "lograndint"):
        numbers.append(int(args[1]) - 1)
    elif name in ("qrandint", "qlograndint"):
        numbers.append(int(args[1]) // int(args[2]) * int(args[2]))
    elif name != "randn":
        numbers.append(args[1])
    return max(numbers) if numbers else None


def smallest_draw(key: str, distribution: dict[str, list[Any]]) -> Any:
    """The smallest value ``distribution`` can draw: its lower bound, the smallest choice, and at most the
    smallest of the dry draw (``randn``'s far tail)."""
    ((name, args),) = distribution.items()
    numbers = [value for value in _draws(key, distribution) if isinstance(value, (int, float))]
    if name == "choice":
        numbers += [value for value in args if isinstance(value, (int, float)) and not isinstance(value, bool)]
    elif name != "randn":
        numbers.append(args[0])
    return min(numbers) if numbers else None


def largest_sizes(search: dict[str, Any]) -> dict[str, Any]:
    """Every key of a space's ``search`` that sets a size the machine or the task bounds
    (:data:`SIZE_SETTINGS`, and the task's ``max_samples``), at the largest value its distribution can draw."""
    largest = {key: largest_draw(key, distribution) for key, distribution in search.items()
               if key.rsplit(".", 1)[-1].endswith(SIZE_SETTINGS) or key == ROWS_KEY}
    return {key: value for key, value in largest.items() if value is not None}


def _with_rows(task: Any, values: dict[str, Any]) -> Any:
    """``task`` as a trial that draws ``values``' ``max_samples`` sees it (the pool is the same)."""
    return dataclasses.replace(task, max_samples=values[ROWS_KEY]) if ROWS_KEY in values else task


def check_largest_draws(config: Any, task: Any, largest: dict[str, Any], distributions: dict[str, Any]) -> None:
    """Grid point ``config`` with every sampled size at its largest (all at once: a sampler can draw that)
    fits this machine's memory, leaves rows to train on and stays within the task's pool; and so with a
    sampled ``max_samples`` at its smallest. A one-line UserError naming the keys if not."""
    if not largest:
        return
    extremes = [largest]
    if ROWS_KEY in largest:
        extremes.append({**largest, ROWS_KEY: smallest_draw(ROWS_KEY, distributions[ROWS_KEY])})
    for values in extremes:
        try:
            check_trial(config.with_values(values), _with_rows(task, values))
        except UserError as error:
            drawn = ", ".join(f"search.{key}: {next(iter(distributions[key]))} can draw {value!r}"
                              for key, value in values.items())
            raise UserError(f"{drawn}; at that size {error}, or narrow the distribution") from None


def check_sensitivity(spec: Any) -> None:
    """``report.sensitivity`` names hyperparameters of the regularizers the space runs (``epsilon`` or
    ``config.regularizer.epsilon``): a typo would otherwise show only in the report, after the sweep."""
    from ignite_mbo.regularizers import CONFIGS

    if not spec.report.sensitivity:
        return
    used = {config.regularizer.name for config in spec.trials()}
    if "regularizer" in spec.search:
        used = set(CONFIGS)
    known = sorted({field for name in used for field in CONFIGS[name].model_fields if field != "name"})
    if not known:
        raise UserError(f"report.sensitivity: the space's regularizers ({', '.join(sorted(used))}) have no "
                        "hyperparameters to plot against; drop report.sensitivity or add a regularizer")
    for param in spec.report.sensitivity:
        if param.removeprefix("config.regularizer.") not in known:
            raise UserError(f"report.sensitivity: {param!r} is no hyperparameter of the space's regularizers "
                            f"({', '.join(sorted(used))}); use one of: {', '.join(known)}")


RESOURCE_UNIT = 1e-4
"""Ray's finest fraction of a CPU or GPU: a smaller positive request fails inside Tune."""


def check_resource_fraction(name: str, value: float) -> float:
    """``value`` (CPUs or GPUs per trial), refused when it is positive but finer than Ray's resource unit."""
    if 0 < value < RESOURCE_UNIT:
        raise ValueError(f"{name} {value:g} is below Ray's smallest fraction, {RESOURCE_UNIT:g}: use 0 or at least "
                         f"{RESOURCE_UNIT:g}")
    return value
