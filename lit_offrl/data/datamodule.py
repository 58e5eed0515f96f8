"""OfflineDataModule: a Minari dataset as an infinite seeded stream of minibatches (single transitions or H-step
chunks), plus its evaluation env."""

from __future__ import annotations

import importlib.util
import traceback
from typing import Any

import gymnasium as gym
import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
import numpy as np
import torch
from torch.utils.data import DataLoader

from lit_offrl.data import minari_io
from lit_offrl.data.buffer import (Batch, RandomBatchStream, RandomSequenceStream, SamplerState, SequenceBatch,
                                   Transitions)
from lit_offrl.errors import DatasetError, UserError, one_line

DEFAULT_DATASET = "lit-offrl/pointmaze/umaze-v0"
# Top-level module -> the pip package that provides it, where the names differ.
_PIP_PACKAGES = {"gymnasium_robotics": "gymnasium-robotics", "ale_py": "ale-py", "Box2D": '"gymnasium[box2d]"',
                 "mujoco_py": "mujoco-py"}
# D4RL's random / expert returns (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE of the v2 locomotion datasets),
# keyed by the env name of Minari's `mujoco/<env>/...` ids, which store none (Minari issue #323), and used by the
# locomotion recipes and the online data module for the same envs.
D4RL_REFERENCE_RETURNS = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0),
                          "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}


def reference_returns(dataset, dataset_id: str, ref_min_score: float | None = None,
                      ref_max_score: float | None = None) -> tuple[float | None, float | None, str]:
    """(ref_min, ref_max, where they came from) for a dataset: the given values, else its metadata's, else D4RL's
    v2 returns for a Minari `mujoco/<env>/...` id (hopper, halfcheetah, walker2d, ant), else (None, None, ...)."""
    if ref_min_score is not None and ref_max_score is not None:
        return float(ref_min_score), float(ref_max_score), "given (--data.ref_min_score / --data.ref_max_score)"
    low = minari_io.reference_score(dataset, "ref_min_score")
    high = minari_io.reference_score(dataset, "ref_max_score")
    if low is not None and high is not None:
        return low, high, "dataset metadata"
    parts = dataset_id.split("/")
    if len(parts) >= 3 and parts[0] == "mujoco" and parts[1] in D4RL_REFERENCE_RETURNS:
        low, high = D4RL_REFERENCE_RETURNS[parts[1]]
        return low, high, "d4rl"
    return None, None, "none"


