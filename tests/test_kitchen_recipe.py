"""The FrankaKitchen recipe (lit_offrl.recipes.kitchen, issue 16 item 5): its scripted demonstrator completes
sub-tasks in the real env from reset, and a tiny build is deterministic from its seed with the hub's spaces and
env settings."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lit_offrl.data  # noqa: F401  (registers the robotics envs and applies lit_offrl.data.compat)
from lit_offrl.recipes import kitchen
from minari_fixtures import use_minari_root

# FrankaKitchen-v1 returns the same observation arrays on every step; its spaces warn about float64 precision
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def key_configurations():
    return {}  # shared IK key configurations: computed once for the module


@pytest.mark.parametrize("skill", ["slide cabinet", "microwave"])
def test_demonstrator_completes_a_sub_task_from_reset(skill, key_configurations):
    env = gym.make("FrankaKitchen-v1", **kitchen.data_env_kwargs("complete"))
    try:
        demo = kitchen.KitchenDemonstrator(env, np.random.default_rng(3), action_noise=0.1,
                                           key_configurations=key_configurations)
        demo.reset(seed=3)
        assert not kitchen.task_done(env.unwrapped.data.qpos, skill)
        assert demo.run([skill]) == [skill]  # done, and nothing else disturbed into (or out of) its goal
        assert len(demo.actions) < 280
        assert np.abs(np.asarray(demo.actions)).max() <= 1.0
        assert demo.rewards[-1] == 1.0  # the env itself rewards the completed task at the last step
    finally:
        env.close()


def test_tiny_build_is_deterministic_with_the_hubs_spaces(tmp_path, monkeypatch):
    import minari

    built = []
    for run in range(2):
        use_minari_root(tmp_path / f"minari{run}", monkeypatch)
        ds = kitchen.make_kitchen_dataset("test/kitchen-mixed-v0", flavour="mixed", episodes=1, seed=5,
                                          progress=False)
        built.append(next(ds.iterate_episodes()))
        if run == 0:
            spec = ds.spec
            env_kwargs = spec.env_spec.kwargs
            assert spec.env_spec.id == "FrankaKitchen-v1"
            assert env_kwargs["tasks_to_complete"] == ["microwave", "kettle", "bottom burner", "light switch"]
            assert env_kwargs["remove_task_when_completed"] is False
            assert env_kwargs["terminate_on_tasks_completed"] is False
            assert spec.env_spec.max_episode_steps == 450
            eval_spec = ds.recover_environment(eval_env=True).spec
            assert eval_spec.kwargs["remove_task_when_completed"] is True and eval_spec.max_episode_steps == 280
            assert ds.storage.metadata["ref_min_score"] == 0.0 and ds.storage.metadata["ref_max_score"] == 4.0
            env = ds.recover_environment()
            assert ds.observation_space == env.observation_space and ds.action_space == env.action_space
            env.close()
            assert ds.lit_offrl_report["targets_completed"]["bottom burner"] == 0  # never all 4 mixed targets
    first, second = built
    assert len(first.actions) == len(second.actions) > 0
    np.testing.assert_array_equal(first.actions, second.actions)
    np.testing.assert_array_equal(first.observations["observation"], second.observations["observation"])
    np.testing.assert_array_equal(first.rewards, second.rewards)
    assert first.truncations[-1] and not first.terminations.any()
    # the stored reward is the env's: the number of mixed targets done after each step
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import BONUS_THRESH, OBS_ELEMENT_GOALS

    achieved = first.observations["achieved_goal"]
    expected = sum((np.linalg.norm(achieved[t][1:] - OBS_ELEMENT_GOALS[t], axis=-1) < BONUS_THRESH).astype(float)
                   for t in achieved)
    np.testing.assert_array_equal(first.rewards, expected)
    assert minari is not None


def test_register_adds_the_three_ids():
    from lit_offrl.data import registry

    kitchen.register()
    for flavour in ("complete", "partial", "mixed"):
        assert f"lit-offrl/kitchen/{flavour}-v0" in registry.RECIPES
