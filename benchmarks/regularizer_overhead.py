"""What IGNITE costs: training-step time of each regularizer relative to plain backward, in one run.

    python benchmarks/regularizer_overhead.py [--hidden 2048] [--batches 40] [--repeats 3] [--device cpu|cuda]

Times blocks of ``--batches`` optimizer steps of the GA surrogate (a one-member GaussianEnsemble on TF-Bind-8's
24 logit features, batch 128, Adam) through ``training._Step`` — the loop's own step, the loss's
forward shared with G — for none / ignite / ignite (exact HVP) / ignite2, the variants' blocks interleaved
``--repeats`` times so that load changes hit them all, and prints each per-step time (median of
its blocks) and its ratio to none. Ratios are measured in this one run.
Synthetic inputs: no data needed. On CUDA it also times the captured-graph step.

The floor: a plain step is F + B (B ≈ 2F) = 3 units; finite-difference IGNITE with a shared forward
is F + 2B for ∇L and ∇G plus F + B at the perturbed weights = 8 units, so ≈ 2.7 before fixed costs
(Adam, Python), which pull the measured ratio down. The last line measures that floor in the same
run: the hidden layer's matrix products alone, timed for both steps, and the best ratio possible
when IGNITE costs nothing beyond its products and the plain step's own other costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ignite_mbo.models import GaussianEnsemble, gaussian_nll
from ignite_mbo.regularizers import build
from ignite_mbo.training import _GraphedStep, _Step, keras_adam

VARIANTS = {
    "none": ("none", {}),
    "ignite": ("ignite", {}),
    "ignite (exact hvp)": ("ignite", {"hvp": "exact"}),
    "ignite2": ("ignite2", {}),
}


def make_step(name: str, options: dict, args: argparse.Namespace, graphed: bool) -> Callable[[int], None]:
    """A step closure over fresh model, optimizer and data for one variant (warmed up)."""
    device = torch.device(args.device)
    model = GaussianEnsemble(24, args.hidden, 2, generators=[torch.Generator().manual_seed(0)]).to(device)
    optimizer = keras_adam(model.parameters(), 3e-4, capturable=graphed)
    plain = _Step(model, gaussian_nll, build(name, **options), optimizer, 1, device)
    step: _Step | _GraphedStep = _GraphedStep(plain) if graphed else plain
    x = torch.randn(8, 128, 24, device=device)
    y = torch.randn(8, 128, 1, device=device)
    w = torch.ones(1, 128, device=device)
    for warmup in range(5):
        step(x[warmup % 8], y[warmup % 8], w)

    def run(batches: int) -> None:
        for batch in range(batches):
            step(x[batch % 8], y[batch % 8], w)
        bool(step.finite)  # wait for the device

    return run


def seconds_per_step(run: Callable[[int], None], batches: int) -> float:
    start = time.perf_counter()
    run(batches)
    return (time.perf_counter() - start) / batches


def gemm_floor(hidden: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Measured time of the hidden×hidden layer's matrix products alone, at batch 128: a plain step
    needs forward + grad-input + grad-weight (F + Bi + Bw); finite-difference IGNITE with a shared
    forward needs 2F + 3Bi + 3Bw (∇L and ∇G at β, ∇G at the perturbed β̂). Returns both, in seconds."""
    activations = torch.randn(128, hidden, device=device)
    weight = torch.randn(hidden, hidden, device=device)
    products = {"F": lambda: activations @ weight, "Bi": lambda: activations @ weight.T,
                "Bw": lambda: activations.T @ activations}
    seconds = {}
    for name, product in products.items():
        product()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(10):
                product()
            if device.type == "cuda":
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - start) / 10)
        seconds[name] = statistics.median(runs)
    plain = seconds["F"] + seconds["Bi"] + seconds["Bw"]
    return plain, 2 * seconds["F"] + 3 * seconds["Bi"] + 3 * seconds["Bw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device={args.device} hidden={args.hidden} batch=128 threads={torch.get_num_threads()} "
          f"median of {args.repeats} runs of {args.batches} steps")
    modes = [False, True] if args.device.startswith("cuda") else [False]
    plain, ignite = gemm_floor(args.hidden, torch.device(args.device), args.repeats)  # the same for both modes
    for graphed in modes:
        variants = {label: make_step(name, options, args, graphed) for label, (name, options) in VARIANTS.items()
                    if not (graphed and options.get("hvp") == "exact")}
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits every variant
            for label, run in variants.items():
                times[label].append(seconds_per_step(run, args.batches))
        base = statistics.median(times["none"])
        for label, values in times.items():
            seconds = statistics.median(values)
            mode = "graph" if graphed else "eager"
            print(f"{mode} {label:>20}: {1000 * seconds:8.3f} ms/step  ratio to none {seconds / base:5.2f}", flush=True)
        best = (ignite + base - plain) / base  # IGNITE's products plus no more than the plain step's other costs
        print(f"{mode} floor: the {args.hidden}x{args.hidden} layer's products alone take {1000 * plain:.3f} ms (plain), "
              f"{1000 * ignite:.3f} ms (ignite), ratio {ignite / plain:.2f}; with the plain step's other "
              f"{1000 * (base - plain):.3f} ms added to both, the best possible ratio is {best:.2f}", flush=True)


if __name__ == "__main__":
    main()
