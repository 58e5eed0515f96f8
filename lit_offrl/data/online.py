"""OnlineDataModule: gymnasium environments stepped with the module's own policy into a growing replay buffer.

The same LightningModules that learn from a fixed dataset learn online with it: `--data OnlineDataModule`
swaps the data module, nothing else changes. Every training batch is made in `on_before_batch_transfer`,
the hook Lightning calls just before the step that uses it (its data loader prefetches one item ahead, so
collecting in the loader would act with a policy one update old and leave the checkpointed buffer one step
ahead of the weights). Per update it

1. steps the environments `env_steps_per_update` times (vector steps, `num_envs` transitions each) with the
   module's current stochastic policy, `module.policy_action(obs, deterministic=False)`; the first
   `warmup_steps` transitions use uniformly random actions instead (SB3 `learning_starts`, CORL);
2. draws `batch_size` transitions uniformly from the buffer (and, when fine-tuning, from the offline data).

Transitions are stored on the training device, actions normalized to [-1, 1], observations normalized as
the model expects them (identity for a fresh model; the offline dataset's z-score when there is one; the
checkpoint's statistics when fine-tuning a model trained on normalized data without its dataset).
`terminal` is `terminated` only: a time-limit truncation bootstraps. Finished episodes are logged to the
trainer's loggers as `train/episode_return`, `train/episode_length` and `train/env_steps` (rank 0, x-axis the
update count like every other training metric); no device sync is added for it.

Offline-to-online fine-tuning (AWAC's setting): `offline_dataset_id` keeps a Minari dataset next to the
replay buffer, never evicted. `offline_ratio: null` samples uniformly from the union of both (AWAC/rlkit: the
offline data loaded into the replay buffer); a number in [0, 1] draws that fraction of every batch from the
offline data and the rest from the online buffer (RLPD, Cal-QL: 0.5). Start such a run from the offline
weights with `lit-offrl fit --finetune_from OFFLINE.ckpt ...` (a new run: update counter and optimizers start
fresh); `--ckpt_path` resumes an interrupted run instead.

Randomness: the warmup actions, the policy's exploration noise and the environment reset seeds of transition t
are functions of (seed, rank, t), the minibatch of update u of (seed, rank, u). Resume: the checkpoint holds
the replay buffer, the counters, the observation statistics (a 1M-transition Hopper buffer is ~110 MB) and the
environments mid-episode: for each of Gymnasium's MuJoCo environments its integration state (`mj_getState` with
`mjSTATE_INTEGRATION`: time, qpos, qvel, act, warm start, controls, applied forces, ...), the quantities MuJoCo
derived in the last step (every array of its MjData; Ant's and Humanoid's rewards read body positions before
they step), the reset RNG (`np_random`) and the wrappers' state (TimeLimit's step count), with the current
observations and the return and length of the episodes in progress (~20 KB per Hopper environment). A run
resumed from it continues bit for bit as if it had not stopped. Environments whose state cannot be captured
(not one of Gymnasium's MuJoCo environments, such as Pendulum or the Gymnasium-Robotics mazes, or wrapped in a
wrapper that keeps state of its own) keep the older behaviour, with a warning when the checkpoint is written:
the episode in progress is cut there (its last stored transition is marked truncated) and a resumed run starts
a new episode, reset with a seed derived from the transition count. So do the ranks other than 0 of a DDP run
(the checkpoint holds rank 0's environments), a resume with another data.num_envs, and checkpoints written
before environment states were saved.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from lit_offrl.data import minari_io
from lit_offrl.data.buffer import Batch, batch_seed, pack_rows, split_rows
from lit_offrl.data.datamodule import D4RL_REFERENCE_RETURNS, OfflineDataModule, reference_returns
from lit_offrl.errors import UserError

# Offsets that keep the random streams apart (batch i uses batch_seed(seed, rank, i), the updates 1 << 40 + i).
_NOISE_STREAM, _WARMUP_STREAM, _RESET_STREAM = 3 << 40, 5 << 40, 7 << 40
_BATCH_FIELDS = ("obs", "action", "reward", "next_obs", "terminal")


class ReplayBuffer:
    """A ring buffer of transitions preallocated on one device (oldest transitions overwritten when full).

    Besides the `Batch` fields it keeps `truncated` (1 where an episode was cut: time limit, or a run resumed
    without its environments' state), so episodes can be read back in order (`terminal | truncated` ends one)
    while the buffer has not wrapped. As in `Transitions`, the fields are column views of one (capacity, F)
    tensor `rows`: a write is one `index_copy_` and a minibatch one `index_select` of B rows, and writes through
    a field view (`buffer.truncated[i] = 1`) land in `rows`.
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "truncated")

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device | str = "cpu"):
        self.capacity = int(capacity)
        widths = {"obs": obs_dim, "action": action_dim, "next_obs": obs_dim}
        self._widths = [widths.get(name, 1) for name in self.FIELDS]
        self._vectors = [name not in widths for name in self.FIELDS]
        self.rows = torch.zeros((self.capacity, sum(self._widths)), dtype=torch.float32, device=device)
        for name, view in zip(self.FIELDS, split_rows(self.rows, self._widths, self._vectors)):
            setattr(self, name, view)
        self.pos = 0   # next row to write
        self.size = 0  # rows holding data

    def __len__(self) -> int:
        return self.size

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def add(self, **rows: Tensor) -> Tensor:
        """Write n transitions (each field an (n, ...) tensor); returns the rows written (a CPU tensor)."""
        n = rows["reward"].shape[0]
        index = (self.pos + torch.arange(n)) % self.capacity
        packed = pack_rows([rows[name].to(self.device, torch.float32) for name in self.FIELDS])
        self.rows.index_copy_(0, index.to(self.device), packed)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return index

    def batch(self, index: Tensor) -> Batch:
        obs, action, reward, next_obs, terminal, _ = split_rows(
            self.rows.index_select(0, index.to(self.device, non_blocking=True)), self._widths, self._vectors)
        return Batch(obs, action, reward, next_obs, terminal)

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "pos": self.pos, "size": self.size,
                **{name: getattr(self, name)[:self.size].detach().cpu().clone() for name in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) > self.capacity:
            raise UserError(f"the checkpoint's replay buffer holds {state['size']} transitions but "
                            f"data.capacity is {self.capacity}: resume with data.capacity >= {state['size']}.")
        size = int(state["size"])
        for name in self.FIELDS:
            getattr(self, name)[:size].copy_(state[name])
        self.size = size
        self.pos = int(state["pos"]) if int(state["capacity"]) == self.capacity else size % self.capacity


