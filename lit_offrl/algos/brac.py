"""BRAC (Wu, Tucker & Nachum, "Behavior Regularized Offline Reinforcement Learning", 2019), both variants.

A policy-constraint method: keep the learned policy pi close to the behavior policy pi_b that collected the
data, by a divergence D(pi(.|s), pi_b(.|s)) weighted by alpha. pi_b is unknown, so it is fitted first.

Phase 1 (updates 0 .. behavior_steps - 1), behavior policy by maximum likelihood, nothing else trains:
    L(pi_b) = -E_D log pi_b(clip(a, -1 + eps, 1 - eps) | s)
Phase 2, the agent. The divergence is KL estimated from n samples of the policy (official `primal_estimate`):
    D^(s) = 1/n sum_j [ log pi(a_j|s) - log pi_b(a_j|s) ],   a_j ~ pi(.|s), reparameterized
Critic (twin Q, no target policy: a' is sampled from the current pi):
    value penalty (BRAC-vp):         y = r + gamma (1 - d) [ min_i Q'_i(s', a') - alpha D^(s') ]
    policy regularization (BRAC-pr): y = r + gamma (1 - d)   min_i Q'_i(s', a')
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
Actor (both variants; the Q term is switched on after `warm_start` agent updates):
    L(pi) = E_{s~D} [ alpha D^(s) - 1(t >= warm_start) min_i Q_i(s, a),  a ~ pi(.|s) ]
Dual alpha (optional, `dual_alpha`): a Lagrange multiplier for the constraint D <= target_divergence,
    L(alpha) = -log alpha E_D [ D^(s) - target_divergence ]      (alpha rises while D exceeds the target)
then Polyak averaging of the target critics with tau. Optional SAC entropy term (`entropy_alpha` > 0): adds
-entropy_alpha log pi(a'|s') inside the target's bracket and +entropy_alpha log pi(a|s) to L(pi).

Defaults are the official code's (google-research/behavior_regularized_offline_rl, run_primal.sh and
run_bc.sh): Q 300-300 x2, policy 200-200, Adam (Q 1e-3, policy 3e-4, alpha 1e-3), alpha 0.1, 4 divergence
samples, warm start 20k, tau 0.005, gamma 0.99, 500k agent updates; behavior policy 200-200 trained 300k
updates with Adam 5e-4; both policies tanh-Gaussian with log std squashed smoothly into [-5, 0]; actions
clipped 1e-3 inside the bounds before pi_b's log-density. Acting uses tanh of the policy mean.

Deviations from the official code: pi_b is fitted in the same run, as pure maximum likelihood (the official
BC agent adds an auto-tuned entropy bonus); the dual alpha is optimized in log space and capped at alpha_max
(official: alpha itself, clipped to [0, alpha_max]) and its loss reuses the actor step's D^; the -Q term of the
actor and the next action a' of the target use the first of the n divergence samples instead of one more
draw (an unbiased sample of pi either way, one forward pass fewer).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Normal

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic, TanhGaussianActor


class SmoothStdTanhGaussianActor(TanhGaussianActor):
    """TanhGaussianActor whose log std is squashed into [log_std_min, log_std_max] by a tanh, not clamped.

    The official BRAC ActorNetwork: log sigma = min + (max - min) (tanh(x) + 1) / 2 with the range [-5, 0], so
    the std keeps a gradient near the bounds, where a clamp would have none.
    """

    def distribution(self, obs: Tensor) -> Normal:
        mean, raw_log_std = self.net(obs).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw_log_std) + 1.0)
        return Normal(mean, log_std.exp(), validate_args=False)


class BRAC(OfflineRLModule):
    """Behavior-regularized actor-critic: KL to a fitted behavior policy, as a value penalty or in the actor only."""

    def __init__(self, obs_dim: int, action_dim: int, penalty: Literal["value", "policy"] = "value",
                 alpha: float = 0.1, dual_alpha: bool = False, target_divergence: float = 0.0,
                 alpha_max: float = 500.0, num_divergence_samples: int = 4, warm_start: int = 20_000,
                 behavior_steps: int = 300_000, entropy_alpha: float = 0.0, gamma: float = 0.99, tau: float = 0.005,
                 actor_lr: float = 3e-4, critic_lr: float = 1e-3, alpha_lr: float = 1e-3, behavior_lr: float = 5e-4,
                 actor_hidden_dims: tuple[int, ...] = (200, 200), critic_hidden_dims: tuple[int, ...] = (300, 300),
                 behavior_hidden_dims: tuple[int, ...] = (200, 200), log_std_min: float = -5.0,
                 log_std_max: float = 0.0, action_clip_eps: float = 1e-3):
        super().__init__(obs_dim, action_dim)
        if penalty not in ("value", "policy"):
            raise ValueError(f"model.penalty must be 'value' (BRAC-vp) or 'policy' (BRAC-pr), got {penalty!r}")
        self.save_hyperparameters()
        # Attributes, not self.hparams: a subclass with its own signature hides these from hparams.
        self.penalty, self.dual_alpha, self.target_divergence = penalty, dual_alpha, target_divergence
        self.alpha_max, self.num_divergence_samples = alpha_max, num_divergence_samples
        self.warm_start, self.behavior_steps = warm_start, behavior_steps
        self.entropy_alpha, self.gamma, self.tau, self.action_clip_eps = entropy_alpha, gamma, tau, action_clip_eps
        self.actor_lr, self.critic_lr, self.alpha_lr, self.behavior_lr = actor_lr, critic_lr, alpha_lr, behavior_lr
        self.actor = SmoothStdTanhGaussianActor(obs_dim, action_dim, actor_hidden_dims, log_std_min, log_std_max)
        self.behavior = SmoothStdTanhGaussianActor(obs_dim, action_dim, behavior_hidden_dims, log_std_min, log_std_max)
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=critic_hidden_dims)
        self.target_critic = self.make_target(self.critic)
        # A parameter even when fixed, so the optimizer list (and checkpoints) look the same in both modes.
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(alpha)).log(), requires_grad=dual_alpha)

    def configure_optimizers(self):
        return (self.adam(self.actor.parameters(), lr=self.actor_lr),
                self.adam(self.critic.parameters(), lr=self.critic_lr),
                self.adam(self.behavior.parameters(), lr=self.behavior_lr),
                self.adam([self.log_alpha], lr=self.alpha_lr))

    @property
    def phase(self) -> str | None:
        """The training phase at this update, as the progress bar shows it (None when pi_b is not fitted)."""
        if self.behavior_steps <= 0:
            return None
        if self._updates < self.behavior_steps:
            return f"phase 1/2 behavior policy (to {self.behavior_steps})"
        return "phase 2/2 agent"

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp().detach()

    def divergence(self, obs: Tensor, actions: Tensor, log_probs: Tensor) -> Tensor:
        """D^(s) = mean_j [log pi(a_j|s) - log pi_b(a_j|s)] for samples `actions` (n, B, A) of pi with their
        log-densities `log_probs` (n, B); returns (B,). pi_b's density is evaluated once per state (broadcast)."""
        return (log_probs - self.behavior_log_prob(obs, actions)).mean(0)

    def behavior_log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """log pi_b(a|s) of actions clipped `action_clip_eps` inside (-1, 1), where atanh stays finite."""
        eps = self.action_clip_eps
        return self.behavior.log_prob(obs, actions.clamp(-1.0 + eps, 1.0 - eps))

    def sample_policy(self, obs: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
        """num_samples reparameterized draws a ~ pi(.|s) per state: actions (n, B, A), log pi(a|s) (n, B)."""
        return self.actor(obs.expand(num_samples, *obs.shape))

    def critic_target(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """y = r + gamma (1 - d) [min_i Q'_i(s', a') - alpha D^(s')] (value penalty; no D^ for 'policy').
        Returns y and D^(s') (None for 'policy')."""
        with torch.no_grad():
            value_penalty = self.penalty == "value"
            actions, log_probs = self.sample_policy(batch.next_obs, self.num_divergence_samples if value_penalty else 1)
            next_v = self.target_critic(batch.next_obs, actions[0]).min(0).values
            if self.entropy_alpha > 0:
                next_v = next_v - self.entropy_alpha * log_probs[0]
            divergence = None
            if value_penalty:
                divergence = self.divergence(batch.next_obs, actions, log_probs)
                next_v = next_v - self.alpha * divergence
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_v, divergence

    def actor_loss(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """E [alpha D^(s) - min_i Q_i(s, a)] (Q term after the warm start); also returns D^(s) for the dual."""
        actions, log_probs = self.sample_policy(batch.obs, self.num_divergence_samples)
        divergence = self.divergence(batch.obs, actions, log_probs)
        loss = self.alpha * divergence
        if self.entropy_alpha > 0:
            loss = loss + self.entropy_alpha * log_probs[0]
        metrics = {"divergence": divergence.detach().mean()}
        if self._updates - self.behavior_steps >= self.warm_start:
            q = self.critic(batch.obs, actions[0]).min(0).values
            loss = loss - q
            metrics["q_pi_mean"] = q.detach().mean()
        return loss.mean(), divergence.detach(), metrics

    def behavior_loss(self, batch: Batch) -> Tensor:
        """-E_D log pi_b(a|s), dataset actions clipped `action_clip_eps` inside (-1, 1)."""
        return -self.behavior_log_prob(batch.obs, batch.action).mean()

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_opt, critic_opt, behavior_opt, alpha_opt = self.optimizers()
        if self._updates < self.behavior_steps:
            behavior_loss = self.behavior_loss(batch)
            self.optimize(behavior_loss, behavior_opt)
            return {"behavior_loss": behavior_loss.detach()}

        target, next_divergence = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self.optimize(critic_loss, critic_opt)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_mean": target.mean()}
        if next_divergence is not None:
            metrics["next_divergence"] = next_divergence.mean()

        with self.frozen(self.critic, self.behavior):  # the actor's step needs neither's weight gradients
            actor_loss, divergence, actor_metrics = self.actor_loss(batch)
        self.optimize(actor_loss, actor_opt)
        metrics.update(actor_loss=actor_loss.detach(), alpha=self.alpha, **actor_metrics)
        if self.dual_alpha:
            alpha_loss = -(self.log_alpha * (divergence - self.target_divergence)).mean()
            self.optimize(alpha_loss, alpha_opt)
            with torch.no_grad():
                self.log_alpha.clamp_(max=math.log(self.alpha_max))
            metrics["alpha_loss"] = alpha_loss.detach()
        self.soft_update(self.target_critic, self.critic, self.tau)
        return metrics
