"""PointMaze data-generation recipe (D4RL ``maze2d`` / Minari ``D4RL/pointmaze``).

What it builds
--------------
An ordinary local Minari dataset of a point mass driven through a Gymnasium-Robotics ``PointMaze`` by a
noisy planner-plus-PD controller, the recipe behind D4RL's ``maze2d-*`` datasets and Minari's
``D4RL/pointmaze/*`` datasets (the ``scripts/pointmaze`` generation scripts of the Farama
``minari-dataset-generation-scripts`` repository, themselves a port of D4RL's ``pointmaze`` waypoint
controller and Q-iteration solver).

Flavours
--------
Both flavours hold the same trajectories (same seed: identical ``observation``, ``achieved_goal`` and
actions); they differ in the goal the data is labeled with.

* ``"pointmaze"`` (Minari ``D4RL/pointmaze``, ids ``lit-offrl/pointmaze/*``): ``desired_goal`` and the reward
  are those of the goal the controller was driving to, so the data is goal-conditioned near-expert behaviour.
* ``"maze2d"`` (D4RL ``maze2d``, ids ``lit-offrl/maze2d/*``): every episode is relabeled to the single
  evaluation goal (``relabel_to_eval_goal``): its ``desired_goal`` is one goal drawn the way the evaluation
  env draws its goal at reset (the goal cell's centre plus the env's uniform noise, +-0.25 x maze scaling per
  axis, one seeded draw per episode), and the rewards and ``infos["success"]`` are recomputed for that goal
  with the env's own ``compute_reward`` (sparse: 1 within 0.45 of the goal; dense: ``exp(-distance)``). The
  data shows the ball wandering to other goals while the reward marks only the evaluation goal. The goal
  noise matters: a constant ``desired_goal`` has zero variance, and observation normalization would blow
  the evaluation env's noisy goal up to hundreds. Terminations stay False (continuing task).

How the data is collected
-------------------------
* Environment: ``PointMaze_{UMaze,Medium,Large}[Dense]-v3`` made with ``continuing_task=True,
  reset_target=True``. The env is reset once, at the start; whenever the ball comes within 0.45 of the goal
  the env draws a new random goal itself, so the stream of transitions never restarts.
* Planner: Q-iteration (4 moves, discount 0.99, reward 1 for entering the goal cell) over the maze grid gives,
  for each goal cell, the next cell to move to from every free cell. The table is computed once per goal cell
  and cached.
* Controller: follows the waypoints (cell centres) from the ball's cell towards the cell of the current
  ``desired_goal`` in the observation; the last target is the goal position itself. Action
  ``p * (target - pos) + d * vel`` with ``p = 10``, ``d = -1``; the controller moves to the next waypoint once
  within 0.1 of the current one. Like Minari's script, each intermediate waypoint is shifted by
  ``-U[0, 1)^2 * 0.2`` (a small random jitter, so paths are not identical). A new goal in the observation
  triggers a new plan from the ball's current cell.
* Exploration noise: Gaussian ``N(0, action_noise^2)`` added to each action component, then clipped to
  ``[-1, 1]`` (the env's action space). The stored action is exactly the action the env received.
* Episodes: the stream is cut into consecutive chunks of the env's ``max_episode_steps`` (300 UMaze,
  600 Medium, 800 Large), each ending with ``truncations[-1] = True`` and no terminations. The env is *not*
  reset between chunks, so episode ``k + 1`` starts at the last observation of episode ``k`` (observation
  arrays hold ``T + 1`` entries, Minari's convention). The total number of transitions is exactly ``steps``;
  the last episode may be shorter. ``infos["success"]`` (``T + 1`` entries) records the env's success flag
  (entry 0: of the reset or of the step that ended the previous chunk).

Evaluation environment and reference scores
-------------------------------------------
The dataset's ``eval_env`` is the same maze with a single fixed goal cell, ``continuing_task=True,
reset_target=False`` (the ball is started in a random free cell, the goal position gets the env's usual
+-0.25 noise; an episode runs the full step limit and the sparse reward counts the steps spent within 0.45 of
the goal). The goal cells are those of D4RL's ``maze2d-{umaze,medium,large}-v1`` tasks ("G" in D4RL's maze
specs) and of the ``EVAL_ENV_MAPS`` of Minari's pointmaze generation script, in (row, col) of
``env.unwrapped.maze.maze_map``:

* UMaze ``(1, 1)`` -- the dead end of the top corridor,
* Medium ``(6, 6)`` -- the bottom-right corner,
* Large ``(7, 9)`` -- in the bottom-right region.

``ref_min_score`` is the mean return of a uniform random policy and ``ref_max_score`` the mean return of the
noiseless controller, each over 100 seeded episodes of the evaluation env (the same 100 reset seeds for
both), so ``minari.get_normalized_score`` maps random to 0 and the noiseless expert to 1.

Both flavours share the evaluation env and therefore the reference scores.

Knobs
-----
``maze`` ("UMaze", "Medium", "Large"), ``reward_type`` ("sparse", "dense"), ``steps`` (number of
transitions), ``seed`` (env reset seed, action noise, waypoint jitter, the evaluation episodes and the
maze2d goal draws), ``action_noise`` (std of the Gaussian action noise, 0.5 as in D4RL/Minari; 0 gives the
expert controller), ``flavour`` ("pointmaze", "maze2d").

Recipe checks (``RuntimeError`` when violated): consistent shapes and dtypes in every episode; no position
jump larger than 0.5 between consecutive observations of an episode; every reward equals the env's
``compute_reward`` of the next observation's ``achieved_goal`` and ``desired_goal`` (the env replaces a
reached goal only after making that observation, so it still holds the goal just rewarded); the noiseless
controller reaches the evaluation goal in at least 90 % of the evaluation episodes; the collected stream
reaches at least one goal. maze2d also: each episode's ``desired_goal`` is one goal within the noise box
around the evaluation goal cell's centre, ``desired_goal`` varies across episodes (non-zero variance), and
the data comes within the goal radius of its evaluation goal at least once.

Example::

    from lit_offrl.data.registry import summarize
    from lit_offrl.recipes.pointmaze import make_pointmaze_dataset
    ds = make_pointmaze_dataset("lit-offrl/maze2d/umaze-v0", maze="UMaze", steps=1_000_000, flavour="maze2d")
    print(summarize(ds))
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lit_offrl.errors import UserError
from lit_offrl.recipes import policy_runs

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium as gym
    import minari

__all__ = [
    "MAZES",
    "REWARD_TYPES",
    "EVAL_GOAL_CELLS",
    "FLAVOURS",
    "pointmaze_env_id",
    "make_eval_env",
    "QIterationPlanner",
    "WaypointController",
    "eval_goal_distribution",
    "relabel_to_eval_goal",
    "make_pointmaze_dataset",
]

log = logging.getLogger(__name__)

CODE_PERMALINK = "lit_offrl/recipes/pointmaze.py"
ALGORITHM_NAME = "QIteration+PDController"

MAZES = ("UMaze", "Medium", "Large")
REWARD_TYPES = ("sparse", "dense")
FLAVOURS = ("pointmaze", "maze2d")
# D4RL maze2d-{umaze,medium,large}-v1 goal cells == Minari pointmaze EVAL_ENV_MAPS "g" cells, (row, col).
EVAL_GOAL_CELLS = {"UMaze": (1, 1), "Medium": (6, 6), "Large": (7, 9)}

# Controller / recipe constants (D4RL / Minari values).
P_GAIN = 10.0
D_GAIN = -1.0
WAYPOINT_THRESHOLD = 0.1
WAYPOINT_JITTER = 0.2
PLANNER_GAMMA = 0.99
GOAL_RADIUS = 0.45  # env's success / sparse-reward radius
NUM_EVAL_EPISODES = 100
MIN_EXPERT_SUCCESS_RATE = 0.9
MAX_POSITION_JUMP = 0.5


# --------------------------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------------------------


def _register_envs() -> None:
    import gymnasium as gym

    with warnings.catch_warnings():
        # gymnasium_robotics warns about unrelated Adroit reward changes on import.
        warnings.simplefilter("ignore")
        import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


def _canonical_maze(maze: str) -> str:
    if isinstance(maze, str):
        for name in MAZES:
            if maze.lower() == name.lower():
                return name
    raise UserError(f"Unknown maze {maze!r}; valid values: {', '.join(repr(m) for m in MAZES)}.")


def _canonical_reward_type(reward_type: str) -> str:
    if isinstance(reward_type, str) and reward_type.lower() in REWARD_TYPES:
        return reward_type.lower()
    raise UserError(
        f"Unknown reward_type {reward_type!r}; valid values: {', '.join(repr(r) for r in REWARD_TYPES)}."
    )


def _canonical_flavour(flavour: str) -> str:
    if isinstance(flavour, str) and flavour.lower() in FLAVOURS:
        return flavour.lower()
    raise UserError(f"Unknown flavour {flavour!r}; valid values: {', '.join(repr(f) for f in FLAVOURS)}.")


def pointmaze_env_id(maze: str = "UMaze", reward_type: str = "sparse") -> str:
    """Gymnasium id of the PointMaze env, e.g. ``PointMaze_UMaze-v3`` or ``PointMaze_LargeDense-v3``."""
    maze = _canonical_maze(maze)
    reward_type = _canonical_reward_type(reward_type)
    return f"PointMaze_{maze}{'Dense' if reward_type == 'dense' else ''}-v3"


def _eval_maze_map(base_map: list, goal_cell: tuple[int, int]) -> list:
    """``base_map`` with every special cell cleared and a single "g" at ``goal_cell``."""
    maze_map = [[1 if cell == 1 else 0 for cell in row] for row in base_map]
    r, c = goal_cell
    if maze_map[r][c] == 1:
        raise RuntimeError(f"evaluation goal cell {goal_cell} is a wall in the maze map")
    maze_map[r][c] = "g"
    return maze_map


def make_eval_env(maze: str = "UMaze", reward_type: str = "sparse", **kwargs: Any) -> "gym.Env":
    """The fixed-goal evaluation env of the recipe (see the module docstring for the goal cells)."""
    import gymnasium as gym

    _register_envs()
    env_id = pointmaze_env_id(maze, reward_type)
    maze = _canonical_maze(maze)
    base_map = gym.spec(env_id).kwargs["maze_map"]
    return gym.make(
        env_id,
        maze_map=_eval_maze_map(base_map, EVAL_GOAL_CELLS[maze]),
        continuing_task=True,
        reset_target=False,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------------------
# Planner and controller
# --------------------------------------------------------------------------------------------------------------


class QIterationPlanner:
    """Q-iteration over the maze grid: for a goal cell, the next cell to move to from every free cell.

    States are grid cells, actions the 4 moves (up, down, left, right); a move into a wall or off the map
    leaves the cell unchanged; the reward is 1 for a move that ends in the goal cell; discount ``gamma``.
    Tables are cached per goal cell.
    """

    MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, maze_map: list, gamma: float = PLANNER_GAMMA):
        self.free = np.array([[cell != 1 for cell in row] for row in maze_map], dtype=bool)
        self.n_rows, self.n_cols = self.free.shape
        self.gamma = float(gamma)
        n_states = self.n_rows * self.n_cols
        succ = np.repeat(np.arange(n_states)[:, None], len(self.MOVES), axis=1)
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                if not self.free[r, c]:
                    continue
                for a, (dr, dc) in enumerate(self.MOVES):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < self.n_rows and 0 <= cc < self.n_cols and self.free[rr, cc]:
                        succ[r * self.n_cols + c, a] = rr * self.n_cols + cc
        self._succ = succ
        # after k sweeps every cell within k moves of the goal has a positive value and a greedy move
        # that shortens its distance; n_free + 1 sweeps cover any maze path.
        self._n_iters = int(self.free.sum()) + 1
        self._cache: dict[tuple[int, int], list] = {}

    def q_values(self, goal_cell: tuple[int, int]) -> np.ndarray:
        g = goal_cell[0] * self.n_cols + goal_cell[1]
        reward = (self._succ == g).astype(np.float64)
        q = np.zeros_like(reward)
        for _ in range(self._n_iters):
            q = reward + self.gamma * q.max(axis=1)[self._succ]
        return q

    def next_cell_table(self, goal_cell: tuple[int, int]) -> list:
        """``table[r][c]`` = next (row, col) on the way to ``goal_cell`` (the goal itself at the goal, ``None``
        for walls and for cells that cannot reach the goal)."""
        goal_cell = (int(goal_cell[0]), int(goal_cell[1]))
        table = self._cache.get(goal_cell)
        if table is not None:
            return table
        if not (0 <= goal_cell[0] < self.n_rows and 0 <= goal_cell[1] < self.n_cols) or not self.free[goal_cell]:
            raise ValueError(f"goal cell {goal_cell} is not a free cell of the maze")
        q = self.q_values(goal_cell)
        best = self._succ[np.arange(q.shape[0]), q.argmax(axis=1)]
        reachable = q.max(axis=1) > 0
        table = [[None] * self.n_cols for _ in range(self.n_rows)]
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                s = r * self.n_cols + c
                if (r, c) == goal_cell:
                    table[r][c] = goal_cell
                elif self.free[r, c] and reachable[s]:
                    table[r][c] = divmod(int(best[s]), self.n_cols)
        self._cache[goal_cell] = table
        return table

    def path(self, start_cell: tuple[int, int], goal_cell: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells from ``start_cell`` to ``goal_cell`` (both included) following the table."""
        table = self.next_cell_table(goal_cell)
        cell = (int(start_cell[0]), int(start_cell[1]))
        cells = [cell]
        while cell != tuple(goal_cell):
            cell = table[cell[0]][cell[1]]
            if cell is None or len(cells) > self.n_rows * self.n_cols:
                raise RuntimeError(f"no path from {start_cell} to {goal_cell}")
            cells.append(cell)
        return cells