class OfflineDataModule(L.LightningDataModule):
    """Loads a Minari dataset once and serves uniformly sampled minibatches forever.

    Args:
        dataset_id: Minari id (``namespace/name-vN``): local, buildable by a lit_offrl recipe, or downloadable.
        batch_size: transitions per minibatch.
        seed: seeds the weights, the batch stream (with the DDP rank) and every random draw of the updates.
        normalize_observations: z-score observations with the dataset's mean and std (TD3+BC, IQL); the
            statistics go to the model, are saved in its checkpoint and are applied again when acting.
        obs_std_eps: added to the std; features whose std is below `min_obs_std` are left unscaled (only
            centered), so a near-constant feature (e.g. a relabeled goal) cannot blow up at evaluation.
        reward_scale, reward_shift: r <- r * reward_scale + reward_shift (e.g. AntMaze's IQL setting: 1, -1).
        normalize_reward: D4RL/CORL return-range normalization, r <- r * 1000 / (max return - min return),
            applied before scale and shift.
        terminal_reward: transitions whose dataset reward (before any transform) is at least this value are
            treated as terminal (no bootstrap past them), as D4RL's AntMaze data marks every goal-reaching step
            (terminals = rewards == 1). For continuing goal tasks stored without terminations (Minari's and
            lit_offrl's AntMaze, PointMaze): without it the goal region's value bootstraps from itself, and an
            optimistic target (IQL's upper expectile) drifts above the largest possible return there.
            Default None: the dataset's own terminations.
        dataset_fraction: keep a seeded random subset of this fraction of the episodes.
        top_fraction: keep the episodes with the highest returns, this fraction of them (0.1 = BC-10%).
        eval_episodes: episodes rolled out per validation, split across DDP ranks.
        eval_seed: the evaluation episodes reset with seeds eval_seed, eval_seed + 1, ... (independent of
            `seed`, so runs with different seeds are scored on the same episodes).
        ref_min_score: the return that scores 0 in `val/normalized_score` (give it with `ref_max_score`). Default:
            the dataset's own, else D4RL's v2 random return for Minari's `mujoco/<env>/...` datasets (hopper,
            halfcheetah, walker2d, ant), else none and no normalized score.
        ref_max_score: the return that scores 100 (give it with `ref_min_score`); default as `ref_min_score`, with
            D4RL's expert return.
        on_device: keep the transitions on the training device (GPU) and sample there, instead of gathering
            each batch on the CPU and copying it.
        sequence_length: 1 serves `Batch`es of single transitions; H > 1 serves `SequenceBatch`es of `batch_size`
            chunks of H consecutive transitions that never cross an episode end (for algorithms over action
            sequences, e.g. LatentEM with `model.horizon` H). At most the longest episode's length.
        updates_per_step: K minibatches handed to each training step, drawn with one gather of K x batch_size
            rows; the module runs one update per minibatch, so Lightning's per-step cost is paid once per K
            updates. The minibatches and results are those of K = 1 (minibatch i is a function of the seed and i
            alone); `--trainer.max_steps`, `val_check_interval` and checkpoint intervals still count updates and
            must be multiples of K.
    """

    def __init__(self, dataset_id: str = DEFAULT_DATASET, batch_size: int = 256, seed: int = 0,
                 normalize_observations: bool = True, obs_std_eps: float = 1e-3, min_obs_std: float = 1e-2,
                 reward_scale: float = 1.0, reward_shift: float = 0.0, normalize_reward: bool = False,
                 terminal_reward: float | None = None, dataset_fraction: float = 1.0, top_fraction: float = 1.0,
                 eval_episodes: int = 10,
                 eval_seed: int = 1_000_000, on_device: bool = True, sequence_length: int = 1,
                 ref_min_score: float | None = None, ref_max_score: float | None = None, updates_per_step: int = 1):
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size must be a positive integer, got {batch_size}.")
        if updates_per_step < 1:
            raise UserError(f"data.updates_per_step must be a positive integer (minibatches, and updates, per "
                            f"training step), got {updates_per_step}.")
        if sequence_length < 1:
            raise UserError(f"data.sequence_length must be a positive integer (1: single transitions, H > 1: "
                            f"chunks of H consecutive steps), got {sequence_length}.")
        for name, value in (("dataset_fraction", dataset_fraction), ("top_fraction", top_fraction)):
            if not 0.0 < value <= 1.0:
                raise UserError(f"data.{name} must be in (0, 1], got {value}.")
        if eval_episodes < 0:
            raise UserError(f"data.eval_episodes must be >= 0, got {eval_episodes}.")
        if (ref_min_score is None) != (ref_max_score is None):
            given, missing = ("ref_min_score", "ref_max_score") if ref_max_score is None else ("ref_max_score",
                                                                                              "ref_min_score")
            raise UserError(f"data.{given} was given without data.{missing}: give both (the returns that score 0 and "
                            f"100), e.g. --data.ref_min_score -20.3 --data.ref_max_score 3234.3, or neither.")
        if ref_min_score is not None and not float(ref_max_score) > float(ref_min_score):
            raise UserError(f"data.ref_max_score ({ref_max_score}) must be greater than data.ref_min_score "
                            f"({ref_min_score}): they are the returns that score 100 and 0.")
        self.save_hyperparameters()
        self.dataset_id, self.batch_size, self.seed = dataset_id, batch_size, seed
        self.sequence_length, self.updates_per_step = sequence_length, updates_per_step
        self.dataset = minari_io.resolve(dataset_id)
        action_space = minari_io.box_action_space(self.dataset)  # fail before any data is loaded
        self.obs_dim = minari_io.observation_dim(self.dataset.observation_space)
        self.action_dim = int(np.prod(action_space.shape))
        low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
        # Unbounded action spaces take their bounds from the data's min / max in setup() (as d3rlpy's
        # MinMaxActionScaler), so normalizing and act() round-trip.
        self._bounds_from_data = not (np.isfinite(low).all() and np.isfinite(high).all())
        self.action_low = torch.as_tensor(low, dtype=torch.float32)
        self.action_high = torch.as_tensor(high, dtype=torch.float32)
        if eval_episodes > 0 and minari_io.eval_env_spec(self.dataset) is None:
            raise DatasetError(f"dataset '{dataset_id}' records no environment to evaluate in (no eval_env and no "
                               f"env spec): train without evaluation with --data.eval_episodes 0.")
        self.ref_min_score, self.ref_max_score, self.reference_source = reference_returns(
            self.dataset, dataset_id, ref_min_score, ref_max_score)
        self.data: minari_io.OfflineData | None = None
        self.transitions: Transitions | None = None
        self.reward_normalizer: float | None = None  # normalize_reward: 1000 / (max - min return), set in setup
        self.sampler_state = SamplerState()
        self._eval_env_checked = False
        self.eval_info_keys: frozenset[str] | None = None  # keys of the eval env's infos, see check_eval_env
        self.eval_task_count: int | None = None  # sub-tasks of an evaluation episode (FrankaKitchen), ditto
        self._reference_noted = False

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate"):
            self.check_eval_env()  # seconds, before the data is loaded and long before the first evaluation
            self.note_reference_scores()
        if self.transitions is not None:
            return
        data = minari_io.load(self.dataset)
        data = self._select_episodes(data)
        longest = int((data.episode_ends - data.episode_starts).max())
        if self.sequence_length > longest:
            raise UserError(f"data.sequence_length {self.sequence_length} is longer than the longest episode of "
                            f"'{self.dataset_id}' ({longest} steps): a chunk never crosses an episode end, so none "
                            f"could be drawn. Use a sequence_length of at most {longest}.")
        self.data = data
        observations = torch.from_numpy(data.observations)
        if self.hparams.normalize_observations:
            std = observations.std(0, unbiased=False)
            self.obs_mean = observations.mean(0)
            self.obs_std = torch.where(std < self.hparams.min_obs_std, torch.ones_like(std),
                                       std + self.hparams.obs_std_eps)
        else:
            self.obs_mean, self.obs_std = torch.zeros(data.obs_dim), torch.ones(data.obs_dim)
        self.reward_normalizer = None
        if self.hparams.normalize_reward:
            returns = data.episode_returns
            spread = float(returns.max() - returns.min())
            if spread <= 0:
                raise DatasetError(f"data.normalize_reward needs episodes with different returns; every episode "
                                   f"of '{self.dataset_id}' returns {returns.max():.3f}. Turn the option off.")
            self.reward_normalizer = 1000.0 / spread
        raw_rewards = torch.from_numpy(data.rewards)
        rewards = self.transform_rewards(raw_rewards)
        terminals = torch.from_numpy(data.terminals)
        if self.hparams.terminal_reward is not None:
            terminals = torch.where(raw_rewards >= self.hparams.terminal_reward,
                                    torch.ones_like(terminals), terminals)
        actions = torch.from_numpy(data.actions)
        if self._bounds_from_data:
            self.action_low, self.action_high = actions.min(0).values, actions.max(0).values
            flat = self.action_high <= self.action_low
            self.action_low, self.action_high = self.action_low - flat.float(), self.action_high + flat.float()
        # A dimension whose bounds are equal (a Box with low == high there) holds one value: it normalizes to 0,
        # and act() maps any action back to that value (0/0 would make every action NaN).
        span = self.action_high - self.action_low
        actions = torch.where(span > 0, 2.0 * (actions - self.action_low) / torch.where(span > 0, span, 1.0) - 1.0,
                              0.0).clamp(-1.0, 1.0)
        self.transitions = Transitions(
            obs=self.normalize(observations), action=actions, reward=rewards,
            next_obs=self.normalize(torch.from_numpy(data.next_observations)),
            terminal=terminals,
            episode_starts=torch.from_numpy(data.episode_starts), episode_ends=torch.from_numpy(data.episode_ends))

    def transform_rewards(self, rewards: torch.Tensor) -> torch.Tensor:
        """Raw rewards as training sees them: normalize_reward's 1000 / (max - min return), then scale and shift."""
        if self.reward_normalizer is not None:
            rewards = rewards * self.reward_normalizer
        return rewards * self.hparams.reward_scale + self.hparams.reward_shift

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def _select_episodes(self, data: minari_io.OfflineData) -> minari_io.OfflineData:
        keep = np.arange(len(data.episode_starts))
        if self.hparams.dataset_fraction < 1.0:
            rng = np.random.default_rng(self.seed)
            count = max(1, int(round(len(keep) * self.hparams.dataset_fraction)))
            keep = np.sort(rng.choice(keep, size=count, replace=False))
        if self.hparams.top_fraction < 1.0:
            returns = data.episode_returns[keep]
            count = max(1, int(round(len(keep) * self.hparams.top_fraction)))
            keep = np.sort(keep[np.argsort(-returns, kind="stable")[:count]])
        if len(keep) == len(data.episode_starts):
            return data
        lengths = data.episode_ends[keep] - data.episode_starts[keep]
        index = np.concatenate([np.arange(s, e) for s, e in zip(data.episode_starts[keep], data.episode_ends[keep])])
        ends = np.cumsum(lengths)
        fields = {name: getattr(data, name)[index] for name in
                  ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
        return minari_io.OfflineData(**fields, episode_starts=ends - lengths, episode_ends=ends,
                                     observation_space=data.observation_space, action_space=data.action_space,
                                     dataset_id=data.dataset_id, eval_env_spec=data.eval_env_spec,
                                     ref_min_score=data.ref_min_score, ref_max_score=data.ref_max_score)

    # ------------------------------------------------------------------------------------------ batches
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        assert self.transitions is not None, "setup() must run before train_dataloader()"
        rank, _ = self._rank_and_world()
        if self.hparams.on_device and self.trainer is not None:
            self.transitions = self.transitions.to(self.trainer.strategy.root_device)
        if self.sequence_length > 1:
            stream = RandomSequenceStream(self.transitions, self.batch_size, self.sequence_length, self.seed, rank,
                                          self.sampler_state, group=self.updates_per_step)
        else:
            stream = RandomBatchStream(self.transitions, self.batch_size, self.seed, rank, self.sampler_state,
                                       group=self.updates_per_step)
        return DataLoader(stream, batch_size=None, num_workers=0)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Called only for the batch the training step is about to use (after any prefetching), so this counts
        # consumed batches: the number a resumed run must skip.
        if self.trainer is not None and self.trainer.training:
            self.sampler_state.consumed += len(batch) if isinstance(batch, list) else 1
            if isinstance(batch, list) and len(batch) > 1:
                # K updates in this step: Lightning's logger step (batches that stepped, +1 after the step) counts
                # updates, moved before the step so its own per-step logging (LearningRateMonitor) sees update counts.
                self.trainer.fit_loop.epoch_loop._batches_that_stepped += len(batch) - 1
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Training batches sampled on the device already need no traversal (Lightning's walks every field).
        first = batch[0] if isinstance(batch, list) and batch else batch
        if isinstance(first, (Batch, SequenceBatch)) and first.obs.device == device:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def state_dict(self) -> dict[str, Any]:
        return {"consumed_batches": self.sampler_state.consumed, "seed": self.seed, "batch_size": self.batch_size,
                "sequence_length": self.sequence_length}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sampler_state.consumed = int(state_dict["consumed_batches"])
        changed = [f"{key} {state_dict[key]} -> {getattr(self, key)}"
                   for key in ("seed", "batch_size", "sequence_length")
                   if key in state_dict and state_dict[key] != getattr(self, key)]
        if changed:
            rank_zero_warn(f"resuming with a different {', '.join(changed)}: training continues, but not as the "
                           f"interrupted run would have.")

    # --------------------------------------------------------------------------------------- evaluation
    def episode_seeds(self) -> list[int]:
        """This rank's share of the evaluation episode seeds (rank r takes episodes r, r + world, ...)."""
        rank, world = self._rank_and_world()
        return [self.hparams.eval_seed + i for i in range(rank, self.hparams.eval_episodes, world)]

    def val_dataloader(self) -> DataLoader:
        items = [torch.tensor(self.episode_seeds(), dtype=torch.long)] if self.hparams.eval_episodes > 0 else []
        return DataLoader(items, batch_size=None)

    def make_eval_env(self) -> gym.Env:
        """A fresh evaluation environment (`recover_environment(eval_env=True)`)."""
        return self.dataset.recover_environment(eval_env=True)

    def check_eval_env(self) -> None:
        """Make the evaluation env once, reset it with the first evaluation seed and close it, so that an env that
        cannot run (its package not installed, an incompatible simulator version) fails before the first update
        with one `DatasetError` line, not at the first evaluation thousands of updates later. It also takes one
        random step and records the keys of the reset and step infos in `eval_info_keys` (which domain measures,
        e.g. `success`, evaluation logs). Does nothing when `eval_episodes` is 0 or the check passed before."""
        if self.hparams.eval_episodes <= 0 or getattr(self, "_eval_env_checked", False):
            return
        env = None
        try:
            try:
                env = self.make_eval_env()
                _, info = env.reset(seed=int(self.hparams.eval_seed))
            except Exception as exc:
                raise DatasetError(self._eval_env_failure(exc, "made" if env is None else "reset")) from None
            keys = set(info)
            # FrankaKitchen lists the episode's sub-tasks at reset: D4RL's kitchen score counts them (see
            # normalized_score).
            tasks = info.get("tasks_to_complete") if isinstance(info, dict) else None
            self.eval_task_count = len(tasks) if isinstance(tasks, (list, tuple, set)) and tasks else None
            try:  # one step more: some envs report `success` only in step infos
                env.action_space.seed(int(self.hparams.eval_seed))
                keys |= set(env.step(env.action_space.sample())[4])
            except Exception:  # evaluation itself will say what is wrong with stepping
                pass
        finally:
            if env is not None:
                try:
                    env.close()
                except Exception:  # a failed close says nothing about whether evaluation can run
                    pass
        # Every rank probes the same env with the same seed, so all log the same success metrics under DDP.
        self.eval_info_keys = frozenset(keys)
        self._eval_env_checked = True

    def note_reference_scores(self) -> None:
        """Say once (rank zero) where `val/normalized_score`'s reference returns come from when that is not the
        dataset itself, or why there is none and how to get one."""
        if getattr(self, "_reference_noted", False) or self.hparams.get("eval_episodes", 0) <= 0:
            return
        self._reference_noted = True
        source = getattr(self, "reference_source", None)
        dataset_id = getattr(self, "dataset_id", "")
        if source == "d4rl":
            rank_zero_info(
                f"lit_offrl: '{dataset_id}' stores no reference scores (Minari issue #323); val/normalized_score uses "
                f"D4RL's v2 random / expert returns for the same robot ({self.ref_min_score:g} / "
                f"{self.ref_max_score:g}, d4rl/infos.py). Note: Minari's mujoco datasets use Gymnasium's v5 envs, "
                f"D4RL's returns come from the mujoco-py v3 envs (same task, not identical simulation), so scores "
                f"compare closely but not exactly with D4RL papers; --data.ref_min_score / --data.ref_max_score "
                f"set others.")
        elif self.scores_by_tasks:
            rank_zero_info(
                f"lit_offrl: '{dataset_id}' has no reference returns; val/normalized_score is D4RL's kitchen score, "
                f"100 x the sub-tasks completed in an episode / {self.eval_task_count} (d4rl ref_min 0, ref_max 4 "
                f"over one reward per completed task; Minari's FrankaKitchen-v1 rewards every step a task stays done, "
                f"so its return is not that count). --data.ref_min_score / --data.ref_max_score score returns instead.")
        elif self.ref_min_score is None or self.ref_max_score is None:
            rank_zero_info(
                f"lit_offrl: no val/normalized_score is logged: '{dataset_id}' has no reference returns "
                f"(ref_min_score / ref_max_score in its metadata). Give them with --data.ref_min_score X "
                f"--data.ref_max_score Y (e.g. a random and an expert policy's mean return) to get one.")

    def _eval_env_failure(self, exc: Exception, step: str) -> str:
        """One line: which env failed, how, and what to do."""
        # OnlineDataModule has no dataset_id: its env_id is a Gymnasium id or a Minari id (then `dataset`), or it
        # evaluates in the env of its `offline` data module's dataset.
        dataset, source = getattr(self, "dataset", None), getattr(self, "dataset_id", None)
        offline = getattr(self, "offline", None)
        if dataset is None and offline is not None and not self.hparams.get("env_id"):
            dataset, source = offline.dataset, offline.dataset_id
        spec = minari_io.eval_env_spec(dataset) if dataset is not None else None
        env_id = getattr(spec, "id", None) or self.hparams.get("env_id")
        what = f"the evaluation env '{env_id}'" + (f" of dataset '{source}'" if dataset is not None and source else "")
        skip = "or train without evaluation with --data.eval_episodes 0"
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            top = exc.name.split(".")[0]
            if top != exc.name and importlib.util.find_spec(top) is not None:
                return (f"{what} cannot be {step}: the installed '{top}' has no module '{exc.name}'; install the "
                        f"version of {top} the dataset was made with, {skip}.")
            package = _PIP_PACKAGES.get(top, top.replace("_", "-"))
            return (f"{what} cannot be {step}: it needs the Python module '{exc.name}', which is not installed. "
                    f"Install it (`pip install {package}`), {skip}.")
        message = one_line(exc, 300)
        if message:
            cause = f"{type(exc).__name__}: {message}"
        else:  # a bare assert: where it failed is all there is to go on
            cause = f"{type(exc).__name__} (no message)"
            frames = traceback.extract_tb(exc.__traceback__)
            if frames:
                cause += f" at {frames[-1].filename}:{frames[-1].lineno}"
                cause += f" (`{frames[-1].line}`)" if frames[-1].line else ""
        requirements = (dataset.storage.metadata.get("requirements") or []) if dataset is not None else []
        versions = f" (the dataset asks for {', '.join(map(str, requirements))})" if requirements else ""
        return (f"{what} cannot be {step}: {cause}. Check that the packages it needs are installed in versions "
                f"that work together{versions}, {skip}.")

    @property
    def observation_space(self) -> gym.Space:
        return self.dataset.observation_space

    @property
    def scores_by_tasks(self) -> bool:
        """No reference returns, and an evaluation env with a list of sub-tasks (FrankaKitchen): scored by tasks."""
        return ((self.ref_min_score is None or self.ref_max_score is None) and bool(getattr(self, "eval_task_count", None))
                and "episode_task_completions" in (getattr(self, "eval_info_keys", None) or ()))

    @property
    def has_normalized_score(self) -> bool:
        """Whether evaluation logs `val/normalized_score` (reference returns, or sub-tasks to count)."""
        refs = self.ref_min_score is not None and self.ref_max_score is not None and self.ref_max_score != \
            self.ref_min_score
        return refs or self.scores_by_tasks

    def normalized_score(self, returns: torch.Tensor, tasks_completed: torch.Tensor | None = None
                         ) -> torch.Tensor | None:
        """D4RL normalized score x100 from the dataset's reference returns; without them, for an env with sub-tasks
        (FrankaKitchen), D4RL's kitchen score 100 x tasks completed / tasks (`tasks_completed` per episode, as
        `val/tasks_completed`); else None."""
        if self.ref_min_score is not None and self.ref_max_score is not None and \
                self.ref_max_score != self.ref_min_score:
            return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)
        if self.scores_by_tasks and tasks_completed is not None:
            return 100.0 * tasks_completed.to(returns) / self.eval_task_count
        return None
