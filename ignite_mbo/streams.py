"""Named random streams: every random draw of a trial comes from a stream named for its use.

>>> streams = Streams(seed=3)
>>> order = streams.torch("surrogate/order")          # a torch.Generator
>>> noise = streams.numpy("bo/noise")                 # a numpy Generator

A stream's integer seed is derived from the trial seed and the name alone (numpy ``SeedSequence``
with the name's hash as spawn key), so adding a stream never shifts another, a restored surrogate
needs no saved RNG state, and two uses never share numbers by accident: asking for one name twice,
or two names whose integers collide, raises.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

SEED_LIMIT = 2**32
"""Trial seeds live in [0, 2³²): numpy's legacy seeding and Ray Tune configs accept them everywhere."""


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


class Streams:
    """The random streams of one trial, each derived from (trial seed, name)."""

    def __init__(self, seed: int) -> None:
        if not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        self.trial_seed = seed
        self.used: dict[str, int] = {}

    def seed(self, name: str) -> int:
        """The 63-bit integer seed of stream ``name`` (each name may be asked for once per trial)."""
        if name in self.used:
            raise RuntimeError(f"random stream {name!r} was already used in this trial; give each use its own name")
        words = np.random.SeedSequence(self.trial_seed, spawn_key=(_name_key(name),)).generate_state(2, np.uint32)
        value = (int(words[0]) | int(words[1]) << 32) >> 1  # torch.manual_seed takes < 2**63
        clash = next((other for other, seen in self.used.items() if seen == value), None)
        if clash is not None:
            raise RuntimeError(f"random streams {name!r} and {clash!r} share a seed; rename one")
        self.used[name] = value
        return value

    def torch(self, name: str, device: torch.device | str = "cpu") -> torch.Generator:
        """A ``torch.Generator`` for stream ``name`` on ``device`` (draws on a GPU stay on the GPU;
        the same stream draws different numbers on different devices)."""
        return torch.Generator(device=device).manual_seed(self.seed(name))

    def numpy(self, name: str) -> np.random.Generator:
        """A numpy ``Generator`` for stream ``name``."""
        return np.random.default_rng(self.seed(name))
