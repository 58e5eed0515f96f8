"""Dataset recipes: datasets lit_offrl can make locally, as ordinary Minari datasets, when the hub is out of reach.

`RECIPES` maps a Minari id to the function that builds it; `OfflineDataModule` builds a recipe's dataset on
first use when its id is asked for and is not in the local Minari root.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from lit_offrl.data.recipes.pointmaze import make_pointmaze_dataset

RECIPES: dict[str, Callable[..., object]] = {}
for _maze in ("UMaze", "Medium", "Large"):
    for _reward in ("sparse", "dense"):
        _id = f"lit-offrl/pointmaze/{_maze.lower()}{'-dense' if _reward == 'dense' else ''}-v0"
        RECIPES[_id] = partial(make_pointmaze_dataset, _id, maze=_maze, reward_type=_reward)


def build(dataset_id: str, progress: bool = True):
    """Build `dataset_id` with its recipe and return the `MinariDataset`."""
    print(f"lit_offrl: building dataset '{dataset_id}' locally (first use)...")
    return RECIPES[dataset_id](progress=progress)
