"""Where surrogates read and optimizers move: flat float features of the designs.

Discrete designs become Design-Bench's logits, (length, num_classes - 1) per design; continuous
designs stay as they are. With ``normalize`` the features are then z-scored per feature with the
training set's mean and population std (a zero std counts as 1), which is Design-Bench's
``map_normalize_x`` and what design-baselines' ``normalize_xs`` switches on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ignite_mbo.tasks import Task, to_integers, to_logits


@dataclass(frozen=True)
class DesignSpace:
    """Encodes raw designs into flat float32 features (n, features) and decodes features back."""

    design_shape: tuple[int, ...]
    num_classes: int | None
    mean: np.ndarray | None = None  # (features,) when normalised
    std: np.ndarray | None = None

    @classmethod
    def for_task(cls, task: Task, *, normalize: bool) -> DesignSpace:
        """The feature space of ``task``; ``normalize`` z-scores it with the training set's statistics."""
        space = cls(design_shape=task.design_shape, num_classes=task.num_classes)
        if not normalize:
            return space
        features = space._features(task.x).astype(np.float64)
        std = features.std(axis=0)
        return cls(task.design_shape, task.num_classes, mean=features.mean(axis=0), std=np.where(std > 0, std, 1.0))

    @property
    def num_features(self) -> int:
        size = int(np.prod(self.design_shape))
        return size if self.num_classes is None else size * (self.num_classes - 1)

    def _features(self, x: np.ndarray) -> np.ndarray:
        values = to_logits(x, self.num_classes) if self.num_classes is not None else np.asarray(x, np.float32)
        return values.reshape(len(values), -1)

    def encode(self, x: np.ndarray) -> torch.Tensor:
        """Raw designs (n, *design_shape) -> features (n, num_features), float32."""
        features = self._features(x)
        if self.mean is not None and self.std is not None:
            features = (features - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def decode(self, features: torch.Tensor) -> np.ndarray:
        """Features (n, num_features) -> raw designs: argmax tokens for discrete tasks."""
        array = features.detach().cpu().numpy().astype(np.float64)
        if self.mean is not None and self.std is not None:
            array = array * self.std + self.mean
        if self.num_classes is None:
            return array.reshape(len(array), *self.design_shape).astype(np.float32)
        return to_integers(array.reshape(len(array), *self.design_shape, self.num_classes - 1))


@dataclass(frozen=True)
class TokenSpace(DesignSpace):
    """Discrete designs as their integer tokens (n, length), for surrogates that embed them
    (design-baselines' REINFORCE and CbAS forward models: ``map_to_integers``)."""

    @property
    def num_features(self) -> int:
        return int(np.prod(self.design_shape))

    def encode(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x, dtype=np.int64).reshape(len(x), -1))

    def decode(self, features: torch.Tensor) -> np.ndarray:
        return features.detach().cpu().numpy().reshape(len(features), *self.design_shape).astype(np.int32)


@dataclass(frozen=True)
class TargetScaler:
    """z-normalisation of the scores for training (Design-Bench's ``map_normalize_y``)."""

    mean: float
    std: float

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetScaler:
        std = float(y.std())
        return cls(mean=float(y.mean()), std=std if std > 0 else 1.0)

    def transform(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((y - self.mean) / self.std).astype(np.float32))
