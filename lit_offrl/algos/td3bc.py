"""TD3+BC (Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021).

TD3 (`lit_offrl.algos.TD3`) with one change, a behavior-cloning term in the actor loss.
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

from torch import Tensor

from lit_offrl.algos.td3 import TD3
from lit_offrl.data.buffer import Batch


class TD3BC(TD3):
    """TD3 with a behavior-cloning term in the actor loss, normalized by the Q scale."""

    def __init__(self, obs_dim: int, action_dim: int, alpha: float = 2.5, gamma: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_freq: int = 2, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, hidden_dims: tuple[int, ...] = (256, 256)):
        super().__init__(obs_dim, action_dim, gamma=gamma, tau=tau, policy_noise=policy_noise, noise_clip=noise_clip,
                         policy_freq=policy_freq, actor_lr=actor_lr, critic_lr=critic_lr, hidden_dims=hidden_dims)
        self.alpha = alpha

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """-lambda Q_1(s, pi(s)) + (pi(s) - a)^2; override to add terms."""
        action = self.actor(batch.obs)
        q = self.critic.q1(batch.obs, action)
        lmbda = self.alpha / q.abs().mean().detach()
        bc_loss = (action - batch.action).pow(2).mean()
        return -lmbda * q.mean() + bc_loss, {"bc_loss": bc_loss.detach(), "lambda": lmbda}
