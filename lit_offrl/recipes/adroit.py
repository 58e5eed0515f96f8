"""Adroit hand data-generation recipe (D4RL ``{pen,door,hammer,relocate}-{expert,cloned}``) on Gymnasium-Robotics'
``AdroitHand*-v1`` environments, with policies trained online here instead of DAPG and human demonstrations.

What the hub holds, and what this makes
---------------------------------------
Minari's ``D4RL/{pen,door,hammer,relocate}/{human,cloned,expert}-v2`` are D4RL's ``hand_dapg_v1`` files replayed in
``AdroitHand<Task>-v1`` (minari-dataset-generation-scripts ``scripts/adroit/recreate_adroit_{pen,door}.py``,
``scripts/D4RL/adroit/recreate_adroit_{hammer,relocate}.py``: each D4RL episode's first state set with
``reset(options={"initial_state_dict": ...})``, its actions stepped, infos recorded with ``success``). D4RL made them
as (the hub's dataset pages): ``human``, 25 motion-capture demonstrations per task; ``expert``, 5000 episodes of a
DAPG policy fine-tuned on the dense reward (door: 1M steps); ``cloned``, "an imitation policy trained on the
demonstrations from expert and human, then running the policy, and mixing data at a 50-50 ratio with the
demonstrations" (door: 1M steps in 4358 episodes; pen: 500k). The hub stores no eval env (evaluation uses the data
env) and D4RL's reference returns (``d4rl/infos.py`` REF_MIN_SCORE / REF_MAX_SCORE: a random policy's and the DAPG
expert's returns).

This recipe builds ordinary local Minari datasets ``lit-offrl/{pen,door,hammer,relocate}/{expert,cloned}-v0``:

* ``expert``: the best snapshot of one SAC run trained online on the task's dense reward (`train_policies`),
  rolled out with stochastic actions (as SAC explores): ``steps`` transitions, 5000 episodes by default, as D4RL's.
* ``cloned``: a behaviour-cloned policy (deterministic MLP, MSE, as CORL's BC) trained on the expert level's
  episodes and run with Gaussian action noise (`BC_NOISE_STD`), mixed 50-50 with expert episodes: the first
  ``steps // 2`` transitions of the expert level (the same episodes, rolled out once and cached) followed by
  ``steps - steps // 2`` transitions of the noisy cloned policy. D4RL's imitation policy learned from the expert
  and the human demonstrations; there are no human ones here, so expert episodes stand in for both.
* ``human`` cannot be made here: it is motion-capture data of people teleoperating the hand (CyberGlove), which no
  policy trained in simulation reproduces.

Whether a task's expert is one at all is measured, not assumed: every ``snapshot_every`` updates the policy is
saved and evaluated on ``eval_episodes`` stochastic episodes (success rate: the fraction of episodes with
``info["success"]`` at any step, as lit_offrl's ``val/success_rate``; return; normalized return). A level is built
only when the best snapshot's success rate reaches `REACHED_SUCCESS_RATE` (``require_success=False`` builds it
anyway, the description says so).

Environment, episodes, reference scores
---------------------------------------
``AdroitHand<Task>-v1`` (dense reward; 45/39/46/39-dim observations and 24/28/26/30-dim actions in [-1, 1] for
pen/door/hammer/relocate; never terminates; ``info["success"]`` every step) with ``max_episode_steps`` 100 for pen
and 200 for the others (`EPISODE_STEPS`): D4RL's limits, the ones its reference returns were measured with. The
hub's metadata now says 200 for pen too (Minari #286), with the 100-step reference returns left as they were
(Minari #303: pen scores then run to ~190). Every episode is truncated at the limit (``truncations[-1] = True``);
infos hold ``success`` (T + 1 entries, False at the reset, as the hub's ``AdroitStepDataCallback``). The dataset's
env and eval env are that spec. ``ref_min_score`` / ``ref_max_score`` are D4RL's (`D4RL_REFERENCE_RETURNS`), as the
hub's, so normalized scores compare with D4RL's and the hub's; the measured random and expert returns are in the
description.

Training reward: gymnasium-robotics >= 1.2.1's door, hammer and relocate ``-v1`` dense rewards add
``+0.1 * |palm - handle / hammer / object|`` where D4RL (and 1.2.0) subtracted it: a sign change without a version
bump, which pays the hand for moving away from what it must grasp (fixed as ``-v2`` in 1.4.3, Gymnasium-Robotics
PR #220, commit 0a2511d). The SAC expert trains on D4RL's dense reward: ``lit_offrl/AdroitHand<Task>D4RLReward-v1``
(`D4RLApproachReward`: the installed ``-v1`` with ``0.2 * |palm - x|`` subtracted, registered by this module). The
datasets and the snapshot evaluations use the installed ``-v1`` env and its reward, the env the hub's datasets name
and the one lit_offrl evaluates in. Pen's reward has no such term and trains on ``AdroitHandPen-v1`` itself.

Training (one run per task and seed, shared by both levels)
----------------------------------------------------------
`lit_offrl.algos.SAC` with its defaults (2x256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, learned temperature,
target entropy -|A|) on `lit_offrl.data.online.OnlineDataModule` in the training env above (the registered 200-step
limit, pen included): 10k uniformly random warmup transitions, then one env step per update,
``TRAIN_STEPS`` updates (150k), one CPU thread. Cached in
``<Minari root>/.lit_offrl_cache/adroit/<env>[-d4rl-reward]-sac-...``:
``policies/updates=N.pt`` (``SAC.load_from_checkpoint``-style weights and hyperparameters), ``snapshots.json``,
``checkpoints/last.ckpt`` (replay buffer included; every ``snapshot_every`` updates). A killed run resumes from
the checkpoint; Adroit is not one of Gymnasium's own MuJoCo envs (and keeps its randomized door position / pen
target in the MuJoCo model, not in MjData), so the episode in progress at the checkpoint is cut there and a new one
starts: the resumed run is a valid run, not bit-identical to an uninterrupted one. ``python -m
lit_offrl.recipes adroit train --task door`` trains in the background, ``status`` prints the snapshots so far.

Measured (2-core machine shared with other jobs, 18-40 updates/s; seed 0, 20 stochastic evaluation episodes every
5k updates): door on D4RL's reward, no success in any snapshot up to 125k of 150k updates (returns -30 to -48 on
the -v1 reward; a uniform random policy: -45.8, 0% success); its training episodes never opened the door (every
episode return at random level). An earlier door run on the installed -v1 reward: no success either up to 50k
updates. A uniform random policy succeeds in 16% of pen's 100-step episodes (the pen can start close to the target
pose), 0% of door's and hammer's, 2% of relocate's; pen, hammer and relocate have not been trained yet.

Example::

    from lit_offrl.recipes.adroit import make_adroit_dataset
    ds = make_adroit_dataset("lit-offrl/door/expert-v0", task="door", level="expert")
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gymnasium as gym
import numpy as np

from lit_offrl.errors import UserError
from lit_offrl.recipes import policy_runs

if TYPE_CHECKING:  # pragma: no cover
    import minari

__all__ = ["TASKS", "LEVELS", "EPISODE_STEPS", "D4RL_REFERENCE_RETURNS", "TRAIN_STEPS", "Snapshot", "make_env",
           "training_env_id", "D4RLApproachReward", "train_policies", "read_snapshots", "best_snapshot",
           "make_adroit_dataset", "register"]

log = logging.getLogger(__name__)

CODE_PERMALINK = "lit_offrl/recipes/adroit.py"
TASKS = {"pen": "AdroitHandPen-v1", "door": "AdroitHandDoor-v1", "hammer": "AdroitHandHammer-v1",
         "relocate": "AdroitHandRelocate-v1"}
LEVELS = ("expert", "cloned")
EPISODE_STEPS = {"pen": 100, "door": 200, "hammer": 200, "relocate": 200}  # D4RL's pen-v0 / door-v0 / ... limits
# d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE (random policy / DAPG expert), as stored by the hub's D4RL/*/*-v2.
D4RL_REFERENCE_RETURNS = {"pen": (96.262799, 3076.8331017826877), "door": (-56.512833, 2880.5693087298737),
                          "hammer": (-274.856578, 12794.134825156867), "relocate": (-6.425911, 4233.877797728884)}
EXPERT_EPISODES = 5000       # D4RL's *-expert-v1: 5000 episodes
TRAIN_STEPS = {"pen": 150_000, "door": 150_000, "hammer": 150_000, "relocate": 150_000}
WARMUP_STEPS = 10_000        # uniformly random transitions before the first update (SB3 zoo, CORL)
SNAPSHOT_EVERY = 5_000       # updates between saved, evaluated policies
EVAL_EPISODES = 20           # stochastic evaluation episodes per snapshot
EVAL_SEED = 2_000_000
REACHED_SUCCESS_RATE = 0.5   # the best snapshot must succeed in this fraction of its evaluation episodes
BC_UPDATES = 20_000          # behaviour cloning: Adam 3e-4, batch 256, 2x256 MLP (CORL's BC)
BC_NOISE_STD = 0.1           # Gaussian noise on the cloned policy's actions (units of the [-1, 1] action range)
ROLLOUT_ENVS = 10            # environments stepped together when rolling a policy out
_ROLLOUT_SEEDS = {"expert": 3, "cloned": 4, "random": 5}


def _parse(task: str, level: str = "expert") -> str:
    if task not in TASKS:
        raise UserError(f"Unknown Adroit task {task!r}; valid values: {', '.join(map(repr, TASKS))}.")
    if level not in LEVELS:
        raise UserError(f"Unknown Adroit level {level!r}; valid values: {', '.join(map(repr, LEVELS))} (the human "
                        f"flavour is motion-capture data and cannot be made by a recipe).")
    return TASKS[task]


def make_env(task: str):
    """The dataset's env and eval env: ``AdroitHand<Task>-v1`` with D4RL's episode limit."""
    import gymnasium as gym

    return gym.make(_parse(task), max_episode_steps=EPISODE_STEPS[task])


def normalized(task: str, value: float) -> float:
    """D4RL-normalized return (x100)."""
    low, high = D4RL_REFERENCE_RETURNS[task]
    return 100.0 * (value - low) / (high - low)


# --------------------------------------------------------------------------------------------------------------
# The training env: D4RL's dense reward
# --------------------------------------------------------------------------------------------------------------

_APPROACH_TARGET = {"door": "handle", "hammer": "hammer", "relocate": "object"}  # what the palm must reach


def _approach_sign_flipped() -> bool:
    """Whether the installed -v1 adds the approach distance (gymnasium-robotics >= 1.2.1) instead of subtracting it."""
    installed = policy_runs.package_version("gymnasium-robotics") or "0"
    version = tuple(int(part) for part in installed.split(".")[:3] if part.isdigit())
    return version >= (1, 2, 1)


class D4RLApproachReward(gym.Wrapper):
    """``AdroitHand{Door,Hammer,Relocate}-v1`` with D4RL's approach term, ``-0.1 * |palm - x|``: the installed
    env's reward minus ``0.2 * |palm - x|`` (x: the door handle, the hammer, the object)."""

    def __init__(self, env: gym.Env, task: str):
        super().__init__(env)
        self.task = task

    def approach_distance(self) -> float:
        env = self.env.unwrapped
        palm = env.data.site_xpos[env.grasp_site_id if self.task == "door" else env.S_grasp_site_id]
        target = (env.data.site_xpos[env.handle_site_id] if self.task == "door"
                  else env.data.xpos[env.obj_body_id])
        return float(np.linalg.norm(palm - target))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward - 0.2 * self.approach_distance(), terminated, truncated, info


