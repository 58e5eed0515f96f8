"""A conditional VAE over actions (or flattened action sequences), as in BCQ, PLAS, LAPO and EM policy search.

Encoder q(z|c,x) = N(mu(c,x), diag sigma(c,x)^2), decoder x_hat = D(c, z), prior p(z) = N(0, I):
    ELBO(c, x) = -E_q || D(c, z) - x ||^2 - beta KL(q(z|c,x) || N(0, I))
    KL         = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
A sequence of H actions is the same module with x_dim = H * action_dim and c = the chunk's first state.

Defaults follow Fujimoto et al.'s BCQ VAE (also PLAS's): two 750-unit hidden layers, log sigma clamped to
[-4, 15], decoder output tanh (actions in [-1, 1]), and z ~ N(0, I) clipped to +-0.5 when sampling the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_offrl.nets.mlp import mlp


class ConditionalVAE(nn.Module):
    """Encoder q(z|c,x) = N(mu, sigma), decoder x = D(c, z), prior N(0, I).

    ELBO = -||D(c,z) - x||^2 - beta KL(q||N(0,I)). All methods take any leading batch shape (...); `cond` and
    the latent / data broadcast over their leading dimensions (e.g. cond (B, 1, c) with z (B, N, latent)).

    Args:
        cond_dim: size of the conditioning input c (the state).
        x_dim: size of the modelled variable x (an action, or H actions flattened).
        latent_dim: size of z (BCQ / PLAS / LAPO: 2 * action_dim).
        hidden_dims: hidden layers of both encoder and decoder (BCQ / PLAS: 750, 750; LAPO: 256 x 3).
        log_std_min, log_std_max: clamp of log sigma for numerical stability (BCQ / PLAS: -4, 15).
        squash: decoder output through tanh (actions in [-1, 1]); False for a linear decoder (LAPO).
        prior_clip: `decode(c)` without z samples z ~ N(0, I) clipped to +-prior_clip (BCQ: 0.5); None: unclipped.
    """

    def __init__(self, cond_dim: int, x_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (750, 750),
                 log_std_min: float = -4.0, log_std_max: float = 15.0, squash: bool = True,
                 prior_clip: float | None = 0.5):
        super().__init__()
        self.cond_dim, self.x_dim, self.latent_dim = cond_dim, x_dim, latent_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.squash, self.prior_clip = squash, prior_clip
        # One output layer for (mu, log sigma): the same function as two separate heads on the last hidden layer.
        self.encoder = mlp(cond_dim + x_dim, 2 * latent_dim, hidden_dims)
        self.decoder = mlp(cond_dim + latent_dim, x_dim, hidden_dims,
                           output_activation=nn.Tanh() if squash else None)

    @staticmethod
    def _join(cond: Tensor, other: Tensor) -> Tensor:
        leading = torch.broadcast_shapes(cond.shape[:-1], other.shape[:-1])
        return torch.cat([cond.expand(*leading, -1), other.expand(*leading, -1)], dim=-1)

    def encode_log_std(self, cond: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, clamped log sigma) of q(z|c,x)."""
        mean, log_std = self.encoder(self._join(cond, x)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def encode(self, cond: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of q(z|c,x), each (..., latent_dim)."""
        mean, log_std = self.encode_log_std(cond, x)
        return mean, log_std.exp()

    def sample_prior(self, shape: Sequence[int], like: Tensor) -> Tensor:
        """z ~ N(0, I) of shape (*shape, latent_dim), clipped to +-prior_clip when that is set."""
        z = torch.randn(*shape, self.latent_dim, device=like.device, dtype=like.dtype)
        return z if self.prior_clip is None else z.clamp(-self.prior_clip, self.prior_clip)

    def decode(self, cond: Tensor, z: Tensor | None = None) -> Tensor:
        """x_hat = D(c, z), (..., x_dim); z=None samples the (clipped) prior, one z per condition."""
        if z is None:
            z = self.sample_prior(cond.shape[:-1], cond)
        return self.decoder(self._join(cond, z))

    def forward(self, cond: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x_hat from a reparameterized z ~ q(z|c,x), mean, std)."""
        mean, log_std = self.encode_log_std(cond, x)
        std = log_std.exp()
        z = mean + std * torch.randn_like(std)
        return self.decode(cond, z), mean, std

    def elbo_terms(self, cond: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per sample: (||D(c, z) - x||^2 summed over x_dim with z ~ q reparameterized, KL(q||N(0,I)) summed
        over latent_dim), each of shape (...,). The negative ELBO is recon + beta * kl."""
        mean, log_std = self.encode_log_std(cond, x)
        std = log_std.exp()
        z = mean + std * torch.randn_like(std)
        recon = (self.decode(cond, z) - x).pow(2).sum(-1)
        kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - 2.0 * log_std).sum(-1)
        return recon, kl


def mean_vae_loss(vae: ConditionalVAE, cond: Tensor, x: Tensor, kl_weight: float,
                  weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """BCQ / PLAS / LAPO's VAE loss with per-element means, as their code's F.mse_loss and KL .mean():
        L = E[w (||x_hat - x||^2 / x_dim + kl_weight KL / latent_dim)]
    with optional per-sample weights w. Returns (loss, mean recon per element, mean KL per latent)."""
    recon, kl = vae.elbo_terms(cond, x)
    recon, kl = recon / vae.x_dim, kl / vae.latent_dim
    per_sample = recon + kl_weight * kl
    loss = per_sample.mean() if weight is None else (weight * per_sample).mean()
    return loss, recon.detach().mean(), kl.detach().mean()


class LatentActor(nn.Module):
    """A deterministic policy in a generative model's latent space: z = max_latent * tanh(f(s)) (PLAS, LAPO).

    The tanh keeps z inside +-max_latent for any input, i.e. where the decoder's prior puts its mass, so the
    decoded action stays in the support the VAE learned from the data.
    """

    def __init__(self, obs_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (400, 300),
                 max_latent: float = 2.0):
        super().__init__()
        self.max_latent = max_latent
        self.net = mlp(obs_dim, latent_dim, hidden_dims, output_activation=nn.Tanh())

    def forward(self, obs: Tensor) -> Tensor:
        return self.max_latent * self.net(obs)
