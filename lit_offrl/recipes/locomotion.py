"""Gym locomotion data-generation recipe (D4RL ``hopper/halfcheetah/walker2d-{random,medium,medium-replay,expert,
medium-expert}``) on Gymnasium's MuJoCo v5 environments.

What it builds
--------------
Ordinary local Minari datasets ``lit-offrl/{hopper,halfcheetah,walker2d}/{level}-v0`` made the way D4RL made
its MuJoCo datasets (Fu et al. 2020, section 5 and appendix): train one SAC agent online, keep its policy at
several points of the run, and roll those policies out.

* ``random``: uniformly random actions.
* ``medium``: the training stopped early at medium performance: the first SAC snapshot whose evaluated
  normalized score is within ``MEDIUM_TOLERANCE`` (7.5) of ``MEDIUM_TARGET_SCORE`` (40; D4RL: "about one
  third of the expert", its hopper-medium data scores ~44); the closest snapshot if none is.
* ``expert``: the best SAC snapshot of the run.
* ``medium-replay``: the replay buffer of the training run up to the medium snapshot (random warmup
  transitions included), in collection order; with ``steps`` smaller than that, the last ``steps``
  transitions before the medium snapshot (what a buffer of that capacity would hold), the leading partial
  episode dropped.
* ``medium-expert``: the medium dataset's episodes followed by the expert dataset's (same rollout seeds, so
  identical data), ``2 * steps`` transitions.

random, medium and expert hold exactly ``steps`` transitions (1M as in D4RL), the last episode cut
(``truncations[-1] = True``). Policies act stochastically (tanh-Gaussian samples), as SAC explores.
Episodes end at termination (the body fell: ``terminations[-1] = True``) or at the 1000-step limit
(``truncations[-1] = True``).

Training (one run per environment and seed, shared by its five levels)
----------------------------------------------------------------------
`lit_offrl.algos.SAC` with its defaults (Haarnoja et al. 2018: 2x256, Adam 3e-4, batch 256, gamma 0.99,
tau 0.005, learned temperature) on `lit_offrl.data.online.OnlineDataModule`: 10k uniformly random warmup
transitions, then one env step per update, buffer never full; ``TRAIN_STEPS`` updates (see below), on one
CPU thread (on a shared 2-core machine a second torch thread costs more than it gives). Every
``snapshot_every`` updates the policy is saved (``policies/updates=N.pt``: weights and hyperparameters,
``SAC.load_from_checkpoint`` reads it) and evaluated over ``eval_episodes`` episodes with stochastic actions
(reset seeds ``EVAL_SEED + i``, the same for every snapshot); the results are in ``snapshots.json``. All of
it lives in a cache folder, by default ``<Minari root>/.lit_offrl_cache/locomotion/<env>-sac-...``
(hidden, so Minari does not list it): making a second level of the same environment rolls the cached
policies out without training again, and a killed training run resumes from ``checkpoints/last.ckpt``
(replay buffer and environment state included: the episode in progress continues where it was, so the
resumed run ends bit for bit as an uninterrupted one would; runs resumed before this was saved cut that
episode and restarted, and diverged from there).

Reference scores
----------------
``ref_min_score`` / ``ref_max_score`` are D4RL's random and expert returns (`lit_offrl.data.datamodule.D4RL_REFERENCE_RETURNS`), so
normalized scores are comparable with D4RL's. This recipe's expert is usually weaker than D4RL's (a
shorter SAC run); the measured random and expert returns are in each dataset's description.

Cost, measured for Hopper (defaults: 200k updates, 1M-step levels) on a 2-core machine shared with other jobs:
all five levels in ~45 min of CPU time, ~55 min wall: training with its 40 evaluations 38 min (~11 ms per
update and env step), the random / medium / expert rollouts 2-3 min each, medium-replay and medium-expert
seconds (medium-expert reuses the cached medium and expert rollouts). Result (seed 0): random 1.2, medium
39.7 (the snapshot at 70k updates), medium-replay 7.0 (80k transitions; D4RL's, from a slower run, has 402k
and scores ~15), expert 83.3 (175k updates; D4RL's expert is 100 by definition), medium-expert 54.0
(normalized returns of the data).

Example::

    from lit_offrl.recipes.locomotion import make_locomotion_dataset
    ds = make_locomotion_dataset("lit-offrl/hopper/medium-v0", env="hopper", level="medium")
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from lit_offrl.errors import UserError
from lit_offrl.recipes import policy_runs

if TYPE_CHECKING:  # pragma: no cover
    import minari

__all__ = ["ENVS", "LEVELS", "reference_scores", "TRAIN_STEPS", "Snapshot", "train_policies",
           "select_levels", "make_locomotion_dataset"]

log = logging.getLogger(__name__)

CODE_PERMALINK = "lit_offrl/recipes/locomotion.py"
ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
TRAIN_STEPS = {"hopper": 200_000, "halfcheetah": 200_000, "walker2d": 200_000}
WARMUP_STEPS = 10_000        # uniformly random transitions before the first update (SB3 zoo, CORL)
SNAPSHOT_EVERY = 5_000       # updates between saved, evaluated policies
EVAL_EPISODES = 20           # stochastic evaluation episodes per snapshot
EVAL_SEED = 2_000_000
MEDIUM_TARGET_SCORE = 40.0   # normalized score (x100) of the medium snapshot
MEDIUM_TOLERANCE = 7.5       # the first snapshot this close to it is medium (20-episode estimates: ~+-5 on Hopper)
ROLLOUT_ENVS = 10            # environments stepped together when rolling a policy out


def _parse(env: str, level: str) -> tuple[str, str]:
    if env not in ENVS:
        raise UserError(f"Unknown locomotion env {env!r}; valid values: {', '.join(map(repr, ENVS))}.")
    if level not in LEVELS:
        raise UserError(f"Unknown level {level!r}; valid values: {', '.join(map(repr, LEVELS))}.")
    return ENVS[env], level


def reference_scores(env_id: str) -> tuple[float, float]:
    """D4RL's random / expert returns for a Gymnasium locomotion env id (the data layer's table)."""
    from lit_offrl.data.datamodule import D4RL_REFERENCE_RETURNS

    return D4RL_REFERENCE_RETURNS[env_id.split("-v")[0].lower()]


def _normalized(value: float, env_id: str) -> float:
    low, high = reference_scores(env_id)
    return 100.0 * (value - low) / (high - low)


# --------------------------------------------------------------------------------------------------------------
# Training: one SAC run, its policies saved and evaluated
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A saved policy of the training run and its stochastic evaluation."""

    updates: int
    env_steps: int
    return_mean: float
    return_std: float
    normalized: float
    path: str


