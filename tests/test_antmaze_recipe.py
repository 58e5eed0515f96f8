"""The AntMaze recipe (lit_offrl.recipes.antmaze): the goal-reaching training env, the cached and resumable SAC
run of the low-level policy, the maze driver, and the datasets' spaces, metadata and determinism.

Tiny on purpose: a 40-update SAC run, 50-step snapshot evaluations and a few hundred dataset steps.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from lit_offrl.recipes import antmaze as am

RUN = dict(seed=0, train_steps=40, snapshot_every=20, warmup_steps=50, eval_episodes=1)


@pytest.fixture(scope="module")
def short_evaluations():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(am, "EVAL_STEPS", 50)
        yield


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, short_evaluations):
    """An uninterrupted 40-update run (snapshots at 20 and 40)."""
    cache = tmp_path_factory.mktemp("antmaze_cache")
    directory, snapshots = am.train_goal_policy(cache_dir=cache, progress=False, **RUN)
    return cache, directory, snapshots


# ------------------------------------------------------------------------------------------------- goal env


def test_goal_env_sees_the_antmaze_ant_and_the_relative_goal():
    """Same ant model and observation as AntMaze: from the same noise-free pose and actions, the ant part of the
    goal env's observation follows AntMaze's exactly; the last two entries are goal - torso xy in the torso's
    heading frame."""
    goal_env = am.AntGoalReachEnv(reset_noise_scale=0.0)
    maze_env = am.make_maze_env("umaze")
    obs, _ = goal_env.reset(seed=0)
    maze_obs, _ = maze_env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_allclose(obs[:am.ANT_OBS_DIM], maze_obs["observation"], atol=1e-9)
        qpos = goal_env.ant.data.qpos
        np.testing.assert_allclose(obs[am.ANT_OBS_DIM:], am.relative_goal(goal_env.goal - qpos[:2], qpos[3:7]),
                                   atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(obs[am.ANT_OBS_DIM:]), np.linalg.norm(goal_env.goal - qpos[:2]))
        action = rng.uniform(-1, 1, 8).astype(np.float32)
        obs, *_ = goal_env.step(action)
        maze_obs, *_ = maze_env.step(action)


def test_goal_env_rewards_progress_and_replaces_a_reached_goal():
    env = gym.make(am.GOAL_ENV_ID)
    obs, _ = env.reset(seed=1)
    inner = env.unwrapped
    distance = np.linalg.norm(obs[-2:])
    assert am.GOAL_DISTANCE[0] <= distance <= am.GOAL_DISTANCE[1]
    action = np.zeros(8, np.float32)
    obs, reward, *_, info = env.step(action)
    new_distance = np.linalg.norm(obs[-2:])
    expected = am.PROGRESS_WEIGHT * (distance - new_distance) / inner.ant.dt + info["reward_survive"] \
        + info["reward_ctrl"]
    assert reward == pytest.approx(expected)
    # a goal within the threshold is counted and replaced by one at a waypoint-like distance
    inner.goal = inner.ant.data.qpos[:2].copy() + 0.01
    inner._distance = float(np.linalg.norm(inner.goal - inner.ant.data.qpos[:2]))
    obs, *_, info = env.step(action)
    assert info["goals_reached"] == 1
    assert am.GOAL_DISTANCE[0] - 0.1 <= np.linalg.norm(obs[-2:]) <= am.GOAL_DISTANCE[1] + 0.1


# ------------------------------------------------------------------------------------------------- driver


@pytest.mark.parametrize("name, start, goal_cell", [("umaze", (3, 1), (1, 1)), ("medium-diverse", (1, 1), (6, 6))])
def test_driver_waypoints_lead_an_oracle_ant_to_the_goal(name, start, goal_cell):
    """A kinematic oracle that walks 0.2 per step straight at the driver's target reaches the goal, through
    the planner's cells in order, each target in a free cell next to the previous one."""
    env = am.make_maze_env(name)
    maze = env.unwrapped.maze
    driver = am.MazeDriver(maze, np.random.default_rng(0))
    position = maze.cell_rowcol_to_xy(np.array(start)).astype(float)
    goal = maze.cell_rowcol_to_xy(np.array(goal_cell)) + np.array([0.3, -0.2])
    for _ in range(500):
        step = driver.target(position, goal) - position
        position = position + step * min(1.0, 0.2 / max(np.linalg.norm(step), 1e-9))
        if np.linalg.norm(position - goal) <= am.GOAL_RADIUS:
            break
    assert np.linalg.norm(position - goal) <= am.GOAL_RADIUS
    assert [start, *driver.waypoints] == driver.planner.path(start, goal_cell)
    np.testing.assert_allclose(driver.waypoint, goal)  # in the goal cell the target is the goal itself


