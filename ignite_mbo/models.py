"""The surrogate networks shared by every baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GaussianMLP(nn.Module):
    """Design-Bench's forward model: an MLP with LeakyReLU layers and a Gaussian head.

    It predicts a mean and a log standard deviation; the log std is softly clipped between two
    learned bounds, initialised at log(0.1) and log(0.2), as in design-baselines.
    """

    def __init__(self, input_size: int, hidden_size: int = 2048, num_layers: int = 2,
                 initial_min_std: float = 0.1, initial_max_std: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.LeakyReLU(0.3)]
            width = hidden_size
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)
        self.min_logstd = nn.Parameter(torch.tensor(math.log(initial_min_std)))
        self.max_logstd = nn.Parameter(torch.tensor(math.log(initial_max_std)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, *design_shape) -> mean and log std, each (batch, 1)."""
        mean, logstd = self.net(x).chunk(2, dim=-1)
        logstd = self.max_logstd - F.softplus(self.max_logstd - logstd)
        logstd = self.min_logstd + F.softplus(logstd - self.min_logstd)
        return mean, logstd

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]


def gaussian_nll(model: GaussianMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``y`` under the model's Gaussian (constant terms kept)."""
    mean, logstd = model(x)
    return (0.5 * ((y - mean) / logstd.exp()) ** 2 + logstd + 0.5 * math.log(2 * math.pi)).mean()
