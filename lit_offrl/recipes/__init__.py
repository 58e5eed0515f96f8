"""Dataset recipes: datasets lit_offrl can make locally, as ordinary Minari datasets, when the hub is out of reach.

Recipes sit above the algorithms (the locomotion recipes train online SAC) and the data layer. Importing this
package registers every recipe id in `lit_offrl.data.registry` (`lit_offrl` imports it on its own import), so
the data layer builds a missing id on first use without knowing any recipe, and `lit-offrl datasets make ID`
builds one explicitly. `RECIPES` / `DESCRIPTIONS` are the registry's dicts (id -> builder taking `progress`,
`steps`, `seed`; id -> one line).

PointMaze ids (see `lit_offrl.recipes.pointmaze`): `lit-offrl/pointmaze/{umaze,medium,large}[-dense]-v0`
(goal-conditioned labels, Minari D4RL/pointmaze) and `lit-offrl/maze2d/{umaze,medium,large}[-dense]-v0` (the
same trajectories relabeled to the evaluation goal, D4RL maze2d).

Kitchen ids (see `lit_offrl.recipes.kitchen`): `lit-offrl/kitchen/{complete,partial,mixed}-v0` (D4RL kitchen on
FrankaKitchen-v1, a scripted inverse-kinematics demonstrator in place of the teleoperation logs).

AntMaze ids (see `lit_offrl.recipes.antmaze`): `lit-offrl/antmaze/{umaze,umaze-diverse,medium-play,medium-diverse}-v0`
(a goal-reaching ant trained with online SAC, driven by the planner's waypoints). Adroit ids (see
`lit_offrl.recipes.adroit`): `lit-offrl/{pen,door,hammer,relocate}/{expert,cloned}-v0` (online SAC experts).

Locomotion ids (see `lit_offrl.recipes.locomotion`): `lit-offrl/{hopper,halfcheetah,walker2d}/{random,medium,
medium-replay,expert,medium-expert}-v0` (D4RL's MuJoCo datasets on the v5 envs, from one online SAC run per env,
cached so every level after the first is only rolled out).
"""

from __future__ import annotations

from functools import partial

from lit_offrl.data.registry import DESCRIPTIONS, RECIPES, build, register, summarize
from lit_offrl.recipes.locomotion import ENVS, LEVELS, make_locomotion_dataset
from lit_offrl.recipes.pointmaze import make_pointmaze_dataset

__all__ = ["RECIPES", "DESCRIPTIONS", "build", "summarize"]

_LABELS = {
    "pointmaze": "goal-conditioned labels (Minari D4RL/pointmaze)",
    "maze2d": "relabeled to the evaluation goal (D4RL maze2d)",
}
for _flavour in ("pointmaze", "maze2d"):
    for _maze in ("UMaze", "Medium", "Large"):
        for _reward in ("sparse", "dense"):
            _id = f"lit-offrl/{_flavour}/{_maze.lower()}{'-dense' if _reward == 'dense' else ''}-v0"
            register(_id, partial(make_pointmaze_dataset, _id, maze=_maze, reward_type=_reward, flavour=_flavour),
                     f"PointMaze {_maze}, {_reward} reward, {_LABELS[_flavour]}")

_LEVEL_LABELS = {
    "random": "uniformly random actions",
    "medium": "SAC stopped early at ~40 D4RL-normalized",
    "medium-replay": "SAC's replay buffer up to the medium policy",
    "expert": "the best SAC policy of the run",
    "medium-expert": "medium + expert episodes",
}
for _env, _env_id in ENVS.items():
    for _level in LEVELS:
        _id = f"lit-offrl/{_env}/{_level}-v0"
        register(_id, partial(make_locomotion_dataset, _id, env=_env, level=_level),
                 f"{_env_id} {_level}: {_LEVEL_LABELS[_level]} (D4RL {_env}-{_level})")

# FrankaKitchen (lit_offrl.recipes.kitchen): lit-offrl/kitchen/{complete,partial,mixed}-v0, a scripted IK demonstrator.
from lit_offrl.recipes import kitchen as _kitchen  # noqa: E402

_kitchen.register()

# AntMaze (lit_offrl.recipes.antmaze): lit-offrl/antmaze/{umaze,umaze-diverse,medium-play,medium-diverse}-v0, a
# goal-reaching ant policy (online SAC, cached) driven through the maze by the planner's waypoints.
from lit_offrl.recipes import antmaze as _antmaze  # noqa: E402

_antmaze.register()

# Adroit (lit_offrl.recipes.adroit): lit-offrl/{pen,door,hammer,relocate}/{expert,cloned}-v0, from online SAC on the
# dense reward where it reaches the task (`human` is motion capture: not made here).
from lit_offrl.recipes import adroit as _adroit  # noqa: E402

_adroit.register()
