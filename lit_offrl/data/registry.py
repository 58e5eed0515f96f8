"""The registry of dataset builders: Minari ids lit_offrl can make locally, and the function that makes each.

The data layer knows no recipe: recipes (`lit_offrl.recipes`, which sit above the algorithms because they train
policies) register their ids here when they are imported, and `lit_offrl` imports them once, on its own import.
`minari_io.resolve` then builds a missing registered id on first use, and `lit-offrl datasets make` builds one on
request, both through `build`.

A builder is called with keyword arguments `progress` (and whatever options its recipe takes, e.g. `seed`,
`steps`) and returns the `MinariDataset` it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["RECIPES", "DESCRIPTIONS", "register", "build", "summarize"]

RECIPES: dict[str, Callable[..., Any]] = {}
DESCRIPTIONS: dict[str, str] = {}


def register(dataset_id: str, builder: Callable[..., Any], description: str) -> None:
    """Make `dataset_id` buildable: `builder(progress=..., **options)` writes it and returns the `MinariDataset`;
    `description` is its one line in `lit-offrl datasets list`."""
    RECIPES[dataset_id] = builder
    DESCRIPTIONS[dataset_id] = description


def build(dataset_id: str, progress: bool = True, **options: Any):
    """Build `dataset_id` with its registered builder and return the `MinariDataset`."""
    print(f"lit_offrl: building dataset '{dataset_id}' locally (first use)...")
    return RECIPES[dataset_id](progress=progress, **options)


def summarize(dataset: Any) -> dict[str, Any]:
    """Episodes, steps, mean episode return and mean normalized return (x100; ``None`` without ref scores)."""
    import minari

    returns = np.array([float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()])
    try:
        normalized = float(np.mean(minari.get_normalized_score(dataset, returns)) * 100.0) if returns.size else None
    except ValueError:
        normalized = None
    metadata = dataset.storage.metadata
    return {
        "dataset_id": dataset.spec.dataset_id,
        "episodes": int(dataset.total_episodes),
        "steps": int(dataset.total_steps),
        "mean_return": float(returns.mean()) if returns.size else None,
        "std_return": float(returns.std()) if returns.size else None,
        "normalized_return": normalized,
        "ref_min_score": metadata.get("ref_min_score"),
        "ref_max_score": metadata.get("ref_max_score"),
    }
