"""Design-Bench's map between integer tokens and the logits that optimizers move in."""

from __future__ import annotations

import numpy as np

SOFT_INTERPOLATION = 0.6
"""Weight of the one-hot vector against the uniform distribution (Design-Bench's default)."""


def to_logits(x: np.ndarray, num_classes: int, soft_interpolation: float = SOFT_INTERPOLATION) -> np.ndarray:
    """Tokens (n, length) -> float32 logits (n, length, num_classes - 1), relative to class 0.

    The one-hot vector is softened toward uniform, then log-probabilities are taken and the
    first class's is subtracted, removing the sum-to-one degree of freedom.
    """
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"to_logits expects integer tokens, got {x.dtype}")
    one_hot = np.eye(num_classes, dtype=np.float64)[x]
    soft = soft_interpolation * one_hot + (1.0 - soft_interpolation) / num_classes
    log_p = np.log(soft)
    return (log_p[..., 1:] - log_p[..., :1]).astype(np.float32)


def to_integers(logits: np.ndarray) -> np.ndarray:
    """Logits (n, length, num_classes - 1) -> int32 tokens: argmax after restoring class 0's zero."""
    padded = np.concatenate([np.zeros_like(logits[..., :1]), logits], axis=-1)
    return np.argmax(padded, axis=-1).astype(np.int32)