def training_env_id(task: str) -> str:
    """The env SAC trains in: the task's env, or its D4RL-reward version where the installed one flips the sign."""
    env_id = _parse(task)
    if task not in _APPROACH_TARGET or not _approach_sign_flipped():
        return env_id
    name = f"lit_offrl/{env_id.split('-v')[0]}D4RLReward-v1"
    if name not in gym.registry:
        spec = gym.spec(env_id)
        gym.register(name, entry_point=partial(_make_d4rl_reward_env, task), max_episode_steps=spec.max_episode_steps)
    return name


def _make_d4rl_reward_env(task: str, **kwargs) -> gym.Env:
    from gymnasium.envs.registration import load_env_creator

    spec = gym.spec(TASKS[task])
    return D4RLApproachReward(load_env_creator(spec.entry_point)(**{**spec.kwargs, **kwargs}), task)


# --------------------------------------------------------------------------------------------------------------
# Training: one SAC run per task, its policies saved and evaluated
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A saved policy of the training run and its evaluation (stochastic actions; deterministic for reference)."""

    updates: int
    env_steps: int
    success_rate: float
    return_mean: float
    return_std: float
    normalized: float
    deterministic_success_rate: float
    deterministic_return_mean: float
    path: str


def evaluate_policy(act: Callable[[np.ndarray], np.ndarray], task: str, episodes: int, seed: int = EVAL_SEED):
    """`EpisodeOutcomes` of `episodes` episodes in the dataset env (reset seeds seed, seed + 1, ...), stepped
    together; `act` maps a batch of observations to actions."""
    from lit_offrl.evaluation import make_vector_env
    from lit_offrl.evaluation.rollout import rollout_episodes

    envs = make_vector_env(partial(make_env, task), episodes)
    try:
        return rollout_episodes(act, envs, [seed + i for i in range(episodes)], envs.single_observation_space)
    finally:
        envs.close()


def _sac_actions(module, deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: module.act(np.asarray(obs, dtype=np.float32), deterministic=deterministic).cpu().numpy()


def evaluate_snapshot(module, task: str, episodes: int) -> dict[str, float]:
    """Success rate and return of `module` with stochastic actions (its noise seeded) and deterministic ones."""
    from lit_offrl.recipes.locomotion import _seeded_torch

    was_training = module.training
    module.eval()
    try:
        with _seeded_torch(EVAL_SEED, module.device):
            stochastic = evaluate_policy(_sac_actions(module, False), task, episodes)
        deterministic = evaluate_policy(_sac_actions(module, True), task, episodes)
    finally:
        module.train(was_training)
    return {"success_rate": float(stochastic.success.mean()), "return_mean": float(stochastic.returns.mean()),
            "return_std": float(stochastic.returns.std()),
            "normalized": normalized(task, float(stochastic.returns.mean())),
            "deterministic_success_rate": float(deterministic.success.mean()),
            "deterministic_return_mean": float(deterministic.returns.mean())}


def _snapshot_callback(directory: Path, every: int, task: str, eval_episodes: int, snapshots: dict[int, Snapshot]):
    import torch
    from lightning.pytorch.callbacks import Callback

    class PolicySnapshots(Callback):
        """Every `every` updates (and at the end): save the policy, evaluate it, record it in snapshots.json."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            updates = module._updates
            if updates % every and updates != module.max_updates:
                return
            path = directory / "policies" / f"updates={updates:08d}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                        "pytorch-lightning_version": policy_runs.package_version("lightning")}, path)
            result = evaluate_snapshot(module, task, eval_episodes)
            snapshots[updates] = Snapshot(updates=updates, env_steps=trainer.datamodule.env_steps,
                                          path=str(path.relative_to(directory)), **result)
            policy_runs.write_snapshots(directory, snapshots)
            log.info("snapshot %s", snapshots[updates])
            print(f"[adroit {task}] {time.strftime('%H:%M:%S')} updates {updates}: success "
                  f"{result['success_rate']:.2f} (deterministic {result['deterministic_success_rate']:.2f}), return "
                  f"{result['return_mean']:.1f} "
                  f"(normalized {result['normalized']:.1f}; deterministic {result['deterministic_return_mean']:.1f})",
                  flush=True)

    return PolicySnapshots()


