"""Ensemble training, stacked (one model of M members) against member by member, in one run.

    python benchmarks/ensemble_vectorised.py [--members 5] [--hidden 256] [--layers 1] [--epochs 3]
        [--rows 32898] [--regularizer ignite] [--device cpu|cuda]

Trains the forward-model ensemble of REINFORCE / CbAS / BO-qEI / CMA-ES (5 members, one hidden
layer of 256, batch 100, one shared pipeline with bootstrap counts) on synthetic data of TF-Bind-8's
size, once stacked and once as ``--members`` one-member models on the same splits, and prints both
wall times and their ratio (stacked / looped; the target on the CPU is ≤ 0.5). Both paths compute
the same thing: tests/test_training.py checks parameters, λ and predictions agree.
"""

from __future__ import annotations

import argparse
import time

import torch

from ignite_mbo.models import GaussianEnsemble, gaussian_nll
from ignite_mbo.regularizers import build
from ignite_mbo.streams import Streams
from ignite_mbo.training import FitSettings, draw_splits, fit


def timed(members: list[int], splits, x, y, args) -> float:
    streams = Streams(0)
    generators = [streams.torch(f"init/{m}") for m in range(args.members)]
    model = GaussianEnsemble(x.shape[1], args.hidden, args.layers, generators=[generators[m] for m in members])
    model.to(args.device)
    settings = FitSettings(epochs=args.epochs, batch_size=100, learning_rate=1e-3, validation_size=200)
    start = time.perf_counter()
    fit(model, x, y, splits, build(args.regularizer), settings, gaussian_nll)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=32898)
    parser.add_argument("--regularizer", default="ignite")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    x = torch.randn(args.rows, 24, generator=torch.Generator().manual_seed(0))
    y = x[:, :1] - x[:, 1:2] ** 2 + 0.1 * torch.randn(args.rows, 1, generator=torch.Generator().manual_seed(1))
    splits = draw_splits(args.rows, args.members, 200, Streams(1), "bench", bootstrap=True, shared=True)
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})  # imports, allocator and (on CUDA) context and graphs
    small = draw_splits(1000, args.members, 200, Streams(2), "warm", bootstrap=True, shared=True)
    timed(list(range(args.members)), small, x[:1000], y[:1000], warm)
    timed([0], small.member(0), x[:1000], y[:1000], warm)
    stacked = timed(list(range(args.members)), splits, x, y, args)
    looped = sum(timed([m], splits.member(m), x, y, args) for m in range(args.members))
    print(f"device={args.device} threads={torch.get_num_threads()} {args.members} members {args.layers}x{args.hidden} "
          f"{args.epochs} epochs {args.regularizer}: stacked {stacked:.1f} s, looped {looped:.1f} s, "
          f"stacked/looped {stacked / looped:.2f}")


if __name__ == "__main__":
    main()
