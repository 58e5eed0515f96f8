"""EM policy search in the latent space of a generative model of action sequences.

Ghadirzadeh, Poklukar, Kyrki, Kragic & Björkman, "Data-efficient visuomotor policy training using
reinforcement learning and generative models" (2020), as in the lit_offrl course's final slides.

Two levels. The low level is a generative model p(tau | alpha, s) of H-step action chunks tau = (a_0 .. a_{H-1}):
a conditional VAE whose condition is the chunk's first state s, trained offline on the dataset's chunks,
    L(VAE) = E_D [ ||D(s, z) - tau||^2 / (H |A|) + beta KL(q(z|s, tau) || N(0, I)) / d_z ],   z ~ q(z|s, tau).
The high level is a Gaussian sub-policy pi_theta(alpha | s) = N(mu_theta(s), diag sigma_theta(s)^2) over the
latent alpha (mu_theta = max_latent tanh(.)); acting decodes tau = D(s, alpha) and executes its H actions.

EM policy search on pi_theta, with R(s, alpha) the return of executing D(s, alpha) from s:
  E-step  q = argmin_q KL(q || pi_theta) - E_q[log p(r | alpha, s)]  with  p(r | alpha, s) ∝ exp(R(s, alpha) / eta)
          =>  q(alpha | s) ∝ pi_theta(alpha | s) exp(R(s, alpha) / eta),
          estimated from K samples alpha_k ~ pi_theta(. | s) per state with self-normalized weights
              w_k(s) = exp(R(s, alpha_k) / eta) / sum_j exp(R(s, alpha_j) / eta)       (softmax over k).
  M-step  theta = argmin_theta KL(q || pi_theta) = argmax_theta E_s sum_k w_k(s) log pi_theta(alpha_k | s),
          supervised learning (weighted maximum likelihood; for a Gaussian its optimum is the weighted mean and
          variance, the projection of q back onto the Gaussians). One gradient step per update.
  eta     `eta_mode="fixed"`: the temperature `eta`. `eta_mode="dual"` (REPS / MPO): the trust region
          KL(q || pi_theta) <= epsilon, eta = argmin of the dual
              g(eta) = eta epsilon + eta E_s log (1/K) sum_k exp(R(s, alpha_k) / eta),
          with g'(eta) = epsilon - E_s KL_s(eta), KL_s = sum_k w_k log(K w_k) the sample KL(q || pi_theta),
          decreasing in eta. g is convex, and it is minimized to convergence on every batch by bisection on
          g' in log eta (REPS solves its dual at every iteration; MPO's gradient steps on the same dual reach the
          same point), returning the feasible end of the bracket: E_s KL_s <= epsilon always.

Two sources of R, the same EM code (`return_source`):
  offline  a return model R_phi(s, alpha) fitted on the dataset's own chunks, encoded by the VAE's encoder,
           with the H-step discounted return bootstrapped by a state value V:
               L(R_phi) = E_D E_{alpha ~ q(.|s_0, tau)} ( R_phi(s_0, alpha) - G )^2,   L(V) = E_D ( V(s_0) - G )^2,
               G = sum_{h<H} gamma^h r_h + gamma^H (1 - d) V'(s_H),   V' the Polyak-averaged V.
           V is the behaviour's value fitted by H-step TD on the same chunks (the simplest choice; no Q(s, a)
           and no expectile), so each EM step improves on the behaviour (a one-step method) and R_phi, V are
           only ever queried at the data's states. R_phi is fitted on samples of q(z | s, tau), the latents the
           decoder is trained on (`return_latent="sample"`), not only their means (`"mean"`): a near-collapsed
           posterior puts the means in a thin set around 0 and R_phi then extrapolates everywhere else in the
           box, which EM finds and exploits (in a maze2d-umaze-dense run: R_phi 145 at the policy's alpha, data
           chunk returns about 17). Samples alpha ~ pi_theta are clipped to [-max_latent, max_latent] (PLAS's
           bound). The paper itself has no return model (its R comes from the robot); this source is the
           offline counterpart.
  online   decode alpha and execute the H actions in the evaluation environment (`make_eval_env`):
           R = sum_{h<H} gamma^h r_h (the course's "online policy training of the high-level policy"), up to and
           including the step at which the episode ends (terminated or truncated; no env is stepped after it).
           The K samples of a state run in K copies of the env reset with the same seed (identical states,
           checked) and advanced in lockstep by a random number (0 .. `online_max_prefix_chunks`) of chunks of
           the current deterministic policy before they branch; a state whose episode ends in that prefix is
           left out of the M-step. `online_num_states` states per update, K envs each, stepped one by one in
           this process: slow, CPU-bound, used only when chosen (the data batch is then unused by the EM phase).

Phases of one `update`, by the update counter: [0, vae_steps) VAE (and V, offline); [vae_steps, vae_steps +
return_steps) V and R_phi (offline only; online skips it); then EM. Acting (`execution`): "open_loop" decodes
alpha = mean of pi_theta (a sample when not deterministic) into H actions and executes them one per call before
planning again (a per-env action queue, reset at every validation; call `reset_plan()` at episode starts of your
own rollouts); "receding" plans at every step and executes the first action. With `eval_prior` every validation
also rolls out the decoded prior, alpha = 0 (the mean of N(0, I); `with model.prior_policy():` for your own
rollouts), on the same reset seeds: val/prior_normalized_score is the policy EM starts from and has to improve on.

Defaults: K = 20 samples and epsilon = 0.1 from MPO (Abdolmaleki et al. 2018); the VAE as PLAS's (750-750,
lr 1e-4, latent 2 |A|, mean bound 2) with PLAS's balance of reconstruction and KL per action: beta = 0.5 / H
(`kl_weight=None`). PLAS weighs 0.5 KL / d_z against the squared error of one action / |A|; with per-element
means over a chunk the same 0.5 would weigh the KL H times as much against each action's error (in sum form
beta_sum = kl_weight H |A| / d_z: PLAS 0.25, a chunk of 8 at 0.5 gives 2). At 0.5 the posterior collapses on
Hopper medium-replay (posterior std 0.99 after 4k and after 20k VAE updates, decoded chunks move 0.03 over the
whole prior), R_phi then cannot depend on alpha, and EM has nothing to search; at 0.5 / H the posterior std is
0.55 and the decoder's output spans the data's chunks (BENCHMARKS.md). The trade goes the other way on maze2d
Medium: at 0.5 / H pi_theta's means sit at the latent box's edge, which the weaker-regularized decoder maps to
chunks larger than the data's, and 0.5 scores higher there (configs/latent_em/pointmaze.yaml keeps 0.5).
V, R_phi and pi_theta 256-256 with Adam 3e-4, gamma 0.99, Polyak 0.005 (CORL). Our choices where the paper gives
none for this setting: horizon H = 8, 200k VAE updates and 200k return-model updates before EM, the
state-dependent policy std in [e^-5, e^2].
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Normal
from torchmetrics import MeanMetric

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.data import minari_io
from lit_offrl.data.buffer import Batch, SequenceBatch
from lit_offrl.errors import UserError
from lit_offrl.nets import ValueNetwork, mlp
from lit_offrl.nets.vae import ConditionalVAE, mean_vae_loss

DUAL_BISECTION_STEPS = 30  # log eta bracket of width 20 -> 2e-8


class LatentGaussianPolicy(nn.Module):
    """pi_theta(alpha | s) = N(max_latent tanh(f(s)), diag exp(g(s))^2), log std clamped to [log_std_min, log_std_max].

    The log std is state-dependent so the M-step's weighted maximum likelihood fits the E-step's variance too."""

    def __init__(self, obs_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (256, 256), max_latent: float = 2.0,
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.net = mlp(obs_dim, 2 * latent_dim, hidden_dims)
        self.max_latent, self.log_std_min, self.log_std_max = max_latent, log_std_min, log_std_max

    def forward(self, obs: Tensor) -> Normal:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return Normal(self.max_latent * torch.tanh(mean), log_std.clamp(self.log_std_min, self.log_std_max).exp(),
                      validate_args=False)

    def log_prob(self, obs: Tensor, alpha: Tensor) -> Tensor:
        """log pi(alpha | s) summed over the latent; alpha (..., B, d_z) broadcasts against obs (B, obs_dim)."""
        return self(obs).log_prob(alpha).sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        dist = self(obs)
        return (dist.mean if deterministic else dist.sample()).clamp(-self.max_latent, self.max_latent)


class LatentReturnModel(nn.Module):
    """R_phi(s, alpha): the H-step return of decoding alpha at s and executing it (then following the data)."""

    def __init__(self, obs_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim + latent_dim, 1, hidden_dims)

    def forward(self, obs: Tensor, alpha: Tensor) -> Tensor:
        """obs (B, obs_dim) and alpha (..., B, d_z) -> (..., B)."""
        return self.net(torch.cat([obs.expand(*alpha.shape[:-1], -1), alpha], dim=-1)).squeeze(-1)


class OnlineChunkReturns:
    """H-step returns of action chunks executed in the real environment from identical copies of a state.

    `num_states * num_copies` envs, each stepped only while its episode runs: a copy whose episode ends
    (terminated or truncated) is not stepped again before the next `reset` and keeps its return so far.
    `reset(seeds)` resets copy k of state i with seeds[i] (identical states); `advance` steps every copy of a
    state with that state's actions (they stay identical) until its episode ends, which marks the state `ended`;
    `returns` executes one chunk per copy and gives sum_{h <= h_end} gamma^h r_h, h_end the step at which that
    copy's episode ends (H - 1 if it runs on), and 0 for the copies of an ended state.
    """

    def __init__(self, make_env: Callable[[], gym.Env], observation_space: gym.Space, num_states: int,
                 num_copies: int):
        # A list, not a gymnasium vector env: that steps every sub-env on each call, and an ended one must not be
        # stepped (AutoresetMode.DISABLED asserts; the other modes start a new episode from a fresh reset).
        self.envs = [make_env() for _ in range(num_states * num_copies)]
        self.observation_space, self.num_states, self.num_copies = observation_space, num_states, num_copies
        self.ended = np.zeros(num_states, dtype=bool)
        self._obs = np.zeros((len(self.envs), gym.spaces.flatdim(observation_space)), dtype=np.float32)

    def _first_copies(self) -> np.ndarray:
        flat = self._obs.reshape(self.num_states, self.num_copies, -1)
        if not np.array_equal(flat, np.broadcast_to(flat[:, :1], flat.shape)):
            raise UserError("model.return_source=online needs an environment whose reset with a seed and whose steps "
                            "are deterministic (the K samples of a state run in K copies of it); this one's copies "
                            "diverged. Use return_source=offline.")
        return flat[:, 0].copy()

    def _step(self, actions: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step the envs where `live` with their row of actions (num_envs, action_dim): (rewards, episode ended),
        0 and False for the envs not stepped."""
        rewards, ended = np.zeros(len(self.envs)), np.zeros(len(self.envs), dtype=bool)
        for j in np.flatnonzero(live):
            obs, rewards[j], terminated, truncated, _ = self.envs[j].step(actions[j])
            self._obs[j] = gym.spaces.flatten(self.observation_space, obs)
            ended[j] = terminated or truncated
        return rewards, ended

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset; returns the flat raw observations (num_states, obs_dim)."""
        for j, env in enumerate(self.envs):
            self._obs[j] = gym.spaces.flatten(self.observation_space,
                                              env.reset(seed=int(seeds[j // self.num_copies]))[0])
        self.ended[:] = False
        return self._first_copies()

    def advance(self, actions: np.ndarray) -> np.ndarray:
        """Execute actions (num_states, H, action_dim) in every copy of the states whose episode runs; returns the
        states after them (an ended state's where its episode ended)."""
        for h in range(actions.shape[1]):
            _, ended = self._step(np.repeat(actions[:, h], self.num_copies, axis=0),
                                  np.repeat(~self.ended, self.num_copies))
            self.ended |= ended.reshape(self.num_states, self.num_copies).any(1)
        return self._first_copies()

    def returns(self, actions: np.ndarray, gamma: float) -> np.ndarray:
        """Execute actions (num_states, num_copies, H, action_dim), one chunk per copy: returns (num_states,
        num_copies)."""
        total = np.zeros(len(self.envs))
        running = np.repeat(~self.ended, self.num_copies)
        flat = actions.reshape(len(self.envs), *actions.shape[2:])
        for h in range(flat.shape[1]):
            rewards, ended = self._step(flat[:, h], running)
            total += gamma**h * rewards  # the reward of the step that ends the episode counts, none after it
            running &= ~ended
        return total.reshape(self.num_states, self.num_copies)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class LatentEM(OfflineRLModule):
    """EM policy search over the latent of a VAE of H-step action chunks (see the module docstring)."""

    def __init__(self, obs_dim: int, action_dim: int, horizon: int = 8, latent_dim: int | None = None,
                 return_source: Literal["offline", "online"] = "offline", num_samples: int = 20,
                 epsilon: float = 0.1, eta_mode: Literal["dual", "fixed"] = "dual", eta: float = 1.0,
                 return_latent: Literal["sample", "mean"] = "sample", max_latent: float = 2.0, gamma: float = 0.99,
                 tau: float = 0.005, kl_weight: float | None = None,
                 vae_steps: int = 200_000, return_steps: int = 200_000, vae_lr: float = 1e-4,
                 value_lr: float = 3e-4, return_lr: float = 3e-4, policy_lr: float = 3e-4,
                 vae_hidden_dims: tuple[int, ...] = (750, 750), hidden_dims: tuple[int, ...] = (256, 256),
                 execution: Literal["open_loop", "receding"] = "open_loop", online_num_states: int = 8,
                 online_max_prefix_chunks: int = 4, eval_prior: bool = True):
        super().__init__(obs_dim, action_dim)
        self.save_hyperparameters()
        for name, value, allowed in (("return_source", return_source, ("offline", "online")),
                                     ("eta_mode", eta_mode, ("dual", "fixed")),
                                     ("execution", execution, ("open_loop", "receding")),
                                     ("return_latent", return_latent, ("sample", "mean"))):
            if value not in allowed:
                raise ValueError(f"model.{name} must be one of {allowed}, got {value!r}")
        if horizon < 1 or num_samples < 2 or epsilon <= 0 or eta <= 0:
            raise ValueError(f"model.horizon >= 1, num_samples >= 2, epsilon > 0 and eta > 0 are required; got "
                             f"{horizon}, {num_samples}, {epsilon}, {eta}")
        self.horizon, self.latent_dim = horizon, latent_dim if latent_dim is not None else 2 * action_dim
        self.return_source, self.num_samples, self.epsilon, self.eta_mode, self.eta = (
            return_source, num_samples, epsilon, eta_mode, eta)
        self.return_latent, self.max_latent, self.gamma, self.tau = return_latent, max_latent, gamma, tau
        self.kl_weight = 0.5 / horizon if kl_weight is None else kl_weight  # PLAS's 0.5 per action (docstring)
        self.vae_steps, self.return_steps = vae_steps, return_steps
        self.vae_lr, self.value_lr, self.return_lr, self.policy_lr = vae_lr, value_lr, return_lr, policy_lr
        self.execution, self.online_num_states = execution, online_num_states
        self.online_max_prefix_chunks = online_max_prefix_chunks
        self.eval_prior, self._prior_mode = eval_prior, False
        self.val_prior_return = MeanMetric()
        self.val_prior_normalized_score = MeanMetric()
        self.em_start = vae_steps + (return_steps if return_source == "offline" else 0)

        self.vae = ConditionalVAE(obs_dim, horizon * action_dim, self.latent_dim, vae_hidden_dims)
        self.policy = LatentGaussianPolicy(obs_dim, self.latent_dim, hidden_dims, max_latent)
        self.value = ValueNetwork(obs_dim, hidden_dims)
        self.target_value = self.make_target(self.value)
        self.return_model = LatentReturnModel(obs_dim, self.latent_dim, hidden_dims)
        self.register_buffer("discounts", gamma ** torch.arange(horizon, dtype=torch.float32), persistent=False)
        self._online: OnlineChunkReturns | None = None
        self.reset_plan()

    def configure_optimizers(self):
        return (self.adam(self.vae.parameters(), lr=self.vae_lr),
                self.adam(self.value.parameters(), lr=self.value_lr),
                self.adam(self.return_model.parameters(), lr=self.return_lr),
                self.adam(self.policy.parameters(), lr=self.policy_lr))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        length = getattr(datamodule, "sequence_length", None)
        if stage == "fit" and length is not None and length != self.horizon:
            raise UserError(f"LatentEM plans chunks of model.horizon={self.horizon} actions but the data module serves "
                            f"chunks of data.sequence_length={length}: set --data.sequence_length {self.horizon} "
                            f"(or model.horizon to the data's).")
        if (stage == "fit" and self.return_source == "online" and datamodule is not None
                and minari_io.eval_env_spec(datamodule.dataset) is None):
            raise UserError(f"model.return_source=online executes plans in the dataset's environment, but "
                            f"'{datamodule.dataset_id}' records none: use model.return_source=offline.")

    @property
    def phase(self) -> str:
        """The training phase at this update, as the progress bar shows it (phases of length 0 are not counted)."""
        offline = self.return_source == "offline"
        phases = [("VAE and V" if offline else "VAE", self.vae_steps)]
        if offline:
            phases.append(("V and return model", self.em_start))
        phases = [(name, end) for k, (name, end) in enumerate(phases) if end > (phases[k - 1][1] if k else 0)]
        phases.append(("EM" if offline else "EM, online returns", None))
        current = next(k for k, (_, end) in enumerate(phases) if end is None or self._updates < end)
        name, end = phases[current]
        return f"phase {current + 1}/{len(phases)} {name}" + (f" (to {end})" if end is not None else "")

    # ------------------------------------------------------------------------------------------------ update
    def update(self, batch: Batch | SequenceBatch) -> dict[str, Tensor]:
        if isinstance(batch, Batch):
            batch = SequenceBatch.from_batch(batch)
        assert batch.horizon == self.horizon, (batch.horizon, self.horizon)
        vae_opt, value_opt, return_opt, policy_opt = self.optimizers()
        obs, chunk = batch.first_obs, batch.action.flatten(1)
        metrics: dict[str, Tensor] = {}
        if self._updates < self.vae_steps:
            vae_loss, recon, kl = mean_vae_loss(self.vae, obs, chunk, self.kl_weight)
            self.optimize(vae_loss, vae_opt)
            metrics |= {"vae_loss": vae_loss.detach(), "vae_recon": recon, "vae_kl": kl}
        if self.return_source == "offline" and self._updates < self.em_start:
            target = self.chunk_return(batch)
            value_loss = (self.value(obs) - target).pow(2).mean()
            self.optimize(value_loss, value_opt)
            self.soft_update(self.target_value, self.value, self.tau)
            metrics |= {"value_loss": value_loss.detach(), "chunk_return": target.mean()}
            if self._updates >= self.vae_steps:
                with torch.no_grad():
                    mean, std = self.vae.encode(obs, chunk)
                    alpha = mean + std * torch.randn_like(std) if self.return_latent == "sample" else mean
                return_loss = (self.return_model(obs, alpha) - target).pow(2).mean()
                self.optimize(return_loss, return_opt)
                metrics["return_model_loss"] = return_loss.detach()
        if self._updates >= self.em_start:
            if self.return_source == "offline":
                metrics |= self.em_step(obs, lambda alpha: self.return_model(obs, alpha), policy_opt)
            else:
                obs, valid = self.online_states()
                metrics |= self.em_step(obs, self.online_returns(obs), policy_opt, valid)
        return metrics

    @torch.no_grad()
    def chunk_return(self, batch: SequenceBatch) -> Tensor:
        """G = sum_{h<H} gamma^h r_h + gamma^H (1 - d) V'(s_H), (B,)."""
        bootstrap = self.target_value(batch.last_next_obs)
        return (batch.reward * self.discounts).sum(1) + self.gamma**self.horizon * (1.0 - batch.done) * bootstrap

    # -------------------------------------------------------------------------------------------------- EM
    def em_step(self, obs: Tensor, returns_fn: Callable[[Tensor], Tensor], optimizer,
                state_weight: Tensor | None = None) -> dict[str, Tensor]:
        """One E-step estimate on the states `obs` and one M-step gradient step."""
        alpha, weights, eta, returns = self.e_step(obs, returns_fn)
        policy_loss = self.m_step_loss(obs, alpha, weights, state_weight)
        self.optimize(policy_loss, optimizer)
        return {"policy_loss": policy_loss.detach(), "eta": eta, "kl_q_pi": self.sample_kl(returns, eta),
                "return_pi": returns.mean(), "return_q": (weights * returns).sum(0).mean(),
                "policy_std": self.policy(obs).stddev.detach().mean()}

    @torch.no_grad()
    def e_step(self, obs: Tensor, returns_fn: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """K samples alpha (K, B, d_z) of pi_theta, weights w = softmax_k(R / eta), eta, and the returns R (K, B)."""
        alpha = self.policy(obs).sample((self.num_samples,)).clamp(-self.max_latent, self.max_latent)
        returns = returns_fn(alpha).float()
        eta = self.temperature(returns)
        return alpha, torch.softmax(returns / eta, dim=0), eta, returns

    def m_step_loss(self, obs: Tensor, alpha: Tensor, weights: Tensor, state_weight: Tensor | None = None) -> Tensor:
        """-E_s sum_k w_k(s) log pi_theta(alpha_k | s) (states weighted by `state_weight` when given)."""
        per_state = -(weights * self.policy.log_prob(obs, alpha)).sum(0)
        if state_weight is None:
            return per_state.mean()
        return (state_weight * per_state).sum() / state_weight.sum().clamp_min(1.0)

    def dual(self, eta: Tensor, returns: Tensor) -> Tensor:
        """g(eta) = eta epsilon + eta E_s log (1/K) sum_k exp(R_k(s) / eta), returns (K, B)."""
        log_mean_exp = torch.logsumexp(returns / eta, dim=0) - math.log(returns.shape[0])
        return eta * self.epsilon + eta * log_mean_exp.mean()

    @staticmethod
    def sample_kl(returns: Tensor, eta: Tensor) -> Tensor:
        """E_s KL(q || pi_theta) on the samples: sum_k w_k log(K w_k), w = softmax_k(R / eta)."""
        log_weights = torch.log_softmax(returns / eta, dim=0)
        return (log_weights.exp() * (log_weights + math.log(returns.shape[0]))).sum(0).mean()

    @torch.no_grad()
    def temperature(self, returns: Tensor) -> Tensor:
        """eta: fixed, or the minimizer of the dual g (bisection on g' = epsilon - KL in log eta, see docstring)."""
        if self.eta_mode == "fixed":
            return torch.full((), self.eta, device=returns.device)
        # The bracket scales with the returns' spread: at its top every w_k is ~1/K (KL ~ 0), at its bottom w is
        # ~one-hot (KL ~ log K). Ties (a spread of 0) give uniform weights whatever eta.
        spread = (returns.amax(0) - returns.amin(0)).mean().clamp_min(1e-8).log()
        low, high = spread - 10.0, spread + 10.0
        for _ in range(DUAL_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            too_greedy = self.sample_kl(returns, middle.exp()) > self.epsilon
            low, high = torch.where(too_greedy, middle, low), torch.where(too_greedy, high, middle)
        return high.exp()

    # ------------------------------------------------------------------------------------------- online R
    def online_states(self) -> tuple[Tensor, Tensor]:
        """Reset the env copies and advance them by the current policy: (normalized states, 1.0 where valid)."""
        if self._online is None:
            datamodule = self.trainer.datamodule
            self._online = OnlineChunkReturns(datamodule.make_eval_env, datamodule.observation_space,
                                              self.online_num_states, self.num_samples)
        # Drawn from the generator seeded for this update, so a resumed run replays the same episodes.
        seeds = torch.randint(2**31 - 1, (self.online_num_states,)).tolist()
        prefix_chunks = int(torch.randint(self.online_max_prefix_chunks + 1, ()))
        raw = self._online.reset(seeds)
        for _ in range(prefix_chunks):
            obs = self.normalize_obs(raw)
            raw = self._online.advance(self.env_actions(self.decode_plan(obs, self.policy.act(obs))))
        valid = torch.as_tensor(~self._online.ended, dtype=torch.float32, device=self.device)
        return self.normalize_obs(raw), valid

    def online_returns(self, obs: Tensor) -> Callable[[Tensor], Tensor]:
        """R(s, alpha) by executing D(s, alpha) from the env copies' states `obs`: alpha (K, S, d_z) -> (K, S)."""
        def returns(alpha: Tensor) -> Tensor:
            plans = self.env_actions(self.decode_plan(obs, alpha)).swapaxes(0, 1)  # (S, K, H, A)
            return torch.as_tensor(self._online.returns(plans, self.gamma), dtype=torch.float32,
                                   device=self.device).T
        return returns

    def normalize_obs(self, raw: np.ndarray) -> Tensor:
        obs = torch.as_tensor(raw, dtype=torch.float32, device=self.device)
        return (obs - self.obs_mean) / self.obs_std

    def env_actions(self, actions: Tensor) -> np.ndarray:
        """Actions in [-1, 1] -> the environment's bounds, as numpy."""
        return (self.action_low + (actions + 1.0) * 0.5 * (self.action_high - self.action_low)).cpu().numpy()

    # ---------------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def decode_plan(self, obs: Tensor, alpha: Tensor) -> Tensor:
        """D(s, alpha) as H actions in [-1, 1]: obs (B, obs_dim), alpha (..., B, d_z) -> (..., B, H, action_dim)."""
        return self.vae.decode(obs, alpha).unflatten(-1, (self.horizon, self.action_dim))

    def reset_plan(self) -> None:
        """Forget the queued actions: the next `policy_action` plans anew (call at the start of an episode)."""
        self._plan: Tensor | None = None
        self._plan_step = 0

    @torch.no_grad()
    def latent_action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """alpha for planning: pi_theta's (its mean when deterministic), or, in prior mode, the VAE prior
        N(0, I)'s (0 when deterministic; samples clipped to the latent box otherwise)."""
        if self._prior_mode:
            zeros = obs.new_zeros(obs.shape[0], self.latent_dim)
            return zeros if deterministic else torch.randn_like(zeros).clamp(-self.max_latent, self.max_latent)
        return self.policy.act(obs, deterministic)

    def policy_action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        if self.execution == "receding":
            return self.decode_plan(obs, self.latent_action(obs, deterministic))[:, 0]
        if self._plan is None or self._plan_step >= self.horizon or self._plan.shape[0] != obs.shape[0]:
            self._plan, self._plan_step = self.decode_plan(obs, self.latent_action(obs, deterministic)), 0
        action = self._plan[:, self._plan_step]
        self._plan_step += 1
        return action

    @contextlib.contextmanager
    def prior_policy(self):
        """Act with the decoded prior (alpha = 0 when deterministic) instead of pi_theta inside the block:
        the policy that EM starts from and must improve on."""
        self._prior_mode = True
        self.reset_plan()
        try:
            yield self
        finally:
            self._prior_mode = False
            self.reset_plan()

    def validation_step(self, seeds: Tensor, batch_idx: int) -> None:
        """pi_theta's evaluation (val/return, val/normalized_score) and, with `eval_prior`, the decoded prior's on
        the same reset seeds (val/prior_return, val/prior_normalized_score)."""
        self.reset_plan()  # every evaluation episode starts with a fresh plan
        super().validation_step(seeds, batch_idx)
        if self.eval_prior:
            with self.prior_policy():
                self.evaluate_episodes(seeds, "val/prior_", self.val_prior_return, self.val_prior_normalized_score)

    def teardown(self, stage: str) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None
        super().teardown(stage)
