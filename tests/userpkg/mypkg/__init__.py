"""A user's own package: an algorithm made by subclassing lit_offrl's TD3BC and overriding single methods."""

import torch
from torch import nn

from lit_offrl.algos.bc import BC
from lit_offrl.algos.td3bc import TD3BC
from lit_offrl.nets import EnsembleCritic


class MyTD3BC(TD3BC):
    """TD3+BC with layer-normalized critics and an action-magnitude penalty added to the actor loss."""

    def __init__(self, obs_dim: int, action_dim: int, action_penalty: float = 0.1, **kwargs):
        self.action_penalty = action_penalty
        super().__init__(obs_dim, action_dim, **kwargs)

    def make_critic(self) -> nn.Module:
        return EnsembleCritic(self.obs_dim, self.action_dim, num_critics=2, hidden_dims=(64, 64), layer_norm=True)

    def actor_loss(self, batch):
        loss, metrics = super().actor_loss(batch)
        penalty = self.actor(batch.obs).pow(2).mean()
        return loss + self.action_penalty * penalty, {**metrics, "action_penalty": penalty.detach()}


class PoisonedTD3BC(TD3BC):
    """TD3+BC whose critic loss turns NaN at update `poison_at` (0-based): for the non-finite-loss test."""

    def __init__(self, obs_dim: int, action_dim: int, poison_at: int = 6):
        self.poison_at = poison_at
        super().__init__(obs_dim, action_dim)

    def critic_target(self, batch):
        target = super().critic_target(batch)
        if self._updates == self.poison_at:
            target = target * torch.tensor(float("nan"))
        return target


class NaNGradientBC(BC):
    """BC whose loss stays finite but whose gradient is NaN from update `poison_at` (0-based) on:
    d sqrt(x)/dx at x = 0 is inf, times 0 is NaN."""

    def __init__(self, obs_dim: int, action_dim: int, poison_at: int = 3):
        self.poison_at = poison_at
        super().__init__(obs_dim, action_dim)

    def update(self, batch):
        if self._updates < self.poison_at:
            return super().update(batch)
        first_weight = next(self.actor.parameters())
        loss = (self.actor(batch.obs) - batch.action).pow(2).mean() + torch.sqrt(0.0 * first_weight.sum())
        self.optimize(loss, self.optimizers())
        return {"actor_loss": loss.detach()}
