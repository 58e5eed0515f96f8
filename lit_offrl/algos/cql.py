"""CQL (Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020).

CQL(H) on the SAC backbone (`lit_offrl.algos.SAC`): the SAC critic loss plus a penalty that pushes Q down on
actions sampled away from the data (log-sum-exp, a soft maximum over actions) and up on the dataset's actions.

Critic target (CORL defaults: no entropy term in the backup, one next action):
    a' ~ pi(.|s'),   y = r + gamma (1 - d) min_i Q'_i(s', a')
    (`backup_entropy`: - alpha log pi(a'|s') inside the bracket; `cql_max_target_backup`: the max over
     `cql_n_actions` samples a'_k of min_i Q'_i(s', a'_k) instead of one sample)
Conservative penalty of critic i, importance-sampled log-sum-exp over 3n actions per state (n = `cql_n_actions`):
    a_j ~ U[-1, 1]^|A|  (density 0.5^|A|),   a_j ~ pi(.|s),   a_j ~ pi(.|s')   (n each, no gradient)
    Delta_i = E_{s,a~D} clip( T log sum_{j=1}^{3n} exp( (Q_i(s, a_j) - log p_j(a_j)) / T ) - Q_i(s, a),  c_min, c_max )
with p_j the density the sample a_j was drawn from and T = `cql_temp` (1). The clip bounds are `cql_clip_diff_min`,
`cql_clip_diff_max` (default -inf, inf: no clip), CORL's options of the same names, which clip each state's
difference before the mean (CORL AntMaze: c_min = -200). Without importance sampling (`cql_importance_sample`
false, CORL's and Cal-QL's `cql_importance_sample` False), the soft maximum is a plain log-sum-exp over the same
3n sampled actions and the dataset action, as both write it (the log-densities are not subtracted):
    Delta_i = E_{s,a~D} clip( T log [ exp(Q_i(s, a) / T) + sum_{j=1}^{3n} exp(Q_i(s, a_j) / T) ] - Q_i(s, a), c_min, c_max )
Critic loss:
    L(Q) = sum_i [ E_D (Q_i(s, a) - y)^2 + alpha_cql Delta_i ]                       (fixed weight)
    L(Q) = sum_i [ E_D (Q_i(s, a) - y)^2 + alpha' alpha_cql (Delta_i - tau_gap) ]     (Lagrange, `cql_lagrange`)
Lagrange dual (alpha' = exp(log alpha') clipped to [0, 1e6]; it grows while the gap exceeds tau_gap):
    L(log alpha') = -alpha' alpha_cql (mean_i Delta_i - tau_gap)
Actor and temperature are SAC's:
    L(pi) = E_{s~D, a~pi} [ alpha log pi(a|s) - min_i Q_i(s, a) ],   L(alpha) = -E [ log alpha (log pi(a|s) + H*) ]

Defaults are CORL cql's (locomotion): 3x256 actor and critics with orthogonal critic init, policy lr 3e-5
(1e-4 on AntMaze), Q lr 3e-4, temperature lr = policy lr, batch 256, alpha_cql 10, n = 10, importance
sampling, no clip of the penalty difference, automatic entropy tuning from alpha 1, no entropy in the backup,
tau 0.005, gamma 0.99. CORL's maze2d configs use the Lagrange form with tau_gap 5; its AntMaze configs tau_gap 0.8.
`critic_hidden_dims` sizes the critics apart from the actor (None: `hidden_dims` for both): CORL's
`q_n_hidden_layers` (AntMaze: 5x256 critics, the actor stays 3x256).

The policy's std is CORL's (algorithms/offline/cql.py, TanhGaussianPolicy): the network's raw log-std output goes
through log sigma = m raw + b with learnable scalars m, b (starting at 1 and -1, trained by the policy optimizer),
then the clamp to [-20, 2], so the initial policy has sigma about exp(-1) = 0.37, not SAC's sigma about 1
(`log_std_affine`; false gives SAC's log sigma = raw, which lit_offrl's CQL used before issue 16). A checkpoint
written before that, without the two scalars, loads with m = 1, b = 0, which is its log sigma = raw exactly.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
import torch
from torch import Tensor, nn

from lit_offrl.algos.sac import SAC
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic, VectorizedLinear


class CQL(SAC):
    """Conservative Q-learning, CQL(H) with importance sampling, on SAC; fixed weight or Lagrange dual.

    `orthogonal_init` is CORL's initialization: orthogonal critic layers (gain sqrt 2, output layer 1e-2, zero
    biases) and a near-zero policy output layer; off, the networks keep PyTorch's default initialization.
    `log_std_affine` is CORL's learnable log sigma = m raw + b (m = 1, b = -1 at the start).
    `cql_clip_diff_min` / `cql_clip_diff_max`, `cql_importance_sample` and `critic_hidden_dims` are CORL's
    options of those names (the last one standing for `q_n_hidden_layers`); see the module docstring.
    """

    def __init__(self, obs_dim: int, action_dim: int, cql_alpha: float = 10.0, cql_n_actions: int = 10,
                 cql_temp: float = 1.0, cql_lagrange: bool = False, cql_target_action_gap: float = -1.0,
                 alpha_prime_lr: float = 3e-4, initial_alpha_prime: float = math.e, cql_max_target_backup: bool = False,
                 backup_entropy: bool = False, gamma: float = 0.99, tau: float = 0.005, actor_lr: float = 3e-5,
                 critic_lr: float = 3e-4, alpha_lr: float = 3e-5, initial_alpha: float = 1.0, auto_alpha: bool = True,
                 target_entropy: float | None = None, num_critics: int = 2,
                 hidden_dims: tuple[int, ...] = (256, 256, 256), orthogonal_init: bool = True,
                 log_std_affine: bool = True, cql_clip_diff_min: float = -math.inf,
                 cql_clip_diff_max: float = math.inf, cql_importance_sample: bool = True,
                 critic_hidden_dims: tuple[int, ...] | None = None):
        if not cql_clip_diff_min <= cql_clip_diff_max:
            raise ValueError(f"model.cql_clip_diff_min ({cql_clip_diff_min}) must not exceed model.cql_clip_diff_max "
                             f"({cql_clip_diff_max})")
        # Read by make_critic, which SAC.__init__ calls.
        self.orthogonal_init = orthogonal_init
        self.critic_hidden_dims = tuple(hidden_dims if critic_hidden_dims is None else critic_hidden_dims)
        super().__init__(obs_dim, action_dim, gamma=gamma, tau=tau, actor_lr=actor_lr, critic_lr=critic_lr,
                         alpha_lr=alpha_lr, initial_alpha=initial_alpha, auto_alpha=auto_alpha,
                         target_entropy=target_entropy, num_critics=num_critics, hidden_dims=hidden_dims)
        self.cql_alpha, self.cql_n_actions, self.cql_temp = cql_alpha, cql_n_actions, cql_temp
        self.cql_lagrange, self.cql_target_action_gap = cql_lagrange, cql_target_action_gap
        self.alpha_prime_lr = alpha_prime_lr
        self.cql_max_target_backup, self.backup_entropy = cql_max_target_backup, backup_entropy
        self.cql_clip_diff_min, self.cql_clip_diff_max = float(cql_clip_diff_min), float(cql_clip_diff_max)
        self.cql_importance_sample = cql_importance_sample
        if orthogonal_init:
            # CORL: the policy's output layer starts near zero (Xavier, gain 1e-2): the initial policy is about
            # tanh(N(0, sigma^2)) in every state (sigma = e^-1 with log_std_affine, 1 without), so Q is first fitted
            # on a spread of actions, not one network's random pick.
            output = self.actor.net[-1]
            nn.init.xavier_uniform_(output.weight, gain=1e-2)
            nn.init.zeros_(output.bias)
        if log_std_affine:
            # No random draw: the networks keep the same initialization with this on or off.
            self.actor.add_log_std_affine(multiplier=1.0, offset=-1.0)
        # CORL starts log alpha' at 1.0. A parameter in both modes, so checkpoints look the same.
        self.log_alpha_prime = nn.Parameter(torch.tensor(float(initial_alpha_prime)).log(), requires_grad=cql_lagrange)

    def make_critic(self) -> nn.Module:
        critic = EnsembleCritic(self.obs_dim, self.action_dim, self.num_critics, self.critic_hidden_dims)
        if self.orthogonal_init:
            # CORL's init: orthogonal hidden layers (gain sqrt 2), output layer gain 1e-2, zero biases.
            layers = [m for m in critic.modules() if isinstance(m, VectorizedLinear)]
            for index, layer in enumerate(layers):
                gain = 1e-2 if index == len(layers) - 1 else math.sqrt(2.0)
                for member in range(layer.ensemble_size):
                    weight = torch.empty(layer.out_features, layer.in_features)
                    nn.init.orthogonal_(weight, gain=gain)
                    layer.weight.data[member].copy_(weight.T)
                nn.init.zeros_(layer.bias)
        return critic

    def configure_optimizers(self):
        return (*super().configure_optimizers(), self.adam([self.log_alpha_prime], lr=self.alpha_prime_lr))

    @property
    def alpha_prime(self) -> Tensor:
        return self.log_alpha_prime.exp().clamp(0.0, 1e6).detach()

    def critic_target(self, batch: Batch) -> Tensor:
        """y = r + gamma (1 - d) [min_i Q'_i(s', a') (- alpha log pi(a'|s') with backup_entropy)]."""
        with torch.no_grad():
            if self.cql_max_target_backup:
                n = self.cql_n_actions
                next_obs = batch.next_obs.repeat_interleave(n, 0)
                next_action, next_log_prob = self.actor(next_obs)
                next_q = self.target_critic(next_obs, next_action).min(0).values.view(-1, n)
                next_q, best = next_q.max(1)
                next_log_prob = next_log_prob.view(-1, n).gather(1, best.unsqueeze(1)).squeeze(1)
            else:
                next_action, next_log_prob = self.actor(batch.next_obs)
                next_q = self.target_critic(batch.next_obs, next_action).min(0).values
            if self.backup_entropy:
                next_q = next_q - self.alpha * next_log_prob
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def conservative_gap(self, batch: Batch, q_data: Tensor) -> Tensor:
        """Delta_i = E_s clip(T logsumexp_j ((Q_i(s, a_j) - log p_j) / T) - Q_i(s, a), c_min, c_max) for each critic
        i: shape (E,); without importance sampling the log-sum-exp is over Q_i(s, a_j) and Q_i(s, a), no densities.

        `q_data` is Q_i(s, a) on the batch's actions, (E, B). The 3n actions per state are drawn in the order
        uniform, pi(.|s), pi(.|s') (n each) from the default generator, with or without importance sampling.
        """
        size, action_dim = batch.action.shape
        n = self.cql_n_actions
        with torch.no_grad():
            random_action = torch.rand(size, n, action_dim, device=batch.action.device) * 2.0 - 1.0
            current_action, current_log_prob = self.actor(batch.obs.repeat_interleave(n, 0))
            next_action, next_log_prob = self.actor(batch.next_obs.repeat_interleave(n, 0))
            action = torch.cat([random_action, current_action.view(size, n, action_dim),
                                next_action.view(size, n, action_dim)], dim=1)
            random_log_density = torch.full((size, n), action_dim * math.log(0.5), device=batch.action.device)
            log_density = torch.cat([random_log_density, current_log_prob.view(size, n),
                                     next_log_prob.view(size, n)], dim=1)
        q = self.critic(batch.obs.repeat_interleave(3 * n, 0), action.view(size * 3 * n, action_dim))
        q = q.view(q.shape[0], size, 3 * n)
        if self.cql_importance_sample:
            logits = q - log_density
        else:
            logits = torch.cat([q, q_data.unsqueeze(-1)], dim=-1)
        soft_max_q = self.cql_temp * torch.logsumexp(logits / self.cql_temp, dim=-1)
        # Infinite bounds (the default) leave every difference as it is.
        return (soft_max_q - q_data).clamp(self.cql_clip_diff_min, self.cql_clip_diff_max).mean(1)

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """sum_i E (Q_i(s, a) - y)^2 + alpha_cql Delta_i, the penalty weighted by alpha' with the Lagrange form."""
        target = self.critic_target(batch)
        q = self.critic(batch.obs, batch.action)
        td_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        gap = self.conservative_gap(batch, q)
        if self.cql_lagrange:
            penalty = (self.alpha_prime * self.cql_alpha * (gap - self.cql_target_action_gap)).sum()
        else:
            penalty = self.cql_alpha * gap.sum()
        return td_loss + penalty, {"td_loss": td_loss.detach(), "cql_penalty": penalty.detach(),
                                   "cql_gap": gap.detach().mean(), "q_mean": q.detach().mean(),
                                   "target_mean": target.mean()}

    def alpha_prime_loss(self, gap: Tensor) -> Tensor:
        """-alpha' alpha_cql (gap - tau_gap), gap the critics' mean Delta (no gradient to the critics)."""
        alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
        return -alpha_prime * self.cql_alpha * (gap.detach() - self.cql_target_action_gap)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        metrics = super().update(batch)
        if self.cql_lagrange:
            # Uses the gap and alpha' from before this update's critic step, as CORL, which steps alpha' first.
            alpha_prime_loss = self.alpha_prime_loss(metrics["cql_gap"])
            self.optimize(alpha_prime_loss, self.optimizers()[3])
            metrics.update(alpha_prime_loss=alpha_prime_loss.detach(), alpha_prime=self.alpha_prime)
        return metrics

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict")
        keys = ("actor.log_std_multiplier", "actor.log_std_offset")
        if self.actor.log_std_multiplier is None or state is None or any(key in state for key in keys):
            return
        # Written before the learnable log-std scalars (issue 16): that policy's log sigma = raw is m = 1, b = 0.
        state[keys[0]], state[keys[1]] = torch.tensor(1.0), torch.tensor(0.0)
        optimizer_states = checkpoint.get("optimizer_states")
        if optimizer_states:
            self._add_log_std_scalars_to_actor_optimizer(optimizer_states[0])
        if rank_zero_only.rank == 0:
            print("lit_offrl: note: the checkpoint's CQL policy has no log_std_multiplier / log_std_offset (written "
                  "before they were added); loading it with m = 1, b = 0, which reproduces its log sigma = raw "
                  "exactly (m and b are trained from there if the run continues)", file=sys.stderr)

    def _add_log_std_scalars_to_actor_optimizer(self, actor_state: dict[str, Any]) -> None:
        """Make an old actor optimizer's state fit the actor with m and b: they come first in
        `actor.parameters()`, so the saved parameters' indices move up by two; m and b start with no Adam state."""
        params = actor_state["param_groups"][0]["params"]
        if len(params) != sum(1 for _ in self.actor.parameters()) - 2:
            return  # not the old actor's optimizer: leave it for Lightning to report
        actor_state["state"] = {index + 2: value for index, value in actor_state["state"].items()}
        actor_state["param_groups"][0]["params"] = [0, 1, *(index + 2 for index in params)]