class _Collect:
    """What the training data loader yields: a request, turned into a batch in `on_before_batch_transfer`."""

    __slots__ = ()


class _CollectRequests(IterableDataset):
    def __iter__(self):
        while True:
            yield _Collect()


def _known_reference_scores(env_name: str) -> tuple[float | None, float | None]:
    return D4RL_REFERENCE_RETURNS.get(env_name.split("/")[-1].split("-v")[0].lower(), (None, None))


class OnlineDataModule(OfflineDataModule):
    """Online RL data: environments stepped with the module's policy into a replay buffer on the device.

    It serves what `OfflineDataModule` serves (shapes, action bounds, observation statistics, evaluation env,
    seeds, normalized scores) and inherits its evaluation methods; it does not load a dataset unless
    `offline_dataset_id` is given (so `OfflineDataModule.__init__` is not run). See the module docstring.

    Args:
        env_id: Gymnasium id to train in (e.g. ``Hopper-v5``), or a Minari dataset id, whose evaluation env is
            used. Default: the evaluation env of `offline_dataset_id`.
        num_envs: environments stepped together (one batched policy forward per vector step).
        capacity: replay buffer size in transitions (the offline data is kept apart and never evicted).
        batch_size: transitions per minibatch.
        warmup_steps: transitions collected before the first update (10k for MuJoCo, as SB3 / CORL).
        warmup_actions: ``uniform``: random actions during warmup; ``policy``: the module's policy (fine-tuning).
        env_steps_per_update: vector steps per update; below 1 steps every 1/x updates (e.g. 0.5: every 2nd).
        seed: seeds the weights, the environments, the exploration and the batches (with the DDP rank).
        offline_dataset_id: Minari dataset kept beside the buffer for offline-to-online fine-tuning.
        offline_ratio: fraction of each batch drawn from the offline data; ``null``: uniform over offline and
            online transitions together (AWAC). Needs `offline_dataset_id`.
        normalize_observations: z-score observations with the offline dataset's mean and std (as
            `OfflineDataModule`); without an offline dataset the model's own statistics are used.
        obs_std_eps, min_obs_std: as in `OfflineDataModule`.
        reward_scale, reward_shift: r <- r * reward_scale + reward_shift, for online and offline rewards alike.
        eval_episodes, eval_seed: evaluation episodes per validation and their reset seeds.
        on_device: keep the buffer on the training device and sample there.
    """

    def __init__(self, env_id: str | None = None, num_envs: int = 1, capacity: int = 1_000_000,
                 batch_size: int = 256, warmup_steps: int = 10_000,
                 warmup_actions: Literal["uniform", "policy"] = "uniform", env_steps_per_update: float = 1.0,
                 seed: int = 0, offline_dataset_id: str | None = None, offline_ratio: float | None = None,
                 normalize_observations: bool = True, obs_std_eps: float = 1e-3, min_obs_std: float = 1e-2,
                 reward_scale: float = 1.0, reward_shift: float = 0.0, eval_episodes: int = 10,
                 eval_seed: int = 1_000_000, on_device: bool = True):
        super(OfflineDataModule, self).__init__()  # skips OfflineDataModule.__init__: there may be no dataset
        for name, value, minimum in (("num_envs", num_envs, 1), ("capacity", capacity, 1), ("batch_size", batch_size, 1),
                                     ("warmup_steps", warmup_steps, 0), ("eval_episodes", eval_episodes, 0)):
            if value < minimum:
                raise UserError(f"data.{name} must be >= {minimum}, got {value}.")
        if not env_steps_per_update > 0:
            raise UserError(f"data.env_steps_per_update must be > 0, got {env_steps_per_update}.")
        if warmup_actions not in ("uniform", "policy"):
            raise UserError(f"data.warmup_actions must be 'uniform' or 'policy', got {warmup_actions!r}.")
        if offline_ratio is not None and not 0.0 <= offline_ratio <= 1.0:
            raise UserError(f"data.offline_ratio must be in [0, 1] or null, got {offline_ratio}.")
        if offline_ratio is not None and offline_ratio > 0 and offline_dataset_id is None:
            raise UserError(f"data.offline_ratio {offline_ratio} needs offline data: set data.offline_dataset_id.")
        if env_id is None and offline_dataset_id is None:
            raise UserError("OnlineDataModule needs an environment: set data.env_id (a Gymnasium id such as "
                            "Hopper-v5, or a Minari dataset id) or data.offline_dataset_id (its evaluation env).")
        self.save_hyperparameters()
        self.env_id, self.offline_dataset_id = env_id, offline_dataset_id
        self.batch_size, self.seed, self.num_envs = batch_size, seed, num_envs
        self.sequence_length, self.updates_per_step = 1, 1  # the env is stepped between updates

        # Offline data for fine-tuning: loaded by an OfflineDataModule (same normalization, same checks).
        self.offline = None
        if offline_dataset_id is not None:
            self.offline = _offline_data_module(
                offline_dataset_id, batch_size=batch_size, seed=seed, normalize_observations=normalize_observations,
                obs_std_eps=obs_std_eps, min_obs_std=min_obs_std, reward_scale=reward_scale,
                reward_shift=reward_shift, eval_episodes=0, on_device=on_device)
        self.dataset = None
        if env_id is not None and not _is_gym_id(env_id):
            self.dataset = minari_io.resolve(env_id)
            if minari_io.eval_env_spec(self.dataset) is None:
                raise UserError(f"dataset '{env_id}' records no environment: give data.env_id a Gymnasium id.")
        elif env_id is None:
            self.dataset = self.offline.dataset
        self._make_env = self._env_factory()
        probe = self._make_env()
        try:
            self._observation_space, action_space = probe.observation_space, probe.action_space
        finally:
            probe.close()
        if not isinstance(action_space, gym.spaces.Box) or not (np.isfinite(action_space.low).all()
                                                                and np.isfinite(action_space.high).all()):
            raise UserError(f"environment '{self.dataset_id}' has action space {action_space}; online training needs "
                            f"bounded continuous (Box) actions.")
        self.obs_dim = int(gym.spaces.flatdim(self._observation_space))
        self.action_dim = int(np.prod(action_space.shape))
        self.action_low = torch.as_tensor(action_space.low.reshape(-1), dtype=torch.float32)
        self.action_high = torch.as_tensor(action_space.high.reshape(-1), dtype=torch.float32)
        if self.offline is not None:
            if (self.offline.obs_dim, self.offline.action_dim) != (self.obs_dim, self.action_dim) or not (
                    torch.allclose(self.offline.action_low, self.action_low)
                    and torch.allclose(self.offline.action_high, self.action_high)):
                raise UserError(
                    f"offline dataset '{offline_dataset_id}' (obs_dim {self.offline.obs_dim}, action_dim "
                    f"{self.offline.action_dim}, actions in [{self.offline.action_low.tolist()}, "
                    f"{self.offline.action_high.tolist()}]) does not match environment '{env_id}' (obs_dim "
                    f"{self.obs_dim}, action_dim {self.action_dim}, actions in [{self.action_low.tolist()}, "
                    f"{self.action_high.tolist()}]): leave data.env_id unset to use the dataset's evaluation env.")
        # Scored as the offline data module scores the same data (its metadata, else D4RL's returns for Minari's
        # mujoco/* ids); a bare Gymnasium id by D4RL's returns for that env, where D4RL has them.
        if self.offline is not None:
            self.ref_min_score, self.ref_max_score = self.offline.ref_min_score, self.offline.ref_max_score
        elif self.dataset is not None:
            self.ref_min_score, self.ref_max_score, _ = reference_returns(self.dataset, env_id)
        else:
            self.ref_min_score, self.ref_max_score = _known_reference_scores(env_id)
        self.obs_mean, self.obs_std = torch.zeros(self.obs_dim), torch.ones(self.obs_dim)
        self.transitions = None  # the offline transitions, set in setup()
        self.buffer: ReplayBuffer | None = None
        self.env_steps = 0       # transitions collected (all envs)
        self.episodes = 0        # episodes finished
        self.batches_served = 0  # minibatches handed to the training step (= updates)
        self._envs: list[gym.Env] | None = None
        self._obs: np.ndarray | None = None  # current normalized observations, (num_envs, obs_dim)
        self._episode_return = np.zeros(num_envs)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._last_row = [-1] * num_envs     # buffer row of each env's latest transition
        self._obs_mean_np = self._obs_std_np = None
        self._warned_state_not_saved = False

    # ------------------------------------------------------------------------------------------ environment
    @property
    def dataset_id(self) -> str:
        """The name runs are filed under: the offline dataset when fine-tuning, else the environment."""
        return self.offline_dataset_id or self.env_id

    def _env_factory(self) -> Callable[[], gym.Env]:
        if self.dataset is not None:
            dataset = self.dataset
            return lambda: dataset.recover_environment(eval_env=True)
        env_id = self.env_id
        return lambda: gym.make(env_id)

    def make_eval_env(self) -> gym.Env:
        """A fresh environment, the one trained in (evaluation runs it with the deterministic policy)."""
        return self._make_env()

    @property
    def observation_space(self) -> gym.Space:
        return self._observation_space

    # ---------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate"):
            self.check_eval_env()  # an env that cannot run fails here, before the first update (once)
        if self._obs_mean_np is not None:
            return
        module = self.trainer.lightning_module if self.trainer is not None else None
        if self.offline is not None:
            self.offline.setup(stage)
            self.transitions = self.offline.transitions
            self.obs_mean, self.obs_std = self.offline.obs_mean, self.offline.obs_std
            if module is not None and _loaded_statistics(module) and not (
                    torch.allclose(module.obs_mean.cpu(), self.obs_mean, atol=1e-5)
                    and torch.allclose(module.obs_std.cpu(), self.obs_std, atol=1e-5)):
                raise UserError(
                    f"the model's observation statistics (from its checkpoint) differ from those of "
                    f"'{self.offline_dataset_id}' with data.normalize_observations={self.hparams.normalize_observations}: "
                    f"fine-tune with the dataset and normalization the checkpoint was trained with.")
        elif module is not None:
            # No data to compute statistics from: observations are stored as this model normalizes them
            # (identity for a fresh model, the checkpoint's statistics when fine-tuning).
            self.obs_mean, self.obs_std = module.obs_mean.detach().cpu().clone(), module.obs_std.detach().cpu().clone()
        self._set_statistics(self.obs_mean, self.obs_std)

    def _set_statistics(self, mean: Tensor, std: Tensor) -> None:
        self.obs_mean, self.obs_std = mean.float().cpu(), std.float().cpu()
        self._obs_mean_np, self._obs_std_np = self.obs_mean.numpy(), self.obs_std.numpy()

    def _device(self) -> torch.device:
        if self.hparams.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _ensure_buffer(self) -> ReplayBuffer:
        if self.buffer is None:
            self.buffer = ReplayBuffer(self.hparams.capacity, self.obs_dim, self.action_dim, self._device())
        return self.buffer

    def train_dataloader(self) -> DataLoader:
        self._ensure_buffer()
        if self.transitions is not None and self.hparams.on_device and self.trainer is not None:
            self.transitions = self.transitions.to(self.trainer.strategy.root_device)
        return DataLoader(_CollectRequests(), batch_size=None, num_workers=0)

    def teardown(self, stage: str) -> None:
        if self._envs is not None:
            for env in self._envs:
                env.close()
            self._envs, self._obs = None, None

    # ------------------------------------------------------------------------------------ batches
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, _Collect):
            return batch  # evaluation seeds
        module = self.trainer.lightning_module
        buffer = self._ensure_buffer()
        if self.env_steps < self.hparams.warmup_steps:
            self.collect(module, math.ceil((self.hparams.warmup_steps - self.env_steps) / self.num_envs))
        rate = self.hparams.env_steps_per_update
        self.collect(module, math.floor((self.batches_served + 1) * rate) - math.floor(self.batches_served * rate))
        if len(buffer) == 0:
            self.collect(module, 1)
        batch = self.sample(self.batches_served)
        self.batches_served += 1
        return batch

    def sample(self, index: int) -> Batch:
        """Minibatch `index`: uniform over the replay buffer, mixed with the offline data when there is some."""
        rank, _ = self._rank_and_world()
        generator = torch.Generator().manual_seed(batch_seed(self.seed, rank, index))
        buffer, size = self.buffer, len(self.buffer)
        offline_size = len(self.transitions) if self.transitions is not None else 0
        ratio = self.hparams.offline_ratio
        if offline_size == 0:
            offline_index, online_index = None, torch.randint(size, (self.batch_size,), generator=generator)
        elif ratio is None:  # uniform over the union: as if the offline data sat in the replay buffer
            index = torch.randint(offline_size + size, (self.batch_size,), generator=generator)
            offline_index, online_index = index[index < offline_size], index[index >= offline_size] - offline_size
        else:
            count = round(ratio * self.batch_size)
            offline_index = torch.randint(offline_size, (count,), generator=generator)
            online_index = torch.randint(size, (self.batch_size - count,), generator=generator)
        parts = [buffer.batch(online_index)] if len(online_index) else []
        if offline_index is not None and len(offline_index):
            parts.insert(0, Batch(*self.transitions.batch(offline_index)[:5]))
        if len(parts) == 1:
            return parts[0]
        return Batch(*(torch.cat([getattr(part, name) for part in parts]) for name in _BATCH_FIELDS))

    # --------------------------------------------------------------------------------------- collection
    def _reset(self) -> None:
        """(Re)start every environment with seeds derived from (seed, rank, transitions collected so far)."""
        rank, _ = self._rank_and_world()
        if self._envs is None:
            self._envs = [self._make_env() for _ in range(self.num_envs)]
        observations = []
        for i, env in enumerate(self._envs):
            obs, _ = env.reset(seed=batch_seed(self.seed, rank, _RESET_STREAM + self.env_steps + i) % 2**32)
            observations.append(self._flatten(obs))
        self._obs = np.stack(observations)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0

    def _flatten(self, obs: Any) -> np.ndarray:
        flat = gym.spaces.flatten(self._observation_space, obs).astype(np.float32)
        return (flat - self._obs_mean_np) / self._obs_std_np

    @torch.no_grad()
    def collect(self, module: L.LightningModule | None, vector_steps: int) -> None:
        """Step every environment `vector_steps` times into the buffer (uniform actions during warmup)."""
        if vector_steps <= 0:
            return
        if self._obs_mean_np is None:
            self.setup("fit")
        buffer = self._ensure_buffer()
        rank, _ = self._rank_and_world()
        low, high = self.action_low.numpy(), self.action_high.numpy()
        for _ in range(vector_steps):
            if self._obs is None:
                self._reset()
            step = self.env_steps
            if module is None or (step < self.hparams.warmup_steps and self.hparams.warmup_actions == "uniform"):
                generator = torch.Generator().manual_seed(batch_seed(self.seed, rank, _WARMUP_STREAM + step))
                action = torch.rand((self.num_envs, self.action_dim), generator=generator) * 2.0 - 1.0
            else:
                _seed_device_generator(module.device, batch_seed(self.seed, rank, _NOISE_STREAM + step))
                obs = torch.as_tensor(self._obs, device=module.device)
                action = module.policy_action(obs, deterministic=False).float().clamp(-1.0, 1.0)
            action_np = action.cpu().numpy()
            env_action = low + (action_np + 1.0) * 0.5 * (high - low)
            next_obs = np.empty_like(self._obs)
            reward = np.empty(self.num_envs, dtype=np.float32)
            terminated = np.zeros(self.num_envs, dtype=np.float32)
            truncated = np.zeros(self.num_envs, dtype=np.float32)
            new_obs, finished = self._obs.copy(), []
            for i, env in enumerate(self._envs):
                obs_i, reward_i, term_i, trunc_i, _ = env.step(env_action[i].reshape(env.action_space.shape))
                next_obs[i] = new_obs[i] = self._flatten(obs_i)
                reward[i], terminated[i], truncated[i] = reward_i, bool(term_i), bool(trunc_i)
                self._episode_return[i] += reward_i
                self._episode_length[i] += 1
                if term_i or trunc_i:
                    finished.append((self._episode_return[i], self._episode_length[i]))
                    self._episode_return[i], self._episode_length[i] = 0.0, 0
                    new_obs[i] = self._flatten(env.reset()[0])
            scaled = reward * self.hparams.reward_scale + self.hparams.reward_shift
            rows = buffer.add(obs=torch.from_numpy(self._obs), action=action, reward=torch.from_numpy(scaled),
                              next_obs=torch.from_numpy(next_obs), terminal=torch.from_numpy(terminated),
                              truncated=torch.from_numpy(truncated))
            self._last_row = rows.tolist()
            self._obs = new_obs
            self.env_steps += self.num_envs
            if finished:
                self.episodes += len(finished)
                self._log_episodes(module, finished)

    def _log_episodes(self, module, finished: list[tuple[float, int]]) -> None:
        trainer = self.trainer
        if trainer is None or not trainer.loggers or not trainer.is_global_zero:
            return
        metrics = {"train/episode_return": float(np.mean([r for r, _ in finished])),
                   "train/episode_length": float(np.mean([n for _, n in finished])),
                   "train/env_steps": float(self.env_steps)}
        step = getattr(module, "_updates", trainer.global_step)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # -------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "episodes": self.episodes, "batches_served": self.batches_served,
                "seed": self.seed, "batch_size": self.batch_size, "obs_mean": self.obs_mean.clone(),
                "obs_std": self.obs_std.clone(),
                # rows of the episodes in progress: cut there if the run is resumed without `env_state`
                "open_rows": [row for row, length in zip(self._last_row, self._episode_length) if length > 0],
                "env_state": self._environment_state(),
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        changed = [f"{key} {state_dict[key]} -> {getattr(self, key)}" for key in ("seed", "batch_size")
                   if state_dict[key] != getattr(self, key)]
        if changed:
            rank_zero_warn(f"resuming with a different {', '.join(changed)}: training continues, but not as the "
                           f"interrupted run would have.")
        self.env_steps, self.episodes = int(state_dict["env_steps"]), int(state_dict["episodes"])
        self.batches_served = int(state_dict["batches_served"])
        self._set_statistics(state_dict["obs_mean"], state_dict["obs_std"])
        env_state = state_dict.get("env_state")
        if "env_state" not in state_dict and state_dict["open_rows"]:
            rank_zero_warn("the checkpoint predates saved environment states: the episodes in progress are cut "
                           "(marked truncated) and new ones start, so the run does not continue as it would have.")
        restored = env_state is not None and self._restore_environments(env_state)
        if state_dict["buffer"] is not None:
            buffer = self._ensure_buffer()
            buffer.load_state_dict(state_dict["buffer"])
            open_rows = [row for row in state_dict["open_rows"] if row < len(buffer)]
            if open_rows and not restored:
                buffer.truncated[torch.tensor(open_rows, device=buffer.device)] = 1.0
        if not restored:
            self._obs = None  # the environments restart at the next collection

    def _environment_state(self) -> dict[str, Any] | None:
        """The environments mid-episode, or None: none started yet (a resumed run resets them exactly as this one
        will), or their state cannot be captured (a resumed run cuts the episodes in progress; warned once)."""
        if self._obs is None:
            return None
        try:
            envs = [capture_env_state(env) for env in self._envs]
        except EnvStateError as error:
            if not self._warned_state_not_saved:
                rank_zero_warn(f"the checkpoint holds no environment state ({error}): a run resumed from it cuts "
                               f"the episodes in progress (marked truncated) and starts new ones.")
                self._warned_state_not_saved = True
            return None
        rank, _ = self._rank_and_world()
        return {"rank": rank, "envs": envs, "obs": torch.from_numpy(self._obs.copy()),
                "episode_return": torch.from_numpy(self._episode_return.copy()),
                "episode_length": torch.from_numpy(self._episode_length.copy()), "last_row": list(self._last_row)}

    def _restore_environments(self, env_state: dict[str, Any]) -> bool:
        """Put the checkpoint's environments back mid-episode; False (with a warning) where they cannot be."""
        rank, _ = self._rank_and_world()
        if env_state["rank"] != rank:
            return False  # another rank's environments (the checkpoint holds rank 0's): start new episodes
        reason = None
        if len(env_state["envs"]) != self.num_envs or tuple(env_state["obs"].shape) != (self.num_envs, self.obs_dim):
            reason = (f"it holds {len(env_state['envs'])} environments with {env_state['obs'].shape[-1]}-dim "
                      f"observations, data.num_envs is {self.num_envs} with {self.obs_dim}")
        else:
            if self._envs is None:
                self._envs = [self._make_env() for _ in range(self.num_envs)]
            try:
                for env, state in zip(self._envs, env_state["envs"]):
                    restore_env_state(env, state)
            except EnvStateError as error:
                reason = str(error)
        if reason is not None:
            rank_zero_warn(f"the checkpoint's environment state cannot be restored ({reason}): the episodes in "
                           f"progress are cut (marked truncated) and new ones start.")
            return False
        self._obs = env_state["obs"].numpy().astype(np.float32, copy=True)
        self._episode_return = env_state["episode_return"].numpy().astype(np.float64, copy=True)
        self._episode_length = env_state["episode_length"].numpy().astype(np.int64, copy=True)
        self._last_row = [int(row) for row in env_state["last_row"]]
        return True


