"""LAPO (Chen, Ghadirzadeh et al., "Latent-Variable Advantage-Weighted Policy Optimization for Offline RL",
NeurIPS 2022).

On a heterogeneous dataset a plain behavior VAE covers every behavior, good and bad. LAPO weights the CVAE's
ELBO by the advantage, so its prior covers the task-relevant actions, and a deterministic latent policy
maximizes Q through the (target) decoder. Everything is trained jointly from the first update.

Critics (Q_1, Q_2 and V: one module and optimizer in the published code, one optimizer here), with
Q~ = lambda min_i Q'_i + (1 - lambda) max_i Q'_i:
    y_Q  = r + gamma (1 - d) V(s')                                        (the online V)
    y_V  = clip( Q~'(s, D'(s, pi'(s) + eps)), V_min, V_max ),   eps = clip(N(0, 0.1^2), -0.2, 0.2) in latent space
    L    = sum_i E_D (Q_i(s, a) - y_Q)^2 + E_D (V(s) - y_V)^2
Advantage-weighted CVAE (V after this update's critic step, as the published code):
    A^   = r + gamma (1 - d) Q~'(s', D'(s', pi'(s'))) - V(s)             (one-step TD advantage)
    w    = expectile: 0.9 if A^ > 0 else 0.1            (the authors' published code; `weighting="expectile"`)
           exponential: min(exp(A^ / temperature), max_weight)   (the paper's / the course's omega = exp(A/lambda))
    L(VAE) = E_D [ w ( ||D(s, z) - a||^2 + beta KL(q(z|s,a) || N(0, I)) ) ],  z ~ q(z|s,a),  sums over dims
Latent policy z = pi(s) = z_max tanh(f(s)), through the target decoder:
    L(pi) = -E_{s~D} Q_1(s, D'(s, pi(s)))
then Polyak averaging (tau) of the target critics, policy and decoder. Acting: a = clip(D'(s, pi(s)), -1, 1).

Rewards: the published code divides rewards by their dataset maximum (r / max r; AntMaze: r x 100) and clips
V targets to [min r, max r] / (1 - gamma). `reward_max_normalize` does the division here, from the data the
data module loaded (after its own reward_scale / shift), and `clip_value` the clipping; both are computed in
`setup` and saved in the checkpoint.

Defaults are the published code's (pcchenxi/LAPO-offlienRL, main_d4rl.py / algos_vae.py): every network 3x256,
latent 2|A|, z_max 2, Adam 2e-4 for VAE, policy and critics, batch 512, beta 1.0 (0.3 for the mazes), expectile
0.9, lambda 1.0 (0.7 AntMaze), target noise 0.1 clipped at 0.2, tau 0.005, gamma 0.99, z-scored states. There
the decoder is linear on z-scored actions; here actions are already in [-1, 1] (the data module's normalization)
and the decoder stays linear (`squash=False`), clipped to [-1, 1] only when acting. The CVAE's log sigma is
clamped to [-4, 15] (the published one leaves log sigma^2 free). For the exponential weights the paper gives no
temperature; 1.0 and the 100 clip of AWAC / IQL are our choice.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.algos.bcq import soft_clipped_q
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import EnsembleCritic, ValueNetwork
from lit_offrl.nets.vae import ConditionalVAE, LatentActor


def advantage_weights(advantage: Tensor, weighting: str, expectile: float = 0.9, temperature: float = 1.0,
                      max_weight: float = 100.0) -> Tensor:
    """LAPO's sample weights: `expectile`: expectile if A > 0 else 1 - expectile (published code);
    `exponential`: min(exp(A / temperature), max_weight) (the paper's omega)."""
    if weighting == "expectile":
        return torch.where(advantage > 0, expectile, 1.0 - expectile)
    if weighting == "exponential":
        return torch.exp(advantage / temperature).clamp(max=max_weight)
    raise ValueError(f"weighting must be 'expectile' or 'exponential', got {weighting!r}")


class LAPO(OfflineRLModule):
    """Latent-variable advantage-weighted policy optimization: weighted CVAE, latent policy, Q/V critics."""

    def __init__(self, obs_dim: int, action_dim: int, gamma: float = 0.99, tau: float = 0.005, kl_weight: float = 1.0,
                 max_latent_action: float = 2.0, latent_dim: int | None = None, lmbda: float = 1.0,
                 weighting: Literal["expectile", "exponential"] = "expectile", expectile: float = 0.9,
                 temperature: float = 1.0, max_weight: float = 100.0, target_noise: float = 0.1,
                 target_noise_clip: float = 0.2, reward_max_normalize: bool = True, clip_value: bool = True,
                 vae_lr: float = 2e-4, actor_lr: float = 2e-4, critic_lr: float = 2e-4,
                 hidden_dims: tuple[int, ...] = (256, 256, 256)):
        super().__init__(obs_dim, action_dim)
        if weighting not in ("expectile", "exponential"):
            raise ValueError(f"model.weighting must be 'expectile' or 'exponential', got {weighting!r}")
        self.save_hyperparameters()
        self.gamma, self.tau, self.kl_weight, self.lmbda = gamma, tau, kl_weight, lmbda
        self.max_latent_action, self.weighting, self.expectile = max_latent_action, weighting, expectile
        self.temperature, self.max_weight = temperature, max_weight
        self.target_noise, self.target_noise_clip = target_noise, target_noise_clip
        self.reward_max_normalize, self.clip_value = reward_max_normalize, clip_value
        self.vae_lr, self.actor_lr, self.critic_lr = vae_lr, actor_lr, critic_lr
        self.latent_dim = latent_dim or 2 * action_dim
        self.vae = ConditionalVAE(obs_dim, action_dim, self.latent_dim, hidden_dims, squash=False,
                                  prior_clip=max_latent_action)
        self.actor = LatentActor(obs_dim, self.latent_dim, hidden_dims, max_latent_action)
        self.critic = EnsembleCritic(obs_dim, action_dim, num_critics=2, hidden_dims=hidden_dims)
        self.value = ValueNetwork(obs_dim, hidden_dims)
        self.target_vae = self.make_target(self.vae)
        self.target_actor = self.make_target(self.actor)
        self.target_critic = self.make_target(self.critic)
        # r <- r * reward_multiplier and the V-target clip, set from the data in setup() (saved in checkpoints).
        self.register_buffer("reward_multiplier", torch.ones(()))
        self.register_buffer("value_min", torch.full((), -torch.inf))
        self.register_buffer("value_max", torch.full((), torch.inf))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        transitions = getattr(datamodule, "transitions", None)
        if transitions is None:
            return
        reward = transitions.reward.float()
        with torch.no_grad():
            high = reward.max()
            if self.reward_max_normalize:
                self.reward_multiplier.copy_(torch.where(high > 0, 1.0 / high, torch.ones_like(high)))
            if self.clip_value:
                self.value_min.copy_(reward.min() * self.reward_multiplier / (1.0 - self.gamma))
                self.value_max.copy_(high * self.reward_multiplier / (1.0 - self.gamma))

    def configure_optimizers(self):
        return (self.adam(self.vae.parameters(), lr=self.vae_lr),
                self.adam(self.actor.parameters(), lr=self.actor_lr),
                self.adam([*self.critic.parameters(), *self.value.parameters()], lr=self.critic_lr))

    def target_q(self, obs: Tensor, noise: bool) -> Tensor:
        """Q~'(s, D'(s, pi'(s) [+ eps])) with the target critics, policy and decoder."""
        latent = self.target_actor(obs)
        if noise:
            latent = latent + (torch.randn_like(latent) * self.target_noise).clamp(
                -self.target_noise_clip, self.target_noise_clip)
        return soft_clipped_q(self.target_critic(obs, self.target_vae.decode(obs, latent)), self.lmbda)

    def critic_targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(y_Q, y_V) as in the module docstring."""
        with torch.no_grad():
            reward = batch.reward * self.reward_multiplier
            y_q = reward + self.gamma * (1.0 - batch.terminal) * self.value(batch.next_obs)
            y_v = self.target_q(batch.obs, noise=True).clamp(self.value_min, self.value_max)
            return y_q, y_v

    def advantage(self, batch: Batch) -> Tensor:
        """A^ = r + gamma (1 - d) Q~'(s', D'(s', pi'(s'))) - V(s)."""
        with torch.no_grad():
            reward = batch.reward * self.reward_multiplier
            next_q = self.target_q(batch.next_obs, noise=False)
            return reward + self.gamma * (1.0 - batch.terminal) * next_q - self.value(batch.obs)

    def actor_loss(self, batch: Batch) -> Tensor:
        """-Q_1(s, D'(s, pi(s))) through the (frozen) target decoder."""
        return -self.critic.q1(batch.obs, self.target_vae.decode(batch.obs, self.actor(batch.obs))).mean()

    def update(self, batch: Batch) -> dict[str, Tensor]:
        vae_opt, actor_opt, critic_opt = self.optimizers()
        y_q, y_v = self.critic_targets(batch)
        q, v = self.critic(batch.obs, batch.action), self.value(batch.obs)
        q_loss = (q - y_q.unsqueeze(0)).pow(2).mean(1).sum()
        value_loss = (v - y_v).pow(2).mean()
        self.optimize(q_loss + value_loss, critic_opt)

        weight = advantage_weights(self.advantage(batch), self.weighting, self.expectile, self.temperature,
                                   self.max_weight)
        recon, kl = self.vae.elbo_terms(batch.obs, batch.action)
        vae_loss = (weight * (recon + self.kl_weight * kl)).mean()
        self.optimize(vae_loss, vae_opt)

        with self.frozen(self.critic):  # the actor's step needs no critic weight gradients
            actor_loss = self.actor_loss(batch)
        self.optimize(actor_loss, actor_opt)
        self.soft_update(self.target_critic, self.critic, self.tau)
        self.soft_update(self.target_actor, self.actor, self.tau)
        self.soft_update(self.target_vae, self.vae, self.tau)
        return {"critic_loss": q_loss.detach(), "value_loss": value_loss.detach(), "vae_loss": vae_loss.detach(),
                "recon_loss": recon.detach().mean(), "kl_loss": kl.detach().mean(), "actor_loss": actor_loss.detach(),
                "advantage_weight": weight.mean(), "q_mean": q.detach().mean(), "v_mean": v.detach().mean()}

    def policy_action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        return self.target_vae.decode(obs, self.actor(obs)).clamp(-1.0, 1.0)
