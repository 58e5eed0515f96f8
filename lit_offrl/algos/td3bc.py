"""TD3+BC (Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021).

Critic (TD3: twin Q, target policy smoothing, clipped double Q):
    a~' = clip(pi'(s') + clip(eps, -c, c), -1, 1),     eps ~ N(0, sigma^2)
    y   = r + gamma (1 - d) min_{i=1,2} Q'_i(s', a~')
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
Actor (every `policy_freq` updates), a Q term plus behavior cloning:
    L(pi) = -lambda E_D Q_1(s, pi(s)) + E_D (pi(s) - a)^2,   lambda = alpha / E_D |Q_1(s, pi(s))|  (no gradient)
then Polyak averaging of the target actor and critics with tau.

Defaults are the paper's / CORL td3_bc: 2x256 networks, Adam 3e-4, batch 256, alpha 2.5, sigma 0.2,
c 0.5, policy_freq 2, tau 0.005, gamma 0.99, observations z-scored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic


class TD3BC(OfflineRLModule):
    """TD3 with a behavior-cloning term in the actor loss, normalized by the Q scale."""

    def __init__(self, obs_dim: int, action_dim: int, alpha: float = 2.5, gamma: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_freq: int = 2, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, hidden_dims: tuple[int, ...] = (256, 256)):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        # Attributes, not self.hparams: a subclass with its own signature hides these from hparams.
        self.alpha, self.gamma, self.tau = alpha, gamma, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.actor_lr, self.critic_lr, self.hidden_dims = actor_lr, critic_lr, tuple(hidden_dims)
        self.actor = DeterministicActor(obs_dim, action_dim, hidden_dims)
        self.critic = self.make_critic()
        self.target_actor = self.make_target(self.actor)
        self.target_critic = self.make_target(self.critic)

    def make_critic(self) -> torch.nn.Module:
        """The twin Q networks; override to swap the critic architecture."""
        return EnsembleCritic(self.obs_dim, self.action_dim, num_critics=2, hidden_dims=self.hidden_dims)

    def configure_optimizers(self):
        return (torch.optim.Adam(self.actor.parameters(), lr=self.actor_lr),
                torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr))

    def critic_target(self, batch: Batch) -> Tensor:
        with torch.no_grad():
            noise = (torch.randn_like(batch.action) * self.policy_noise).clamp(
                -self.noise_clip, self.noise_clip)
            next_action = (self.target_actor(batch.next_obs) + noise).clamp(-1.0, 1.0)
            next_q = self.target_critic(batch.next_obs, next_action).min(0).values
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """-lambda Q_1(s, pi(s)) + (pi(s) - a)^2; override to add terms."""
        action = self.actor(batch.obs)
        q = self.critic(batch.obs, action)[0]
        lmbda = self.alpha / q.abs().mean().detach()
        bc_loss = (action - batch.action).pow(2).mean()
        return -lmbda * q.mean() + bc_loss, {"bc_loss": bc_loss.detach(), "lambda": lmbda}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt = self.optimizers()
        target = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self.optimize(critic_loss, critic_opt)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_mean": target.mean()}
        if (self._updates + 1) % self.policy_freq == 0:
            actor_loss, extra = self.actor_loss(batch)
            self.optimize(actor_loss, actor_opt)
            self.soft_update(self.target_actor, self.actor, self.tau)
            self.soft_update(self.target_critic, self.critic, self.tau)
            metrics.update(actor_loss=actor_loss.detach(), **extra)
        return metrics
