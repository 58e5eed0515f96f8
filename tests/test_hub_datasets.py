"""Datasets built the way Minari's hub builds each family lit_offrl targets (issue 16, item 1): D4RL/antmaze/*-v1,
D4RL/{pen,door,hammer,relocate}/*-v2, D4RL/kitchen/*-v2 and mujoco/{hopper,halfcheetah,walker2d,ant}/*-v0.

Each look-alike (`minari_fixtures.make_hub_lookalike`) has the hub's env spec, eval env spec and reference returns
and a few short random-action episodes recorded in that env. Through lit_offrl it must load (dict and nested-dict
observations flattened), train, and evaluate one full episode in the hub's evaluation env, logging the normalized
score of the evaluation return and the family's success measure.
"""

from __future__ import annotations

import math

import gymnasium as gym
import lightning as L
import numpy as np
import pytest

import lit_offrl.data  # noqa: F401  (registers the robotics envs and applies lit_offrl.data.compat)
from lit_offrl.algos.td3bc import TD3BC
from lit_offrl.data import minari_io
from lit_offrl.data.datamodule import D4RL_REFERENCE_RETURNS, OfflineDataModule
from minari_fixtures import KITCHEN_TASKS, flat_rows, hub_recipe, make_hub_lookalike

# One id per family, every Adroit task, every locomotion robot lit_offrl has D4RL returns for.
HUB_IDS = ["D4RL/antmaze/umaze-v1", "D4RL/pen/expert-v2", "D4RL/door/human-v2", "D4RL/hammer/cloned-v2",
           "D4RL/relocate/human-v2", "D4RL/kitchen/complete-v2", "mujoco/hopper/medium-v0",
           "mujoco/halfcheetah/expert-v0", "mujoco/walker2d/simple-v0", "mujoco/ant/medium-v0"]
# Evaluation episodes that never end before the time limit: AntMaze's eval env is a continuing task, Adroit has no
# termination, Kitchen is made with terminate_on_tasks_completed=False, HalfCheetah cannot fall.
RUNS_TO_TIME_LIMIT = ("D4RL/antmaze/", "D4RL/pen/", "D4RL/door/", "D4RL/hammer/", "D4RL/relocate/", "D4RL/kitchen/",
                      "mujoco/halfcheetah/")
# The hub's kitchen datasets store no reference returns, so a user gives them (--data.ref_min_score /
# --data.ref_max_score) to get a normalized score. D4RL's (0 and 4, d4rl/infos.py) do not fit the hub's env: made with
# remove_task_when_completed=False, it rewards every completed task on every step, so 0 and the largest return
# (4 tasks on each of 280 steps) are given here; without them lit_offrl logs D4RL's kitchen score, 25 x
# val/tasks_completed (test_kitchen_lookalike_is_scored_by_d4rls_task_count).
KITCHEN_GIVEN_REFERENCES = (0.0, 4.0 * 280)
UPDATES = 4

# FrankaKitchen-v1 returns the same observation arrays on every step (the recorder copies them)
pytestmark = pytest.mark.filterwarnings("ignore:.*share an object:UserWarning")


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    """A Minari root holding a look-alike of every id in HUB_IDS (two episodes of 6 and 4 random steps each), and
    the look-alikes by id."""
    root = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        built = {dataset_id: make_hub_lookalike(dataset_id) for dataset_id in HUB_IDS}
    return root, built


@pytest.fixture
def hub(hub_root, monkeypatch):
    """The look-alikes by id, with Minari pointed at their root."""
    root, built = hub_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return built


def hand_rollout(model, dm: OfflineDataModule, seed: int) -> tuple[float, int, bool, int | None]:
    """One episode of `model.act` in a fresh eval env, flattening with `gymnasium.spaces.flatten`: (return, length,
    whether any step's info["success"] was true, sub-tasks completed by the end or None without them)."""
    env = dm.make_eval_env()
    try:
        obs, _ = env.reset(seed=seed)
        total, steps, succeeded, tasks, done = 0.0, 0, False, None, False
        while not done:
            flat = gym.spaces.flatten(dm.observation_space, obs)[None].astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(model.act(flat)[0].numpy())
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
            succeeded |= bool(info.get("success", False))
            if "episode_task_completions" in info:
                tasks = len(info["episode_task_completions"])
        return total, steps, succeeded, tasks
    finally:
        env.close()