def default_cache_dir() -> Path:
    from lit_offrl.data import minari_io

    return minari_io.local_root() / ".lit_offrl_cache" / "adroit"


def run_directory(task: str = "door", seed: int = 0, train_steps: int | None = None,
                  snapshot_every: int = SNAPSHOT_EVERY, warmup_steps: int = WARMUP_STEPS,
                  eval_episodes: int = EVAL_EPISODES, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of the SAC run with these settings."""
    train_steps = TRAIN_STEPS[task] if train_steps is None else int(train_steps)
    reward = "-d4rl-reward" if training_env_id(task) != _parse(task) else ""
    name = (f"{_parse(task)}{reward}-sac-seed{seed}-updates{train_steps}-warmup{warmup_steps}-every{snapshot_every}"
            f"-eval{eval_episodes}")
    return Path(cache_dir or default_cache_dir()) / name


def read_snapshots(directory: str | Path) -> list[Snapshot]:
    """The snapshots a run has written so far (also while it is still training), in update order."""
    return policy_runs.read_snapshots(directory, Snapshot)


def best_snapshot(snapshots: list[Snapshot]) -> Snapshot:
    """The expert: the highest success rate, then the highest return, then the earliest."""
    if not snapshots:
        raise UserError("the Adroit SAC run has no snapshot yet: train it first (python -m lit_offrl.recipes adroit "
                        "train --task TASK).")
    return max(snapshots, key=lambda s: (s.success_rate, s.return_mean, -s.updates))


def train_policies(task: str = "door", seed: int = 0, train_steps: int | None = None,
                   snapshot_every: int = SNAPSHOT_EVERY, warmup_steps: int = WARMUP_STEPS,
                   eval_episodes: int = EVAL_EPISODES, cache_dir: str | Path | None = None,
                   progress: bool = True) -> tuple[Path, list[Snapshot]]:
    """Train SAC online in `training_env_id(task)` (or reuse the finished run from the cache, or resume a killed
    one from ``checkpoints/last.ckpt``); returns (run folder, snapshots). `UserError` while another process trains
    it."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_offrl.algos.sac import SAC
    from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
    from lit_offrl.data.online import OnlineDataModule
    from lit_offrl.recipes.locomotion import _quiet, _torch_threads

    env_id = _parse(task)
    train_steps = TRAIN_STEPS[task] if train_steps is None else int(train_steps)
    if train_steps < 1 or snapshot_every < 1 or eval_episodes < 1:
        raise UserError(f"train_steps, snapshot_every and eval_episodes must be >= 1, got {train_steps}, "
                        f"{snapshot_every}, {eval_episodes}.")
    directory = run_directory(task, seed, train_steps, snapshot_every, warmup_steps, eval_episodes, cache_dir)
    if (directory / "done").exists():
        return directory, read_snapshots(directory)
    other = policy_runs.training_in_progress(directory)
    if other is not None:
        raise UserError(f"process {other} is training the Adroit {task} SAC run in {directory}; wait for it "
                        f"(python -m lit_offrl.recipes adroit status --task {task}).")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "training.lock").write_text(f"{os.getpid()}\n")
    (directory / "training.json").write_text(json.dumps(
        {"env_id": env_id, "train_env_id": training_env_id(task), "seed": seed, "train_steps": train_steps,
         "warmup_steps": warmup_steps,
         "snapshot_every": snapshot_every, "eval_episodes": eval_episodes, "algorithm": "lit_offrl.algos.SAC",
         "eval_max_episode_steps": EPISODE_STEPS[task]}, indent=1))
    snapshots = {s.updates: s for s in read_snapshots(directory)}
    last = directory / "checkpoints" / "last.ckpt"
    try:
        with _torch_threads(1), _quiet(not progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            # Adroit is not one of Gymnasium's own MuJoCo envs: a resumed run cuts the episode in progress.
            warnings.filterwarnings("ignore", ".*holds no environment state.*")
            L.seed_everything(seed, verbose=False)
            datamodule = OnlineDataModule(training_env_id(task), capacity=train_steps + warmup_steps + 1,
                                          warmup_steps=warmup_steps, seed=seed, eval_episodes=0)
            model = SAC(datamodule.obs_dim, datamodule.action_dim)
            callbacks = [UpdateCheckpoint(every_n_updates=snapshot_every, dirpath=str(directory / "checkpoints")),
                         _snapshot_callback(directory, snapshot_every, task, eval_episodes, snapshots)]
            if progress:
                callbacks.append(UpdatesProgressBar(refresh_rate=200))
            trainer = L.Trainer(max_steps=train_steps, max_epochs=-1, accelerator="cpu", devices=1,
                                limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1000,
                                logger=TensorBoardLogger(str(directory), name="logs", version=0),
                                callbacks=callbacks, enable_progress_bar=progress, enable_model_summary=False,
                                default_root_dir=str(directory))
            trainer.fit(model, datamodule, ckpt_path=str(last) if last.exists() else None)
    finally:
        (directory / "training.lock").unlink(missing_ok=True)
    if train_steps not in snapshots:
        raise RuntimeError(f"SAC training in {directory} stopped before update {train_steps}")
    (directory / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    return directory, read_snapshots(directory)



# --------------------------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------------------------


def _rollout(task: str, act: Callable[[np.ndarray], np.ndarray] | None, steps: int, seed: int, desc: str,
             progress: bool) -> list[dict[str, np.ndarray]]:
    """Episodes of `act` (None: uniform random actions) in the dataset env, exactly `steps` transitions (the last
    episode cut), with ``success`` per step (T + 1 entries, False at the reset). Environments are stepped together
    (one batched call of `act`); the first ones reset with seeds seed * 1000 + i, later resets continue their RNG."""
    from tqdm.auto import tqdm

    num_envs = int(np.clip(math.ceil(steps / EPISODE_STEPS[task]), 1, ROLLOUT_ENVS))
    envs = [make_env(task) for _ in range(num_envs)]
    horizon = EPISODE_STEPS[task]
    obs_dim, space = envs[0].observation_space.shape[0], envs[0].action_space
    rng = np.random.default_rng(seed)
    observations = np.zeros((num_envs, horizon + 1, obs_dim))
    actions = np.zeros((num_envs, horizon) + space.shape, dtype=np.float32)
    rewards = np.zeros((num_envs, horizon))
    success = np.zeros((num_envs, horizon + 1), dtype=bool)
    lengths = np.zeros(num_envs, dtype=np.int64)
    for i, env in enumerate(envs):
        observations[i, 0] = env.reset(seed=seed * 1000 + i)[0]
    episodes, total = [], 0
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=desc, mininterval=0.5, smoothing=0.1)
    while total < steps:
        current = observations[np.arange(num_envs), lengths]
        batch = rng.uniform(space.low, space.high, (num_envs,) + space.shape) if act is None else act(current)
        batch = np.clip(batch, space.low, space.high).astype(np.float32)
        for i, env in enumerate(envs):
            t = lengths[i]
            obs, reward, terminated, truncated, info = env.step(batch[i])
            actions[i, t], rewards[i, t], observations[i, t + 1] = batch[i], reward, obs
            success[i, t + 1] = bool(info["success"])
            lengths[i] = t = t + 1
            if not (terminated or truncated):
                continue
            keep = min(t, steps - total)
            if keep > 0:
                ends_terminated = bool(terminated) and keep == t
                last = np.arange(keep) == keep - 1
                episodes.append({"observations": observations[i, :keep + 1].copy(), "actions": actions[i, :keep].copy(),
                                 "rewards": rewards[i, :keep].copy(), "terminations": last & ends_terminated,
                                 "truncations": last & (not ends_terminated), "success": success[i, :keep + 1].copy()})
                total += keep
                bar.update(keep)
            observations[i, 0], lengths[i] = env.reset()[0], 0
            success[i] = False
    bar.close()
    for env in envs:
        env.close()
    return episodes


def _cached_rollout(path: Path, make: Callable[[], list[dict[str, np.ndarray]]]) -> list[dict[str, np.ndarray]]:
    """`make()`'s episodes, saved at `path` (written atomically) so both levels roll a policy out once."""
    from lit_offrl.recipes.locomotion import _split

    if path.exists():
        with np.load(path) as saved:
            arrays = dict(saved)
        success = arrays.pop("success")
        episodes = _split(arrays)
        starts = np.cumsum([len(ep["rewards"]) + 1 for ep in episodes])
        for ep, values in zip(episodes, np.split(success, starts[:-1])):
            ep["success"] = values
        return episodes
    episodes = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "wb") as file:
        np.savez(file, lengths=np.array([len(ep["rewards"]) for ep in episodes]),
                 **{key: np.concatenate([ep[key] for ep in episodes]) for key in episodes[0]})
    path.with_suffix(".tmp").replace(path)
    return episodes