# ------------------------------------------------------------------------------------------ environment state
class EnvStateError(Exception):
    """An environment whose state `capture_env_state` cannot save, or a saved state that does not fit it."""


# Attributes every Gymnasium wrapper has (the wrapped env, cached spaces, metadata and spec, constructor args).
_WRAPPER_ATTRIBUTES = frozenset({"env", "_action_space", "_observation_space", "_metadata", "_cached_spec",
                                 "_saved_kwargs"})
# Wrapper type name -> (attributes saved, attributes that never change a step: settings, data-reuse checks).
_WRAPPER_STATE = {
    "TimeLimit": (("_elapsed_steps",), ("_max_episode_steps",)),
    "OrderEnforcing": (("_has_reset",), ("_disable_render_order_enforcing",)),
    "PassiveEnvChecker": (("checked_reset", "checked_step", "checked_render", "close_called", "checked_data_reuse"),
                          ("_previous_data",)),
}


def _wrappers(env: gym.Env) -> list[gym.Wrapper]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def _wrapper_state(wrapper: gym.Wrapper) -> dict[str, Any]:
    name = type(wrapper).__name__
    known = type(wrapper).__module__.startswith("gymnasium.")  # not a user's wrapper of the same name
    saved, constant = _WRAPPER_STATE.get(name, ((), ())) if known else ((), ())
    unknown = set(vars(wrapper)) - _WRAPPER_ATTRIBUTES - set(saved) - set(constant)
    if unknown:
        raise EnvStateError(f"wrapper {name} keeps state lit_offrl cannot save: {', '.join(sorted(unknown))}")
    return {attribute: getattr(wrapper, attribute) for attribute in saved}


