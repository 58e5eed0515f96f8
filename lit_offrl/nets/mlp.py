"""Multi-layer perceptrons, single and vectorized over an ensemble axis."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def mlp(in_dim: int, out_dim: int, hidden_dims: Sequence[int] = (256, 256), activation: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False, output_activation: nn.Module | None = None,
        norm_after_activation: bool = False, dropout: float | None = None) -> nn.Sequential:
    """A plain MLP: Linear (-> LayerNorm) -> activation for each hidden layer, then a Linear output layer.

    `norm_after_activation` puts each LayerNorm after the activation instead (Linear -> activation -> LayerNorm,
    the order of ReBRAC's reference code); the parameters and their initialization are the same either way.
    `dropout` p adds an `nn.Dropout(p)` at the end of each hidden layer (Linear -> activation -> Dropout, the
    order of CORL's and the official IQL's MLPs); None adds none, so the layers and state dict are the plain ones.
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden_dims]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(d_in, d_out))
        layers.extend(_normalized_activation(activation(), nn.LayerNorm(d_out) if layer_norm else None,
                                             norm_after_activation))
        if dropout is not None:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(dims[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


class VectorizedLinear(nn.Module):
    """`ensemble_size` independent linear layers applied as one batched matmul.

    Input (E, B, in) or (B, in) (broadcast to every member), output (E, B, out). Each member is initialized
    like `nn.Linear` (Kaiming-uniform weights, uniform bias), so an ensemble of one matches a plain layer.
    """

    def __init__(self, in_features: int, out_features: int, ensemble_size: int):
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for member in range(self.ensemble_size):
            # nn.Linear stores (out, in); initialize the transpose the same way.
            nn.init.kaiming_uniform_(self.weight.data[member].T, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        """`members` (a slice of the ensemble axis) evaluates only those members, at their share of the cost."""
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ensemble_size={self.ensemble_size}"


class VectorizedLayerNorm(nn.Module):
    """LayerNorm over the last axis of (E, B, features) with each ensemble member's own gain and bias (one shared
    `nn.LayerNorm` would tie the members' affine parameters together)."""

    def __init__(self, features: int, ensemble_size: int, eps: float = 1e-5):
        super().__init__()
        self.features, self.eps = features, eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return torch.addcmul(bias, nn.functional.layer_norm(x, (self.features,), eps=self.eps), weight)


def vectorized_mlp(in_dim: int, out_dim: int, ensemble_size: int, hidden_dims: Sequence[int] = (256, 256),
                   activation: type[nn.Module] = nn.ReLU, layer_norm: bool = False,
                   norm_after_activation: bool = False) -> nn.Sequential:
    """An ensemble of MLPs with the same shape, evaluated in one batched matmul per layer (`norm_after_activation`
    as in `mlp`)."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden_dims]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers.append(VectorizedLinear(d_in, d_out, ensemble_size))
        layers.extend(_normalized_activation(activation(), VectorizedLayerNorm(d_out, ensemble_size) if layer_norm
                                             else None, norm_after_activation))
    layers.append(VectorizedLinear(dims[-1], out_dim, ensemble_size))
    return nn.Sequential(*layers)


def without_dropout(net: nn.Sequential, x: Tensor) -> Tensor:
    """`net(x)` with every `nn.Dropout` layer skipped, whatever the module's train/eval mode: the network a policy
    acts with (CORL's and the official IQL's policies act without dropout)."""
    for layer in net:
        if not isinstance(layer, nn.Dropout):
            x = layer(x)
    return x


def _normalized_activation(activation: nn.Module, norm: nn.Module | None, after: bool) -> list[nn.Module]:
    """[norm, activation] (or [activation, norm] with `after`); [activation] without a norm."""
    if norm is None:
        return [activation]
    return [activation, norm] if after else [norm, activation]


@torch.no_grad()
def edac_init_(net: nn.Sequential, output_bound: float, hidden_bias: float = 0.1) -> nn.Sequential:
    """Re-initialize `net` (from `mlp` or `vectorized_mlp`) as EDAC's and ReBRAC's reference code do: the hidden
    layers keep PyTorch's default kernel init U(+-1/sqrt(fan_in)) and get the constant bias `hidden_bias`; the
    output layer's kernel and bias are drawn from U(+-output_bound). Returns `net`."""
    linears = [m for m in net if isinstance(m, (nn.Linear, VectorizedLinear))]
    for layer in linears[:-1]:
        layer.bias.fill_(hidden_bias)
    nn.init.uniform_(linears[-1].weight, -output_bound, output_bound)
    nn.init.uniform_(linears[-1].bias, -output_bound, output_bound)
    return net
