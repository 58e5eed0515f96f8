"""The shipped YAML configs: each one trains through the CLI, and the trainer presets compose with them."""

from __future__ import annotations

import pytest
import yaml

from conftest import FAST, REPO, run_cli


ALGORITHM_CONFIGS = sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/*/*.yaml")
                           if p.parent.name != "trainer" and "OnlineDataModule" not in p.read_text())
# Online configs (OnlineDataModule: no dataset_id) are trained by tests/test_online.py.


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", *ALGORITHM_CONFIGS])
def test_shipped_config_trains(config, maze_root, tmp_path):
    """Every shipped algorithm config (its dataset swapped for the small test maze) trains a few updates."""
    result = run_cli(["fit", "--config", str(REPO / config), *FAST, "--trainer.max_steps", "4",
                      "--data.eval_episodes", "1"], maze_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = yaml.safe_load(next(tmp_path.glob("lightning_logs/*/config.yaml")).read_text())
    assert saved["model"]["class_path"].rsplit(".", 1)[-1] == yaml.safe_load((REPO / config).read_text())["model"]["class_path"]


@pytest.mark.parametrize("preset, key, value", [("cpu", "accelerator", "cpu"), ("ddp", "strategy", "ddp"),
                                                ("bf16", "precision", "bf16-mixed"), ("gpu", "accelerator", "gpu")])
def test_trainer_presets_compose_with_an_algorithm_config(preset, key, value, maze_root, tmp_path):
    result = run_cli(["fit", "--config", str(REPO / "configs/td3bc/pointmaze.yaml"), "--config",
                      str(REPO / f"configs/trainer/{preset}.yaml"), "--print_config"], maze_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["trainer"][key] == value
    assert printed["model"]["init_args"]["alpha"] == 2.5 and printed["trainer"]["max_steps"] == 1_000_000


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", *ALGORITHM_CONFIGS])
def test_shipped_config_names_a_dataset_the_project_can_build(config):
    """The dataset a config trains on by default is one `lit-offrl datasets make` builds (the hub is unreachable, and
    test_shipped_config_trains swaps the dataset, so a wrong default id would otherwise first fail in a user's run)."""
    from lit_offrl.recipes import RECIPES

    dataset_id = yaml.safe_load((REPO / config).read_text())["data"]["dataset_id"]
    assert dataset_id in RECIPES, f"{config}: {dataset_id!r} is not one of the recipes' ids"
