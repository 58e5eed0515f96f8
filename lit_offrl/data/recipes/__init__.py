"""Dataset recipes: datasets lit_offrl can make locally, as ordinary Minari datasets, when the hub is out of reach.

`RECIPES` maps a Minari id to the function that builds it (keyword arguments `steps`, `seed`, `progress`);
`DESCRIPTIONS` gives each id a one-line description. `OfflineDataModule` builds a recipe's dataset on first
use when its id is asked for and is not in the local Minari root; `lit-offrl datasets make ID` builds one
explicitly.

PointMaze ids (see `lit_offrl.data.recipes.pointmaze`): `lit-offrl/pointmaze/{umaze,medium,large}[-dense]-v0`
(goal-conditioned labels, Minari D4RL/pointmaze) and `lit-offrl/maze2d/{umaze,medium,large}[-dense]-v0` (the
same trajectories relabeled to the evaluation goal, D4RL maze2d).

Locomotion ids (see `lit_offrl.data.recipes.locomotion`): `lit-offrl/{hopper,halfcheetah,walker2d}/{random,medium,
medium-replay,expert,medium-expert}-v0` (D4RL's MuJoCo datasets on the v5 envs, from one online SAC run per env,
cached so every level after the first is only rolled out).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from lit_offrl.data.recipes.locomotion import ENVS, LEVELS, make_locomotion_dataset
from lit_offrl.data.recipes.pointmaze import make_pointmaze_dataset, summarize

__all__ = ["RECIPES", "DESCRIPTIONS", "build", "summarize"]

RECIPES: dict[str, Callable[..., object]] = {}
DESCRIPTIONS: dict[str, str] = {}
_LABELS = {
    "pointmaze": "goal-conditioned labels (Minari D4RL/pointmaze)",
    "maze2d": "relabeled to the evaluation goal (D4RL maze2d)",
}
for _flavour in ("pointmaze", "maze2d"):
    for _maze in ("UMaze", "Medium", "Large"):
        for _reward in ("sparse", "dense"):
            _id = f"lit-offrl/{_flavour}/{_maze.lower()}{'-dense' if _reward == 'dense' else ''}-v0"
            RECIPES[_id] = partial(make_pointmaze_dataset, _id, maze=_maze, reward_type=_reward, flavour=_flavour)
            DESCRIPTIONS[_id] = f"PointMaze {_maze}, {_reward} reward, {_LABELS[_flavour]}"

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
        RECIPES[_id] = partial(make_locomotion_dataset, _id, env=_env, level=_level)
        DESCRIPTIONS[_id] = f"{_env_id} {_level}: {_LEVEL_LABELS[_level]} (D4RL {_env}-{_level})"


def build(dataset_id: str, progress: bool = True):
    """Build `dataset_id` with its recipe and return the `MinariDataset`."""
    print(f"lit_offrl: building dataset '{dataset_id}' locally (first use)...")
    return RECIPES[dataset_id](progress=progress)