def expected_references(dataset_id: str) -> tuple[float, float]:
    """The returns lit_offrl's normalized score must use: the dataset's own, else D4RL's for mujoco ids, else
    (kitchen) the ones the test gives."""
    recipe = hub_recipe(dataset_id)
    if recipe.reference_returns is not None:
        return recipe.reference_returns
    if recipe.family == "mujoco":
        return D4RL_REFERENCE_RETURNS[dataset_id.split("/")[1]]
    return KITCHEN_GIVEN_REFERENCES


def data_module(dataset_id: str, **kwargs) -> OfflineDataModule:
    if hub_recipe(dataset_id).family == "kitchen":
        kwargs = {**dict(zip(("ref_min_score", "ref_max_score"), KITCHEN_GIVEN_REFERENCES)), **kwargs}
    return OfflineDataModule(dataset_id, batch_size=8, eval_episodes=1, **kwargs)


@pytest.mark.parametrize("dataset_id", HUB_IDS)
def test_hub_lookalike_loads_with_the_hubs_specs(hub, dataset_id):
    recipe = hub_recipe(dataset_id)
    dm = data_module(dataset_id)
    env = gym.make(recipe.env_spec)
    try:
        assert dm.obs_dim == gym.spaces.flatdim(env.observation_space)  # every key, nested dicts included
        assert dm.action_dim == int(np.prod(env.action_space.shape))
    finally:
        env.close()
    assert minari_io.eval_env_spec(dm.dataset) == recipe.evaluation_spec
    assert (dm.ref_min_score, dm.ref_max_score) == expected_references(dataset_id)
    dm.setup("fit")
    built = hub[dataset_id]
    assert dm.data.episode_ends.tolist() == np.cumsum(built.lengths).tolist()
    for episode, start in zip(built.episodes, dm.data.episode_starts):  # dicts of dicts flattened as gymnasium does
        rows = flat_rows(built.observation_space, episode.observations, len(episode) + 1)
        np.testing.assert_array_equal(dm.data.observations[start:start + len(episode)], rows[:-1])
        np.testing.assert_array_equal(dm.data.next_observations[start:start + len(episode)], rows[1:])
        np.testing.assert_array_equal(dm.data.terminals[start:start + len(episode)], episode.terminations)
    eval_env = dm.make_eval_env()
    try:
        assert eval_env.spec.max_episode_steps == recipe.evaluation_spec.max_episode_steps
        assert eval_env.spec.kwargs == recipe.evaluation_spec.kwargs
    finally:
        eval_env.close()


@pytest.mark.parametrize("dataset_id", HUB_IDS)
def test_hub_lookalike_trains_and_evaluates_with_a_normalized_score(hub, tmp_path, dataset_id):
    recipe = hub_recipe(dataset_id)
    dm = data_module(dataset_id)
    model = TD3BC(dm.obs_dim, dm.action_dim, hidden_dims=(16, 16))
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=UPDATES, max_epochs=-1, val_check_interval=UPDATES, check_val_every_n_epoch=None,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert int(model.num_updates) == UPDATES
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}

    episode_return, length = metrics["val/return"], metrics["val/episode_length"]
    assert math.isfinite(episode_return)
    limit = recipe.evaluation_spec.max_episode_steps
    if dataset_id.startswith(RUNS_TO_TIME_LIMIT):
        assert length == limit  # one whole episode in the hub's eval env, cut by its own time limit
    else:
        assert 1 <= length <= limit
    low, high = expected_references(dataset_id)
    assert metrics["val/normalized_score"] == pytest.approx(100.0 * (episode_return - low) / (high - low),
                                                            rel=1e-5, abs=1e-4)

    # The logged episode is the one a hand rollout of the trained policy plays in the hub's eval env.
    hand_return, hand_length, hand_success, hand_tasks = hand_rollout(model, dm, dm.hparams.eval_seed)
    assert episode_return == pytest.approx(hand_return, rel=1e-5, abs=1e-3)
    assert length == hand_length

    success_metrics = {key for key in metrics if key in ("val/success_rate", "val/tasks_completed")}
    assert success_metrics == ({recipe.success_metric} if recipe.success_metric else set())
    if recipe.success_metric == "val/success_rate":
        assert metrics["val/success_rate"] == float(hand_success)
    if recipe.success_metric == "val/tasks_completed":
        assert metrics["val/tasks_completed"] == hand_tasks


