"""Design-Bench-compatible tasks: offline data, an exact oracle and score normalisation.

>>> task = make("TFBind8-Exact-v0")
>>> task.x.shape, task.y.shape          # ((32898, 8), (32898, 1)): the offline training set
>>> task.normalize_score(task.oracle(task.x[:5]))

Tasks are plain data (:class:`Task`); each task id maps to a short builder in ``REGISTRY``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ignite_mbo.errors import UserError
from ignite_mbo.tasks.base import Task
from ignite_mbo.tasks.discrete import to_integers, to_logits
from ignite_mbo.tasks.synthetic import make_synthetic
from ignite_mbo.tasks.tfbind import make_tf_bind_8, make_tf_bind_10

REGISTRY: dict[str, Callable[..., Task]] = {
    "TFBind8-Exact-v0": make_tf_bind_8,
    "TFBind10-Exact-v0": make_tf_bind_10,
    "Synthetic-Ackley60-v0": make_synthetic,
}


def make(task_id: str, data_dir: str | os.PathLike[str] | None = None, **options: Any) -> Task:
    """Build the task ``task_id``; ``data_dir`` overrides $IGNITE_MBO_DATA_DIR and the user cache."""
    if task_id not in REGISTRY:
        raise UserError(f"unknown task {task_id!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[task_id](data_dir=data_dir, **options)


__all__ = ["REGISTRY", "Task", "make", "to_integers", "to_logits"]
