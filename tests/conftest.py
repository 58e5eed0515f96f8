"""Shared fixtures: a small real PointMaze UMaze dataset built once per session with the project's recipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_offrl.data.datamodule import OfflineDataModule

REPO = Path(__file__).resolve().parent.parent
MAZE_ID = "lit-offrl/pointmaze/umaze-v0"

# Under pytest-xdist (pyproject's addopts: a worker per core, two on the CI machine) each worker and every process it
# starts gets one torch thread: two processes with two OpenMP threads each on two cores run ~5x slower each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def maze_root(tmp_path_factory) -> Path:
    """A Minari root holding a 6,000-step PointMaze UMaze dataset (the quickstart recipe, smaller)."""
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        from lit_offrl.recipes.pointmaze import make_pointmaze_dataset

        make_pointmaze_dataset(MAZE_ID, maze="UMaze", steps=6_000, seed=0, progress=False)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return root


def run_cli(args: list[str], root: Path, cwd: Path, extra_path: Path | None = None, timeout: int = 600):
    """Run `python cli.py ARGS` in `cwd` (so lightning_logs/ lands there) against the Minari root `root`."""
    # HF_HUB_OFFLINE: an unknown id fails at once instead of after the hub client's network retries.
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


FAST = ["--data.dataset_id", MAZE_ID, "--data.eval_episodes", "2", "--trainer.log_every_n_steps", "20",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def maze_dm(maze_root, monkeypatch):
    """A data module over the session's small maze dataset (batches of 128, no evaluation episodes)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    return OfflineDataModule(MAZE_ID, batch_size=128, eval_episodes=0)


def attached(model, dm, tmp_path):
    """Fit one update so the model has its trainer and optimizers, then return it for direct update() calls."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=1, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, dm)
    return model


def fixed_batch(dm, size=128):
    """A fixed batch of `size` dataset rows (every 7th), the same on every call."""
    return dm.transitions.batch(torch.arange(size) * 7)
