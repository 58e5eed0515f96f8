"""Value functions: a vectorized Q ensemble Q_i(s, a), i = 1..E, and a state value V(s)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_offrl.nets.mlp import VectorizedLayerNorm, VectorizedLinear, mlp, vectorized_mlp


class EnsembleCritic(nn.Module):
    """E independent Q networks evaluated together: `forward(obs, action) -> (E, B)`.

    All members run in one batched matmul per layer (no Python loop over members). Twin critics of TD3,
    SAC and IQL are `num_critics=2`; larger ensembles (SAC-N, EDAC) use the same module. `layer_norm` adds a
    LayerNorm per hidden layer, before the activation or, with `norm_after_activation`, after it (ReBRAC).
    """

    def __init__(self, obs_dim: int, action_dim: int, num_critics: int = 2, hidden_dims: Sequence[int] = (256, 256),
                 layer_norm: bool = False, norm_after_activation: bool = False):
        super().__init__()
        self.num_critics = num_critics
        self.net = vectorized_mlp(obs_dim + action_dim, 1, num_critics, hidden_dims, layer_norm=layer_norm,
                                  norm_after_activation=norm_after_activation)

    def forward(self, obs: Tensor, action: Tensor, members: slice | None = None) -> Tensor:
        """Q_i(s, a) of every member, (E, B); of the members in the slice `members` only if given (an actor loss
        that needs Q_1 alone pays for one network, not E)."""
        x = torch.cat([obs, action], dim=-1)
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, (VectorizedLinear, VectorizedLayerNorm)) else layer(x)
        return x.squeeze(-1)

    def q1(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_1(s, a), (B,): the first member alone (TD3's actor loss)."""
        return self(obs, action, members=slice(0, 1))[0]


class ValueNetwork(nn.Module):
    """State value V(s): `forward(obs) -> (B,)`."""

    def __init__(self, obs_dim: int, hidden_dims: Sequence[int] = (256, 256), layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden_dims, layer_norm=layer_norm)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)
