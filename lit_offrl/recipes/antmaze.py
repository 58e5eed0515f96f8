"""AntMaze data-generation recipe (D4RL ``antmaze-{umaze,umaze-diverse,medium-play,medium-diverse}``) on
Gymnasium-Robotics' ``AntMaze_*-v5`` environments.

What it builds
--------------
Ordinary local Minari datasets ``lit-offrl/antmaze/{umaze,umaze-diverse,medium-play,medium-diverse}-v0`` made
the way D4RL made its AntMaze data (Fu et al. 2020; D4RL ``scripts/generation/generate_ant_maze_datasets.py``)
and Minari re-made ``D4RL/antmaze/*`` (``scripts/D4RL/antmaze/create_antmaze_dataset.py`` of the Farama
``minari-dataset-generation-scripts``): a goal-reaching ant policy, trained online, is driven through the maze
by a planner that hands it the next waypoint, with Gaussian action noise.

Two stages:

1. **The low-level policy** (`train_goal_policy`): SAC (`lit_offrl.algos.SAC`) trained online with
   `lit_offrl.data.online.OnlineDataModule` in ``lit_offrl/AntGoalReachTorso-v1`` (`AntGoalReachEnv`, registered
   with Gymnasium by this module): the same Gymnasium ant model as AntMaze (``gymnasium/envs/mujoco/assets/
   ant.xml``, Ant-v5 dynamics, frame skip 5) on an open floor, observation = the AntMaze ant observation (27:
   qpos without x, y and qvel, no contact forces) + the goal relative to the torso (2; `relative_goal`: in the
   torso's heading frame by default, ``GOAL_FRAME = "torso"``; D4RL and Minari gave it in the world frame,
   which ``lit_offrl/AntGoalReach-v1`` / ``goal_frame="world"`` still offers), goals drawn at
   waypoint-like distances around the ant and replaced by a new one once reached (a continuing task, as
   Minari's ``GoalReachAnt``), 1000-step episodes, terminated when the ant flips (torso past horizontal).
   The training run is cached (`<Minari root>/.lit_offrl_cache/antmaze/...`), snapshotted every
   ``snapshot_every`` updates, and resumes after a kill, as the locomotion recipes' runs do.
2. **The data** (`make_antmaze_dataset`): `MazeDriver` (Minari's antmaze ``WaypointController``: Q-iteration
   over the grid, `lit_offrl.recipes.pointmaze.QIterationPlanner`; the next cell's centre as the target,
   moved on within 0.45, intermediate waypoints jittered by ``-U[0, 1)^2 * 0.2``, the goal itself in the goal
   cell) hands the target to a snapshot of that policy (``policy_input``: ant observation + target - torso,
   capped at 6 m), which acts stochastically, plus ``N(0, 0.2^2)`` action noise clipped to [-1, 1] (D4RL
   ``--noisy``, Minari ``--action-noise 0.2``). The waypoint exists only inside the driver: the stored
   observation is the env's own dict (``observation`` 27, ``achieved_goal`` 2, ``desired_goal`` 2 = the
   episode's maze goal), as the hub's.

The datasets (``DATASETS``; row, col of Gymnasium-Robotics' maps)
------------------------------------------------------------------
Envs ``AntMaze_UMaze-v5`` / ``AntMaze_Medium-v5`` with ``continuing_task=True, reset_target=False`` (the goal
stays put for the episode; the sparse reward counts the steps within 0.45 of it, never terminated) and
``include_cfrc_ext_in_observation=False`` (the hub's 27-number ant observation; v5's Ant adds 78 contact
forces by default), as Minari's generation script made ``D4RL/antmaze/*`` (with the v4 envs):

* ``umaze``: fixed start (3, 1) and goal (1, 1), the two ends of the U (Minari's umaze map; D4RL's U_MAZE);
* ``umaze-diverse``: random goal and start cells (the registered map);
* ``medium-play``: the goal one of D4RL's three hand-picked cells (``BIG_MAZE``'s "g": (2, 6), (5, 1), (6, 5);
  Gymnasium-Robotics' medium map is D4RL's cell for cell), from random start cells (D4RL ``--multi_start``);
  Minari's script used random goals here;
* ``medium-diverse``: random goal and start cells.

Each episode starts from its own reset (seeded from the recipe seed and its index) and runs the env's step
limit, 700 (umaze) / 1000 (medium) steps, ``truncations[-1] = True``; the last one is cut so the dataset holds
exactly ``steps`` transitions. ``infos``: ``success``, ``goal``, ``qpos``, ``qvel`` (as the hub's).
Evaluation env (``eval_env_spec``): the same env with D4RL's evaluation start and goal (``EVAL_CELLS``: umaze
(3, 1) -> (1, 1); medium (1, 1) -> (6, 6), as Minari's ``EVAL_ENV_MAPS``; for the umaze Minari's map mirrors
the walls, a maze its data never shows, so the data's walls are kept). ``ref_min_score`` = mean return of
uniformly random actions, ``ref_max_score`` = mean return of the noiseless driver, over ``REF_EPISODES`` (100)
evaluation episodes (Minari computes its reference scores the same way, from an expert policy).

Training reward (`AntGoalReachEnv.step`)
----------------------------------------
``r = PROGRESS_WEIGHT * (d_{t-1} - d_t) / dt + healthy - 0.5 |a|^2`` with ``d`` the torso-goal distance,
``healthy = 1`` on every step before a flip (-v0: while the torso is in Ant-v5's healthy height range), and
Ant-v5's control cost. Why:

* the progress term is potential-based shaping of the distance (Ng, Harada & Russell 1999): it leaves the
  optimal policy of "get to the goal" unchanged while giving a dense signal every step, and it equals the
  torso's velocity projected on the goal direction, which is what Minari's ``GoalReachAnt`` rewarded
  (``reach_goal_ant.py``: ``10 * velocity . goal_dir + ctrl + survive``); its weight 10 is theirs
  (a turning ant's goal-directed speed is small next to Ant's forward speed);
* the survival reward (Ant-v5's 1 per step) and termination on a flip keep the ant upright: a flipped ant in the
  maze never recovers (AntMaze itself never terminates). Ant-v5's own rule, the torso height leaving (0.2, 1.0)
  (the -v0 envs), ended harmless jumps and missed an ant lying on its back at 0.27 (`AntGoalReachEnv`);
* the control cost (Ant-v5's) keeps the gait smooth, so the added data noise acts on moderate torques;
* goals are continuing (a new goal the step one is reached), so reaching a goal fast is worth more progress
  reward on the next one; no reach bonus is needed.

Everything random draws from generators seeded by (seed, ...), so a recipe is deterministic from its seed.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from lit_offrl.errors import UserError
from lit_offrl.recipes import policy_runs

log = logging.getLogger(__name__)

CODE_PERMALINK = "lit_offrl/recipes/antmaze.py"

# ---- the goal-reaching training env
# -v1 ends an episode when the ant flips (`FLIP_UP_Z`); -v0 (the first runs, kept registered) used Ant-v5's healthy
# height range, which ended harmless jumps and let a flipped ant go on collecting the survival reward (see `fell`).
GOAL_ENV_IDS = {"world": "lit_offrl/AntGoalReach-v1", "torso": "lit_offrl/AntGoalReachTorso-v1"}
GOAL_ENV_IDS_V0 = {"world": "lit_offrl/AntGoalReach-v0", "torso": "lit_offrl/AntGoalReachTorso-v0"}
FLIP_UP_Z = 0.0                 # fallen: the torso's up axis points below the horizon (tipped past 90 degrees)
GOAL_FRAME = "torso"            # the relative goal in the torso's heading frame (see `relative_goal`)
GOAL_ENV_ID = GOAL_ENV_IDS[GOAL_FRAME]
GOAL_EPISODE_STEPS = 1000       # Minari's train_ant.py max_episode_steps
PROGRESS_WEIGHT = 10.0          # Minari's GoalReachAnt forward_reward_scale
GOAL_DISTANCE = (0.5, 6.0)      # m; waypoints are cell centres 4 m apart, first / last ones up to ~6 m away
GOAL_THRESHOLD = 0.3            # m; stricter than the driver's 0.45 waypoint threshold (Minari trained at 0.2)
TRAIN_RESET_NOISE = 0.1         # Ant-v5's reset noise, so the policy sees varied starting poses
ANT_OBS_DIM = 27                # AntMaze observation["observation"]: qpos[2:] (13) + qvel (14)

# ---- SAC training of the low-level policy
TRAIN_STEPS = 1_000_000        # updates (~25-45/s on the shared 2-core machine: 6-11 h, over sessions; the SAC
                               # paper's Ant runs take 3M steps; the snapshots, not the last update, decide)
WARMUP_STEPS = 10_000
SNAPSHOT_EVERY = 10_000
EVAL_EPISODES = 10
EVAL_STEPS = GOAL_EPISODE_STEPS  # steps per snapshot-evaluation episode (read at call time; tests shorten it)
EVAL_SEED = 3_000_000
SAC_KWARGS = {"hidden_dims": (256, 256), "gamma": 0.99, "initial_alpha": 0.1}  # alpha 0.1: Minari's auto_0.1


# ==============================================================================================================
# The goal-reaching env
# ==============================================================================================================


class AntGoalReachEnv(gym.Env):
    """The AntMaze ant on an open floor, rewarded for progress toward a goal placed `goal_distance` away.

    Observation (29, float64): the ant part of AntMaze's observation (qpos without x, y: 13; qvel: 14) followed
    by ``goal - torso_xy``. A goal within `goal_threshold` is replaced at once by a new one (continuing task;
    ``info["goals_reached"]`` counts them). See the module docstring for the reward.

    `fall` says when the episode ends: ``"flip"`` (-v1) when the torso tips past horizontal (`fell`), the one fall a
    maze ant never recovers from, with the survival reward paid on every other step; ``"height"`` (-v0) when the
    torso height leaves Ant-v5's healthy range (0.2, 1.0), Ant-v5's own rule. Measured on a -v0 snapshot (100k
    updates, 6 deterministic episodes, 2026-12-03): all four episodes that ended did so on a jump above 1.0 with the
    torso upright-ish (up axis z 0.32-0.81), and one ant lay upside down (up axis z -0.78, torso at 0.27) for the
    rest of its 1000 steps, still "healthy" and paid for it.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}

    def __init__(self, goal_distance: tuple[float, float] = GOAL_DISTANCE, goal_threshold: float = GOAL_THRESHOLD,
                 progress_weight: float = PROGRESS_WEIGHT, reset_noise_scale: float = TRAIN_RESET_NOISE,
                 goal_frame: str = GOAL_FRAME, fall: str = "flip", render_mode: str | None = None):
        from gymnasium.envs.mujoco.ant_v5 import AntEnv

        if fall not in ("flip", "height"):
            raise UserError(f"fall must be 'flip' or 'height', got {fall!r}.")
        self.fall = fall
        # "flip": Ant-v5's height range opened, so its survival reward is paid every step and it never terminates;
        # this env ends the episode on a flip instead.
        height = {} if fall == "height" else {"healthy_z_range": (-np.inf, np.inf), "terminate_when_unhealthy": False}
        self.ant = AntEnv(include_cfrc_ext_in_observation=False, exclude_current_positions_from_observation=False,
                          reset_noise_scale=reset_noise_scale, render_mode=render_mode, **height)
        self.goal_distance = (float(goal_distance[0]), float(goal_distance[1]))
        self.goal_threshold, self.progress_weight = float(goal_threshold), float(progress_weight)
        self.goal_frame = _frame(goal_frame)
        self.render_mode = render_mode
        self.action_space = self.ant.action_space
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (ANT_OBS_DIM + 2,), np.float64)
        self.goal = np.zeros(2)
        self._distance = 0.0
        self.goals_reached = 0

    def _new_goal(self, xy: np.ndarray) -> None:
        angle = self.np_random.uniform(0.0, 2.0 * np.pi)
        radius = self.np_random.uniform(*self.goal_distance)
        self.goal = xy + radius * np.array([np.cos(angle), np.sin(angle)])
        self._distance = float(np.linalg.norm(self.goal - xy))

    def _obs(self, ant_obs: np.ndarray) -> np.ndarray:
        return np.concatenate([ant_obs[2:], relative_goal(self.goal - ant_obs[:2], ant_obs[3:7], self.goal_frame)])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # The ant's reset noise draws from its own generator: seed it from ours, so one seed fixes both.
        ant_obs, info = self.ant.reset(seed=int(self.np_random.integers(2**31)))
        self.goals_reached = 0
        self._new_goal(ant_obs[:2])
        return self._obs(ant_obs), {**info, "goals_reached": 0}

    def step(self, action):
        ant_obs, _, terminated, _, info = self.ant.step(action)
        if self.fall == "flip":
            terminated = fell(ant_obs[3:7])
        xy = ant_obs[:2]
        distance = float(np.linalg.norm(self.goal - xy))
        progress = (self._distance - distance) / self.ant.dt
        reward = self.progress_weight * progress + info["reward_survive"] + info["reward_ctrl"]
        self._distance = distance
        if distance <= self.goal_threshold:
            self.goals_reached += 1
            self._new_goal(xy)
        info = {**info, "progress": progress, "goals_reached": self.goals_reached}
        return self._obs(ant_obs), float(reward), bool(terminated), False, info

    def render(self):
        return self.ant.render()

    def close(self):
        self.ant.close()


