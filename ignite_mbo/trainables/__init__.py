"""Ray Tune trainables."""

from ignite_mbo.trainables.mbo import mbo_trainable

__all__ = ["mbo_trainable"]
