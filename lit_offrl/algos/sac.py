"""SAC (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018), offline or online.

Trained on a fixed dataset with no constraint, SAC is the naive off-policy actor-critic baseline of offline RL:
its actor maximizes Q at actions the data never shows, where Q is wrong (extrapolation error). Trained on a
growing replay buffer (`lit_offrl.data.online.OnlineDataModule`) it is the online SAC the locomotion recipes
use to make D4RL-style data. CQL subclasses it.

Critic (twin Q, or an ensemble of N, with the entropy-regularized clipped double-Q target):
    a' ~ pi(.|s'),   y = r + gamma (1 - d) [ min_i Q'_i(s', a') - alpha log pi(a'|s') ]
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
Actor (reparameterized tanh-Gaussian):
    L(pi) = E_{s~D, a~pi} [ alpha log pi(a|s) - min_i Q_i(s, a) ]
Temperature (automatic entropy tuning, target entropy H* = -|A|):
    L(alpha) = -E_{s~D, a~pi} [ log alpha (log pi(a|s) + H*) ]
then Polyak averaging of the target critics with tau.

Defaults are the paper's (Table 1) and CORL's sac_n: 2x256 networks, Adam 3e-4 for actor, critics and alpha,
batch 256, gamma 0.99, tau 0.005, initial alpha 1, target entropy -|A|.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic, TanhGaussianActor


class SAC(OfflineRLModule):
    """Soft actor-critic with twin (or N) critics and a learned temperature; no offline constraint."""

    def __init__(self, obs_dim: int, action_dim: int, gamma: float = 0.99, tau: float = 0.005,
                 actor_lr: float = 3e-4, critic_lr: float = 3e-4, alpha_lr: float = 3e-4, initial_alpha: float = 1.0,
                 auto_alpha: bool = True, target_entropy: float | None = None, num_critics: int = 2,
                 hidden_dims: tuple[int, ...] = (256, 256)):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        self.gamma, self.tau = gamma, tau
        self.actor_lr, self.critic_lr, self.alpha_lr = actor_lr, critic_lr, alpha_lr
        self.auto_alpha, self.num_critics, self.hidden_dims = auto_alpha, num_critics, tuple(hidden_dims)
        self.target_entropy = -float(action_dim) if target_entropy is None else float(target_entropy)
        self.actor = TanhGaussianActor(obs_dim, action_dim, self.hidden_dims)
        self.critic = self.make_critic()
        self.target_critic = self.make_target(self.critic)
        # A parameter even when fixed, so the optimizer list (and checkpoints) look the same in both modes.
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(initial_alpha)).log(), requires_grad=auto_alpha)

    def make_critic(self) -> torch.nn.Module:
        """The Q ensemble; override to swap the critic architecture."""
        return EnsembleCritic(self.obs_dim, self.action_dim, self.num_critics, self.hidden_dims)

    def configure_optimizers(self):
        return (self.adam(self.actor.parameters(), self.actor_lr),
                self.adam(self.critic.parameters(), self.critic_lr),
                self.adam([self.log_alpha], self.alpha_lr))

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp().detach()

    def critic_target(self, batch: Batch) -> Tensor:
        """y = r + gamma (1 - d) [min_i Q'_i(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch.next_obs)
            next_q = self.target_critic(batch.next_obs, next_action).min(0).values - self.alpha * next_log_prob
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """sum_i E (Q_i(s, a) - y)^2; override to add a regularizer (CQL)."""
        target = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        return loss, {"q_mean": q.detach().mean(), "target_mean": target.mean()}

    def actor_loss(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """E [alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(.|s); also returns log pi for the temperature loss."""
        action, log_prob = self.actor(batch.obs)
        q = self.critic(batch.obs, action).min(0).values
        loss = (self.alpha * log_prob - q).mean()
        return loss, log_prob.detach(), {"entropy": -log_prob.detach().mean()}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt, alpha_opt, *_ = self.optimizers()  # a subclass may add optimizers (CQL's alpha')
        with self.frozen(self.critic):  # the actor's step needs no critic weight gradients
            actor_loss, log_prob, metrics = self.actor_loss(batch)
        self.optimize(actor_loss, actor_opt)
        if self.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
            self.optimize(alpha_loss, alpha_opt)
            metrics["alpha_loss"] = alpha_loss.detach()
        critic_loss, critic_metrics = self.critic_loss(batch)
        self.optimize(critic_loss, critic_opt)
        self.soft_update(self.target_critic, self.critic, self.tau)
        return {"actor_loss": actor_loss.detach(), "critic_loss": critic_loss.detach(), "alpha": self.alpha,
                **metrics, **critic_metrics}