def fell(quaternion: np.ndarray) -> bool:
    """Whether the torso (orientation `quaternion`, (w, x, y, z)) has tipped past horizontal: the z component of its
    up axis, ``1 - 2 (x^2 + y^2)``, below `FLIP_UP_Z`."""
    _, x, y, _ = np.asarray(quaternion, dtype=np.float64)
    return bool(1.0 - 2.0 * (x * x + y * y) < FLIP_UP_Z)


def _frame(goal_frame: str) -> str:
    if goal_frame not in GOAL_ENV_IDS:
        raise UserError(f"goal_frame must be one of {list(GOAL_ENV_IDS)}, got {goal_frame!r}.")
    return goal_frame


def relative_goal(offset: np.ndarray, quaternion: np.ndarray, goal_frame: str = GOAL_FRAME) -> np.ndarray:
    """The goal offset (goal - torso xy, world frame) as the policy sees it: unchanged for ``"world"`` (D4RL's and
    Minari's policies), rotated into the torso's heading (yaw) frame for ``"torso"`` (x ahead, y to the left).
    The torso frame spares the policy learning the rotation by its own heading from the quaternion, which a
    world-frame policy has to (the first 100k updates of a world-frame run, 2026-12-02, showed no goal-directed
    walking yet). `quaternion`: the torso's (w, x, y, z), ``observation[1:5]`` of AntMaze."""
    offset = np.asarray(offset, dtype=np.float64)
    if goal_frame == "world":
        return offset.copy()
    w, x, y, z = np.asarray(quaternion, dtype=np.float64)
    yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c * offset[0] + s * offset[1], -s * offset[0] + c * offset[1]])


