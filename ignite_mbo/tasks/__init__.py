"""Design-Bench-compatible tasks: offline data, an exact oracle and score normalisation.

>>> task = make("TFBind8-Exact-v0")
>>> task.x.shape, task.y.shape          # ((32898, 8), (32898, 1)): the offline training pool
>>> run_task = task.subsample(rng)      # what one run trains on (at most task.max_samples rows)
>>> task.normalize_score(task.oracle(task.x[:5]))

Tasks are plain data (:class:`Task`); each task id maps to a short builder in ``REGISTRY`` and
to the pydantic model of its options in ``OPTIONS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ignite_mbo.errors import UserError
from ignite_mbo.tasks.base import Task
from ignite_mbo.tasks.discrete import to_integers, to_logits
from ignite_mbo.tasks.synthetic import SyntheticOptions, make_synthetic
from ignite_mbo.tasks.tfbind import (
    TFBind8Options,
    TFBind10Options,
    make_tf_bind_8,
    make_tf_bind_10,
)

REGISTRY: dict[str, Callable[..., Task]] = {
    "TFBind8-Exact-v0": make_tf_bind_8,
    "TFBind10-Exact-v0": make_tf_bind_10,
    "Synthetic-Ackley60-v0": make_synthetic,
}
OPTIONS: dict[str, type[BaseModel]] = {
    "TFBind8-Exact-v0": TFBind8Options,
    "TFBind10-Exact-v0": TFBind10Options,
    "Synthetic-Ackley60-v0": SyntheticOptions,
}


def _check_task_id(task_id: str) -> None:
    if task_id not in REGISTRY:
        raise UserError(f"unknown task {task_id!r}; choose one of {', '.join(REGISTRY)}")


def _describe(model: type[BaseModel]) -> str:
    return "; ".join(f"{name}: {field.description}" for name, field in model.model_fields.items())


def validate_options(task_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The task's options checked against its typed model, defaults filled in; touches no file.

    Raises a one-line UserError naming the first bad option and what the task accepts.
    """
    _check_task_id(task_id)
    model = OPTIONS[task_id]
    try:
        return model.model_validate(options).model_dump()
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "options"
        if first["type"] == "extra_forbidden":
            problem = f"unknown task option {name!r} for {task_id}"
        else:
            problem = f"task option {name}={first['input']!r} for {task_id} is invalid ({first['msg']})"
        raise UserError(f"{problem}; {task_id} takes {_describe(model)}") from None


def make(task_id: str, data_dir: str | os.PathLike[str] | None = None, **options: Any) -> Task:
    """Build the task ``task_id`` (its whole training pool); ``data_dir`` overrides
    $IGNITE_MBO_DATA_DIR and the user cache. Options are checked before any file is read."""
    checked = validate_options(task_id, options)
    return REGISTRY[task_id](data_dir=data_dir, **checked)


def build(task_id: str, checked_options: Mapping[str, Any], data_dir: str | os.PathLike[str] | None = None) -> Task:
    """Build ``task_id`` from options that were validated already (a parsed ``TrialConfig``'s): the
    task's defaults, then ``checked_options``, with no second check."""
    defaults = {name: field.get_default(call_default_factory=True) for name, field in OPTIONS[task_id].model_fields.items()}
    return REGISTRY[task_id](data_dir=data_dir, **{**defaults, **checked_options})


__all__ = ["OPTIONS", "REGISTRY", "Task", "build", "make", "to_integers", "to_logits", "validate_options"]
