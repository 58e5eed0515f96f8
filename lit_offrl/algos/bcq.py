"""BCQ (Fujimoto, Meger & Precup, "Off-Policy Deep Reinforcement Learning without Exploration", ICML 2019).

Batch-constrained Q-learning: the policy only picks among actions a generative model of the data proposes,
nudged by a small learned perturbation, so the critic is never asked about actions far from the data.

Generative model, a conditional VAE of the behavior policy (per-element means, as the official code):
    L(VAE) = E_D [ ||D(s, z) - a||^2 / |A| + 1/2 KL(q(z|s,a) || N(0, I)) / |z| ],   z ~ q(z|s,a)
Perturbation model  xi(s, a) = clip(a + Phi tanh(f(s, a)), -1, 1), trained through the first critic:
    L(xi) = -E_{s~D} Q_1(s, xi(s, a~)),   a~ = D(s, z), z ~ N(0, I) clipped to +-0.5
Critics, soft clipped double Q over n actions sampled from the VAE and perturbed by the target xi':
    a_j = xi'(s', D(s', z_j)),  j = 1..n
    y   = r + gamma (1 - d) max_j [ lambda min_i Q'_i(s', a_j) + (1 - lambda) max_i Q'_i(s', a_j) ]
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
then Polyak averaging of the target critics and perturbation model with tau.
Acting: sample n candidates xi(s, D(s, z_j)) and take the one with the largest Q_1.

Defaults are the paper's / the official code's (sfujim/BCQ, continuous): VAE 750-750 with latent 2|A|, log sigma
clamped to [-4, 15]; perturbation and twin critics 400-300; Adam 1e-3 for all three (the VAE at Adam's
default 1e-3); batch 100; Phi 0.05; lambda 0.75; n = 10; tau 0.005; gamma 0.99; raw (unnormalized) states.
The official code acts with 100 candidates where the paper's Algorithm 1 says n = 10: `num_act_samples`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic
from lit_offrl.nets.mlp import mlp
from lit_offrl.nets.vae import ConditionalVAE, mean_vae_loss


class Perturbation(nn.Module):
    """xi(s, a) = clip(a + Phi tanh(f(s, a)), -1, 1): a bounded correction of a proposed action (BCQ, PLAS+P)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (400, 300), phi: float = 0.05):
        super().__init__()
        self.phi = phi
        self.net = mlp(obs_dim + action_dim, action_dim, hidden_dims, output_activation=nn.Tanh())

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return (action + self.phi * self.net(torch.cat([obs, action], -1))).clamp(-1.0, 1.0)


def vae_step(module: OfflineRLModule, batch: Batch, optimizer) -> dict[str, Tensor]:
    """One step of `module.vae` on L(VAE) with weight `module.kl_weight` on the KL (BCQ, PLAS); returns metrics."""
    vae_loss, recon, kl = mean_vae_loss(module.vae, batch.obs, batch.action, module.kl_weight)
    module.optimize(vae_loss, optimizer)
    return {"vae_loss": vae_loss.detach(), "recon_loss": recon, "kl_loss": kl}


def critic_and_actor_step(module: OfflineRLModule, batch: Batch, critic_opt, actor_opt) -> dict[str, Tensor]:
    """One step of the twin critics toward `module.critic_target(batch)`, then one of the policy on
    `module.actor_loss(batch)` (BCQ, PLAS); returns metrics. Target networks are the caller's."""
    target = module.critic_target(batch)
    q = module.critic(batch.obs, batch.action)
    critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
    module.optimize(critic_loss, critic_opt)
    with module.frozen(module.critic):  # the actor's step needs no critic weight gradients
        actor_loss = module.actor_loss(batch)
    module.optimize(actor_loss, actor_opt)
    return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q_mean": q.detach().mean(),
            "target_mean": target.mean()}


def soft_clipped_q(q: Tensor, lmbda: float) -> Tensor:
    """lambda min_i Q_i + (1 - lambda) max_i Q_i over the ensemble axis 0 (BCQ's soft clipped double Q)."""
    return lmbda * q.min(0).values + (1.0 - lmbda) * q.max(0).values