def register_goal_env() -> None:
    """Register ``lit_offrl/AntGoalReach-v1`` (world-frame goal) and ``lit_offrl/AntGoalReachTorso-v1``
    (torso-frame goal), and their -v0 (Ant-v5's height-range termination), with Gymnasium (idempotent)."""
    for ids, fall in ((GOAL_ENV_IDS, "flip"), (GOAL_ENV_IDS_V0, "height")):
        for frame, env_id in ids.items():
            if env_id not in gym.registry:
                gym.register(env_id, entry_point=AntGoalReachEnv, max_episode_steps=GOAL_EPISODE_STEPS,
                             kwargs={"goal_frame": frame, "fall": fall})


register_goal_env()


# ==============================================================================================================
# Training the goal-reaching policy: one SAC run, cached, snapshotted and resumable
# ==============================================================================================================


@dataclass
class Snapshot:
    """A saved policy of the training run and its evaluation in the goal env (stochastic actions)."""

    updates: int
    env_steps: int
    return_mean: float
    goals_per_episode: float   # goals reached per evaluation episode (1000 steps unless it fell)
    fall_rate: float           # fraction of evaluation episodes that ended with the ant unhealthy
    path: str


def default_cache_dir() -> Path:
    from lit_offrl.data import minari_io

    return minari_io.local_root() / ".lit_offrl_cache" / "antmaze"


def run_directory(seed: int = 0, train_steps: int = TRAIN_STEPS, snapshot_every: int = SNAPSHOT_EVERY,
                  warmup_steps: int = WARMUP_STEPS, eval_episodes: int = EVAL_EPISODES,
                  cache_dir: str | Path | None = None, goal_frame: str = GOAL_FRAME) -> Path:
    """The cache folder of the training run with these settings."""
    env_name = GOAL_ENV_IDS[_frame(goal_frame)].split("/")[-1]
    name = (f"{env_name}-sac-seed{seed}-updates{train_steps}-warmup{warmup_steps}-every{snapshot_every}"
            f"-eval{eval_episodes}")
    return Path(cache_dir or default_cache_dir()) / name


def read_snapshots(directory: str | Path) -> list[Snapshot]:
    """The snapshots a run has written so far (also while it is still training), in update order."""
    return policy_runs.read_snapshots(directory, Snapshot)


def best_snapshot(snapshots: list[Snapshot]) -> Snapshot:
    """The snapshot reaching the most goals (ties: fewer falls, then the earlier one)."""
    if not snapshots:
        raise UserError("the AntMaze goal-policy run has no snapshot yet: train it first "
                        "(python -m lit_offrl.recipes antmaze train).")
    return max(snapshots, key=lambda s: (s.goals_per_episode, -s.fall_rate, -s.updates))


