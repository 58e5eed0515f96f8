"""IQL (Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022).

Value, expectile regression on the target critics (never queries actions outside the data):
    L(V) = E_D L_2^tau( min_i Q'_i(s, a) - V(s) ),   L_2^tau(u) = |tau - 1(u < 0)| u^2
Critics, SARSA-style backup through V:
    L(Q) = sum_i E_D ( r + gamma (1 - d) V(s') - Q_i(s, a) )^2 / 2
Policy, advantage-weighted regression:
    L(pi) = -E_D exp(beta (min_i Q'_i(s, a) - V(s))) log pi(a|s),   weights clipped at `max_weight`
(a deterministic policy replaces -log pi by || pi(s) - a ||^2), then Polyak averaging of the target critics.

Defaults from the paper / CORL iql (locomotion): 2x256 networks, Adam 3e-4 with cosine decay of the actor
learning rate over the run, batch 256, expectile tau 0.7, beta 3.0, weights clipped at 100, Polyak 0.005,
gamma 0.99, Gaussian policy with state-independent std. AntMaze: expectile 0.9, beta 10, reward - 1.

`actor_dropout` p (default None, no dropout) is CORL iql's `actor_dropout` (algorithms/offline/iql.py, MLP) and the
official code's `dropout_rate` (ikostrikov/implicit_q_learning common.py MLP, passed to the policy only):
Dropout(p) after each hidden activation of the policy network, active in the policy loss above (train mode) and
never when acting (`act`, evaluation, export), as both references act. Their Adroit (CORL
configs/offline/iql/{pen,door,hammer,relocate}/*_v1.yaml) and Kitchen (official configs/kitchen_config.py)
settings use p = 0.1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic, GaussianActor, ValueNetwork


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Mean of |tau - 1(u < 0)| u^2 over u = diff."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


class IQL(OfflineRLModule):
    """Implicit Q-learning: expectile value, SARSA critics, advantage-weighted policy extraction; optionally dropout
    in the policy network while it is trained (`actor_dropout`)."""

    def __init__(self, obs_dim: int, action_dim: int, expectile: float = 0.7, beta: float = 3.0,
                 max_weight: float = 100.0, gamma: float = 0.99, tau: float = 0.005, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, value_lr: float = 3e-4, policy: Literal["gaussian", "deterministic"] = "gaussian",
                 actor_cosine_decay: bool = True, hidden_dims: tuple[int, ...] = (256, 256),
                 actor_dropout: float | None = None):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        # Attributes, not self.hparams: a subclass with its own signature hides these from hparams.
        self.expectile, self.beta, self.max_weight, self.gamma, self.tau = expectile, beta, max_weight, gamma, tau
        self.actor_lr, self.critic_lr, self.value_lr = actor_lr, critic_lr, value_lr
        self.policy, self.actor_cosine_decay, self.actor_dropout = policy, actor_cosine_decay, actor_dropout
        if actor_dropout is not None and not 0.0 <= actor_dropout < 1.0:
            raise ValueError(f"model.actor_dropout must be in [0, 1) (or null for none), got {actor_dropout!r}")
        if policy == "gaussian":
            self.actor = GaussianActor(obs_dim, action_dim, hidden_dims, dropout=actor_dropout)
        elif policy == "deterministic":
            self.actor = DeterministicActor(obs_dim, action_dim, hidden_dims, dropout=actor_dropout)
        else:
            raise ValueError(f"model.policy must be 'gaussian' or 'deterministic', got {policy!r}")
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=hidden_dims)
        self.target_critic = self.make_target(self.critic)
        self.value = ValueNetwork(obs_dim, hidden_dims)

    def configure_optimizers(self):
        actor_opt = self.adam(self.actor.parameters(), self.actor_lr)
        critic_opt = self.adam(self.critic.parameters(), self.critic_lr)
        value_opt = self.adam(self.value.parameters(), self.value_lr)
        optimizers = [actor_opt, critic_opt, value_opt]
        if self.actor_cosine_decay and self.max_updates > 0:
            return optimizers, [torch.optim.lr_scheduler.LambdaLR(actor_opt, self.cosine_factor)]
        return optimizers

    def cosine_factor(self, update: int) -> float:
        """lr multiplier 0.5 (1 + cos(pi t / T)) over the run's T = max updates, read when called, so a run
        resumed with a larger --trainer.max_steps decays over its new length instead of rising again."""
        return 0.5 * (1.0 + math.cos(math.pi * min(update, self.max_updates) / max(self.max_updates, 1)))

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt, value_opt = self.optimizers()
        with torch.no_grad():
            target_q = self.target_critic(batch.obs, batch.action).min(0).values
            next_v = self.value(batch.next_obs)
        v = self.value(batch.obs)
        advantage = target_q - v
        value_loss = expectile_loss(advantage, self.expectile)
        self.optimize(value_loss, value_opt)

        target = batch.reward + self.gamma * (1.0 - batch.terminal) * next_v
        q = self.critic(batch.obs, batch.action)
        critic_loss = 0.5 * (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self.optimize(critic_loss, critic_opt)

        weight = torch.exp(self.beta * advantage.detach()).clamp(max=self.max_weight)
        if self.policy == "gaussian":
            bc_losses = -self.actor.log_prob(batch.obs, batch.action)
        else:
            bc_losses = (self.actor(batch.obs) - batch.action).pow(2).sum(-1)
        actor_loss = (weight * bc_losses).mean()
        self.optimize(actor_loss, actor_opt)
        schedulers = self.lr_schedulers()
        if schedulers is not None:
            schedulers.step()
        self.soft_update(self.target_critic, self.critic, self.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "q_mean": q.detach().mean(), "v_mean": v.detach().mean(), "advantage_weight": weight.mean()}
