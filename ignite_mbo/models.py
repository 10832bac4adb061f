"""The surrogate networks, stacked so that an ensemble trains as one model, and Keras' initialisation.

Every reference network is a Keras layer stack: Glorot-uniform kernels, zero biases, embeddings
uniform in ±0.05. :func:`keras_init` gives any PyTorch module that initialisation from a seeded
generator; :class:`GaussianEnsemble` draws each member's weights the same way from its own generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_RELU_SLOPE = 0.3
"""``tf.keras.layers.LeakyReLU()``'s default negative slope."""


def glorot_uniform(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    """A (fan_in, fan_out) kernel drawn from U(±√(6 / (fan_in + fan_out))), Keras' default."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound


ModuleT = TypeVar("ModuleT", bound=nn.Module)


@torch.no_grad()
def keras_init(module: ModuleT, generator: torch.Generator) -> ModuleT:
    """Re-initialise ``module`` in place as Keras would: Glorot-uniform Linear kernels, zero biases,
    Embedding tables uniform in ±0.05 (LayerNorm keeps PyTorch's ones/zeros, as Keras)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.copy_(glorot_uniform(layer.in_features, layer.out_features, generator).T)
            if layer.bias is not None:
                layer.bias.zero_()
        elif isinstance(layer, nn.Embedding):
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 0.1 - 0.05)
    return module


def stacked_layers(x: torch.Tensor, kernels: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                   activate: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """An MLP per member: x (batch, in) shared or (members, batch, in) -> (members, batch, out).

    Each layer is ``activate(h @ kernel + bias)`` (none after the last); kernels are (members, in,
    out), biases (members, 1, out). The activations are kept transposed, (members, features,
    batch), so that every matrix product has the batch as its wide dimension: CPU GEMM libraries
    are slow on the narrow (2-wide) head and on batched products of one member, and a shared input
    makes the first layer one plain GEMM over all members.
    """
    h = x.transpose(-1, -2)
    last = len(kernels) - 1
    for index, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
        if kernel.shape[0] == 1:
            flat = h.reshape(kernel.shape[1], -1) if h.dim() == 2 else h[0]
            h = torch.addmm(bias[0].T, kernel[0].T, flat).unsqueeze(0)
        else:
            h = torch.baddbmm(bias.transpose(1, 2), kernel.transpose(1, 2), h) if h.dim() == 3 \
                else torch.matmul(kernel.transpose(1, 2), h) + bias.transpose(1, 2)
        if index < last:
            h = activate(h)
    return h.transpose(1, 2)


class StackedMLP(nn.Module):
    """``num_members`` MLPs of one shape, stacked: each parameter has a leading member axis.

    One batched matmul runs every member, and since members never interact, the gradient of the sum
    of their losses is each member's own gradient. Inputs are either shared by all members,
    (batch, input_size), or one batch per member, (num_members, batch, input_size); outputs are
    (num_members, batch, output_size). Inputs are flat float features, or, with ``embedding=(classes,
    size)``, integer tokens (``input_size`` positions) that each member embeds with its own table
    before the first layer (Keras' ``Embedding`` → ``Flatten``, as design-baselines' discrete forward
    models). Each member's embedding table and kernels come from its own generator (Keras' init).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, output_size: int, *,
                 generators: Sequence[torch.Generator], activation: str = "leaky_relu",
                 embedding: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_members = len(generators)
        self.input_size = input_size
        self.activation = activation
        self.embedding: nn.Parameter | None = None
        width = input_size
        if embedding is not None:
            classes, size = embedding
            self.embedding = nn.Parameter(torch.stack([torch.rand(classes, size, generator=g) * 0.1 - 0.05
                                                       for g in generators]))
            width = input_size * size
        sizes = [width] + [hidden_size] * num_layers + [output_size]
        kernels = [[glorot_uniform(fan_in, fan_out, g) for g in generators]
                   for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)]
        self.kernels = nn.ParameterList([nn.Parameter(torch.stack(layer)) for layer in kernels])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(self.num_members, 1, size)) for size in sizes[1:]])

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (batch, positions) or (members, batch, positions) -> (members, batch, positions · size)."""
        assert self.embedding is not None
        members = torch.arange(self.num_members, device=tokens.device).view(-1, 1, 1)
        tables = self.embedding[members, tokens if tokens.dim() == 3 else tokens.unsqueeze(0)]
        return tables.flatten(2)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(h, LEAKY_RELU_SLOPE) if self.activation == "leaky_relu" else F.relu(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._embed(x) if self.embedding is not None else x
        return stacked_layers(h, list(self.kernels), list(self.biases), self._activate)

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction (num_members, batch, 1) of a one-output MLP."""
        return self(x)


class GaussianEnsemble(StackedMLP):
    """design-baselines' forward model, ``num_members`` of them stacked: an MLP (LeakyReLU by
    default) whose two outputs are a mean and a log std; the log std is softly clipped between two
    learned bounds initialised at log(``initial_min_std``) and log(``initial_max_std``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, *, generators: Sequence[torch.Generator],
                 activation: str = "leaky_relu", embedding: tuple[int, int] | None = None,
                 initial_min_std: float = 0.1, initial_max_std: float = 0.2) -> None:
        super().__init__(input_size, hidden_size, num_layers, 2, generators=generators, activation=activation,
                         embedding=embedding)
        self.max_logstd = nn.Parameter(torch.full((self.num_members, 1, 1), math.log(initial_max_std)))
        self.min_logstd = nn.Parameter(torch.full((self.num_members, 1, 1), math.log(initial_min_std)))

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features -> mean and log std, each (num_members, batch, 1)."""
        mean, logstd = super().forward(x).chunk(2, dim=-1)
        logstd = self.max_logstd - F.softplus(self.max_logstd - logstd)
        logstd = self.min_logstd + F.softplus(logstd - self.min_logstd)
        return mean, logstd

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's predicted mean, (num_members, batch, 1)."""
        return super().forward(x)[..., :1]


def gaussian_nll(model: Any, x: torch.Tensor, y: torch.Tensor,
                 weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member weighted mean NLL of ``y`` (members, batch, 1) under the model's Gaussians, and
    G, each member's mean prediction on the batch, from the same forward pass.

    ``weights`` (members, batch) are bootstrap counts: Σ w·nll / Σ w, and 0 where Σ w = 0 (as
    TensorFlow's ``divide_no_nan`` in the reference).
    """
    mean, logstd = model.distribution(x)
    nll = (0.5 * ((y - mean) / logstd.exp()) ** 2 + logstd + 0.5 * math.log(2 * math.pi))[..., 0]
    total = weights.sum(dim=1)
    loss = (weights * nll).sum(dim=1) / total.clamp_min(1e-12) * (total > 0)
    return loss, mean.mean(dim=(1, 2))