class BCQ(OfflineRLModule):
    """Batch-constrained deep Q-learning: VAE action proposals, a perturbation model, soft clipped twin critics."""

    def __init__(self, obs_dim: int, action_dim: int, gamma: float = 0.99, tau: float = 0.005, lmbda: float = 0.75,
                 phi: float = 0.05, num_samples: int = 10, num_act_samples: int = 10, kl_weight: float = 0.5,
                 latent_dim: int | None = None, actor_lr: float = 1e-3, critic_lr: float = 1e-3, vae_lr: float = 1e-3,
                 vae_hidden_dims: tuple[int, ...] = (750, 750), hidden_dims: tuple[int, ...] = (400, 300)):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        self.gamma, self.tau, self.lmbda, self.phi = gamma, tau, lmbda, phi
        self.num_samples, self.num_act_samples, self.kl_weight = num_samples, num_act_samples, kl_weight
        self.actor_lr, self.critic_lr, self.vae_lr = actor_lr, critic_lr, vae_lr
        self.latent_dim = latent_dim or 2 * action_dim
        self.vae = ConditionalVAE(obs_dim, action_dim, self.latent_dim, vae_hidden_dims, prior_clip=0.5)
        self.actor = Perturbation(obs_dim, action_dim, hidden_dims, phi)
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=hidden_dims)
        self.target_actor = self.make_target(self.actor)
        self.target_critic = self.make_target(self.critic)

    def configure_optimizers(self):
        return (self.adam(self.vae.parameters(), lr=self.vae_lr),
                self.adam(self.actor.parameters(), lr=self.actor_lr),
                self.adam(self.critic.parameters(), lr=self.critic_lr))

    def candidates(self, obs: Tensor, num: int, perturbation: nn.Module,
                   z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`num` perturbed VAE proposals per state: (obs repeated (B*num, S), actions (B*num, A)), state-major.
        `z` (B*num, latent_dim) gives the VAE's latents; None samples its clipped prior."""
        obs = obs.repeat_interleave(num, dim=0)
        return obs, perturbation(obs, self.vae.decode(obs, z))

    def critic_target(self, batch: Batch) -> Tensor:
        with torch.no_grad():
            next_obs, next_action = self.candidates(batch.next_obs, self.num_samples, self.target_actor)
            next_q = soft_clipped_q(self.target_critic(next_obs, next_action), self.lmbda)
            next_q = next_q.view(-1, self.num_samples).max(-1).values
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def actor_loss(self, batch: Batch) -> Tensor:
        """-Q_1(s, xi(s, a~)) with a~ from the VAE prior (no gradient into the VAE)."""
        with torch.no_grad():
            proposed = self.vae.decode(batch.obs)
        return -self.critic.q1(batch.obs, self.actor(batch.obs, proposed)).mean()

    def update(self, batch: Batch) -> dict[str, Tensor]:
        vae_opt, actor_opt, critic_opt = self.optimizers()
        metrics = vae_step(self, batch, vae_opt)
        metrics.update(critic_and_actor_step(self, batch, critic_opt, actor_opt))
        self.soft_update(self.target_critic, self.critic, self.tau)
        self.soft_update(self.target_actor, self.actor, self.tau)
        return metrics

    def policy_action(self, obs: Tensor, deterministic: bool = True, z: Tensor | None = None) -> Tensor:
        """argmax_j Q_1(s, xi(s, D(s, z_j))) over `num_act_samples` candidates per state, all states at once.
        The z_j are prior samples even when `deterministic`; `z` (B*num_act_samples, latent_dim, state-major) fixes
        them (lit_offrl.export bakes one constant set into the exported policy)."""
        repeated, actions = self.candidates(obs, self.num_act_samples, self.actor, z)
        q1 = self.critic(repeated, actions)[0].view(-1, self.num_act_samples)
        actions = actions.view(-1, self.num_act_samples, self.action_dim)
        return actions[torch.arange(actions.shape[0], device=obs.device), q1.argmax(-1)]
