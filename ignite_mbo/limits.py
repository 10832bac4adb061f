"""Bounds that a schema cannot know: they depend on the task's data or on this machine.

A value can pass its field's type and range and still fail deep inside a trial: more threads than
the machine has cores, a validation split larger than the rows a run trains on, a model that does
not fit in memory, or a YAML boolean that pydantic reads as the number 1. Each is checked here
before anything is started or written, with a one-line :class:`UserError` naming the fix.
"""

from __future__ import annotations

import os
import types
import typing
from typing import Any

from pydantic import BaseModel

from ignite_mbo.errors import UserError
from ignite_mbo.tasks import Task

BYTES_PER_PARAMETER = 16
"""float32 weight, its gradient and Adam's two moments: what one trainable parameter costs."""
MEMORY_SHARE = 0.8
"""A model may take at most this share of the memory available now (the rest: data, batches, torch)."""
SIZE_SETTINGS = ("hidden_size", "num_layers", "embedding_size", "num_models", "validation_size", "batch_size",
                 "neighbours", "num_designs", "bo_gp_samples", "bo_raw_samples", "bo_mc_samples", "bo_batch_limit",
                 "bo_iterations")
"""Endings of the settings whose largest value the checks below bound (memory, rows held out, the pool)."""
GP_COPIES = 6
"""n×n float64 matrices an exact GP holds while fitting on n points (kernel, distances, factor, gradients)."""
ACTIVATION_BYTES = 12
"""Per point and hidden unit of a layer: the float32 activation, its gradient and the pre-activation."""
SAMPLE_COPIES = 8
"""float32 copies of one sampled design's one-hot width alive at once (two decoders' logits, their log-softmax
and log-probs, the draw); a generator's ``*batch_size`` and CbAS's online samples are bounded with it."""
GENERATIVE = frozenset({"cbas", "mins", "reinforce"})
"""Baselines that sample their designs from a generator: ``num_designs`` is not bounded by the pool."""


# ---- YAML booleans --------------------------------------------------------------------------------

def _takes_bool(annotation: Any) -> bool:
    """Whether a field of type ``annotation`` accepts a boolean as itself (not as the number 0 or 1)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return any(isinstance(value, bool) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        return any(_takes_bool(arg) for arg in typing.get_args(annotation))
    return False


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field of type ``annotation`` holds (``X | None`` too), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def refuse_booleans(model: type[BaseModel], values: dict[str, Any], where: str = "") -> None:
    """Refuse ``true``/``false`` given for a numeric field of ``model`` (pydantic would read it as 1 or 0).

    Nested mappings are checked against the nested model; unknown keys are left to ``model`` itself.
    """
    for key, value in values.items():
        field = model.model_fields.get(str(key))
        if field is None:
            continue
        if isinstance(value, bool) and not _takes_bool(field.annotation):
            raise UserError(f"{where}{key}: {str(value).lower()} is a YAML boolean where a number is expected; "
                            "write the number")
        nested = _model_of(field.annotation)
        if nested is not None and isinstance(value, dict):
            refuse_booleans(nested, value, f"{where}{key}.")


def refuse_trial_booleans(values: dict[str, Any]) -> None:
    """:func:`refuse_booleans` for a raw trial config: its own fields, the baseline's settings and the
    regularizer's hyperparameters."""
    from ignite_mbo.baselines import find
    from ignite_mbo.regularizers import CONFIGS

    for key in ("seed",):
        if isinstance(values.get(key), bool):
            raise UserError(f"{key}: {str(values[key]).lower()} is a YAML boolean where a number is expected; "
                            "write the number")
    name, options = values.get("baseline", "grad-ascent"), values.get("baseline_options")
    baseline = find(name) if isinstance(name, str) else None
    if baseline is not None and isinstance(options, dict):
        refuse_booleans(baseline.settings_type, options, "baseline_options.")
    regularizer = values.get("regularizer")
    if isinstance(regularizer, dict) and regularizer.get("name") in CONFIGS:
        refuse_booleans(CONFIGS[regularizer["name"]], regularizer, "regularizer.")


# ---- the machine ----------------------------------------------------------------------------------

def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> None:
    """``--threads``: at least 1, at most this machine's cores (more only slows torch down, and a huge
    count crashes it)."""
    if threads is None:
        return
    available = cores()
    if not 1 <= threads <= available:
        raise UserError(f"--threads {threads}: this machine has {available} core(s); use 1 to {available}")