def load_policy(directory: str | Path, snapshot: Snapshot):
    """The SAC module of `snapshot` (eval mode, CPU)."""
    import torch

    from lit_offrl.algos.sac import SAC

    checkpoint = torch.load(Path(directory) / snapshot.path, map_location="cpu", weights_only=False)
    module = SAC(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def policy_function(module, deterministic: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Batched actions in the env's bounds for (n, 29) goal observations."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module.act(np.asarray(obs, dtype=np.float32), deterministic=deterministic).cpu().numpy()

    return act


def evaluate_goal_policy(policy: Callable[[np.ndarray], np.ndarray], episodes: int = EVAL_EPISODES,
                         seed: int = EVAL_SEED, max_steps: int = GOAL_EPISODE_STEPS,
                         goal_frame: str = GOAL_FRAME) -> dict[str, float]:
    """Run `episodes` goal-env episodes together (reset seeds seed, seed + 1, ...): mean return, goals reached per
    episode, fraction of episodes that ended in a fall."""
    envs = [gym.make(GOAL_ENV_IDS[goal_frame], max_episode_steps=max_steps) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, goals, fell = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes, bool)
    running = np.ones(episodes, bool)
    while running.any():
        actions = policy(obs)
        for i in np.flatnonzero(running):
            obs[i], reward, terminated, truncated, info = envs[i].step(actions[i])
            returns[i] += reward
            goals[i] = info["goals_reached"]
            if terminated or truncated:
                running[i], fell[i] = False, bool(terminated)
    for env in envs:
        env.close()
    return {"return_mean": float(returns.mean()), "goals_per_episode": float(goals.mean()),
            "fall_rate": float(fell.mean())}


def _snapshot_callback(directory: Path, every: int, eval_episodes: int, snapshots: dict[int, Snapshot],
                       goal_frame: str):
    import torch
    from lightning.pytorch.callbacks import Callback

    from lit_offrl.recipes.locomotion import _seeded_torch

    class GoalPolicySnapshots(Callback):
        """Every `every` updates (and at the end): save the policy, evaluate it, record it in snapshots.json."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            updates = module._updates
            if updates % every == 0 or updates == module.max_updates:
                path = directory / "policies" / f"updates={updates:08d}.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                            "pytorch-lightning_version": policy_runs.package_version("lightning")}, path)
                was_training = module.training
                module.eval()
                with _seeded_torch(EVAL_SEED, module.device):
                    result = evaluate_goal_policy(policy_function(module), eval_episodes, max_steps=EVAL_STEPS,
                                                  goal_frame=goal_frame)
                module.train(was_training)
                snapshots[updates] = Snapshot(updates, trainer.datamodule.env_steps, result["return_mean"],
                                              result["goals_per_episode"], result["fall_rate"],
                                              str(path.relative_to(directory)))
                policy_runs.write_snapshots(directory, snapshots)
                log.info("snapshot %s", snapshots[updates])
                print(f"[antmaze goal policy] {time.strftime('%H:%M:%S')} {snapshots[updates]}", flush=True)

    return GoalPolicySnapshots()


training_in_progress = policy_runs.training_in_progress


def train_goal_policy(seed: int = 0, train_steps: int = TRAIN_STEPS, snapshot_every: int = SNAPSHOT_EVERY,
                      warmup_steps: int = WARMUP_STEPS, eval_episodes: int = EVAL_EPISODES,
                      cache_dir: str | Path | None = None, progress: bool = True,
                      goal_frame: str = GOAL_FRAME) -> tuple[Path, list[Snapshot]]:
    """Train the goal-reaching SAC policy (or reuse the finished run from the cache, or resume a killed one from
    its ``checkpoints/last.ckpt``); returns (run folder, snapshots). Raises `UserError` while another live
    process trains the same run."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_offrl.algos.sac import SAC
    from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
    from lit_offrl.data.online import OnlineDataModule
    from lit_offrl.recipes.locomotion import _quiet, _torch_threads

    if train_steps < 1 or snapshot_every < 1 or eval_episodes < 1:
        raise UserError(f"train_steps, snapshot_every and eval_episodes must be >= 1, got {train_steps}, "
                        f"{snapshot_every}, {eval_episodes}.")
    directory = run_directory(seed, train_steps, snapshot_every, warmup_steps, eval_episodes, cache_dir, goal_frame)
    env_id = GOAL_ENV_IDS[goal_frame]
    if (directory / "done").exists():
        return directory, read_snapshots(directory)
    other = training_in_progress(directory)
    if other is not None:
        raise UserError(f"process {other} is training the AntMaze goal policy in {directory}; wait for it, or "
                        f"build from the snapshots it has written so far (partial_training=True).")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "training.lock").write_text(f"{os.getpid()}\n")
    (directory / "training.json").write_text(json.dumps(
        {"env_id": env_id, "goal_frame": goal_frame, "seed": seed, "train_steps": train_steps,
         "warmup_steps": warmup_steps,
         "snapshot_every": snapshot_every, "eval_episodes": eval_episodes, "algorithm": "lit_offrl.algos.SAC",
         "sac": SAC_KWARGS, "goal_distance": GOAL_DISTANCE, "goal_threshold": GOAL_THRESHOLD,
         "progress_weight": PROGRESS_WEIGHT}, indent=1))
    snapshots = {s.updates: s for s in read_snapshots(directory)}
    last = directory / "checkpoints" / "last.ckpt"
    try:
        with _torch_threads(1), _quiet(not progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            # Our env is not one of Gymnasium's own MuJoCo envs: a resumed run cuts the episode in progress.
            warnings.filterwarnings("ignore", ".*holds no environment state.*")
            L.seed_everything(seed, verbose=False)
            datamodule = OnlineDataModule(env_id, capacity=train_steps + warmup_steps + 1,
                                          warmup_steps=warmup_steps, seed=seed, eval_episodes=0)
            model = SAC(datamodule.obs_dim, datamodule.action_dim, **SAC_KWARGS)
            callbacks = [UpdateCheckpoint(every_n_updates=snapshot_every, dirpath=str(directory / "checkpoints")),
                         _snapshot_callback(directory, snapshot_every, eval_episodes, snapshots, goal_frame)]
            if progress:
                callbacks.append(UpdatesProgressBar(refresh_rate=500))
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


# ==============================================================================================================
# The maze: envs, maps, evaluation goal
# ==============================================================================================================

R, G = "r", "g"
MAZE_ENVS = {"umaze": "AntMaze_UMaze-v5", "medium": "AntMaze_Medium-v5"}
# Data maps (None: the registered map, every free cell a goal and a reset cell). Row/column indices are those of
# Gymnasium-Robotics' maps (row 0 at the top, y pointing up).
#  umaze:       D4RL's fixed start and goal on the two ends of the U (Minari's D4RL/antmaze/umaze map).
#  medium-play: D4RL's hand-picked goals (maze_env.BIG_MAZE's "g" cells) from random free cells
#               (D4RL --multi_start); Gymnasium-Robotics' medium map is D4RL's BIG_MAZE cell for cell.
#  diverse:     random goals and starts over every free cell (D4RL --multi_start --multigoal).
_U = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
_MEDIUM = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 1, 1],
           [1, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1]]


def _with_cells(base: list, **cells: list[tuple[int, int]]) -> list:
    maze_map = [list(row) for row in base]
    for kind, positions in cells.items():
        for r, c in positions:
            assert maze_map[r][c] == 0, f"cell {(r, c)} is not free"
            maze_map[r][c] = {"goal": G, "reset": R}[kind]
    return maze_map


