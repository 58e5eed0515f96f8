"""Policies over actions normalized to [-1, 1].

Every policy has `act(obs, deterministic) -> action in [-1, 1]`, which `OfflineRLModule.act` uses for
evaluation, so an algorithm that names its policy `self.actor` needs no evaluation code of its own.

Distributions are built with `validate_args=False`: torch's argument validation reads a tensor back to the host
(`if not valid.all()`) at every construction and `log_prob`, a device sync per update on a GPU. A NaN loc or scale
is caught instead by the training loop's non-finite check, which stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from lit_offrl.nets.mlp import mlp, without_dropout


class DeterministicActor(nn.Module):
    """a = tanh(f(s)): the TD3 / TD3+BC / deterministic-BC policy (`layer_norm`, `norm_after_activation`, `dropout`
    as in `mlp`; off by default). `forward` applies dropout in train mode; `act` never does."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (256, 256),
                 layer_norm: bool = False, norm_after_activation: bool = False, dropout: float | None = None):
        super().__init__()
        self.net = mlp(obs_dim, action_dim, hidden_dims, layer_norm=layer_norm, output_activation=nn.Tanh(),
                       norm_after_activation=norm_after_activation, dropout=dropout)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return without_dropout(self.net, obs)


class GaussianActor(nn.Module):
    """pi(a|s) = N(tanh(f(s)), diag(exp(log_std))) with a state-independent log std (IQL's policy).

    The mean is squashed, the sample is not (clipped to [-1, 1] when acting), so log pi(a|s) of a dataset
    action is an ordinary Gaussian log-density. `dropout` (as in `mlp`; off by default) acts in `forward` and
    `log_prob` in train mode; `act` never applies it.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (256, 256),
                 log_std_min: float = -20.0, log_std_max: float = 2.0, dropout: float | None = None):
        super().__init__()
        self.net = mlp(obs_dim, action_dim, hidden_dims, output_activation=nn.Tanh(), dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> Normal:
        return self._distribution(self.net(obs))

    def _distribution(self, mean: Tensor) -> Normal:
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return Normal(mean, std, validate_args=False)

    def log_prob(self, obs: Tensor, action: Tensor) -> Tensor:
        return self(obs).log_prob(action).sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        dist = self._distribution(without_dropout(self.net, obs))
        return (dist.mean if deterministic else dist.sample()).clamp(-1.0, 1.0)


class TanhGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)): the SAC / CQL policy, with the change-of-variables log-density.

    The network outputs mu and a raw log std; log sigma = clamp(raw, log_std_min, log_std_max). With
    `log_std_affine` (CORL's CQL policy) log sigma = clamp(m raw + b, ...) instead, with m and b learnable scalars
    starting at 1 and -1: sigma starts near exp(-1) = 0.37 where the raw output is near 0, not near 1.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (256, 256),
                 log_std_min: float = -20.0, log_std_max: float = 2.0, log_std_affine: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, 2 * action_dim, hidden_dims)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        # Absent (None) unless turned on, so a plain actor's parameters and state dict are unchanged.
        self.register_parameter("log_std_multiplier", None)
        self.register_parameter("log_std_offset", None)
        if log_std_affine:
            self.add_log_std_affine()

    def add_log_std_affine(self, multiplier: float = 1.0, offset: float = -1.0) -> None:
        """Learn log sigma = m raw + b (applied before the clamp), m and b starting at `multiplier` and `offset`.
        Adds two parameters: call it before the optimizer is built."""
        self.log_std_multiplier = nn.Parameter(torch.tensor(float(multiplier)))
        self.log_std_offset = nn.Parameter(torch.tensor(float(offset)))

    def distribution(self, obs: Tensor) -> Normal:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        if self.log_std_multiplier is not None:
            log_std = self.log_std_multiplier * log_std + self.log_std_offset
        return Normal(mean, log_std.clamp(self.log_std_min, self.log_std_max).exp(), validate_args=False)

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Returns (action, log pi(action|s)), reparameterized."""
        dist = self.distribution(obs)
        u = dist.mean if deterministic else dist.rsample()
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
        log_prob = (dist.log_prob(u) - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def log_prob(self, obs: Tensor, action: Tensor, eps: float = 1e-6) -> Tensor:
        action = action.clamp(-1.0 + eps, 1.0 - eps)
        u = torch.atanh(action)
        dist = self.distribution(obs)
        return (dist.log_prob(u) - torch.log1p(-action.pow(2) + eps)).sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self(obs, deterministic)[0]