def _gymnasium_mujoco_env(env: gym.Env):
    """`env.unwrapped` if it is one of Gymnasium's own MuJoCo environments (all their state is in MjData and
    np_random), else EnvStateError."""
    unwrapped = env.unwrapped
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except ImportError:  # pragma: no cover - MuJoCo not installed
        MujocoEnv = ()
    if not (isinstance(unwrapped, MujocoEnv) and type(unwrapped).__module__.startswith("gymnasium.envs.mujoco.")):
        raise EnvStateError(f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__} is not one of Gymnasium's "
                            f"MuJoCo environments")
    return unwrapped


def _pack_mjdata(data) -> dict[str, Any]:
    """Every array of an MjData as one byte tensor and its layout (one tensor, not ~180: a few KB in the file)."""
    arrays = [(name, getattr(data, name)) for name in dir(data) if not name.startswith("_")]
    arrays = [(name, np.ascontiguousarray(value)) for name, value in arrays if isinstance(value, np.ndarray)]
    layout = [(name, value.dtype.str, list(value.shape)) for name, value in arrays]
    raw = np.concatenate([value.reshape(-1).view(np.uint8) for _, value in arrays])
    return {"layout": layout, "bytes": torch.from_numpy(raw)}


def _unpack_mjdata(packed: dict[str, Any], data) -> None:
    raw, offset = packed["bytes"].numpy(), 0
    for name, dtype, shape in packed["layout"]:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        value = raw[offset:offset + size].view(dtype).reshape(shape)
        offset += size
        target = getattr(data, name, None)
        if isinstance(target, np.ndarray) and target.shape == value.shape:
            target[...] = value  # arrays sized by this step's contacts may not fit: mj_step recomputes them


