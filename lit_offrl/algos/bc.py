"""Behavior cloning: supervised learning of the dataset's actions.

Deterministic policy (as CORL's BC, the TD3+BC actor without the Q term):
    L(pi) = E_{(s,a)~D} || pi(s) - a ||^2 / |A|      (mean over action dimensions, as CORL's F.mse_loss)
Gaussian policy, maximum likelihood:
    L(pi) = -E_{(s,a)~D} log pi(a|s),   pi(a|s) = N(tanh f(s), diag sigma^2)

With `data.top_fraction 0.1` this is BC-10% (Chen et al. 2021): clone only the best 10% of episodes.
Defaults follow CORL's any_percent_bc: 2x256 MLP, Adam lr 3e-4, batch 256.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, GaussianActor


class BC(OfflineRLModule):
    """Behavior cloning with a deterministic (MSE) or Gaussian (log-likelihood) policy."""

    def __init__(self, obs_dim: int, action_dim: int, policy: Literal["deterministic", "gaussian"] = "deterministic",
                 hidden_dims: tuple[int, ...] = (256, 256), lr: float = 3e-4):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        self.policy, self.lr = policy, lr
        if policy == "deterministic":
            self.actor = DeterministicActor(obs_dim, action_dim, hidden_dims)
        elif policy == "gaussian":
            self.actor = GaussianActor(obs_dim, action_dim, hidden_dims)
        else:
            raise ValueError(f"model.policy must be 'deterministic' or 'gaussian', got {policy!r}")

    def configure_optimizers(self):
        return self.adam(self.actor.parameters(), self.lr)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        if self.policy == "deterministic":
            actor_loss = (self.actor(batch.obs) - batch.action).pow(2).mean()
        else:
            actor_loss = -self.actor.log_prob(batch.obs, batch.action).mean()
        self.optimize(actor_loss, self.optimizers())
        return {"actor_loss": actor_loss.detach()}