def test_torso_frame_puts_a_goal_ahead_of_the_torso_on_its_x_axis():
    facing_y = [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]  # yaw 90 degrees
    np.testing.assert_allclose(am.relative_goal([0.0, 2.0], facing_y, "torso"), [2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(am.relative_goal([1.0, 0.0], facing_y, "torso"), [0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(am.relative_goal([1.0, 0.0], facing_y, "world"), [1.0, 0.0])
    assert gym.make("lit_offrl/AntGoalReach-v0").unwrapped.goal_frame == "world"


def test_policy_input_caps_the_relative_target_at_the_training_range():
    observation = np.zeros(am.ANT_OBS_DIM)
    observation[1] = 1.0  # identity quaternion: the torso faces +x
    obs = {"observation": observation, "achieved_goal": np.array([1.0, 1.0])}
    near = am.policy_input(obs, np.array([2.0, 3.0]))
    far = am.policy_input(obs, np.array([21.0, 1.0]))
    np.testing.assert_allclose(near[-2:], [1.0, 2.0])
    np.testing.assert_allclose(far[-2:], [am.GOAL_DISTANCE[1], 0.0])


# ------------------------------------------------------------------------------------------------- training


def test_training_is_cached_and_snapshotted(tiny_run, monkeypatch):
    cache, directory, snapshots = tiny_run
    assert [s.updates for s in snapshots] == [20, 40]
    assert snapshots[-1].env_steps == RUN["warmup_steps"] + RUN["train_steps"]
    assert (directory / "done").exists() and not (directory / "training.lock").exists()
    assert json.loads((directory / "training.json").read_text())["env_id"] == am.GOAL_ENV_ID
    # a finished run is reused without training
    monkeypatch.setattr(am, "evaluate_goal_policy", lambda *a, **k: pytest.fail("trained again"))
    again, cached = am.train_goal_policy(cache_dir=cache, progress=False, **RUN)
    assert again == directory and cached == snapshots


def test_killed_training_resumes_from_its_checkpoint(tiny_run, tmp_path, monkeypatch):
    """A run that dies after its first snapshot resumes from checkpoints/last.ckpt: only the missing updates are
    trained, and what it saved before dying is what the uninterrupted run saved (deterministic from the seed)."""
    _, uninterrupted, _ = tiny_run
    evaluate = am.evaluate_goal_policy
    calls = []

    def dies_at_the_second_snapshot(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(am, "evaluate_goal_policy", dies_at_the_second_snapshot)
    with pytest.raises(RuntimeError, match="killed"):
        am.train_goal_policy(cache_dir=tmp_path, progress=False, **RUN)
    directory = am.run_directory(cache_dir=tmp_path, **{k: v for k, v in RUN.items()})
    assert [s.updates for s in am.read_snapshots(directory)] == [20]
    assert not (directory / "done").exists() and not (directory / "training.lock").exists()
    assert am.training_in_progress(directory) is None

    calls.clear()
    _, snapshots = am.train_goal_policy(cache_dir=tmp_path, progress=False, **RUN)
    assert len(calls) == 1  # resumed at update 20: only the final snapshot was evaluated
    assert [s.updates for s in snapshots] == [20, 40] and (directory / "done").exists()
    assert snapshots[-1].env_steps == RUN["warmup_steps"] + RUN["train_steps"]
    first = torch.load(directory / snapshots[0].path, weights_only=False)["state_dict"]
    reference = torch.load(uninterrupted / snapshots[0].path, weights_only=False)["state_dict"]
    assert all(torch.equal(first[key], reference[key]) for key in reference)


# ------------------------------------------------------------------------------------------------- datasets


def test_register_adds_the_four_ids():
    from lit_offrl.data import registry

    am.register()
    for name in ("umaze", "umaze-diverse", "medium-play", "medium-diverse"):
        assert f"lit-offrl/antmaze/{name}-v0" in registry.RECIPES


def test_collection_is_deterministic_from_the_seed(tiny_run):
    _, directory, snapshots = tiny_run
    policy = am.policy_function(am.load_policy(directory, snapshots[-1]))

    def collect(seed):
        torch.manual_seed(seed)
        return am._collect("umaze-diverse", policy, 120, seed, am.ACTION_NOISE, progress=False)

    first, again, other = collect(0), collect(0), collect(1)
    assert len(first) == 1 and len(first[0].rewards) == 120
    for key in ("observation", "achieved_goal", "desired_goal"):
        np.testing.assert_array_equal(first[0].observations[key], again[0].observations[key])
    np.testing.assert_array_equal(first[0].actions, again[0].actions)
    assert not np.array_equal(first[0].actions, other[0].actions)


@pytest.mark.filterwarnings("ignore:antmaze umaze. the noiseless driver")
def test_umaze_dataset_is_shaped_like_the_hubs(tiny_run, tmp_path, monkeypatch):
    cache, _, _ = tiny_run
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = am.make_antmaze_dataset("lit-offrl/antmaze/umaze-v0", name="umaze", steps=705, ref_episodes=1,
                                      cache_dir=cache, progress=False, **{k: v for k, v in RUN.items()
                                                                          if k != "seed"})
    assert dataset.total_steps == 705 and dataset.total_episodes == 2
    space = dataset.observation_space
    assert {key: space[key].shape for key in space} == {"observation": (27,), "achieved_goal": (2,),
                                                        "desired_goal": (2,)}
    assert dataset.action_space.shape == (8,) and float(dataset.action_space.high[0]) == 1.0
    first, second = list(dataset.iterate_episodes())
    assert len(first.rewards) == 700 and len(second.rewards) == 5  # the step limit, then the cut
    assert first.truncations[-1] and not first.terminations.any() and not first.truncations[:-1].any()
    assert set(first.infos) >= {"success", "goal", "qpos", "qvel"}
    # the fixed umaze goal: the far end of the U, the env's +-1 m noise around cell (1, 1)'s centre (-4, 4)
    assert np.abs(first.observations["desired_goal"] - [-4.0, 4.0]).max() <= 1.0
    # rewards are the env's sparse reward of the stored goal
    distance = np.linalg.norm(first.observations["achieved_goal"][1:] - first.observations["desired_goal"][1:], axis=1)
    np.testing.assert_array_equal(first.rewards, (distance <= 0.45).astype(float))
    from lit_offrl.data.minari_io import eval_env_spec

    spec = eval_env_spec(dataset)
    assert spec.id == "AntMaze_UMaze-v5" and spec.max_episode_steps == 700
    assert spec.kwargs["continuing_task"] is True and spec.kwargs["reset_target"] is False
    assert spec.kwargs["maze_map"][1][1] == "g" and spec.kwargs["maze_map"][3][1] == "r"
    eval_env = dataset.recover_environment(eval_env=True)
    obs, _ = eval_env.reset(seed=0)
    assert obs["observation"].shape == (27,) and np.abs(obs["desired_goal"] - [-4.0, 4.0]).max() <= 1.0
    metadata = dataset.storage.metadata
    assert metadata["ref_max_score"] > metadata["ref_min_score"]


def test_the_episode_ends_on_a_flip_not_on_a_jump():
    """-v1 ends when the torso tips past horizontal and pays the survival reward up to then; -v0 keeps Ant-v5's
    healthy height range (0.2, 1.0), which ends a jump of an upright ant and lets one lying on its back go on."""
    upright, on_back = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    tipped = [np.cos(0.245 * np.pi), np.sin(0.245 * np.pi), 0.0, 0.0]  # 88 degrees about x: above the horizon
    assert not am.fell(upright) and not am.fell(tipped) and am.fell(on_back)
    outcomes = {}
    for env_id in (am.GOAL_ENV_ID, am.GOAL_ENV_IDS_V0["torso"]):
        env = gym.make(env_id).unwrapped
        ends = []
        for z, quaternion in ((1.2, upright), (0.27, on_back)):
            env.reset(seed=0)
            qpos, qvel = env.ant.data.qpos.copy(), env.ant.data.qvel.copy()
            qpos[2], qpos[3:7] = z, quaternion
            env.ant.set_state(qpos, qvel * 0)
            _, _, terminated, _, info = env.step(np.zeros(8, np.float32))
            ends.append(terminated)
            if not terminated:
                assert info["reward_survive"] == 1.0
        outcomes[env_id] = ends
    assert outcomes == {am.GOAL_ENV_ID: [False, True], am.GOAL_ENV_IDS_V0["torso"]: [True, False]}