class WaypointController:
    """PD waypoint controller towards the observation's ``desired_goal`` (noise-free; noise is added outside).

    ``maze`` is ``env.unwrapped.maze`` (a gymnasium-robotics ``Maze``). ``rng`` drives the waypoint jitter.
    Call ``reset()`` at an env reset; ``__call__(obs)`` takes the env's dict observation and returns a float32
    action in ``[-1, 1]``; ``act(px, py, vx, vy, gx, gy)`` is the fast scalar path used during collection.
    """

    def __init__(
        self,
        maze: Any,
        rng: np.random.Generator | None = None,
        p_gain: float = P_GAIN,
        d_gain: float = D_GAIN,
        waypoint_threshold: float = WAYPOINT_THRESHOLD,
        waypoint_jitter: float = WAYPOINT_JITTER,
        planner: QIterationPlanner | None = None,
    ):
        self.maze = maze
        self.rng = rng if rng is not None else np.random.default_rng()
        self.p = float(p_gain)
        self.d = float(d_gain)
        self.thr2 = float(waypoint_threshold) ** 2
        self.jitter = float(waypoint_jitter)
        self.planner = planner if planner is not None else QIterationPlanner(maze.maze_map)
        n_rows, n_cols = self.planner.n_rows, self.planner.n_cols
        self._centers = [
            [tuple(float(v) for v in maze.cell_rowcol_to_xy(np.array([r, c]))) for c in range(n_cols)]
            for r in range(n_rows)
        ]
        self.reset()

    def reset(self) -> None:
        self._gx = math.nan
        self._gy = math.nan
        self._goal_cell = None
        self._table = None
        self._cell = None  # current waypoint cell
        self._final = True
        self._tx = 0.0
        self._ty = 0.0

    def _cell_of(self, x: float, y: float) -> tuple[int, int]:
        r, c = self.maze.cell_xy_to_rowcol(np.array([x, y]))
        return int(r), int(c)

    def _head_for(self, cell: tuple[int, int] | None, gx: float, gy: float) -> None:
        """Make the waypoint after ``cell`` the control target (the goal itself when it is the goal cell)."""
        nxt = None
        if cell is not None and 0 <= cell[0] < len(self._table) and 0 <= cell[1] < len(self._table[0]):
            nxt = self._table[cell[0]][cell[1]]
        if nxt is None or nxt == self._goal_cell or cell == self._goal_cell:
            self._final = True
            self._cell = self._goal_cell
            self._tx, self._ty = gx, gy
        else:
            self._final = False
            self._cell = nxt
            cx, cy = self._centers[nxt[0]][nxt[1]]
            u = self.rng.random(2)
            self._tx = cx - self.jitter * float(u[0])
            self._ty = cy - self.jitter * float(u[1])

    def act(self, px: float, py: float, vx: float, vy: float, gx: float, gy: float) -> tuple[float, float]:
        dgx, dgy = gx - self._gx, gy - self._gy
        if not dgx * dgx + dgy * dgy <= 1e-6:  # new goal (also true for NaN after reset)
            self._gx, self._gy = gx, gy
            self._goal_cell = self._cell_of(gx, gy)
            try:
                self._table = self.planner.next_cell_table(self._goal_cell)
            except ValueError:  # goal outside the free cells: drive straight at it
                self._table = [[None]]
            self._head_for(self._cell_of(px, py), gx, gy)
        elif not self._final:
            dx, dy = self._tx - px, self._ty - py
            if dx * dx + dy * dy <= self.thr2:
                self._head_for(self._cell, gx, gy)
        ax = self.p * (self._tx - px) + self.d * vx
        ay = self.p * (self._ty - py) + self.d * vy
        return (-1.0 if ax < -1.0 else 1.0 if ax > 1.0 else ax, -1.0 if ay < -1.0 else 1.0 if ay > 1.0 else ay)

    def __call__(self, obs: dict) -> np.ndarray:
        px, py, vx, vy = obs["observation"][:4].tolist()
        gx, gy = obs["desired_goal"].tolist()
        return np.array(self.act(px, py, vx, vy, gx, gy), dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# Evaluation (reference scores, expert success rate)
# --------------------------------------------------------------------------------------------------------------


def _run_eval_episodes(
    env: "gym.Env", policy: Callable[[dict], np.ndarray], reset_policy: Callable[[], None], seeds: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    returns = np.zeros(len(seeds))
    successes = np.zeros(len(seeds), dtype=bool)
    for i, s in enumerate(seeds):
        obs, info = env.reset(seed=int(s))
        reset_policy()
        ret, success, done = 0.0, bool(info.get("success", False)), False
        while not done:
            obs, rew, terminated, truncated, info = env.step(policy(obs))
            ret += float(rew)
            success = success or bool(info.get("success", False))
            done = terminated or truncated
        returns[i], successes[i] = ret, success
    return returns, successes


def _evaluate_references(eval_env: "gym.Env", seed_seq: np.random.SeedSequence) -> dict[str, Any]:
    ep_seed_seq, rand_seq, jitter_seq = seed_seq.spawn(3)
    seeds = [int(s) for s in ep_seed_seq.generate_state(NUM_EVAL_EPISODES, dtype=np.uint32)]
    rand_rng = np.random.default_rng(rand_seq)
    low = eval_env.action_space.low.astype(np.float64)
    high = eval_env.action_space.high.astype(np.float64)

    def random_policy(_obs: dict) -> np.ndarray:
        return rand_rng.uniform(low, high).astype(np.float32)

    controller = WaypointController(eval_env.unwrapped.maze, rng=np.random.default_rng(jitter_seq))
    rand_returns, rand_success = _run_eval_episodes(eval_env, random_policy, lambda: None, seeds)
    exp_returns, exp_success = _run_eval_episodes(eval_env, controller, controller.reset, seeds)
    return {
        "ref_min_score": float(rand_returns.mean()),
        "ref_max_score": float(exp_returns.mean()),
        "random_success_rate": float(rand_success.mean()),
        "expert_success_rate": float(exp_success.mean()),
        "expert_return_std": float(exp_returns.std()),
        "eval_episodes": len(seeds),
    }


# --------------------------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------------------------


def _collect_stream(
    env: "gym.Env", steps: int, seed: int, action_noise: float, seed_seq: np.random.SeedSequence, progress: bool
) -> dict[str, np.ndarray]:
    """Run the noisy controller for ``steps`` transitions without resets; arrays indexed by stream time."""
    from tqdm.auto import tqdm

    noise_seq, jitter_seq = seed_seq.spawn(2)
    noise_rng = np.random.default_rng(noise_seq)
    u = env.unwrapped
    controller = WaypointController(u.maze, rng=np.random.default_rng(jitter_seq))

    obs_dim = env.observation_space["observation"].shape[0]
    goal_dim = env.observation_space["desired_goal"].shape[0]
    observation = np.empty((steps + 1, obs_dim), dtype=np.float64)
    achieved = np.empty((steps + 1, goal_dim), dtype=np.float64)
    desired = np.empty((steps + 1, goal_dim), dtype=np.float64)
    success = np.zeros(steps + 1, dtype=bool)
    actions = np.empty((steps, 2), dtype=np.float32)
    rewards = np.empty(steps, dtype=np.float64)

    obs, info = u.reset(seed=seed)
    observation[0], achieved[0], desired[0] = obs["observation"], obs["achieved_goal"], obs["desired_goal"]
    success[0] = bool(info.get("success", False))

    chunk = 1 << 14
    noise = np.zeros((chunk, 2))
    k = chunk
    step = u.step
    act = controller.act
    bar = tqdm(total=steps, disable=not progress, unit="step", desc="pointmaze", mininterval=0.5, smoothing=0.1)
    try:
        for t in range(steps):
            if k == chunk:
                if action_noise > 0:
                    noise = noise_rng.standard_normal((chunk, 2)) * action_noise
                k = 0
                if t:
                    bar.update(chunk)
            px, py, vx, vy = obs["observation"].tolist()
            gx, gy = obs["desired_goal"].tolist()
            ax, ay = act(px, py, vx, vy, gx, gy)
            ax += noise[k, 0]
            ay += noise[k, 1]
            k += 1
            a = actions[t]
            a[0] = -1.0 if ax < -1.0 else 1.0 if ax > 1.0 else ax
            a[1] = -1.0 if ay < -1.0 else 1.0 if ay > 1.0 else ay
            obs, rew, _, _, info = step(a)
            rewards[t] = rew
            observation[t + 1] = obs["observation"]
            achieved[t + 1] = obs["achieved_goal"]
            desired[t + 1] = obs["desired_goal"]
            success[t + 1] = info["success"]
        bar.update(steps - bar.n)
    finally:
        bar.close()
    return {
        "observation": observation,
        "achieved_goal": achieved,
        "desired_goal": desired,
        "success": success,
        "actions": actions,
        "rewards": rewards,
    }


def _split_into_buffers(stream: dict[str, np.ndarray], max_steps: int, seed: int) -> list:
    from minari.data_collector import EpisodeBuffer

    n = stream["actions"].shape[0]
    buffers = []
    for k, start in enumerate(range(0, n, max_steps)):
        end = min(start + max_steps, n)
        length = end - start
        truncations = np.zeros(length, dtype=bool)
        truncations[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=None,
                # only the first chunk starts at an env reset; the others continue the stream
                seed=seed if k == 0 else None,
                options=None,
                observations={
                    "observation": stream["observation"][start : end + 1],
                    "achieved_goal": stream["achieved_goal"][start : end + 1],
                    "desired_goal": stream["desired_goal"][start : end + 1],
                },
                actions=stream["actions"][start:end],
                rewards=stream["rewards"][start:end],
                terminations=np.zeros(length, dtype=bool),
                truncations=truncations,
                infos={"success": stream["success"][start : end + 1]},
            )
        )
    return buffers


def _check_buffers(
    buffers: list, steps: int, max_steps: int, compute_reward: Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
) -> dict[str, Any]:
    """Recipe checks on what will be written; raises RuntimeError on a violation."""
    total = 0
    max_jump = 0.0
    for i, b in enumerate(buffers):
        t = len(b.rewards)
        total += t
        obs = b.observations
        problems = []
        if not 0 < t <= max_steps:
            problems.append(f"length {t} not in [1, {max_steps}]")
        if i < len(buffers) - 1 and t != max_steps:
            problems.append(f"length {t} != step limit {max_steps} (only the last episode may be shorter)")
        for key, dim in (("observation", 4), ("achieved_goal", 2), ("desired_goal", 2)):
            if obs[key].shape != (t + 1, dim) or obs[key].dtype != np.float64:
                problems.append(f"observations[{key!r}] {obs[key].shape} {obs[key].dtype}, want ({t + 1}, {dim}) float64")
        if b.actions.shape != (t, 2) or b.actions.dtype != np.float32:
            problems.append(f"actions {b.actions.shape} {b.actions.dtype}, want ({t}, 2) float32")
        if b.rewards.shape != (t,) or len(b.terminations) != t or len(b.truncations) != t:
            problems.append("rewards/terminations/truncations lengths differ from the number of actions")
        if b.infos["success"].shape != (t + 1,):
            problems.append(f"infos['success'] shape {b.infos['success'].shape}, want ({t + 1},)")
        if np.any(b.terminations) or not b.truncations[-1] or np.any(b.truncations[:-1]):
            problems.append("terminations must be all False and truncations True only at the last step")
        if not (np.isfinite(obs["observation"]).all() and np.isfinite(b.actions).all() and np.isfinite(b.rewards).all()):
            problems.append("non-finite values")
        if np.abs(b.actions).max() > 1.0:
            problems.append("actions outside [-1, 1]")
        if not np.array_equal(obs["achieved_goal"], obs["observation"][:, :2]):
            problems.append("achieved_goal != observation[:, :2]")
        # The env rewards the position after step t against the goal in force during step t, which is the
        # next observation's desired_goal: a reached goal is replaced only after that observation is made.
        expected = compute_reward(obs["achieved_goal"][1:], obs["desired_goal"][1:], None)
        if not problems and not np.allclose(b.rewards, expected, rtol=0.0, atol=1e-9):
            problems.append("rewards differ from compute_reward(achieved_goal[t + 1], desired_goal[t + 1])")
        if problems:
            raise RuntimeError(f"pointmaze recipe check failed in episode {i}: " + "; ".join(problems))
        jump = float(np.abs(np.diff(obs["observation"][:, :2], axis=0)).max())
        max_jump = max(max_jump, jump)
        if jump >= MAX_POSITION_JUMP:
            raise RuntimeError(
                f"pointmaze recipe check failed in episode {i}: the ball jumped {jump:.3f} (>= {MAX_POSITION_JUMP}) "
                "between consecutive observations"
            )
    if total != steps:
        raise RuntimeError(f"pointmaze recipe check failed: {total} transitions in the episodes, want {steps}")
    return {"max_position_jump": max_jump}


# --------------------------------------------------------------------------------------------------------------
# maze2d flavour: relabeling to the evaluation goal
# --------------------------------------------------------------------------------------------------------------


def eval_goal_distribution(eval_env: "gym.Env") -> tuple[np.ndarray, float]:
    """``(centre, half_width)`` of the evaluation env's goal: at every reset the env puts its goal at
    ``centre + U(-half_width, half_width)`` per axis (the goal cell's centre plus ``position_noise_range``
    times the maze scaling)."""
    u = eval_env.unwrapped
    goals = u.maze.unique_goal_locations
    assert len(goals) == 1, f"the evaluation maze must have exactly one goal cell, found {len(goals)}"
    return np.array(goals[0], dtype=np.float64), float(u.position_noise_range * u.maze.maze_size_scaling)


def relabel_to_eval_goal(
    buffers: list,
    goal_centre: np.ndarray,
    goal_half_width: float,
    compute_reward: Callable[[np.ndarray, np.ndarray, Any], np.ndarray],
    rng: np.random.Generator,
) -> list:
    """D4RL maze2d relabeling: the same episodes, rewarded only for the evaluation goal.

    Each episode gets one goal ``g = goal_centre + U(-goal_half_width, goal_half_width)^2`` (one draw per
    episode from ``rng``, as the evaluation env draws its goal at each reset; see ``eval_goal_distribution``).
    Every entry of its ``desired_goal`` becomes ``g``; ``rewards[t] = compute_reward(achieved_goal[t + 1], g)``
    (the env's own reward: the ball's position after the step against the goal) and ``infos["success"]`` is
    whether the ball is within the goal radius of ``g``. Observations, achieved goals, actions, terminations
    (all False: continuing task) and truncations are unchanged. Returns new ``EpisodeBuffer``s.
    """
    goals = goal_centre + rng.uniform(-goal_half_width, goal_half_width, size=(len(buffers), goal_centre.shape[0]))
    relabeled = []
    for buffer, goal in zip(buffers, goals):
        achieved = buffer.observations["achieved_goal"]
        desired = np.repeat(goal[None], achieved.shape[0], axis=0)
        relabeled.append(
            dataclasses.replace(
                buffer,
                observations={**buffer.observations, "desired_goal": desired},
                rewards=np.asarray(compute_reward(achieved[1:], desired[1:], None), dtype=np.float64),
                infos={**buffer.infos, "success": np.linalg.norm(achieved - desired, axis=-1) <= GOAL_RADIUS},
            )
        )
    return relabeled


def _check_relabeled(buffers: list, goal_centre: np.ndarray, goal_half_width: float) -> dict[str, Any]:
    """maze2d recipe checks: one goal per episode, in the evaluation goal's noise box, varying across episodes,
    and reached at least once by the data."""
    for i, b in enumerate(buffers):
        desired = b.observations["desired_goal"]
        if not (desired == desired[0]).all():
            raise RuntimeError(f"maze2d recipe check failed in episode {i}: desired_goal changes within the episode")
        if np.abs(desired[0] - goal_centre).max() > goal_half_width:
            raise RuntimeError(
                f"maze2d recipe check failed in episode {i}: desired_goal {desired[0]} is not within "
                f"+-{goal_half_width} of the evaluation goal {goal_centre}"
            )
    stored = np.concatenate([b.observations["desired_goal"] for b in buffers])
    if not (stored.std(axis=0) > 0).all():
        raise RuntimeError(
            "maze2d recipe check failed: desired_goal has zero variance (observation normalization would turn the "
            "evaluation env's noisy goal into huge values)"
        )
    visits = int(sum(int(np.count_nonzero(b.infos["success"][1:])) for b in buffers))
    if visits == 0:
        raise RuntimeError(
            f"maze2d recipe check failed: the data never comes within {GOAL_RADIUS} of the evaluation goal; "
            "build more steps"
        )
    return {"eval_goal_visits": visits, "desired_goal_std": stored.std(axis=0).round(4).tolist()}


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def make_pointmaze_dataset(
    dataset_id: str,
    maze: str = "UMaze",
    reward_type: str = "sparse",
    steps: int = 1_000_000,
    seed: int = 0,
    progress: bool = True,
    action_noise: float = 0.5,
    flavour: str = "pointmaze",
) -> "minari.MinariDataset":
    """Build the PointMaze dataset ``dataset_id`` locally (in ``MINARI_DATASETS_PATH``) and return it.

    See the module docstring for the recipe. ``maze``: "UMaze", "Medium" or "Large"; ``reward_type``:
    "sparse" or "dense"; ``steps``: number of transitions (>= 1; maze2d: more than one episode, so that the
    goal varies); ``seed``: makes the build reproducible (env reset, action noise, waypoint jitter, evaluation
    episodes, maze2d goals); ``progress``: tqdm bar and a short report; ``action_noise``: std of the Gaussian
    noise added to the controller's actions (D4RL/Minari: 0.5); ``flavour``: "pointmaze" (goal-conditioned
    labels) or "maze2d" (relabeled to the evaluation goal). The same ``seed`` gives both flavours the same
    trajectories.

    Raises ``ValueError`` (``lit_offrl.errors.UserError``) for bad arguments, ``FileExistsError`` if the
    dataset already exists locally, ``RuntimeError`` if a recipe check fails (nothing is left on disk then).
    """
    import gymnasium as gym
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    maze = _canonical_maze(maze)
    reward_type = _canonical_reward_type(reward_type)
    flavour = _canonical_flavour(flavour)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise UserError(f"steps must be a positive integer, got {steps!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}.")
    if not (isinstance(action_noise, (int, float)) and math.isfinite(action_noise) and action_noise >= 0):
        raise UserError(f"action_noise must be a finite number >= 0, got {action_noise!r}.")
    steps, seed, action_noise = int(steps), int(seed), float(action_noise)
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as e:
        raise UserError(f"Invalid dataset id {dataset_id!r}: {e}") from None
    path = get_dataset_path(dataset_id)
    if os.path.exists(path):
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists at {path}. Delete it first with "
            f"`minari.delete_dataset({dataset_id!r})` (or `minari delete {dataset_id}`), or choose another id/version."
        )

    _register_envs()
    env_id = pointmaze_env_id(maze, reward_type)
    max_steps = int(gym.spec(env_id).max_episode_steps)
    if flavour == "maze2d" and steps <= max_steps:
        raise UserError(
            f"the maze2d flavour needs more than one episode ({max_steps} steps in {maze}) so that desired_goal "
            f"varies across episodes; got steps={steps}. Use steps > {max_steps}."
        )
    t0 = time.perf_counter()
    # the relabel stream is spawned last so that both flavours get the same evaluation and collection draws
    eval_seq, collect_seq, relabel_seq = np.random.SeedSequence(seed).spawn(3)

    # --- evaluation env, reference scores and the expert-success check ---------------------------------------
    eval_env = make_eval_env(maze, reward_type)
    try:
        eval_spec = eval_env.spec
        refs = _evaluate_references(eval_env, eval_seq)
        goal_centre, goal_half_width = eval_goal_distribution(eval_env)
    finally:
        eval_env.close()
    # the env's reward is a pure function of (achieved_goal, desired_goal) and the reward type
    compute_reward = eval_env.unwrapped.compute_reward
    if refs["expert_success_rate"] < MIN_EXPERT_SUCCESS_RATE:
        raise RuntimeError(
            f"pointmaze recipe check failed: the noiseless controller reached the evaluation goal in only "
            f"{refs['expert_success_rate']:.0%} of {refs['eval_episodes']} episodes "
            f"(need >= {MIN_EXPERT_SUCCESS_RATE:.0%})"
        )
    if not refs["ref_max_score"] > refs["ref_min_score"]:
        raise RuntimeError(
            f"pointmaze recipe check failed: ref_max_score {refs['ref_max_score']:.3f} is not above "
            f"ref_min_score {refs['ref_min_score']:.3f}"
        )
    t_eval = time.perf_counter() - t0

    # --- data collection ---------------------------------------------------------------------------------------
    env = gym.make(env_id, continuing_task=True, reset_target=True)
    try:
        stream = _collect_stream(env, steps, seed, action_noise, collect_seq, progress)
        env_spec = env.spec
    finally:
        env.close()
    t_collect = time.perf_counter() - t0 - t_eval

    goal_reaches = int(stream["success"][1:].sum())
    if goal_reaches == 0:
        raise RuntimeError(
            f"pointmaze recipe check failed: the data never reached a goal in {steps} steps "
            f"(action_noise={action_noise})"
        )
    buffers = _split_into_buffers(stream, max_steps, seed)
    if flavour == "maze2d":
        buffers = relabel_to_eval_goal(
            buffers, goal_centre, goal_half_width, compute_reward, np.random.default_rng(relabel_seq)
        )
    checks = _check_buffers(buffers, steps, max_steps, compute_reward)
    if flavour == "maze2d":
        checks.update(_check_relabeled(buffers, goal_centre, goal_half_width))

    # --- write ---------------------------------------------------------------------------------------------------
    if flavour == "maze2d":
        labels = (
            f"D4RL maze2d flavour: every episode is relabeled to the evaluation goal, desired_goal = goal cell "
            f"{EVAL_GOAL_CELLS[maze]} centre {goal_centre.tolist()} + U(-{goal_half_width}, {goal_half_width}) per "
            f"axis (one draw per episode, as the evaluation env draws it), rewards recomputed for that goal "
            f"({checks['eval_goal_visits']} steps within {GOAL_RADIUS} of it). "
        )
    else:
        labels = "Minari D4RL/pointmaze flavour: desired_goal and rewards are those of the goal being driven to. "
    description = (
        f"PointMaze {maze} ({reward_type} reward), {steps} transitions in {len(buffers)} episodes of at most "
        f"{max_steps} steps, cut from one continuing stream (continuing_task=True, reset_target=True: a new "
        f"random goal is drawn whenever the current one is reached). Behaviour: Q-iteration waypoint planner + "
        f"PD controller (p={P_GAIN}, d={D_GAIN}) to the goal being driven to with Gaussian action noise "
        f"std {action_noise}, clipped to [-1, 1]. Recipe of D4RL maze2d / Minari D4RL/pointmaze; seed {seed}. "
        f"{labels}"
        f"Evaluation env: fixed goal cell {EVAL_GOAL_CELLS[maze]} (D4RL maze2d goal), reset_target=False. "
        f"ref_min_score = mean return of a uniform random policy, ref_max_score = mean return of the noiseless "
        f"controller, over {refs['eval_episodes']} evaluation episodes (noiseless controller success rate "
        f"{refs['expert_success_rate']:.0%}). Goals reached in the data: {goal_reaches}."
    )
    from lit_offrl.data.minari_io import create_dataset_atomically  # a killed build leaves no half-written dataset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        dataset = create_dataset_atomically(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env_spec,
            eval_env=eval_spec,
            algorithm_name=ALGORITHM_NAME,
            author="lit_offrl",
            code_permalink=CODE_PERMALINK,
            ref_min_score=refs["ref_min_score"],
            ref_max_score=refs["ref_max_score"],
            description=description,
            requirements=policy_runs.requirements("gymnasium-robotics", "mujoco"),
        )
    if dataset.total_steps != steps or dataset.total_episodes != len(buffers):
        minari.delete_dataset(dataset_id)
        raise RuntimeError(
            f"pointmaze recipe check failed: wrote {dataset.total_steps} steps / {dataset.total_episodes} "
            f"episodes, expected {steps} / {len(buffers)}; the dataset was deleted"
        )

    report = {
        "dataset_id": dataset_id,
        "env_id": env_id,
        "flavour": flavour,
        "episodes": len(buffers),
        "steps": steps,
        "goal_reaches": goal_reaches,
        **refs,
        **checks,
        "seconds_eval": round(t_eval, 1),
        "seconds_collect": round(t_collect, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    log.info("%s dataset built: %s", flavour, report)
    if progress:
        print(
            f"[{flavour}] {dataset_id}: {steps} steps, {len(buffers)} episodes, {goal_reaches} goals reached; "
            f"ref_min={refs['ref_min_score']:.2f} ref_max={refs['ref_max_score']:.2f}; noiseless controller "
            f"success {refs['expert_success_rate']:.0%} on the eval env; {report['seconds_total']:.0f}s"
        )
    return dataset
