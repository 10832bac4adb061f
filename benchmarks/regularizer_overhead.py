"""What each regularizer costs: training-step time relative to plain backward, beside its matrix-product floor, in one run.

    python benchmarks/regularizer_overhead.py [--hidden 2048] [--batches 40] [--repeats 3] [--device cpu|cuda]

Times blocks of ``--batches`` optimizer steps of the GA surrogate (a one-member GaussianEnsemble on TF-Bind-8's
24 logit features, batch 128, Adam) through ``training._Step`` — the loop's own step, the loss's
forward shared with G — for every regularizer (and the exact-HVP variants), the variants' blocks interleaved
``--repeats`` times so that load changes hit them all, and prints each per-step time (median of
its blocks), its ratio to none, its floor and measured/floor. Ratios are measured in this one run.
Synthetic inputs: no data needed. On CUDA it also times the captured-graph step.

The floor: the hidden×hidden layer's matrix products, timed alone in the same run — forward F, grad-input Bi,
grad-weight Bw — counted per step for each regularizer (``PRODUCTS``): a plain step is F + Bi + Bw;
finite-difference IGNITE with a shared forward is F + 2(Bi + Bw) for ∇L and ∇G plus F + Bi + Bw at the
perturbed weights. A regularizer's floor is its products plus the plain step's other costs (Adam, Python,
the other layers), over the plain step: the best ratio possible when it costs nothing beyond its products.
The exact-HVP counts (double backprop) are estimates: 2F + Bi + Bw for differentiating the layer's backward,
plus Bi + Bw back through the forward; IGNITE folds ∇L into that last pass (3F + 3Bi + 3Bw), BOSS does not.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ignite_mbo.allocator import keep_freed_memory
from ignite_mbo.models import GaussianEnsemble, gaussian_nll
from ignite_mbo.regularizers import build
from ignite_mbo.training import _GraphedStep, _Step, keras_adam

VARIANTS = {
    "none": ("none", {}),
    "ignite": ("ignite", {}),
    "ignite (exact hvp)": ("ignite", {"hvp": "exact"}),
    "ignite2": ("ignite2", {}),
    "sam": ("sam", {}),
    "l1": ("l1", {}),
    "l2": ("l2", {}),
    "boss": ("boss", {}),
    "boss (exact hvp)": ("boss", {"hvp": "exact"}),
}

PRODUCTS = {  # (F, Bi, Bw) of the hidden layer per step
    "none": (1, 1, 1), "ignite": (2, 3, 3), "ignite (exact hvp)": (3, 3, 3), "ignite2": (2, 3, 3),
    "sam": (2, 2, 2), "l1": (1, 1, 1), "l2": (1, 1, 1), "boss": (2, 3, 3), "boss (exact hvp)": (3, 4, 4),
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


def product_seconds(hidden: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Measured time of each of the hidden×hidden layer's matrix products alone, at batch 128: F (forward),
    Bi (grad-input), Bw (grad-weight), in seconds."""
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
    return seconds


def products_time(label: str, seconds: dict[str, float]) -> float:
    forward, grad_input, grad_weight = PRODUCTS[label]
    return forward * seconds["F"] + grad_input * seconds["Bi"] + grad_weight * seconds["Bw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as every trial does (ignite_mbo.trial.run_trial)
    print(f"device={args.device} hidden={args.hidden} batch=128 threads={torch.get_num_threads()} "
          f"median of {args.repeats} runs of {args.batches} steps")
    modes = [False, True] if args.device.startswith("cuda") else [False]
    seconds = product_seconds(args.hidden, torch.device(args.device), args.repeats)  # the same for both modes
    print(f"the {args.hidden}x{args.hidden} layer's products alone: F {1000 * seconds['F']:.3f} ms, "
          f"Bi {1000 * seconds['Bi']:.3f} ms, Bw {1000 * seconds['Bw']:.3f} ms", flush=True)
    for graphed in modes:
        variants = {label: make_step(name, options, args, graphed) for label, (name, options) in VARIANTS.items()
                    if not (graphed and options.get("hvp") == "exact")}
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits every variant
            for label, run in variants.items():
                times[label].append(seconds_per_step(run, args.batches))
        base = statistics.median(times["none"])
        other = base - products_time("none", seconds)  # the plain step's costs beyond the layer's products
        mode = "graph" if graphed else "eager"
        print(f"{'':5} {'regularizer':>20}  {'ms/step':>8}  {'ratio':>5}  {'floor':>5}  measured/floor")
        for label, values in times.items():
            ratio = statistics.median(values) / base
            floor = (products_time(label, seconds) + other) / base
            print(f"{mode:5} {label:>20}  {1000 * statistics.median(values):8.3f}  {ratio:5.2f}  {floor:5.2f}  "
                  f"{ratio / floor:5.2f}", flush=True)


if __name__ == "__main__":
    main()
