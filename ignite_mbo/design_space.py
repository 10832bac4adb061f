"""Where optimizers move: logits for discrete tasks, z-scored inputs for continuous ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ignite_mbo.tasks import Task, to_integers, to_logits


@dataclass(frozen=True)
class DesignSpace:
    """Encodes raw designs into the float features surrogates read, and decodes them back.

    Discrete tasks use Design-Bench's logits (length, num_classes - 1), unnormalised; continuous
    tasks are z-scored with the training set's statistics (design-baselines' ``normalize_xs``).
    """

    num_classes: int | None
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None

    @classmethod
    def for_task(cls, task: Task) -> DesignSpace:
        if task.is_discrete:
            return cls(num_classes=task.num_classes)
        x = task.x.astype(np.float64)
        std = x.std(axis=0)
        return cls(num_classes=None, x_mean=x.mean(axis=0), x_std=np.where(std > 0, std, 1.0))

    def encode(self, x: np.ndarray) -> torch.Tensor:
        if self.num_classes is not None:
            return torch.from_numpy(to_logits(x, self.num_classes))
        return torch.from_numpy(((x - self.x_mean) / self.x_std).astype(np.float32))

    def decode(self, features: torch.Tensor) -> np.ndarray:
        array = features.detach().cpu().numpy()
        if self.num_classes is not None:
            return to_integers(array)
        return (array * self.x_std + self.x_mean).astype(np.float32)


@dataclass(frozen=True)
class TargetScaler:
    """z-normalisation of the scores for training (design-baselines' ``normalize_ys``)."""

    mean: float
    std: float

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetScaler:
        std = float(y.std())
        return cls(mean=float(y.mean()), std=std if std > 0 else 1.0)

    def transform(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((y - self.mean) / self.std).astype(np.float32))