def capture_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything the future steps and resets of `env` depend on, as tensors and plain values (a checkpoint loads
    it with `weights_only=True`); EnvStateError for environments it cannot capture (see the module docstring)."""
    unwrapped = _gymnasium_mujoco_env(env)
    chain = _wrappers(env)
    wrapper_state = [_wrapper_state(wrapper) for wrapper in chain]
    import mujoco

    model, data = unwrapped.model, unwrapped.data
    integration = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(model, data, integration, mujoco.mjtState.mjSTATE_INTEGRATION)
    generator = unwrapped._np_random
    return {"env": f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__}",
            "wrappers": [type(wrapper).__name__ for wrapper in chain], "wrapper_state": wrapper_state,
            "mujoco_integration": torch.from_numpy(integration),
            # what the last step derived from the state (body positions, forces...): mj_step recomputes all of
            # it, but some envs read it before they step (Ant's and Humanoid's x position before the step)
            "mujoco_data": _pack_mjdata(data),
            "np_random": generator.bit_generator.state if generator is not None else None,
            "np_random_seed": unwrapped._np_random_seed}


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put `state` (from `capture_env_state` of the same kind of environment) into `env`; EnvStateError if it
    does not fit (another environment, other wrappers, another MuJoCo model)."""
    unwrapped = _gymnasium_mujoco_env(env)
    chain = _wrappers(env)
    import mujoco

    kind = f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__}"
    if state["env"] != kind or state["wrappers"] != [type(wrapper).__name__ for wrapper in chain]:
        raise EnvStateError(f"it was saved from {state['env']} wrapped in {state['wrappers']}, not from {kind} "
                            f"wrapped in {[type(wrapper).__name__ for wrapper in chain]}")
    model, data = unwrapped.model, unwrapped.data
    signature = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = state["mujoco_integration"].numpy()
    if integration.shape != (mujoco.mj_stateSize(model, signature),):
        raise EnvStateError(f"its MuJoCo state has {integration.shape[0]} numbers, {kind}'s model "
                            f"{mujoco.mj_stateSize(model, signature)}")
    mujoco.mj_setState(model, data, integration, signature)
    mujoco.mj_forward(model, data)
    _unpack_mjdata(state["mujoco_data"], data)
    if state["np_random"] is not None:
        bit_generator = getattr(np.random, state["np_random"]["bit_generator"])()
        bit_generator.state = state["np_random"]
        unwrapped.np_random = np.random.Generator(bit_generator)
        unwrapped._np_random_seed = state["np_random_seed"]
    for wrapper, attributes in zip(chain, state["wrapper_state"]):
        for attribute, value in attributes.items():
            setattr(wrapper, attribute, value)


def _offline_data_module(dataset_id: str, **kwargs: Any) -> OfflineDataModule:
    # Built outside any __init__ frame and in an empty context: save_hyperparameters() would otherwise record
    # the online module's arguments as the offline one's (it reads the caller's __init__ frame, and LightningCLI
    # hands the class it instantiates its hyperparameters through a context variable).
    return contextvars.Context().run(OfflineDataModule, dataset_id, **kwargs)


def _is_gym_id(env_id: str) -> bool:
    """Whether `env_id` names a registered Gymnasium environment (Gymnasium-Robotics ids included)."""
    try:
        gym.spec(env_id)
        return True
    except gym.error.Error:
        return False


def _loaded_statistics(module) -> bool:
    """Whether the model's observation statistics came from a checkpoint (`--finetune_from`, or not identity)."""
    mean, std = getattr(module, "obs_mean", None), getattr(module, "obs_std", None)
    if mean is None:
        return False
    return getattr(module, "finetune_source", None) is not None or bool((mean != 0).any() or (std != 1).any())


def _seed_device_generator(device: torch.device, seed: int) -> None:
    """Seed the default generator of `device` only (as OfflineRLModule._seed_update does)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