def available_memory(device: str = "cpu") -> int:
    """Bytes free now on ``device``: the GPU's for ``cuda...``, else the machine's."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = int(device.partition(":")[2] or 0)
            return int(torch.cuda.mem_get_info(index)[0])
    try:  # Linux: what can be allocated without swapping, page cache included
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def model_bytes(settings: BaseModel, num_features: int) -> int:
    """About how many bytes training the largest model ``settings`` describe takes (weights, gradients,
    Adam's moments): for every ``*hidden_size`` setting, an MLP of ``*num_layers`` such layers on
    ``num_features`` inputs (times ``*embedding_size`` where set), ``num_models`` members."""
    values = settings.model_dump()
    members = int(values.get("num_models", 1) or 1)
    largest = 0
    for name, hidden in values.items():
        if not name.endswith("hidden_size") or not isinstance(hidden, int):
            continue
        prefix = name.removesuffix("hidden_size")
        layers = int(values.get(f"{prefix}num_layers", 2) or 1)
        width = num_features * int(values.get(f"{prefix}embedding_size", 1) or 1)
        largest = max(largest, width * hidden + (layers - 1) * hidden * hidden + hidden)
    return members * largest * BYTES_PER_PARAMETER


def check_model_size(settings: BaseModel, num_features: int, device: str = "cpu") -> None:
    """Refuse a model that would take more than :data:`MEMORY_SHARE` of the free memory."""
    needed = model_bytes(settings, num_features)
    free = available_memory(device)
    if needed > MEMORY_SHARE * free:
        sizes = {k: v for k, v in settings.model_dump().items() if k.endswith(("hidden_size", "num_layers", "num_models"))}
        described = ", ".join(f"{k}={v}" for k, v in sizes.items())
        where = device if device.startswith("cuda") else "this machine"
        fix = "hidden_size, num_layers or num_models" if "num_models" in sizes else "hidden_size or num_layers"
        raise UserError(f"the surrogate ({described}) needs about {needed / 2**30:.1f} GiB to train, and "
                        f"{where} has {free / 2**30:.1f} GiB free; lower {fix}")


def working_bytes(values: dict[str, Any], num_features: int, rows: int) -> dict[str, int]:
    """Memory that grows with a setting beyond the model's weights, by that setting's name: activations of
    ``batch_size`` (at most ``rows``) or ICT's ``neighbours`` points; BO-qEI's GP on its history of n points
    (n² float64 ×:data:`GP_COPIES`), its raw samples, qMC samples and joint posterior of a batch."""
    widths = [v for k, v in values.items() if k.endswith("hidden_size") and isinstance(v, int)]
    layers = max([v for k, v in values.items() if k.endswith("num_layers") and isinstance(v, int)], default=2)
    members = int(values.get("num_models", 1) or 1)
    needs: dict[str, int] = {}
    for name in ("batch_size", "neighbours"):
        count = values.get(name)
        if isinstance(count, int) and widths:
            points = min(count, rows) if name == "batch_size" else count
            needs[name] = points * max(widths) * layers * members * ACTIVATION_BYTES
    for name, count in values.items():  # a generator's own batch: vae_, gan_, policy_batch_size
        prefix = name.removesuffix("batch_size")
        hidden = values.get(f"{prefix}hidden_size") or (max(widths) if widths else 0)
        if name.endswith("batch_size") and prefix and isinstance(count, int) and not name.startswith("bo_"):
            layers_of = int(values.get(f"{prefix}num_layers", layers) or 1)
            per_point = hidden * layers_of * ACTIVATION_BYTES + SAMPLE_COPIES * 4 * num_features
            needs[name] = count * per_point
    if isinstance(values.get("online_batches"), int) and isinstance(values.get("vae_batch_size"), int):
        count = int(values["online_batches"]) * int(values["vae_batch_size"])  # CbAS: one draw of them all
        hidden = int(values.get("vae_hidden_size", 0)) * int(values.get("vae_num_layers", 1))
        per_point = 4 * (int(values.get("latent_size", 1)) + SAMPLE_COPIES * num_features + 2 * hidden)
        needs["online_batches*vae_batch_size"] = count * (per_point + max(widths, default=0) * members * 4)
    if isinstance(values.get("num_designs"), int):
        needs["num_designs"] = int(values["num_designs"]) * SAMPLE_COPIES * 4 * num_features
    if isinstance(values.get("bo_gp_samples"), int):
        q, restarts = int(values["bo_batch_size"]), int(values["bo_batch_limit"])
        initial, acquired = min(int(values["bo_gp_samples"]), rows), int(values["bo_iterations"]) * q
        history = initial + acquired  # the GP's points at its last fit: named by the larger part
        needs["bo_gp_samples" if initial >= acquired else "bo_iterations*bo_batch_size"] = GP_COPIES * 8 * history**2
        needs["bo_raw_samples"] = 2 * 8 * int(values["bo_raw_samples"]) * q * num_features
        needs["bo_mc_samples"] = 4 * 8 * int(values["bo_mc_samples"]) * restarts * q
        needs["bo_batch_size*bo_batch_limit"] = GP_COPIES * 8 * restarts * q * (q + history)
    return needs


def check_working_memory(settings: BaseModel, task: Task, device: str = "cpu") -> None:
    """Refuse a setting whose working memory (:func:`working_bytes`) with the model's would take more than
    :data:`MEMORY_SHARE` of the free memory, naming the setting, the estimate and the memory free."""
    values = settings.model_dump()
    width = (int(task.x.shape[1]) if task.x.ndim > 1 else 1) * (task.num_classes or 1)
    needs = working_bytes(values, width, training_rows(task))
    if not needs:
        return
    free = available_memory(device)
    base = model_bytes(settings, int(task.x.shape[1]) if task.x.ndim > 1 else 1)
    name, needed = max(needs.items(), key=lambda item: item[1])
    if base + needed > MEMORY_SHARE * free:
        where = device if device.startswith("cuda") else "this machine"
        given = " × ".join(f"{part}={values[part]:,}" for part in name.split("*"))
        raise UserError(f"{given} needs about {needed / 2**30:.1f} GiB of working memory on "
                        f"{task.task_id}, and {where} has {free / 2**30:.1f} GiB free; lower {name.replace('*', ' or ')}")


# ---- the task -------------------------------------------------------------------------------------

def training_rows(task: Task) -> int:
    """Rows one run trains on: the task's pool, or ``max_samples`` of it."""
    pool = len(task.y)
    return pool if task.max_samples is None else min(pool, task.max_samples)


def check_rows(settings: BaseModel, task: Task) -> None:
    """Every held-out split (``*validation_size``) must leave rows to train on."""
    rows = training_rows(task)
    drawn = f"max_samples={task.max_samples} of the pool's {len(task.y):,}" if rows < len(task.y) else "its pool"
    values = settings.model_dump()
    for name, size in values.items():
        if name.endswith("validation_size") and isinstance(size, int) and size >= rows:
            raise UserError(f"{name}={size} holds out every row: {task.task_id} trains on {rows:,} rows "
                            f"({drawn}); use {name} below {rows:,} or max_samples above {size}")


def check_pool(settings: BaseModel, task: Task, baseline: str) -> None:
    """``max_samples`` at most the task's pool (not clamped in silence); ``num_designs`` at most the rows a
    run picks its designs from (a generative baseline's excepted: :data:`GENERATIVE`)."""
    pool = len(task.y)
    if task.max_samples is not None and task.max_samples > pool:
        raise UserError(f"max_samples={task.max_samples:,} is more than {task.task_id}'s pool of {pool:,} rows; "
                        f"use max_samples <= {pool:,}, or null for the whole pool")
    designs, rows = getattr(settings, "num_designs", None), training_rows(task)
    if isinstance(designs, int) and designs > rows and baseline not in GENERATIVE:
        drawn = f"max_samples={task.max_samples:,} of its pool of {pool:,}" if rows < pool else "its whole pool"
        raise UserError(f"num_designs={designs:,} is more than the {rows:,} rows {task.task_id} picks designs from "
                        f"({drawn}); use num_designs <= {rows:,}")


def check_trial(config: Any, task: Task, *, device: str = "cpu") -> None:
    """Every task- and machine-dependent bound of one trial ``config`` (a TrialConfig) on ``task``."""
    settings = config.baseline_settings()
    check_rows(settings, task)
    check_pool(settings, task, config.baseline)
    num_features = int(task.x.shape[1]) if task.x.ndim > 1 else 1
    check_model_size(settings, num_features, device)
    check_working_memory(settings, task, device)