def expert_episodes(directory: Path, snapshot: Snapshot, task: str, steps: int, seed: int,
                    progress: bool = False) -> list[dict[str, np.ndarray]]:
    """The expert level's episodes: `snapshot`'s stochastic rollout (its noise seeded), cached in the run folder."""
    from lit_offrl.recipes.locomotion import _load_policy, _seeded_torch, _torch_threads

    rollout_seed = seed * 100 + _ROLLOUT_SEEDS["expert"]

    def make():
        module = _load_policy(directory, snapshot)
        with _torch_threads(1), _seeded_torch(rollout_seed, module.device):
            return _rollout(task, _sac_actions(module, False), steps, rollout_seed, f"{task}/expert", progress)

    name = f"updates={snapshot.updates:08d}-steps{steps}-seed{rollout_seed}.npz"
    return _cached_rollout(directory / "rollouts" / name, make)


# --------------------------------------------------------------------------------------------------------------
# Behaviour cloning (the cloned level's policy)
# --------------------------------------------------------------------------------------------------------------


class ClonedPolicy:
    """A deterministic BC policy, a = tanh(f((s - mean) / std)), with Gaussian action noise when rolled out."""

    def __init__(self, actor, obs_mean: np.ndarray, obs_std: np.ndarray):
        self.actor, self.obs_mean, self.obs_std = actor, obs_mean, obs_std

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            normalized_obs = torch.as_tensor((np.asarray(obs) - self.obs_mean) / self.obs_std, dtype=torch.float32)
            return self.actor(normalized_obs).numpy()

    def noisy(self, noise_std: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        """The policy with N(0, noise_std^2) added to every action (clipped to the bounds by the rollout)."""
        rng = np.random.default_rng(seed)

        def act(obs: np.ndarray) -> np.ndarray:
            action = self(obs)
            return action + noise_std * rng.standard_normal(action.shape).astype(np.float32)

        return act


def behaviour_clone(episodes: list[dict[str, np.ndarray]], updates: int = BC_UPDATES, seed: int = 0,
                    batch_size: int = 256, lr: float = 3e-4, hidden_dims: tuple[int, ...] = (256, 256)) -> ClonedPolicy:
    """CORL's BC on `episodes`: min E ||pi(s) - a||^2 / |A| over z-scored observations (std floored at 1e-3, as
    `OfflineDataModule`'s eps), Adam, uniform minibatches; seeded weights and batches."""
    import torch

    from lit_offrl.nets import DeterministicActor
    from lit_offrl.recipes.locomotion import _seeded_torch, _torch_threads

    obs = np.concatenate([ep["observations"][:-1] for ep in episodes]).astype(np.float32)
    action = np.concatenate([ep["actions"] for ep in episodes]).astype(np.float32)
    obs_mean, obs_std = obs.mean(0), obs.std(0) + 1e-3
    obs_t = torch.from_numpy((obs - obs_mean) / obs_std)
    action_t = torch.from_numpy(action)
    generator = torch.Generator().manual_seed(seed)
    with _torch_threads(1), _seeded_torch(seed, torch.device("cpu")):
        actor = DeterministicActor(obs.shape[1], action.shape[1], hidden_dims)
        optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        for _ in range(updates):
            index = torch.randint(len(obs_t), (batch_size,), generator=generator)
            loss = (actor(obs_t[index]) - action_t[index]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return ClonedPolicy(actor.eval(), obs_mean, obs_std)


def cloned_policy(directory: Path, snapshot: Snapshot, episodes: list[dict[str, np.ndarray]], key: str,
                  updates: int, seed: int) -> ClonedPolicy:
    """`behaviour_clone` of the expert episodes, cached in the run folder (``bc/<key>.pt``)."""
    import torch

    from lit_offrl.nets import DeterministicActor

    path = directory / "bc" / f"{key}-updates{updates}-seed{seed}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        actor = DeterministicActor(saved["obs_dim"], saved["action_dim"], saved["hidden_dims"])
        actor.load_state_dict(saved["state_dict"])
        return ClonedPolicy(actor.eval(), saved["obs_mean"], saved["obs_std"])
    policy = behaviour_clone(episodes, updates, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": policy.actor.state_dict(), "obs_mean": policy.obs_mean, "obs_std": policy.obs_std,
                "obs_dim": len(policy.obs_mean), "action_dim": episodes[0]["actions"].shape[1],
                "hidden_dims": (256, 256), "expert_updates": snapshot.updates}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return policy


# --------------------------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------------------------


def make_adroit_dataset(dataset_id: str, task: str = "door", level: str = "expert", steps: int | None = None,
                        seed: int = 0, progress: bool = True, train_steps: int | None = None,
                        snapshot_every: int = SNAPSHOT_EVERY, warmup_steps: int = WARMUP_STEPS,
                        eval_episodes: int = EVAL_EPISODES, cache_dir: str | Path | None = None,
                        bc_updates: int = BC_UPDATES, bc_noise_std: float = BC_NOISE_STD,
                        require_success: bool = True, partial_training: bool = False) -> "minari.MinariDataset":
    """Build `dataset_id`: `level` of `task` (see the module docstring); `steps` transitions (default 5000
    episodes). `train_steps`, `snapshot_every`, `warmup_steps`, `eval_episodes` shape the SAC run (trained once per
    combination and `seed`, cached in `cache_dir`); `UserError` if its best snapshot's success rate is below
    `REACHED_SUCCESS_RATE` unless `require_success` is False. `partial_training`: use the snapshots the run has
    written so far (it may still be training) instead of training it to the end."""
    import minari
    from minari.data_collector import EpisodeBuffer

    from lit_offrl.data.minari_io import create_dataset_atomically
    from lit_offrl.recipes.locomotion import _check_episodes

    env_id = _parse(task, level)
    horizon = EPISODE_STEPS[task]
    steps = EXPERT_EPISODES * horizon if steps is None else int(steps)
    if steps < 2:
        raise UserError(f"steps must be >= 2, got {steps}.")
    t0 = time.perf_counter()
    if partial_training:
        directory = run_directory(task, seed, train_steps, snapshot_every, warmup_steps, eval_episodes, cache_dir)
        snapshots = read_snapshots(directory)
    else:
        directory, snapshots = train_policies(task, seed, train_steps, snapshot_every, warmup_steps, eval_episodes,
                                              cache_dir, progress)
    expert = best_snapshot(snapshots)
    planned = TRAIN_STEPS[task] if train_steps is None else int(train_steps)
    stopped = "" if snapshots[-1].updates == planned else f" (of {planned} planned; built while it trained)"
    reached = expert.success_rate >= REACHED_SUCCESS_RATE
    if not reached and require_success:
        raise UserError(f"the SAC run for {env_id} did not reach the task: its best snapshot ({expert.updates} "
                        f"updates) succeeds in {expert.success_rate:.0%} of {eval_episodes} episodes, below "
                        f"{REACHED_SUCCESS_RATE:.0%}. Train longer (train_steps) or pass require_success=False to "
                        f"build from it anyway. Snapshots: {directory / 'snapshots.json'}")
    expert_data = expert_episodes(directory, expert, task, steps, seed, progress)
    if level == "expert":
        episodes, cloned_note = expert_data, ""
    else:
        half, kept, room = steps // 2, [], steps // 2
        for ep in expert_data:  # the first steps // 2 expert transitions, the last episode cut there
            if room <= 0:
                break
            kept.append(ep if len(ep["rewards"]) <= room else _cut(ep, room))
            room -= len(kept[-1]["rewards"])
        policy = cloned_policy(directory, expert, expert_data, f"expert-updates={expert.updates:08d}-steps{steps}",
                               bc_updates, seed)
        noise_seed = seed * 100 + _ROLLOUT_SEEDS["cloned"]
        cloned = _rollout(task, policy.noisy(bc_noise_std, noise_seed), steps - half, noise_seed, f"{task}/cloned",
                          progress)
        episodes = kept + cloned
        cloned_returns = np.array([ep["rewards"].sum() for ep in cloned])
        cloned_note = (f"Mix: the first {len(kept)} episodes ({half} transitions) are the expert level's first "
                       f"episodes; the next {len(cloned)} ({steps - half} transitions) are a behaviour-cloned policy "
                       f"(deterministic 2x256 MLP, MSE, Adam 3e-4, batch 256, {bc_updates} updates on the expert "
                       f"level's {steps} transitions, z-scored observations) run with N(0, {bc_noise_std:g}^2) action "
                       f"noise, clipped to [-1, 1] (mean return {cloned_returns.mean():.1f}, normalized "
                       f"{normalized(task, float(cloned_returns.mean())):.1f}, success "
                       f"{np.mean([ep['success'].any() for ep in cloned]):.0%}). D4RL's imitation policy learned from "
                       f"the expert and human demonstrations, and its data was mixed 50-50 with the demonstrations; "
                       f"there are no human ones here, so expert episodes stand in. ")
    probe = make_env(task)
    obs_dim, action_dim, spec = probe.observation_space.shape[0], probe.action_space.shape[0], probe.spec
    probe.close()
    _check_episodes(episodes, obs_dim, action_dim)
    total = sum(len(ep["rewards"]) for ep in episodes)
    returns = np.array([ep["rewards"].sum() for ep in episodes])
    success = float(np.mean([ep["success"].any() for ep in episodes]))
    random_returns = evaluate_policy(_random_actions(probe.action_space, seed), task, eval_episodes).returns
    ref_min, ref_max = D4RL_REFERENCE_RETURNS[task]
    description = (
        f"D4RL-style Adroit {task} {level} data for {env_id} (max_episode_steps {horizon}, D4RL's), dense reward. "
        f"{total} transitions in {len(episodes)} episodes (mean return {returns.mean():.1f}, normalized "
        f"{normalized(task, float(returns.mean())):.1f}, success in {success:.0%} of episodes). "
        f"Expert: lit_offrl.algos.SAC (defaults: 2x256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, learned "
        f"temperature) trained online on D4RL's dense reward ({training_env_id(task)}) with "
        f"lit_offrl.data.online.OnlineDataModule for "
        f"{snapshots[-1].updates} updates{stopped} ({warmup_steps} uniformly random warmup transitions), seed "
        f"{seed}; the best of its snapshots every {snapshot_every} updates ({expert.updates} updates: success "
        f"{expert.success_rate:.0%} of {eval_episodes} stochastic episodes, return {expert.return_mean:.1f}, "
        f"normalized {expert.normalized:.1f}"
        f"{'' if reached else f'; BELOW the {REACHED_SUCCESS_RATE:.0%} success this recipe requires of an expert'}"
        f"), stochastic actions. {cloned_note}ref_min_score / ref_max_score are D4RL's random / DAPG-expert returns "
        f"({ref_min} / {ref_max}), as the hub's D4RL/{task}/*-v2 store; measured here: uniform random "
        f"{random_returns.mean():.1f} over {eval_episodes} episodes, this expert {expert.return_mean:.1f}. Every "
        f"episode is truncated at the time limit (the task never terminates); infos hold success (False at reset).")
    buffers = [EpisodeBuffer(observations=ep["observations"], actions=ep["actions"], rewards=ep["rewards"],
                             terminations=ep["terminations"], truncations=ep["truncations"],
                             infos={"success": ep["success"]}) for ep in episodes]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        dataset = create_dataset_atomically(
            dataset_id=dataset_id, buffer=buffers, env=spec, eval_env=spec,
            algorithm_name="SAC" if level == "expert" else "SAC+noisy-BC",
            author="lit_offrl", code_permalink=CODE_PERMALINK, ref_min_score=ref_min, ref_max_score=ref_max,
            description=description, requirements=policy_runs.requirements("gymnasium", "mujoco", "gymnasium-robotics"))
    if dataset.total_steps != total or dataset.total_episodes != len(episodes):
        minari.delete_dataset(dataset_id)
        raise RuntimeError(f"Adroit recipe check failed: wrote {dataset.total_steps} steps / "
                           f"{dataset.total_episodes} episodes, expected {total} / {len(episodes)}; deleted")
    seconds = time.perf_counter() - t0
    log.info("%s built: %d steps, %d episodes, mean return %.1f in %.0f s", dataset_id, total, len(episodes),
             returns.mean(), seconds)
    if progress:
        print(f"[{task}/{level}] {dataset_id}: {total} steps, {len(episodes)} episodes, mean return "
              f"{returns.mean():.1f} (normalized {normalized(task, float(returns.mean())):.1f}, success "
              f"{success:.0%}); {seconds:.0f}s")
    return dataset


def _cut(episode: dict[str, np.ndarray], keep: int) -> dict[str, np.ndarray]:
    """The first `keep` transitions of `episode`, truncated there."""
    last = np.arange(keep) == keep - 1
    return {"observations": episode["observations"][:keep + 1], "actions": episode["actions"][:keep],
            "rewards": episode["rewards"][:keep], "terminations": np.zeros(keep, bool), "truncations": last,
            "success": episode["success"][:keep + 1]}


def _random_actions(space, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed * 100 + _ROLLOUT_SEEDS["random"])
    return lambda obs: rng.uniform(space.low, space.high, (len(obs),) + space.shape).astype(np.float32)


_LEVEL_LABELS = {"expert": "the best online-SAC policy (dense reward), stochastic",
                 "cloned": "50% expert episodes + 50% a noisy BC policy of them"}


def register() -> None:
    """Register ``lit-offrl/{pen,door,hammer,relocate}/{expert,cloned}-v0`` in `lit_offrl.data.registry`."""
    from lit_offrl.data.registry import register as register_builder

    for task, env_id in TASKS.items():
        for level in LEVELS:
            dataset_id = f"lit-offrl/{task}/{level}-v0"
            register_builder(dataset_id, partial(make_adroit_dataset, dataset_id, task=task, level=level),
                             f"{env_id} {level}: {_LEVEL_LABELS[level]} (D4RL {task}-{level})")


# ==============================================================================================================
# Command line: train / status
# ==============================================================================================================


def main(argv: list[str] | None = None) -> None:
    """``python -m lit_offrl.recipes adroit train|status --task door [--seed S] [--updates N] ...``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lit_offrl.recipes adroit")
    parser.add_argument("command", choices=["train", "status"])
    parser.add_argument("--task", choices=list(TASKS), default="door")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--updates", type=int, default=None, help="SAC updates (default: TRAIN_STEPS[task])")
    parser.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY)
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS)
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    options = dict(task=args.task, seed=args.seed, train_steps=args.updates, snapshot_every=args.snapshot_every,
                   warmup_steps=args.warmup, eval_episodes=args.eval_episodes, cache_dir=args.cache_dir)
    if args.command == "train":
        directory, snapshots = train_policies(progress=False, **options)
        print(f"done: {directory}; best {best_snapshot(snapshots)}")
    else:
        directory = run_directory(**options)
        print(f"{directory}: done={(directory / 'done').exists()} training_pid={policy_runs.training_in_progress(directory)}")
        for snapshot in read_snapshots(directory):
            print(snapshot)


if __name__ == "__main__":
    main()
