"""PLAS (Zhou, Bajracharya & Held, "PLAS: Latent Action Space for Offline Reinforcement Learning", CoRL 2020).

The policy acts in the latent space of a conditional VAE of the behavior policy; the decoder maps a bounded
latent back to an action the data supports, so the critic is only asked about in-distribution actions.

Phase 1, the first `vae_pretrain_steps` updates: the VAE alone (per-element means, as the official code):
    L(VAE) = E_D [ ||D(s, z) - a||^2 / |A| + beta KL(q(z|s,a) || N(0, I)) / |z| ],   z ~ q(z|s,a),  beta = 0.5
Phase 2, the VAE frozen: a deterministic latent policy z = pi(s) = z_max tanh(f(s)), actions a = D(s, pi(s))
(PLAS+P: a = clip(D(s, pi(s)) + Phi tanh(g(s, D(s, pi(s)))), -1, 1)), and twin critics:
    y    = r + gamma (1 - d) [ lambda min_i Q'_i(s', a') + (1 - lambda) max_i Q'_i(s', a') ],  a' = D(s', pi'(s'))
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
    L(pi) = -E_{s~D} Q_1(s, D(s, pi(s)))        (gradient dQ/da da/dz dz/dtheta through the frozen decoder)
then Polyak averaging of the target critics and policy with tau. Acting: a = D(s, pi(s)).

Defaults are the official code's (Wenxuan-Zhou/PLAS, main.py / algos.py): VAE 750-750, latent 2|A|, log sigma
clamped to [-4, 15], decoder tanh, VAE pretrained 500k updates (then 500k policy updates: 1M in all) at Adam
1e-4 with KL weight 0.5; latent policy 400-300 -> z_max = 2; twin critics 400-300; actor lr 1e-4, critic lr
1e-3; lambda 0.75; batch 100; tau 0.005; gamma 0.99; perturbation off (PLAS+P: Phi 0.05, 400-300); raw states.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.algos.bcq import Perturbation, critic_and_actor_step, soft_clipped_q, vae_step
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic
from lit_offrl.nets.vae import ConditionalVAE, LatentActor


class PLAS(OfflineRLModule):
    """Policy in the latent action space of a pretrained, then frozen, conditional VAE (optionally PLAS+P)."""

    def __init__(self, obs_dim: int, action_dim: int, vae_pretrain_steps: int = 500_000, gamma: float = 0.99,
                 tau: float = 0.005, lmbda: float = 0.75, max_latent_action: float = 2.0, latent_dim: int | None = None,
                 kl_weight: float = 0.5, vae_lr: float = 1e-4, actor_lr: float = 1e-4, critic_lr: float = 1e-3,
                 perturbation: bool = False, phi: float = 0.05, vae_hidden_dims: tuple[int, ...] = (750, 750),
                 actor_hidden_dims: tuple[int, ...] = (400, 300), critic_hidden_dims: tuple[int, ...] = (400, 300)):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        self.vae_pretrain_steps, self.gamma, self.tau, self.lmbda = vae_pretrain_steps, gamma, tau, lmbda
        self.max_latent_action, self.kl_weight = max_latent_action, kl_weight
        self.perturbation, self.phi = perturbation, phi
        self.vae_lr, self.actor_lr, self.critic_lr = vae_lr, actor_lr, critic_lr
        self.latent_dim = latent_dim or 2 * action_dim
        self.vae = ConditionalVAE(obs_dim, action_dim, self.latent_dim, vae_hidden_dims, prior_clip=None)
        self.actor = LatentActor(obs_dim, self.latent_dim, actor_hidden_dims, max_latent_action)
        self.perturb = Perturbation(obs_dim, action_dim, actor_hidden_dims, phi) if perturbation else None
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=critic_hidden_dims)
        self.target_actor = self.make_target(self.actor)
        self.target_perturb = self.make_target(self.perturb) if perturbation else None
        self.target_critic = self.make_target(self.critic)
        self._vae_frozen = False

    def configure_optimizers(self):
        policy_params = list(self.actor.parameters()) + (list(self.perturb.parameters()) if self.perturb else [])
        return (self.adam(self.vae.parameters(), lr=self.vae_lr),
                self.adam(policy_params, lr=self.actor_lr),
                self.adam(self.critic.parameters(), lr=self.critic_lr))

    def decoded_action(self, obs: Tensor, target: bool = False) -> Tensor:
        """a = D(s, pi(s)) (PLAS+P: perturbed), with the target policy when `target`."""
        actor, perturb = (self.target_actor, self.target_perturb) if target else (self.actor, self.perturb)
        action = self.vae.decode(obs, actor(obs))
        return perturb(obs, action) if perturb is not None else action

    def critic_target(self, batch: Batch) -> Tensor:
        with torch.no_grad():
            next_q = soft_clipped_q(self.target_critic(batch.next_obs, self.decoded_action(batch.next_obs, True)),
                                    self.lmbda)
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def actor_loss(self, batch: Batch) -> Tensor:
        return -self.critic.q1(batch.obs, self.decoded_action(batch.obs)).mean()

    @property
    def phase(self) -> str | None:
        """The training phase at this update, as the progress bar shows it (None without VAE pretraining)."""
        if self.vae_pretrain_steps <= 0:
            return None
        if self._updates < self.vae_pretrain_steps:
            return f"phase 1/2 VAE (to {self.vae_pretrain_steps})"
        return "phase 2/2 policy and critics"

    def freeze_vae(self) -> None:
        """No gradients for the VAE once its phase is over: the decoder passes dQ/da through to the policy but
        is never changed by it (and its weight gradients are not even computed)."""
        if not self._vae_frozen:
            self.vae.requires_grad_(False)
            self._vae_frozen = True

    def update(self, batch: Batch) -> dict[str, Tensor]:
        vae_opt, actor_opt, critic_opt = self.optimizers()
        if self._updates < self.vae_pretrain_steps:
            return vae_step(self, batch, vae_opt)
        self.freeze_vae()
        metrics = critic_and_actor_step(self, batch, critic_opt, actor_opt)
        self.soft_update(self.target_critic, self.critic, self.tau)
        self.soft_update(self.target_actor, self.actor, self.tau)
        if self.perturb is not None:
            self.soft_update(self.target_perturb, self.perturb, self.tau)
        return metrics

    def policy_action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.decoded_action(obs)
