"""ReBRAC (Tarasov, Kurenkov, Nikulin & Kolesnikov, "Revisiting the Minimalist Approach to Offline Reinforcement
Learning", NeurIPS 2023).

TD3+BC (`lit_offrl.algos.TD3BC`) with the design choices the paper shows matter: deeper networks (3x256),
LayerNorm in the critics, a larger batch (1024), and the behavior penalty decoupled into an actor term and a
critic term, each with its own weight (beta_actor, beta_critic), tuned per dataset.

Critic, with the penalty on the next action inside the backup (a'_D is the dataset's action at s'):
    a~' = clip(pi'(s') + clip(eps, -c, c), -1, 1),     eps ~ N(0, sigma^2)
    y   = r + gamma (1 - d) [ min_{i=1,2} Q'_i(s', a~') - beta_critic ||a~' - a'_D||^2 ]
    L(Q) = sum_i E_D (Q_i(s, a) - y)^2
Actor (every `policy_freq` updates), as CORL's rebrac (min over the critics, Q normalized by its mean magnitude):
    L(pi) = E_D [ beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)) ],   lambda = 1 / E_D |min_i Q_i(s, pi(s))|
(lambda = 1 with normalize_q false), then Polyak averaging of the target actor and critics with tau.

Defaults are CORL rebrac's: 3x256 actor and LayerNorm critics, Adam 1e-3 both, batch 1024, gamma 0.99,
tau 0.005, sigma 0.2, c 0.5, policy_freq 2, Q normalization on, and beta_actor = beta_critic = 1 (CORL's
Config defaults; its per-dataset configs set both, see configs/rebrac/). CORL trains ReBRAC on raw observations
(data.normalize_observations false in configs/rebrac/).

Networks as the reference code builds them (tinkoff-ai/ReBRAC src/networks.py, CORL algorithms/offline/rebrac.py;
DetActor and Critic there): each hidden layer is Linear -> ReLU -> LayerNorm, the LayerNorm after the activation
(`norm_after_activation`), in the critics only (actor_ln false, critic_ln true in Config and in every per-dataset
config of both repositories; `actor_layer_norm` is actor_ln). Initialization "as in the EDAC paper" (`edac_init`):
hidden kernels U(+-1/sqrt(fan_in)) (PyTorch's default, kept), hidden biases 0.1, output kernel and bias
U(+-3e-3) in the critics and U(+-1e-3) in the actor; target networks start as copies. `norm_after_activation`
and `edac_init` false give lit_offrl's ReBRAC before issue 16 (Linear -> LayerNorm -> ReLU, PyTorch's init).
Flax's LayerNorm has eps 1e-6, PyTorch's 1e-5 (kept).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lit_offrl.algos.td3 import TD3
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic
from lit_offrl.nets.mlp import edac_init_


class ReBRAC(TD3):
    """TD3+BC with LayerNorm critics and separate behavior penalties in the actor loss and the critic target.

    `critic_layer_norm` / `actor_layer_norm`: a LayerNorm per hidden layer of the critics / the actor (reference:
    critics only), after the ReLU with `norm_after_activation`, before it without. `edac_init`: the reference's
    initialization (hidden biases 0.1, output layers U(+-3e-3) critic, U(+-1e-3) actor); off, PyTorch's default.
    """

    def __init__(self, obs_dim: int, action_dim: int, actor_bc_coef: float = 1.0, critic_bc_coef: float = 1.0,
                 normalize_q: bool = True, critic_layer_norm: bool = True, actor_layer_norm: bool = False,
                 norm_after_activation: bool = True, edac_init: bool = True, gamma: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_freq: int = 2, actor_lr: float = 1e-3,
                 critic_lr: float = 1e-3, hidden_dims: tuple[int, ...] = (256, 256, 256)):
        # Read by make_critic, which TD3.__init__ calls.
        self.critic_layer_norm, self.norm_after_activation, self.edac_init = (critic_layer_norm,
                                                                              norm_after_activation, edac_init)
        super().__init__(obs_dim, action_dim, gamma=gamma, tau=tau, policy_noise=policy_noise, noise_clip=noise_clip,
                         policy_freq=policy_freq, actor_lr=actor_lr, critic_lr=critic_lr, hidden_dims=hidden_dims)
        self.actor_bc_coef, self.critic_bc_coef, self.normalize_q = actor_bc_coef, critic_bc_coef, normalize_q
        if actor_layer_norm:  # TD3 built its actor without LayerNorm
            self.actor = DeterministicActor(obs_dim, action_dim, self.hidden_dims, layer_norm=True,
                                            norm_after_activation=norm_after_activation)
        if edac_init:
            edac_init_(self.actor.net, output_bound=1e-3)
        if actor_layer_norm or edac_init:  # the target starts as a copy of the actor, as in the reference
            self.target_actor = self.make_target(self.actor)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters") or {}
        if "norm_after_activation" in saved or not self.critic_layer_norm or not self.norm_after_activation:
            return
        # Written before the reference's layer order was the default (issue 16): its critics ran Linear -> LayerNorm
        # -> ReLU, so they are rebuilt that way (a different forward, not only other parameter names).
        self.norm_after_activation = self.hparams["norm_after_activation"] = False
        self.critic = self.make_critic()
        self.target_critic = self.make_target(self.critic)
        if rank_zero_only.rank == 0:
            print("lit_offrl: note: the checkpoint's ReBRAC critics put LayerNorm before the ReLU (written before "
                  "norm_after_activation); loading them so (--model.norm_after_activation false)", file=sys.stderr)

    def make_critic(self) -> torch.nn.Module:
        critic = EnsembleCritic(self.obs_dim, self.action_dim, num_critics=2, hidden_dims=self.hidden_dims,
                                layer_norm=self.critic_layer_norm, norm_after_activation=self.norm_after_activation)
        if self.edac_init:
            edac_init_(critic.net, output_bound=3e-3)
        return critic

    def critic_target(self, batch: Batch) -> Tensor:
        """y = r + gamma (1 - d) [min_i Q'_i(s', a~') - beta_critic ||a~' - a'_D||^2]."""
        assert batch.next_action is not None, "ReBRAC needs Batch.next_action (the dataset's action at s')"
        with torch.no_grad():
            next_action = self.smoothed_target_action(batch.next_obs)
            penalty = (next_action - batch.next_action).pow(2).sum(-1)
            next_q = self.target_critic(batch.next_obs, next_action).min(0).values - self.critic_bc_coef * penalty
            return batch.reward + self.gamma * (1.0 - batch.terminal) * next_q

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """E [beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s))]."""
        action = self.actor(batch.obs)
        q = self.critic(batch.obs, action).min(0).values
        lmbda = 1.0 / q.abs().mean().detach() if self.normalize_q else torch.ones((), device=q.device)
        bc_penalty = (action - batch.action).pow(2).sum(-1)
        loss = (self.actor_bc_coef * bc_penalty - lmbda * q).mean()
        return loss, {"bc_penalty": bc_penalty.detach().mean(), "lambda": lmbda}
