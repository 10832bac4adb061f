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


def stacked_layers(h: torch.Tensor, kernels: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                   activate: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """An MLP per member on transposed activations: h (in, batch) shared or (members, in, batch) ->
    (members, out, batch).

    Each layer is ``activate(kernel @ h + bias)`` (none after the last), kernels (members, out, in)
    and biases (members, out, 1) as ``nn.Linear`` stores them. Keeping the batch as the last, wide
    dimension suits the GEMM libraries (they are slow on the 2-wide Gaussian head), gives contiguous
    gradients (Adam's fast path), makes one member a plain GEMM and a shared input one GEMM over all
    members.
    """
    last = len(kernels) - 1
    for index, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
        if kernel.shape[0] == 1:  # squeeze, not [0]: select's backward writes a zero-filled copy of the kernel
            h = torch.addmm(bias.squeeze(0), kernel.squeeze(0), h if h.dim() == 2 else h.squeeze(0)).unsqueeze(0)
        elif h.dim() == 2:
            h = torch.matmul(kernel, h) + bias  # (members · out, in) @ (in, batch) as one GEMM
        else:
            h = torch.baddbmm(bias, kernel, h)
        if index < last:
            h = activate(h)
    return h


class StackedMLP(nn.Module):
    """``num_members`` MLPs of one shape, stacked: each parameter has a leading member axis.

    One batched matmul runs every member, and since members never interact, the gradient of the sum
    of their losses is each member's own gradient. Inputs are either shared by all members,
    (batch, input_size), or one batch per member, (num_members, batch, input_size); outputs are
    (num_members, batch, output_size). Inputs are flat float features, or, with ``embedding=(classes,
    size)``, integer tokens (``input_size`` positions) that each member embeds with its own table
    before the first layer (Keras' ``Embedding`` → ``Flatten`` → ``Dense``, as design-baselines'
    discrete forward models). Each member's embedding table and kernels come from its own generator
    (Keras' init: kernels drawn as (in, out) Glorot-uniform, stored transposed).
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
        # (members, out, in), except after an embedding: (members, positions · size, out), see _embedded_first_layer
        stored = [torch.stack(layer) if index == 0 and embedding is not None else torch.stack([k.T for k in layer])
                  for index, layer in enumerate(kernels)]
        self.kernels = nn.ParameterList([nn.Parameter(kernel.contiguous()) for kernel in stored])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(self.num_members, size, 1)) for size in sizes[1:]])

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if self.activation == "softplus":  # RoMA's forward model
            return F.softplus(h)
        return F.leaky_relu(h, LEAKY_RELU_SLOPE) if self.activation == "leaky_relu" else F.relu(h)

    def _embedded_first_layer(self, tokens: torch.Tensor) -> torch.Tensor:
        """The first layer on embedded tokens, (members, hidden, batch), before its activation.

        Dense(Flatten(Embedding(x))) = Σ_positions (table · kernel_position)[x_position]: each
        member's per-position products (classes × hidden) are formed once per step and summed by
        token, which is the same function (and gradient) for a fraction of the arithmetic.
        """
        assert self.embedding is not None
        members, classes, size = self.embedding.shape
        positions = self.input_size
        kernel, bias = self.kernels[0], self.biases[0]  # kernel (members, positions · size, hidden)
        tables = self.embedding.unsqueeze(1).expand(members, positions, classes, size)
        products = torch.bmm(tables.reshape(-1, classes, size), kernel.view(members * positions, size, -1))
        tokens = tokens if tokens.dim() == 3 else tokens.unsqueeze(0).expand(members, -1, -1)
        offsets = classes * torch.arange(members * positions, device=tokens.device).view(members, 1, -1)
        summed = F.embedding_bag((tokens + offsets).reshape(-1, positions), products.reshape(-1, kernel.shape[-1]),
                                 mode="sum")  # (members · batch, hidden)
        return summed.view(members, -1, kernel.shape[-1]).transpose(1, 2) + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> (num_members, batch, output_size)."""
        kernels, biases = list(self.kernels), list(self.biases)
        if self.embedding is not None:
            h = stacked_layers(self._activate(self._embedded_first_layer(x)), kernels[1:], biases[1:], self._activate)
        else:
            h = stacked_layers(x.transpose(-1, -2), kernels, biases, self._activate)
        return h.transpose(1, 2)

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