@contextlib.contextmanager
def _torch_threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Keep Lightning's info messages (accelerator, run summary) out of a recipe built with progress=False."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")] if enabled else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _seeded_torch(seed: int, device):
    """Draw the policy's noise from a generator seeded with `seed`, leaving the global RNG state as it was."""
    import torch

    devices = [device.index or 0] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _policy(module) -> Callable[[np.ndarray], np.ndarray]:
    """Stochastic actions in the env's bounds for a batch of flat observations."""
    return lambda obs: module.act(obs, deterministic=False).cpu().numpy()


def evaluate_policy(module, env_id: str, episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
    """Returns of `episodes` stochastic episodes (reset seeds seed, seed + 1, ...), stepped together."""
    import gymnasium as gym

    from lit_offrl.evaluation import make_vector_env, rollout

    envs = make_vector_env(lambda: gym.make(env_id), episodes)
    try:
        with _seeded_torch(seed, module.device):
            returns, _ = rollout(_policy(module), envs, [seed + i for i in range(episodes)],
                                 envs.single_observation_space)
    finally:
        envs.close()
    return returns


def _snapshot_callback(directory: Path, every: int, env_id: str, eval_episodes: int, index: dict[int, Snapshot]):
    import torch
    from lightning.pytorch.callbacks import Callback

    class PolicySnapshots(Callback):
        """Every `every` updates (and at the end): save the policy, evaluate it, record it in snapshots.json."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            updates = module._updates
            if updates % every == 0 or updates == module.max_updates:
                self.snapshot(trainer, module, updates)

        def snapshot(self, trainer, module, updates: int) -> None:
            path = directory / "policies" / f"updates={updates:08d}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                        "pytorch-lightning_version": policy_runs.package_version("lightning")}, path)
            returns = evaluate_policy(module, env_id, eval_episodes)
            index[updates] = Snapshot(updates, trainer.datamodule.env_steps, float(returns.mean()),
                                      float(returns.std()), _normalized(float(returns.mean()), env_id),
                                      str(path.relative_to(directory)))
            _write_index(directory, index)
            log.info("snapshot %s", index[updates])

    return PolicySnapshots()


def _write_index(directory: Path, index: dict[int, Snapshot]) -> None:
    tmp = directory / "snapshots.json.tmp"
    tmp.write_text(json.dumps([asdict(s) for _, s in sorted(index.items())], indent=1))
    tmp.replace(directory / "snapshots.json")


def _read_index(directory: Path) -> dict[int, Snapshot]:
    path = directory / "snapshots.json"
    if not path.exists():
        return {}
    return {entry["updates"]: Snapshot(**entry) for entry in json.loads(path.read_text())}


def default_cache_dir() -> Path:
    from lit_offrl.data import minari_io

    return minari_io.local_root() / ".lit_offrl_cache" / "locomotion"


def train_policies(env: str = "hopper", seed: int = 0, train_steps: int | None = None,
                   snapshot_every: int = SNAPSHOT_EVERY, warmup_steps: int = WARMUP_STEPS,
                   eval_episodes: int = EVAL_EPISODES, cache_dir: str | Path | None = None,
                   progress: bool = True) -> tuple[Path, list[Snapshot]]:
    """Train SAC online in `env` (or reuse a finished run from the cache); returns (run folder, snapshots)."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_offrl.algos.sac import SAC
    from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
    from lit_offrl.data.online import OnlineDataModule

    env_id, _ = _parse(env, "random")
    train_steps = TRAIN_STEPS[env] if train_steps is None else int(train_steps)
    if train_steps < 1 or snapshot_every < 1 or eval_episodes < 1:
        raise UserError(f"train_steps, snapshot_every and eval_episodes must be >= 1, got {train_steps}, "
                        f"{snapshot_every}, {eval_episodes}.")
    name = f"{env_id}-sac-seed{seed}-updates{train_steps}-warmup{warmup_steps}-every{snapshot_every}-eval{eval_episodes}"
    directory = Path(cache_dir or default_cache_dir()) / name
    done = directory / "done"
    index = _read_index(directory)
    if done.exists():
        return directory, [index[k] for k in sorted(index)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "training.json").write_text(json.dumps(
        {"env_id": env_id, "seed": seed, "train_steps": train_steps, "warmup_steps": warmup_steps,
         "snapshot_every": snapshot_every, "eval_episodes": eval_episodes, "algorithm": "lit_offrl.algos.SAC"},
        indent=1))
    last = directory / "checkpoints" / "last.ckpt"
    with _torch_threads(1), _quiet(not progress):
        L.seed_everything(seed, verbose=False)
        datamodule = OnlineDataModule(env_id, capacity=train_steps + warmup_steps + 1, warmup_steps=warmup_steps,
                                      seed=seed, eval_episodes=0)
        model = SAC(datamodule.obs_dim, datamodule.action_dim)
        callbacks = [UpdateCheckpoint(every_n_updates=snapshot_every, dirpath=str(directory / "checkpoints")),
                     _snapshot_callback(directory, snapshot_every, env_id, eval_episodes, index)]
        if progress:
            callbacks.append(UpdatesProgressBar(refresh_rate=200))
        trainer = L.Trainer(max_steps=train_steps, max_epochs=-1, accelerator="auto", devices=1,
                            limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1000,
                            logger=TensorBoardLogger(str(directory), name="logs", version=0),
                            callbacks=callbacks, enable_progress_bar=progress, enable_model_summary=False,
                            default_root_dir=str(directory))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.fit(model, datamodule, ckpt_path=str(last) if last.exists() else None)
    if train_steps not in index:
        raise RuntimeError(f"SAC training in {directory} stopped before update {train_steps}")
    done.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    return directory, [index[k] for k in sorted(index)]


def select_levels(snapshots: list[Snapshot], env_id: str,
                  target_score: float = MEDIUM_TARGET_SCORE,
                  tolerance: float = MEDIUM_TOLERANCE) -> tuple[Snapshot, Snapshot]:
    """(medium, expert). Medium: the earliest snapshot within `tolerance` of `target_score` (D4RL's early
    stopping: its replay buffer is then the early part of the run), else the closest. Expert: the best one."""
    near = [s for s in snapshots if abs(s.normalized - target_score) <= tolerance]
    medium = (min(near, key=lambda s: s.updates) if near
              else min(snapshots, key=lambda s: (abs(s.normalized - target_score), s.updates)))
    expert = max(snapshots, key=lambda s: (s.return_mean, -s.updates))
    return medium, expert


def _load_policy(directory: Path, snapshot: Snapshot):
    import torch

    from lit_offrl.algos.sac import SAC

    checkpoint = torch.load(directory / snapshot.path, map_location="cpu", weights_only=False)
    module = SAC(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


# --------------------------------------------------------------------------------------------------------------
# Rollouts and episodes
# --------------------------------------------------------------------------------------------------------------


def _rollout_episodes(env_id: str, policy: Callable[[np.ndarray], np.ndarray] | None, steps: int, seed: int,
                      desc: str, progress: bool) -> list[dict[str, np.ndarray]]:
    """Episodes of `policy` (None: uniform random actions), exactly `steps` transitions, the last one cut.

    Environments are stepped together (one batched policy call); episodes are kept in the order they end.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    num_envs = int(np.clip(steps // 20_000, 1, ROLLOUT_ENVS))
    envs = [gym.make(env_id) for _ in range(num_envs)]
    horizon = envs[0].spec.max_episode_steps
    obs_dim = envs[0].observation_space.shape[0]
    action_space = envs[0].action_space
    rng = np.random.default_rng(seed)
    observations = np.zeros((num_envs, horizon + 1, obs_dim))
    actions = np.zeros((num_envs, horizon) + action_space.shape, dtype=np.float32)
    rewards = np.zeros((num_envs, horizon))
    lengths = np.zeros(num_envs, dtype=np.int64)
    for i, env in enumerate(envs):
        observations[i, 0] = env.reset(seed=seed * 1000 + i)[0]
    episodes, total = [], 0
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=desc, mininterval=0.5, smoothing=0.1)
    while total < steps:
        current = observations[np.arange(num_envs), lengths]
        batch = (rng.uniform(action_space.low, action_space.high, (num_envs,) + action_space.shape)
                 if policy is None else policy(current))
        batch = np.clip(batch, action_space.low, action_space.high).astype(np.float32)
        for i, env in enumerate(envs):
            t = lengths[i]
            obs, reward, terminated, truncated, _ = env.step(batch[i])
            actions[i, t], rewards[i, t], observations[i, t + 1] = batch[i], reward, obs
            lengths[i] = t = t + 1
            if not (terminated or truncated):
                continue
            keep = min(t, steps - total)
            if keep > 0:
                ends_terminated = bool(terminated) and keep == t  # else truncated: time limit or cut here
                last = np.arange(keep) == keep - 1
                episodes.append({"observations": observations[i, :keep + 1].copy(),
                                 "actions": actions[i, :keep].copy(), "rewards": rewards[i, :keep].copy(),
                                 "terminations": last & ends_terminated, "truncations": last & (not ends_terminated)})
                total += keep
                bar.update(keep)
            observations[i, 0], lengths[i] = env.reset()[0], 0
    bar.close()
    for env in envs:
        env.close()
    return episodes


def _policy_episodes(directory: Path, snapshot: Snapshot, env_id: str, steps: int, seed: int, desc: str,
                     progress: bool) -> list[dict[str, np.ndarray]]:
    """A snapshot's rollout, kept in the run folder so medium-expert reuses the medium and expert data."""
    path = directory / "rollouts" / f"updates={snapshot.updates:08d}-steps{steps}-seed{seed}.npz"
    if path.exists():
        with np.load(path) as saved:
            return _split(dict(saved))
    module = _load_policy(directory, snapshot)
    with _torch_threads(1), _seeded_torch(seed, module.device):
        episodes = _rollout_episodes(env_id, _policy(module), steps, seed, desc, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "wb") as file:
        np.savez(file, lengths=np.array([len(ep["rewards"]) for ep in episodes]),
                 **{key: np.concatenate([ep[key] for ep in episodes]) for key in episodes[0]})
    path.with_suffix(".tmp").replace(path)
    return episodes


def _split(saved: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Episodes back from `_policy_episodes`' concatenated arrays (observations hold T + 1 rows per episode)."""
    lengths = saved.pop("lengths")
    starts = np.cumsum(lengths) - lengths
    episodes = []
    for k, (start, length) in enumerate(zip(starts, lengths)):
        episodes.append({key: values[start + k:start + k + length + 1] if key == "observations"
                         else values[start:start + length] for key, values in saved.items()})
    return episodes


def _replay_episodes(directory: Path, snapshot: Snapshot, env_id: str, steps: int) -> list[dict[str, np.ndarray]]:
    """The training run's transitions before `snapshot` (the last `steps` of them), split into episodes."""
    import gymnasium as gym
    import torch

    state = torch.load(directory / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    data = state["OnlineDataModule"]
    buffer = data["buffer"]
    if not (torch.all(data["obs_mean"] == 0) and torch.all(data["obs_std"] == 1)):
        raise RuntimeError("the training buffer holds normalized observations; the recipe trains without")
    end = snapshot.env_steps
    if end > int(buffer["size"]) or int(buffer["pos"]) < int(buffer["size"]):
        raise RuntimeError(f"the training buffer ({buffer['size']} transitions) does not hold the {end} "
                           f"transitions before the medium snapshot in order")
    space = gym.make(env_id).action_space
    low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    obs, next_obs = buffer["obs"][:end].double().numpy(), buffer["next_obs"][:end].double().numpy()
    action = low + (buffer["action"][:end].numpy() + 1.0) * 0.5 * (high - low)
    reward, terminal = buffer["reward"][:end].double().numpy(), buffer["terminal"][:end].numpy() > 0
    ends = np.flatnonzero(terminal | (buffer["truncated"][:end].numpy() > 0)) + 1
    bounds = list(zip(np.concatenate([[0], ends]), np.concatenate([ends, [end]])))
    start = max(0, end - steps)
    episodes = []
    for a, b in bounds:
        if a < start or b <= a:  # before the window, or the empty tail after a final episode end
            continue
        if not np.array_equal(next_obs[a:b - 1], obs[a + 1:b]):
            raise RuntimeError(f"locomotion recipe check failed: the replay buffer's episode at rows {a}-{b} is "
                               f"not continuous (next_obs[t] != obs[t + 1])")
        episodes.append({"observations": np.concatenate([obs[a:b], next_obs[b - 1:b]]), "actions": action[a:b],
                         "rewards": reward[a:b], "terminations": terminal[a:b].copy(),
                         "truncations": np.arange(b - a) == b - a - 1 if not terminal[b - 1]
                         else np.zeros(b - a, bool)})
    return episodes


def _check_episodes(episodes: list[dict[str, np.ndarray]], obs_dim: int, action_dim: int) -> None:
    for k, ep in enumerate(episodes):
        steps = len(ep["rewards"])
        ok = (steps > 0 and ep["observations"].shape == (steps + 1, obs_dim)
              and ep["actions"].shape == (steps, action_dim)
              and all(ep[key].shape == (steps,) for key in ("terminations", "truncations"))
              and all(np.isfinite(ep[key]).all() for key in ("observations", "actions", "rewards"))
              and not ep["terminations"][:-1].any() and not ep["truncations"][:-1].any()
              and bool(ep["terminations"][-1]) != bool(ep["truncations"][-1]))
        if not ok:
            raise RuntimeError(f"locomotion recipe check failed: episode {k} is malformed (shapes, NaN, or an "
                               f"end flag not exactly at its last step)")


# --------------------------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------------------------

_ROLLOUT_SEEDS = {"random": 1, "medium": 2, "expert": 3}


def make_locomotion_dataset(dataset_id: str, env: str = "hopper", level: str = "medium", steps: int = 1_000_000,
                            seed: int = 0, progress: bool = True, train_steps: int | None = None,
                            snapshot_every: int = SNAPSHOT_EVERY, warmup_steps: int = WARMUP_STEPS,
                            eval_episodes: int = EVAL_EPISODES, cache_dir: str | Path | None = None
                            ) -> "minari.MinariDataset":
    """Build `dataset_id`: `level` of `env` (see the module docstring); `steps` transitions per rolled-out level.

    `train_steps` (default ``TRAIN_STEPS[env]``), `snapshot_every`, `warmup_steps` and `eval_episodes` shape
    the SAC run, which is trained once per combination of them and `seed` and cached in `cache_dir`.
    """
    import gymnasium as gym
    import minari

    env_id, level = _parse(env, level)
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}.")
    t0 = time.perf_counter()
    ref_min, ref_max = reference_scores(env_id)
    probe = gym.make(env_id)
    obs_dim, action_dim, spec = probe.observation_space.shape[0], probe.action_space.shape[0], probe.spec
    probe.close()

    directory = snapshots = medium = expert = None
    if level != "random":
        directory, snapshots = train_policies(env, seed, train_steps, snapshot_every, warmup_steps, eval_episodes,
                                              cache_dir, progress)
        medium, expert = select_levels(snapshots, env_id)

    def rolled(which: str) -> list[dict[str, np.ndarray]]:
        rollout_seed = seed * 100 + _ROLLOUT_SEEDS[which]
        if which == "random":
            return _rollout_episodes(env_id, None, steps, rollout_seed, f"{env}/random", progress)
        snapshot = medium if which == "medium" else expert
        return _policy_episodes(directory, snapshot, env_id, steps, rollout_seed, f"{env}/{which}", progress)

    if level == "medium-replay":
        episodes = _replay_episodes(directory, medium, env_id, steps)
    elif level == "medium-expert":
        episodes = rolled("medium") + rolled("expert")
    else:
        episodes = rolled(level)
    _check_episodes(episodes, obs_dim, action_dim)
    total = sum(len(ep["rewards"]) for ep in episodes)
    returns = np.array([ep["rewards"].sum() for ep in episodes])

    if snapshots is not None:
        training = (f"SAC (lit_offrl.algos.SAC defaults: 2x256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, "
                    f"learned temperature) trained online with lit_offrl.data.online.OnlineDataModule for "
                    f"{snapshots[-1].updates} updates (one env step each, {warmup_steps} uniformly random "
                    f"warmup transitions), seed {seed}; policies kept every {snapshot_every} updates and evaluated "
                    f"with stochastic actions over {eval_episodes} episodes. Medium = snapshot at {medium.updates} "
                    f"updates ({medium.env_steps} env steps; evaluated return {medium.return_mean:.1f}, normalized "
                    f"{medium.normalized:.1f}; the first snapshot within {MEDIUM_TOLERANCE:g} of normalized "
                    f"{MEDIUM_TARGET_SCORE:g}). Expert = best "
                    f"snapshot, {expert.updates} updates (return {expert.return_mean:.1f}, normalized "
                    f"{expert.normalized:.1f}{', below D4RL expert' if expert.normalized < 100 else ''}). ")
    else:
        training = ""
    if level == "medium-replay":
        window = f", the last {steps} transitions" if steps < medium.env_steps else ""
        behaviour = f"the replay buffer of the SAC run up to the medium snapshot, in collection order{window}"
    else:
        behaviour = {"random": "uniformly random actions", "medium": "the medium SAC policy, stochastic actions",
                     "expert": "the expert SAC policy, stochastic actions",
                     "medium-expert": f"the medium dataset's episodes followed by the expert dataset's ({steps} "
                                      f"transitions each)"}[level]
    description = (
        f"D4RL-style {env} {level} data for {env_id}: {behaviour}. {total} transitions in {len(episodes)} episodes "
        f"(mean return {returns.mean():.1f}, normalized {_normalized(float(returns.mean()), env_id):.1f}). "
        f"{training}ref_min_score / ref_max_score are D4RL's random / expert returns ({ref_min} / {ref_max}) so "
        f"normalized scores compare with D4RL's. Episodes end at termination or the {spec.max_episode_steps}-step "
        f"limit; the last episode of a rolled-out level is cut at exactly the requested size."
    )
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(observations=ep["observations"], actions=ep["actions"], rewards=ep["rewards"],
                             terminations=ep["terminations"], truncations=ep["truncations"]) for ep in episodes]
    algorithm = {"random": "uniform-random", "medium-replay": "SAC-replay-buffer"}.get(level, "SAC")
    from lit_offrl.data.minari_io import create_dataset_atomically  # a killed build leaves no half-written dataset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        dataset = create_dataset_atomically(
            dataset_id=dataset_id, buffer=buffers, env=spec, eval_env=spec, algorithm_name=algorithm,
            author="lit_offrl", code_permalink=CODE_PERMALINK, ref_min_score=ref_min, ref_max_score=ref_max,
            description=description, requirements=policy_runs.requirements("gymnasium", "mujoco"))
    if dataset.total_steps != total or dataset.total_episodes != len(episodes):
        minari.delete_dataset(dataset_id)
        raise RuntimeError(f"locomotion recipe check failed: wrote {dataset.total_steps} steps / "
                           f"{dataset.total_episodes} episodes, expected {total} / {len(episodes)}; deleted")
    seconds = time.perf_counter() - t0
    log.info("%s built: %d steps, %d episodes, mean return %.1f in %.0f s", dataset_id, total, len(episodes),
             returns.mean(), seconds)
    if progress:
        print(f"[{env}/{level}] {dataset_id}: {total} steps, {len(episodes)} episodes, mean return "
              f"{returns.mean():.1f} (normalized {_normalized(float(returns.mean()), env_id):.1f}); {seconds:.0f}s")
    return dataset