# D4RL's evaluation tasks (maze_env.U_MAZE_TEST, BIG_MAZE_TEST) in Gymnasium-Robotics' cells; the same start and
# goal as Minari's EVAL_ENV_MAPS for the medium maze. For the umaze, Minari's script's eval map has its walls
# mirrored (the U open on the left), a maze its data never shows; here the eval maze is the data's.
EVAL_CELLS = {"umaze": {"reset": [(3, 1)], "goal": [(1, 1)]}, "medium": {"reset": [(1, 1)], "goal": [(6, 6)]}}
DATASETS = {
    "umaze": ("umaze", _with_cells(_U, **EVAL_CELLS["umaze"])),
    "umaze-diverse": ("umaze", None),
    "medium-play": ("medium", _with_cells(_MEDIUM, goal=[(2, 6), (5, 1), (6, 5)])),
    "medium-diverse": ("medium", None),
}
DESCRIPTIONS = {
    "umaze": "fixed start and goal at the two ends of the U (D4RL antmaze-umaze)",
    "umaze-diverse": "random goals from random starts (D4RL antmaze-umaze-diverse)",
    "medium-play": "three hand-picked goals from random starts (D4RL antmaze-medium-play)",
    "medium-diverse": "random goals from random starts (D4RL antmaze-medium-diverse)",
}
WAYPOINT_THRESHOLD = 0.45   # Minari's antmaze WaypointController
WAYPOINT_JITTER = 0.2       # intermediate waypoints shifted by -U[0, 1)^2 * 0.2 (Minari's controller)
ACTION_NOISE = 0.2          # D4RL --noisy and Minari's --action-noise: N(0, 0.2^2), then clipped to [-1, 1]
REF_EPISODES = 100          # episodes for ref_min_score / ref_max_score (Minari's default)
ROLLOUT_STREAMS = 10        # environments stepped together (one batched policy call per step)
GOAL_RADIUS = 0.45          # AntMaze's success / sparse-reward radius


def _register_maze_envs() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium_robotics warns about unrelated Adroit reward changes on import
        import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


def _maze_kwargs(maze_map: list | None) -> dict[str, Any]:
    # The hub's AntMaze data (v4 envs) has the 27-number ant observation; v5's Ant adds 78 contact forces by default.
    kwargs: dict[str, Any] = {"continuing_task": True, "reset_target": False, "include_cfrc_ext_in_observation": False}
    if maze_map is not None:
        kwargs["maze_map"] = maze_map
    return kwargs


def make_maze_env(name: str, **kwargs: Any) -> gym.Env:
    """The data env of dataset `name` (``umaze``, ``umaze-diverse``, ``medium-play``, ``medium-diverse``):
    ``AntMaze_*-v5``, continuing task with a fixed goal per episode (``reset_target=False``), 27-number ant
    observation."""
    _register_maze_envs()
    maze, maze_map = _dataset(name)
    return gym.make(MAZE_ENVS[maze], **_maze_kwargs(maze_map), **kwargs)


def make_eval_env(name: str, **kwargs: Any) -> gym.Env:
    """The evaluation env of dataset `name`: its maze with D4RL's start and goal cells (`EVAL_CELLS`)."""
    _register_maze_envs()
    maze, _ = _dataset(name)
    base = _U if maze == "umaze" else _MEDIUM
    return gym.make(MAZE_ENVS[maze], **_maze_kwargs(_with_cells(base, **EVAL_CELLS[maze])), **kwargs)


def _dataset(name: str) -> tuple[str, list | None]:
    if name not in DATASETS:
        raise UserError(f"Unknown AntMaze dataset {name!r}; valid values: {', '.join(map(repr, DATASETS))}.")
    return DATASETS[name]


# ==============================================================================================================
# The maze driver: planner waypoints -> targets for the low-level policy
# ==============================================================================================================


class MazeDriver:
    """Waypoints through the maze toward the observation's ``desired_goal`` (Minari's antmaze WaypointController).

    Q-iteration over the grid (`lit_offrl.recipes.pointmaze.QIterationPlanner`) gives the next cell from every
    free cell. A new ``desired_goal`` triggers a plan from the ant's cell and the target becomes the next cell's
    centre; within `waypoint_threshold` of an intermediate waypoint the target moves on to the following cell,
    its centre shifted by ``-U[0, 1)^2 * waypoint_jitter`` (`rng`); in the goal cell the target is the goal
    itself. `target(achieved_goal, desired_goal)` returns the (x, y) the low-level policy is sent to.
    """

    def __init__(self, maze: Any, rng: np.random.Generator, waypoint_threshold: float = WAYPOINT_THRESHOLD,
                 waypoint_jitter: float = WAYPOINT_JITTER, planner: Any = None):
        from lit_offrl.recipes.pointmaze import QIterationPlanner

        self.maze, self.rng = maze, rng
        self.threshold, self.jitter = float(waypoint_threshold), float(waypoint_jitter)
        self.planner = planner if planner is not None else QIterationPlanner(maze.maze_map)
        self.reset()

    def reset(self) -> None:
        self.goal = None            # the desired_goal the current plan leads to
        self.goal_cell = None
        self.cell = None            # the cell of the current waypoint
        self.waypoint = np.zeros(2)
        self.waypoints: list[tuple[int, int]] = []  # cells targeted since the last plan (for inspection)

    def _cell_of(self, xy: np.ndarray) -> tuple[int, int]:
        r, c = self.maze.cell_xy_to_rowcol(np.asarray(xy))
        return int(r), int(c)

    def _head_for(self, after: tuple[int, int]) -> None:
        table = self.planner.next_cell_table(self.goal_cell)
        inside = 0 <= after[0] < len(table) and 0 <= after[1] < len(table[0])
        following = table[after[0]][after[1]] if inside else None
        if following is None or following == self.goal_cell or after == self.goal_cell:
            self.cell, self.waypoint = self.goal_cell, np.array(self.goal, dtype=np.float64)
        else:
            self.cell = following
            self.waypoint = self.maze.cell_rowcol_to_xy(np.array(following)) - self.rng.random(2) * self.jitter
        self.waypoints.append(self.cell)

    def target(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        if self.goal is None or np.linalg.norm(np.asarray(desired_goal) - self.goal) > 1e-3:
            self.goal = np.array(desired_goal, dtype=np.float64)
            self.goal_cell = self._cell_of(self.goal)
            self.waypoints = []
            # The first target is the next cell's centre, unjittered (as Minari's controller).
            table = self.planner.next_cell_table(self.goal_cell)
            start = self._cell_of(achieved_goal)
            following = table[start[0]][start[1]] if self.planner.free[start] else None
            if following is None or following == self.goal_cell or start == self.goal_cell:
                self.cell, self.waypoint = self.goal_cell, self.goal.copy()
            else:
                self.cell, self.waypoint = following, self.maze.cell_rowcol_to_xy(np.array(following))
            self.waypoints.append(self.cell)
        elif self.cell != self.goal_cell and np.linalg.norm(self.waypoint - achieved_goal) <= self.threshold:
            self._head_for(self.cell)
        return self.waypoint


def policy_input(obs: dict[str, np.ndarray], target: np.ndarray, goal_frame: str = GOAL_FRAME) -> np.ndarray:
    """The low-level policy's observation in the maze: the ant observation + the target relative to the torso
    (`relative_goal`), its length capped at the farthest training goal (D4RL also rescaled the relative goal
    into the training range)."""
    relative = np.asarray(target, dtype=np.float64) - obs["achieved_goal"]
    length = float(np.linalg.norm(relative))
    if length > GOAL_DISTANCE[1]:
        relative = relative * (GOAL_DISTANCE[1] / length)
    return np.concatenate([obs["observation"], relative_goal(relative, obs["observation"][1:5], goal_frame)])


def drive(envs: list[gym.Env], policy: Callable[[np.ndarray], np.ndarray] | None, seeds: list[int],
          rngs: list[np.random.Generator], action_noise: float = 0.0, record: bool = False,
          lengths: list[int] | None = None, goal_frame: str = GOAL_FRAME) -> dict[str, Any]:
    """One episode in each of `envs` (reset seeds `seeds`), stepped together: the `MazeDriver` hands each env's
    target to `policy` (batched; None: uniformly random actions from the env's `rngs`), plus Gaussian
    `action_noise` from `rngs`, clipped to the action bounds. Episodes run to the step limit (or `lengths`).
    Returns returns, successes (ever within the goal radius) and, with `record`, every step's data."""
    n = len(envs)
    space = envs[0].action_space
    drivers = [MazeDriver(env.unwrapped.maze, rng) for env, rng in zip(envs, rngs)]
    limits = lengths or [env.spec.max_episode_steps for env in envs]
    obs = [env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds)]
    returns, success = np.zeros(n), np.zeros(n, bool)
    data = None
    if record:
        data = [{"observation": [o["observation"]], "achieved_goal": [o["achieved_goal"]],
                 "desired_goal": [o["desired_goal"]], "success": [bool(np.linalg.norm(
                     o["achieved_goal"] - o["desired_goal"]) <= GOAL_RADIUS)], "actions": [], "rewards": []}
                for o in obs]
    for t in range(max(limits)):
        active = [i for i in range(n) if t < limits[i]]
        if policy is None:
            actions = {i: rngs[i].uniform(space.low, space.high) for i in active}
        else:
            batch = np.stack([policy_input(obs[i], drivers[i].target(obs[i]["achieved_goal"], obs[i]["desired_goal"]),
                                           goal_frame) for i in active])
            actions = dict(zip(active, policy(batch)))
        for i in active:
            action = actions[i]
            if action_noise > 0:
                action = action + action_noise * rngs[i].standard_normal(action.shape)
            action = np.clip(action, space.low, space.high).astype(np.float32)
            obs[i], reward, _, _, info = envs[i].step(action)
            returns[i] += reward
            success[i] |= bool(info["success"])
            if record:
                for key in ("observation", "achieved_goal", "desired_goal"):
                    data[i][key].append(obs[i][key])
                data[i]["success"].append(bool(info["success"]))
                data[i]["actions"].append(action)
                data[i]["rewards"].append(float(reward))
    return {"returns": returns, "success": success, "data": data}


