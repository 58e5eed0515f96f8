"""FrankaKitchen-v1 runs in this project's environment (gymnasium-robotics 1.4.2 under mujoco 4) and a
kitchen-like dataset is evaluated through lit_offrl (issue 16, item 3: the env asserted on its first reset)."""

from __future__ import annotations

import math

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

import lit_offrl.data  # noqa: F401  (registers the robotics envs and applies lit_offrl.data.compat)
from lit_offrl.algos.bc import BC
from lit_offrl.data import compat
from lit_offrl.data.datamodule import OfflineDataModule
from minari_fixtures import make_recorded_dataset, use_minari_root

TASKS = ["microwave", "kettle"]
# FrankaKitchen-v1 returns the same observation arrays on every step (the recorder copies them)
pytestmark = pytest.mark.filterwarnings("ignore:.*share an object:UserWarning")


def kitchen_spec(max_episode_steps: int = 20) -> EnvSpec:
    """FrankaKitchen-v1 with two tasks and short episodes (not registered: Minari stores it as it is)."""
    registered = gym.spec("FrankaKitchen-v1")
    return EnvSpec(id=registered.id, entry_point=registered.entry_point, max_episode_steps=max_episode_steps,
                   kwargs={**registered.kwargs, "tasks_to_complete": list(TASKS)})


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(part) for part in value.values())
    return bool(np.isfinite(value).all())


def test_joint_type_fix_is_applied_when_needed_and_idempotent():
    from gymnasium_robotics.utils import mujoco_utils

    needed = not compat.joint_types_compare_by_value()
    assert getattr(mujoco_utils, "_lit_offrl_joint_type_fix", False) == needed
    assert compat.fix_gymnasium_robotics_joint_types() is False  # a second application changes nothing
    if needed:
        from gymnasium_robotics.envs.franka_kitchen import franka_env

        assert mujoco_utils.get_joint_qpos.__wrapped_original__ is not None
        # franka_env imported robot_get_obs by name; it reads get_joint_qpos from mujoco_utils' globals
        assert franka_env.robot_get_obs.__globals__["get_joint_qpos"] is mujoco_utils.get_joint_qpos


def test_kitchen_resets_and_steps_with_finite_dict_observations():
    env = gym.make("FrankaKitchen-v1", tasks_to_complete=TASKS)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
        assert set(obs["achieved_goal"]) == set(obs["desired_goal"]) == set(TASKS)
        assert obs["observation"].shape == (59,)
        assert _finite(obs)
        env.action_space.seed(0)
        for _ in range(50):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs), "the Dict observation structure changed"
            assert _finite(obs) and math.isfinite(float(reward))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()


def test_kitchen_like_dataset_is_evaluated(tmp_path, monkeypatch):
    use_minari_root(tmp_path / "minari", monkeypatch)
    built = make_recorded_dataset("test/kitchen-random-v0", kitchen_spec(max_episode_steps=20), lengths=(8, 6))
    assert built.lengths == [8, 6]
    robot_state = built.episodes[0].observations["observation"]
    assert robot_state.shape == (9, 59) and not np.allclose(robot_state[0], robot_state[-1])  # copied per step
    dm = OfflineDataModule(built.dataset_id, batch_size=16, eval_episodes=1)
    model = BC(dm.obs_dim, dm.action_dim, hidden_dims=(16, 16))
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=3, max_epochs=-1, val_check_interval=3, check_val_every_n_epoch=None,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert int(model.num_updates) == 3
    metrics = trainer.callback_metrics
    assert "val/return" in metrics, sorted(metrics)
    assert math.isfinite(float(metrics["val/return"]))
    assert float(metrics["val/episode_length"]) == 20  # 3-update BC completes no task: truncated at 20 steps
