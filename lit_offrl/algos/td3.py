"""TD3 (Fujimoto, van Hoof & Meger, "Addressing Function Approximation Error in Actor-Critic Methods", ICML 2018),
trained offline on the fixed dataset with no constraint.

This is the naive off-policy baseline of offline RL: the actor climbs Q at actions the data never shows, where
the critic is wrong and nothing corrects it (extrapolation error). TD3+BC (`TD3BC`) is this algorithm with a
behavior-cloning term added to the actor loss and nothing else changed.

Critic (twin Q, target policy smoothing, clipped double Q):
    a~' = clip(pi'(s') + clip(eps, -c, c), -1, 1),     eps ~ N(0, sigma^2)
    y   = r + gamma (1 - d) min_{i=1,2} Q'_i(s', a~')
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
Actor (deterministic policy gradient, every `policy_freq` updates):
    L(pi) = -E_D Q_1(s, pi(s))
then Polyak averaging of the target actor and critics with tau.

Defaults are TD3+BC's (CORL td3_bc, which are TD3's with 256-unit layers): 2x256 networks, Adam 3e-4,
batch 256, sigma 0.2, c 0.5, policy_freq 2, tau 0.005, gamma 0.99.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic


class TD3(OfflineRLModule):
    """Twin delayed DDPG: clipped double-Q critics, target policy smoothing, delayed deterministic actor."""

    def __init__(self, obs_dim: int, action_dim: int, gamma: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_freq: int = 2, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, hidden_dims: tuple[int, ...] = (256, 256)):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        # Attributes, not self.hparams: a subclass with its own signature hides these from hparams.
        self.gamma, self.tau = gamma, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.actor_lr, self.critic_lr, self.hidden_dims = actor_lr, critic_lr, tuple(hidden_dims)
        self.actor = DeterministicActor(obs_dim, action_dim, self.hidden_dims)
        self.critic = self.make_critic()
        self.target_actor = self.make_target(self.actor)
        self.target_critic = self.make_target(self.critic)

    def make_critic(self) -> torch.nn.Module:
        """The twin Q networks; override to swap the critic architecture."""
        return EnsembleCritic(self.obs_dim, self.action_dim, num_critics=2, hidden_dims=self.hidden_dims)

    def configure_optimizers(self):
        return (self.adam(self.actor.parameters(), lr=self.actor_lr),
                self.adam(self.critic.parameters(), lr=self.critic_lr))

    def smoothed_target_action(self, next_obs: Tensor) -> Tensor:
        """a~' = clip(pi'(s') + clip(eps, -c, c), -1, 1): the target policy with clipped Gaussian noise."""
        next_action = self.target_actor(next_obs)
        # float32 noise, as the data's, also when the actor runs under bf16 autocast
        noise = torch.randn(next_action.shape, device=next_action.device) * self.policy_noise
        noise = noise.clamp(-self.noise_clip, self.noise_clip)
        return (next_action + noise).clamp(-1.0, 1.0)

    def critic_target(self, batch: Batch) -> Tensor:
        """y = r + gamma (1 - d) min_i Q'_i(s', a~')."""
        with torch.no_grad():
            next_q = self.target_critic(batch.next_obs, self.smoothed_target_action(batch.next_obs)).min(0).values
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """-Q_1(s, pi(s)); override to add terms (TD3+BC, ReBRAC)."""
        return -self.critic.q1(batch.obs, self.actor(batch.obs)).mean(), {}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt = self.optimizers()
        target = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self.optimize(critic_loss, critic_opt)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_mean": target.mean()}
        if (self._updates + 1) % self.policy_freq == 0:
            with self.frozen(self.critic):  # the actor's step needs no critic weight gradients
                actor_loss, extra = self.actor_loss(batch)
            self.optimize(actor_loss, actor_opt)
            self.soft_update(self.target_actor, self.actor, self.tau)
            self.soft_update(self.target_critic, self.critic, self.tau)
            metrics.update(actor_loss=actor_loss.detach(), **extra)
        return metrics