def evaluate_driver(name: str, policy: Callable[[np.ndarray], np.ndarray] | None, episodes: int, seed: int,
                    action_noise: float = 0.0, goal_frame: str = GOAL_FRAME) -> dict[str, float]:
    """The driver with `policy` in the evaluation env of `name`: mean return and goal-reaching rate over
    `episodes` episodes (reset seeds seed, seed + 1, ...; streams of `ROLLOUT_STREAMS` envs)."""
    returns, success = [], []
    for start in range(0, episodes, ROLLOUT_STREAMS):
        count = min(ROLLOUT_STREAMS, episodes - start)
        envs = [make_eval_env(name) for _ in range(count)]
        rngs = [np.random.default_rng([seed, start + i, 17]) for i in range(count)]
        result = drive(envs, policy, [seed + start + i for i in range(count)], rngs, action_noise,
                       goal_frame=goal_frame)
        for env in envs:
            env.close()
        returns.extend(result["returns"])
        success.extend(result["success"])
    return {"return_mean": float(np.mean(returns)), "success_rate": float(np.mean(success)),
            "episodes": episodes}


# ==============================================================================================================
# The datasets
# ==============================================================================================================


def _episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode, 3]).generate_state(1)[0])


def _collect(name: str, policy: Callable[[np.ndarray], np.ndarray], steps: int, seed: int, action_noise: float,
             progress: bool, goal_frame: str = GOAL_FRAME) -> list:
    """`steps` transitions of the noisy driver in the data env of `name`, as Minari `EpisodeBuffer`s: episodes of
    the env's step limit (the last one cut), each from its own reset, `ROLLOUT_STREAMS` at a time."""
    from minari.data_collector import EpisodeBuffer
    from tqdm.auto import tqdm

    limit = int(make_maze_env(name).spec.max_episode_steps)
    count = -(-steps // limit)
    lengths = [limit] * (count - 1) + [steps - limit * (count - 1)]
    buffers = []
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"antmaze/{name}", mininterval=1.0)
    for start in range(0, count, ROLLOUT_STREAMS):
        episodes = list(range(start, min(start + ROLLOUT_STREAMS, count)))
        envs = [make_maze_env(name) for _ in episodes]
        seeds = [_episode_seed(seed, e) for e in episodes]
        rngs = [np.random.default_rng([seed, e, 5]) for e in episodes]
        result = drive(envs, policy, seeds, rngs, action_noise, record=True, lengths=[lengths[e] for e in episodes],
                       goal_frame=goal_frame)
        for env in envs:
            env.close()
        for e, episode_seed, data in zip(episodes, seeds, result["data"]):
            length = lengths[e]
            observation = np.asarray(data["observation"])
            achieved, desired = np.asarray(data["achieved_goal"]), np.asarray(data["desired_goal"])
            buffers.append(EpisodeBuffer(
                id=None, seed=episode_seed, options=None,
                observations={"observation": observation, "achieved_goal": achieved, "desired_goal": desired},
                actions=np.asarray(data["actions"], dtype=np.float32), rewards=np.asarray(data["rewards"]),
                terminations=np.zeros(length, bool), truncations=np.arange(length) == length - 1,
                # as the hub's AntMaze data: the MuJoCo state (qpos, qvel) and the goal at every observation
                infos={"success": np.asarray(data["success"]), "goal": desired.copy(),
                       "qpos": np.concatenate([achieved, observation[:, :13]], axis=1),
                       "qvel": observation[:, 13:].copy()}))
            bar.update(length)
    bar.close()
    return buffers


