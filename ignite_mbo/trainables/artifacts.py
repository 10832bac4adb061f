"""A finished trial's files: proposed designs with their scores, trained surrogates, λ/sharpness plot."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import torch

from ignite_mbo.trial import TrialResult


def candidates_table(result: TrialResult) -> pd.DataFrame:
    """The proposed designs (one column per coordinate) with their normalised oracle scores."""
    designs = result.proposal.designs.reshape(len(result.proposal.designs), -1)
    table = pd.DataFrame(designs, columns=[f"x{i}" for i in range(designs.shape[1])])
    table["score_normalized"] = result.scores
    return table


def plot_training(result: TrialResult, path: Path) -> None:
    """λ and measured sharpness per epoch for each regularized model."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), layout="constrained")
    ax_lambda, ax_sharp = figure.subplots(1, 2)
    for index, surrogate in enumerate(result.proposal.surrogates):
        epochs = range(len(surrogate.history))
        ax_lambda.plot(epochs, [m["lambda"] for m in surrogate.history], label=f"model {index}")
        ax_sharp.plot(epochs, [m["sharpness"] for m in surrogate.history], label=f"model {index}")
    ax_lambda.set(xlabel="epoch", ylabel="λ", title="Lagrange multiplier")
    ax_sharp.set(xlabel="epoch", ylabel="ρ‖∇β G‖ (ρ=0.05)", title="surrogate sharpness")
    if len(result.proposal.surrogates) > 1:
        ax_sharp.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path.write_bytes(buffer.getvalue())


def write_trial_artifacts(result: TrialResult, folder: Path) -> None:
    """``candidates.parquet``, ``surrogate_<i>.pt`` and ``training_curves.png`` into ``folder``."""
    candidates_table(result).to_parquet(folder / "candidates.parquet", index=False)
    for index, surrogate in enumerate(result.proposal.surrogates):
        torch.save(surrogate.model.state_dict(), folder / f"surrogate_{index}.pt")
    plot_training(result, folder / "training_curves.png")