def test_antmaze_evaluates_on_the_d4rl_goal_not_the_data_goal(hub):
    dm = data_module("D4RL/antmaze/umaze-v1")
    noise = 0.25 * 4.0  # AntMaze resets goals uniformly within position_noise_range x maze_size_scaling
    for env, goal in ((dm.make_eval_env(), (4.0, -4.0)), (dm.dataset.recover_environment(), (-4.0, 4.0))):
        try:
            for seed in range(3):
                obs, _ = env.reset(seed=seed)
                assert np.abs(obs["desired_goal"] - np.array(goal)).max() <= noise, (env.spec.kwargs["maze_map"], obs)
        finally:
            env.close()


def test_kitchen_lookalike_is_scored_by_d4rls_task_count(hub, caplog):
    """The hub's kitchen data has no reference returns: val/normalized_score is D4RL's kitchen score, 100 x the
    sub-tasks completed / 4, said once; given reference returns score the return instead."""
    import logging

    import torch

    dm = OfflineDataModule("D4RL/kitchen/complete-v2", batch_size=8, eval_episodes=1)
    assert (dm.ref_min_score, dm.ref_max_score, dm.reference_source) == (None, None, "none")
    with caplog.at_level(logging.INFO):
        dm.setup("validate")
    assert dm.eval_task_count == 4 and dm.scores_by_tasks and dm.has_normalized_score
    returns, tasks = torch.tensor([0.0, 300.0, 900.0]), torch.tensor([0.0, 2.0, 4.0])
    torch.testing.assert_close(dm.normalized_score(returns, tasks), torch.tensor([0.0, 50.0, 100.0]))
    assert dm.normalized_score(returns) is None  # no task counts, no score
    assert sum("D4RL's kitchen score" in r.getMessage() for r in caplog.records) == 1
    given = data_module("D4RL/kitchen/complete-v2")
    given.setup("validate")
    torch.testing.assert_close(given.normalized_score(returns, tasks), 100 * returns / KITCHEN_GIVEN_REFERENCES[1])
    env = dm.make_eval_env()
    try:
        obs, _ = env.reset(seed=0)
        assert sorted(obs["desired_goal"]) == sorted(KITCHEN_TASKS["complete"])  # the hub's four tasks, no others
        assert dm.obs_dim == 59 + 2 * (1 + 7 + 2 + 1)  # robot + objects, then achieved / desired goal per task
    finally:
        env.close()


def test_record_scores_hub_episodes_as_validation_does(hub):
    """`lit-offrl record` scores a Minari mujoco episode by D4RL's returns, a kitchen one by its sub-tasks, and
    given reference returns when the run had them."""
    from lit_offrl.record import EvalSource

    hopper = EvalSource({"dataset_id": "mujoco/hopper/medium-v0"})
    low, high = D4RL_REFERENCE_RETURNS["hopper"]
    assert hopper.normalized_score(high) == 100.0 and hopper.normalized_score(low) == 0.0
    kitchen = EvalSource({"dataset_id": "D4RL/kitchen/complete-v2"})
    assert kitchen.normalized_score(500.0, (3, 4)) == 75.0 and kitchen.normalized_score(500.0) is None
    given = EvalSource({"dataset_id": "D4RL/kitchen/complete-v2", "ref_min_score": 0.0, "ref_max_score": 1000.0})
    assert given.normalized_score(500.0, (3, 4)) == 50.0