def _check_buffers(buffers: list, steps: int, limit: int, compute_reward: Callable) -> None:
    total = 0
    for i, b in enumerate(buffers):
        t = len(b.rewards)
        total += t
        obs = b.observations
        problems = []
        for key, dim in (("observation", ANT_OBS_DIM), ("achieved_goal", 2), ("desired_goal", 2)):
            if obs[key].shape != (t + 1, dim) or not np.isfinite(obs[key]).all():
                problems.append(f"observations[{key!r}] has shape {obs[key].shape} or non-finite values")
        if b.actions.shape != (t, 8) or np.abs(b.actions).max() > 1.0:
            problems.append("actions not (T, 8) in [-1, 1]")
        if not 0 < t <= limit or (i < len(buffers) - 1 and t != limit):
            problems.append(f"length {t} (step limit {limit}; only the last episode may be shorter)")
        if np.any(b.terminations) or not b.truncations[-1] or np.any(b.truncations[:-1]):
            problems.append("terminations must be all False and truncations True only at the last step")
        if not (obs["desired_goal"] == obs["desired_goal"][0]).all():
            problems.append("desired_goal changes within the episode (reset_target=False keeps it)")
        if not problems and not np.allclose(b.rewards, compute_reward(obs["achieved_goal"][1:],
                                                                      obs["desired_goal"][1:], None), atol=1e-9):
            problems.append("rewards differ from the env's compute_reward(achieved_goal[t + 1], desired_goal)")
        if problems:
            raise RuntimeError(f"antmaze recipe check failed in episode {i}: " + "; ".join(problems))
    if total != steps:
        raise RuntimeError(f"antmaze recipe check failed: {total} transitions in the episodes, want {steps}")


def make_antmaze_dataset(dataset_id: str, name: str = "umaze", steps: int = 1_000_000, seed: int = 0,
                         progress: bool = True, action_noise: float = ACTION_NOISE, policy_seed: int = 0,
                         policy_updates: int | None = None, partial_training: bool = False,
                         deterministic_policy: bool = False, ref_episodes: int = REF_EPISODES,
                         train_steps: int = TRAIN_STEPS, snapshot_every: int = SNAPSHOT_EVERY,
                         warmup_steps: int = WARMUP_STEPS, eval_episodes: int = EVAL_EPISODES,
                         cache_dir: str | Path | None = None, goal_frame: str = GOAL_FRAME
                         ) -> "minari.MinariDataset":
    """Build `dataset_id`: AntMaze dataset `name` (see `DATASETS`), `steps` transitions, deterministic from `seed`
    (resets, action noise, waypoint jitter, the policy's sampling) and the low-level policy used.

    The low-level policy is a snapshot of the goal-policy SAC run (`train_goal_policy` with `policy_seed`,
    `train_steps`, ...; trained first unless cached): `policy_updates` picks one by update count, else the
    best one (`best_snapshot`). With `partial_training` the run is not trained further: the best snapshot written
    so far is used (a run still training in the background). Policies act stochastically, as D4RL's and
    Minari's did, plus N(0, `action_noise`^2). ref_min_score / ref_max_score: mean returns of uniformly random
    actions and of the noiseless driver over `ref_episodes` evaluation episodes.
    """
    import minari
    import torch

    from lit_offrl.recipes.locomotion import _seeded_torch, _torch_threads

    maze, _ = _dataset(name)
    if steps < 1 or ref_episodes < 1 or action_noise < 0:
        raise UserError(f"steps and ref_episodes must be >= 1 and action_noise >= 0, got {steps}, {ref_episodes}, "
                        f"{action_noise}.")
    t0 = time.perf_counter()
    run = dict(seed=policy_seed, train_steps=train_steps, snapshot_every=snapshot_every,
               warmup_steps=warmup_steps, eval_episodes=eval_episodes, cache_dir=cache_dir, goal_frame=goal_frame)
    if partial_training:
        directory = run_directory(**run)
        snapshots = read_snapshots(directory)
    else:
        directory, snapshots = train_goal_policy(progress=progress, **run)
    if policy_updates is not None:
        chosen = [s for s in snapshots if s.updates == policy_updates]
        if not chosen:
            raise UserError(f"no snapshot at {policy_updates} updates in {directory}; there are: "
                            f"{[s.updates for s in snapshots]}.")
        snapshot = chosen[0]
    else:
        snapshot = best_snapshot(snapshots)
    module = load_policy(directory, snapshot)
    policy = policy_function(module, deterministic=deterministic_policy)
    t_policy = time.perf_counter() - t0

    with _torch_threads(1), torch.no_grad():
        with _seeded_torch(seed * 1000 + 1, module.device):
            refs_random = evaluate_driver(name, None, ref_episodes, EVAL_SEED + seed * 1000)
        with _seeded_torch(seed * 1000 + 2, module.device):
            refs_driver = evaluate_driver(name, policy, ref_episodes, EVAL_SEED + seed * 1000, goal_frame=goal_frame)
        t_refs = time.perf_counter() - t0 - t_policy
        with _seeded_torch(seed * 1000 + 3, module.device):
            buffers = _collect(name, policy, steps, seed, action_noise, progress, goal_frame)
    env = make_maze_env(name)
    env_spec, compute_reward, limit = env.spec, env.unwrapped.compute_reward, int(env.spec.max_episode_steps)
    env.close()
    eval_env = make_eval_env(name)
    eval_spec = eval_env.spec
    eval_env.close()
    _check_buffers(buffers, steps, limit, compute_reward)
    returns = np.array([b.rewards.sum() for b in buffers])
    ref_min, ref_max = refs_random["return_mean"], refs_driver["return_mean"]
    weak = not ref_max > ref_min
    if weak:
        warnings.warn(f"antmaze {name}: the noiseless driver ({ref_max:.1f}) does not beat random actions "
                      f"({ref_min:.1f}) on the evaluation goal; the low-level policy is too weak (snapshot at "
                      f"{snapshot.updates} updates) and normalized scores mean nothing")
        ref_max = ref_min + 1.0
    normalized = 100.0 * (returns.mean() - ref_min) / (ref_max - ref_min)
    goal_steps = int(sum(int(b.infos["success"][1:].sum()) for b in buffers))
    reached = float(np.mean([b.infos["success"].any() for b in buffers]))
    description = (
        f"D4RL-style AntMaze {name} data ({DESCRIPTIONS[name]}) in {env_spec.id} (continuing_task=True, "
        f"reset_target=False, 27-number ant observation as the hub's D4RL/antmaze): {steps} transitions in "
        f"{len(buffers)} episodes of at most {limit} steps, each from its own reset. Behaviour: Q-iteration "
        f"waypoints (threshold {WAYPOINT_THRESHOLD}, jitter {WAYPOINT_JITTER}) sent to a goal-reaching SAC ant "
        f"policy (stochastic actions) trained online in {GOAL_ENV_IDS[goal_frame]} (snapshot at {snapshot.updates} "
        f"updates of "
        f"run {directory.name}: {snapshot.goals_per_episode:.1f} goals per 1000-step episode, falls "
        f"{snapshot.fall_rate:.0%}), plus N(0, {action_noise}^2) action noise, clipped to [-1, 1]; seed {seed}. "
        f"Sparse reward (1 within {GOAL_RADIUS} of the episode's goal), never terminated. Episodes reaching their "
        f"goal: {reached:.0%}; steps at the goal: {goal_steps}. Evaluation env: D4RL's start cell "
        f"{EVAL_CELLS[maze]['reset'][0]} and goal cell {EVAL_CELLS[maze]['goal'][0]}. ref_min_score = mean return of "
        f"uniformly random actions, ref_max_score = mean return of the noiseless driver (success rate "
        f"{refs_driver['success_rate']:.0%}), over {ref_episodes} evaluation episodes"
        + (f"; the driver did not beat random actions, so ref_max_score is set to ref_min_score + 1 and "
           f"normalized scores mean nothing." if weak else "."))
    from lit_offrl.data.minari_io import create_dataset_atomically  # a killed build leaves no half-written dataset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        dataset = create_dataset_atomically(
            dataset_id=dataset_id, buffer=buffers, env=env_spec, eval_env=eval_spec,
            algorithm_name="QIteration+SAC", author="lit_offrl", code_permalink=CODE_PERMALINK,
            ref_min_score=ref_min, ref_max_score=ref_max, description=description, requirements=policy_runs.requirements("gymnasium-robotics", "mujoco"))
    if dataset.total_steps != steps or dataset.total_episodes != len(buffers):
        minari.delete_dataset(dataset_id)
        raise RuntimeError(f"antmaze recipe check failed: wrote {dataset.total_steps} steps / "
                           f"{dataset.total_episodes} episodes, expected {steps} / {len(buffers)}; deleted")
    seconds = time.perf_counter() - t0
    report = {"dataset_id": dataset_id, "steps": steps, "episodes": len(buffers), "snapshot": snapshot.updates,
              "driver_success_rate": refs_driver["success_rate"], "ref_min_score": ref_min, "ref_max_score": ref_max,
              "normalized_return": float(normalized), "episodes_reaching_goal": reached,
              "seconds_refs": round(t_refs, 1), "seconds_total": round(seconds, 1)}
    log.info("antmaze dataset built: %s", report)
    if progress:
        print(f"[antmaze/{name}] {report}")
    return dataset


