"""AWAC (Nair, Gupta, Dalal & Levine, "AWAC: Accelerating Online Reinforcement Learning with Offline Datasets", 2020).

The policy improvement step solves  max_pi E_{a~pi} A(s, a)  s.t.  KL(pi || pi_beta) <= eps, whose solution is
pi*(a|s) proportional to pi_beta(a|s) exp(A(s, a) / lambda). Projecting pi* onto the policy class by
KL(pi* || pi) is a weighted maximum likelihood on the dataset's own actions (pi_beta never has to be modelled):
    L(pi) = -E_{(s,a)~D} [ w(s, a) log pi(a|s) ]
    A(s, a) = min_i Q_i(s, a) - V(s),   V(s) = 1/k sum_j min_i Q_i(s, a_j),  a_j ~ pi(.|s)   (no gradient)
    w = min(exp(A / lambda), max_weight)                       ("clip", CORL awac)
    w = |B| softmax_B(A / lambda)                             ("softmax": normalized over the batch, rlkit)
Critic (twin Q, next action from the current policy, no entropy term as in CORL awac):
    a' ~ pi(.|s'),   y = r + gamma (1 - d) min_i Q'_i(s', a'),   L(Q) = sum_i E_D (Q_i(s, a) - y)^2
then Polyak averaging of the target critics with tau. `update` uses only the batch, so the same module
fine-tunes online on a growing replay buffer.

Defaults from CORL awac (the source of the reference scores): 3x256 networks, Adam 3e-4, batch 256,
gamma 0.99, tau 0.005, weights clipped at 100, one policy sample for V; lambda 1/3 for locomotion (0.1 for
the mazes: configs/awac/pointmaze.yaml). rlkit's (the paper's code) alternative is `weighting: softmax`.
Deviation: the policy is `GaussianActor`, N(tanh f(s), diag exp(log_std)) with a state-independent log std;
CORL's mean is unsquashed. Policy samples are clipped to [-1, 1] before Q as in CORL.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic, GaussianActor


class AWAC(OfflineRLModule):
    """Advantage-weighted actor-critic: SAC-like critics without entropy, advantage-weighted likelihood actor."""

    def __init__(self, obs_dim: int, action_dim: int, awac_lambda: float = 1.0 / 3.0,
                 weighting: Literal["clip", "softmax"] = "clip", max_weight: float = 100.0, value_samples: int = 1,
                 gamma: float = 0.99, tau: float = 0.005, actor_lr: float = 3e-4, critic_lr: float = 3e-4,
                 hidden_dims: tuple[int, ...] = (256, 256, 256)):
        super().__init__(obs_dim, action_dim)
        if weighting not in ("clip", "softmax"):
            raise ValueError(f"model.weighting must be 'clip' (CORL) or 'softmax' (rlkit), got {weighting!r}")
        self.save_hyperparameters()
        # Attributes, not self.hparams: a subclass with its own signature hides these from hparams.
        self.awac_lambda, self.weighting = awac_lambda, weighting
        self.max_weight, self.value_samples = max_weight, value_samples
        self.gamma, self.tau, self.actor_lr, self.critic_lr = gamma, tau, actor_lr, critic_lr
        self.actor = GaussianActor(obs_dim, action_dim, hidden_dims)
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=hidden_dims)
        self.target_critic = self.make_target(self.critic)

    def configure_optimizers(self):
        return (self.adam(self.actor.parameters(), lr=self.actor_lr),
                self.adam(self.critic.parameters(), lr=self.critic_lr))

    def sample_actions(self, obs: Tensor, num_samples: int = 1) -> Tensor:
        """a ~ pi(.|s), clipped to [-1, 1]: (num_samples, B, A)."""
        return self.actor(obs).sample((num_samples,)).clamp(-1.0, 1.0)

    def policy_value(self, critic: torch.nn.Module, obs: Tensor, num_samples: int) -> Tensor:
        """1/k sum_j min_i Q_i(s, a_j), a_j ~ pi(.|s), k = num_samples: (B,). No gradient."""
        with torch.no_grad():
            actions = self.sample_actions(obs, num_samples)
            repeated_obs = obs.expand(num_samples, *obs.shape).reshape(-1, obs.shape[-1])
            q = critic(repeated_obs, actions.reshape(-1, actions.shape[-1])).min(0).values
            return q.view(num_samples, -1).mean(0)

    def critic_target(self, batch: Batch) -> Tensor:
        """y = r + gamma (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')."""
        next_q = self.policy_value(self.target_critic, batch.next_obs, 1)
        return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def advantage_weights(self, advantage: Tensor) -> Tensor:
        """min(exp(A / lambda), max_weight) ('clip') or |B| softmax_B(A / lambda) ('softmax')."""
        if self.weighting == "clip":
            return torch.exp(advantage / self.awac_lambda).clamp(max=self.max_weight)
        return torch.softmax(advantage / self.awac_lambda, dim=0) * advantage.shape[0]

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """-E_D [w(s, a) log pi(a|s)], A = min_i Q_i(s, a) - V(s) from the current critics."""
        with torch.no_grad():
            q = self.critic(batch.obs, batch.action).min(0).values
            advantage = q - self.policy_value(self.critic, batch.obs, self.value_samples)
            weight = self.advantage_weights(advantage)
        loss = -(weight * self.actor.log_prob(batch.obs, batch.action)).mean()
        return loss, {"advantage_mean": advantage.mean(), "advantage_weight": weight.mean(),
                      "advantage_weight_max": weight.max()}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt = self.optimizers()
        target = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self.optimize(critic_loss, critic_opt)
        actor_loss, metrics = self.actor_loss(batch)
        self.optimize(actor_loss, actor_opt)
        self.soft_update(self.target_critic, self.critic, self.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q_mean": q.detach().mean(),
                "target_mean": target.mean(), **metrics}
