"""What IGNITE costs: training-step time of each regularizer relative to plain backward, one run.

    python benchmarks/regularizer_overhead.py [--hidden 2048] [--batches 40] [--device cpu|cuda]

Times ``--batches`` optimizer steps of the GA surrogate (Gaussian MLP, TF-Bind-8 logit inputs,
batch 128) for none / ignite / ignite (exact HVP) / ignite2 and prints each per-step time and its
ratio to none. Synthetic inputs: no data needed.
"""

from __future__ import annotations

import argparse
import time

import torch

from ignite_mbo.models import GaussianMLP, gaussian_nll
from ignite_mbo.regularizers import build

VARIANTS = {
    "none": ("none", {}),
    "ignite": ("ignite", {}),
    "ignite (exact hvp)": ("ignite", {"hvp": "exact"}),
    "ignite2": ("ignite2", {}),
}


def seconds_per_step(name: str, options: dict, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = GaussianMLP(8 * 3, hidden_size=args.hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    regularizer = build(name, **options)
    x = torch.randn(args.batches, 128, 8, 3, device=device)
    y = torch.randn(args.batches, 128, 1, device=device)
    for warmup in range(2):
        optimizer.zero_grad()
        regularizer.backward(model, gaussian_nll(model, x[warmup], y[warmup]), lambda: model.predict_mean(x[warmup]).mean())
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(args.batches):
        optimizer.zero_grad()
        xb = x[step]
        regularizer.backward(model, gaussian_nll(model, xb, y[step]), lambda xb=xb: model.predict_mean(xb).mean())
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / args.batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device={args.device} hidden={args.hidden} batch=128 threads={torch.get_num_threads()}")
    base = None
    for label, (name, options) in VARIANTS.items():
        seconds = seconds_per_step(name, options, args)
        base = base or seconds
        print(f"{label:>20}: {1000 * seconds:8.2f} ms/step  ratio to none {seconds / base:5.2f}")


if __name__ == "__main__":
    main()