def register() -> None:
    """Register ``lit-offrl/antmaze/{umaze,umaze-diverse,medium-play,medium-diverse}-v0`` in
    `lit_offrl.data.registry`."""
    from functools import partial

    from lit_offrl.data.registry import register as register_builder

    for name, what in DESCRIPTIONS.items():
        dataset_id = f"lit-offrl/antmaze/{name}-v0"
        register_builder(dataset_id, partial(make_antmaze_dataset, dataset_id, name=name),
                         f"{MAZE_ENVS[DATASETS[name][0]]} {what}: planner waypoints + goal-reaching SAC ant")


# ==============================================================================================================
# Command line: train / status
# ==============================================================================================================


def main(argv: list[str] | None = None) -> None:
    """``python -m lit_offrl.recipes antmaze train|status|build [--seed S] [--updates N] ...`` (``--seed`` and the
    run options name the goal-policy run; ``build --dataset umaze --steps N --partial`` builds a dataset from it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lit_offrl.recipes antmaze")
    parser.add_argument("command", choices=["train", "status", "build", "probe"])
    parser.add_argument("--dataset", default="umaze", choices=list(DATASETS), help="build: which dataset")
    parser.add_argument("--steps", type=int, default=1_000_000, help="build: transitions")
    parser.add_argument("--data-seed", type=int, default=0, help="build: the dataset's seed")
    parser.add_argument("--policy-updates", type=int, default=None, help="build: snapshot to use (default: best)")
    parser.add_argument("--partial", action="store_true", help="build: use the snapshots so far, do not train")
    parser.add_argument("--probe-episodes", type=int, default=20, help="probe: evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--updates", type=int, default=TRAIN_STEPS)
    parser.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY)
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS)
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--goal-frame", default=GOAL_FRAME, choices=list(GOAL_ENV_IDS))
    args = parser.parse_args(argv)
    options = dict(seed=args.seed, train_steps=args.updates, snapshot_every=args.snapshot_every,
                   warmup_steps=args.warmup, eval_episodes=args.eval_episodes, cache_dir=args.cache_dir,
                   goal_frame=args.goal_frame)
    if args.command == "train":
        directory, snapshots = train_goal_policy(progress=False, **options)
        print(f"done: {directory}; best {best_snapshot(snapshots)}")
    elif args.command == "build":
        make_antmaze_dataset(f"lit-offrl/antmaze/{args.dataset}-v0", name=args.dataset, steps=args.steps,
                             seed=args.data_seed, policy_seed=args.seed, policy_updates=args.policy_updates,
                             partial_training=args.partial, train_steps=args.updates,
                             snapshot_every=args.snapshot_every, warmup_steps=args.warmup,
                             eval_episodes=args.eval_episodes, cache_dir=args.cache_dir, goal_frame=args.goal_frame)
    elif args.command == "probe":
        import torch

        from lit_offrl.recipes.locomotion import _seeded_torch

        directory = run_directory(**options)
        snapshots = read_snapshots(directory)
        chosen = ([s for s in snapshots if s.updates == args.policy_updates] if args.policy_updates is not None
                  else [best_snapshot(snapshots)])
        policy = policy_function(load_policy(directory, chosen[0]))
        for noise in (0.0, ACTION_NOISE):
            with torch.no_grad(), _seeded_torch(0, torch.device("cpu")):
                result = evaluate_driver(args.dataset, policy, args.probe_episodes, EVAL_SEED, action_noise=noise,
                                         goal_frame=args.goal_frame)
            print(f"snapshot {chosen[0].updates}: {args.dataset} eval env, action noise {noise}: {result}", flush=True)
    else:
        directory = run_directory(**options)
        print(f"{directory}: done={(directory / 'done').exists()} training_pid={training_in_progress(directory)}")
        for snapshot in read_snapshots(directory):
            print(snapshot)


if __name__ == "__main__":
    main()
