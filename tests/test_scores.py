"""Scores everywhere: D4RL reference returns for Minari's mujoco datasets, user-given reference returns, the note
when a dataset has none, and each domain's own success measure beside the normalized score."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch

from lit_offrl.algos.bc import BC
from lit_offrl.data.datamodule import D4RL_REFERENCE_RETURNS, OfflineDataModule, reference_returns
from lit_offrl.errors import UserError
from lit_offrl.evaluation.rollout import make_vector_env, rollout_episodes
from minari_fixtures import Episode, make_box_dataset, use_minari_root, write_dataset

from conftest import MAZE_ID

HOPPER_MIN, HOPPER_MAX = -20.272305, 3234.3  # D4RL infos.py, REFERENCES.md (Hopper -20.27 / 3234.3)


def make_hopper_like(dataset_id: str, lengths=(5, 4, 6), seed: int = 0, **metadata):
    """A few short Hopper-v5 episodes with random actions and observations, no reference scores in the metadata."""
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    episodes = []
    for length in lengths:
        obs = rng.normal(size=(length + 1, 11))
        actions = rng.uniform(-1, 1, size=(length, 3)).astype(np.float32)
        terminations, truncations = np.zeros(length, bool), np.zeros(length, bool)
        truncations[-1] = True
        episodes.append(Episode(obs, actions, rng.normal(size=length), terminations, truncations))
    built = write_dataset(dataset_id, episodes, env.observation_space, env.action_space, env=env.spec, **metadata)
    env.close()
    return built


def score_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "normalized_score" in r.getMessage()]


def test_minari_mujoco_dataset_gets_d4rl_reference_returns(tmp_path, monkeypatch, caplog):
    use_minari_root(tmp_path, monkeypatch)
    make_hopper_like("mujoco/hopper/medium-v0")
    dm = OfflineDataModule("mujoco/hopper/medium-v0", batch_size=4, eval_episodes=2)
    assert (dm.ref_min_score, dm.ref_max_score) == (HOPPER_MIN, HOPPER_MAX)
    returns = torch.tensor([0.0, 1000.0, 3234.3, -20.272305])
    expected = torch.tensor([100 * (r - HOPPER_MIN) / (HOPPER_MAX - HOPPER_MIN) for r in returns.tolist()])
    torch.testing.assert_close(dm.normalized_score(returns), expected)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
        dm.setup("validate")
    lines = score_lines(caplog)
    assert len(lines) == 1 and "D4RL" in lines[0] and "v5" in lines[0] and "\n" not in lines[0], lines


def test_d4rl_table_serves_the_locomotion_recipe_and_covers_the_mujoco_ids():
    from lit_offrl.recipes.locomotion import ENVS, reference_scores

    for env, env_id in ENVS.items():
        assert reference_scores(env_id) == D4RL_REFERENCE_RETURNS[env]
    assert D4RL_REFERENCE_RETURNS["hopper"] == (-20.272305, 3234.3)  # d4rl/infos.py REF_MIN/MAX_SCORE
    assert D4RL_REFERENCE_RETURNS["ant"] == (-325.6, 3879.7)
    empty = SimpleNamespace(storage=SimpleNamespace(metadata={}))
    for env in ("hopper", "halfcheetah", "walker2d", "ant"):
        for level in ("medium-v0", "expert-v0", "simple-v0"):
            assert reference_returns(empty, f"mujoco/{env}/{level}")[:2] == D4RL_REFERENCE_RETURNS[env]
    for other in ("mujoco/swimmer/medium-v0", "lit-offrl/hopper/medium-v0", "D4RL/door/human-v2"):
        assert reference_returns(empty, other)[:2] == (None, None)
    stored = SimpleNamespace(storage=SimpleNamespace(metadata={"ref_min_score": 1.0, "ref_max_score": 2.0}))
    assert reference_returns(stored, "mujoco/hopper/medium-v0")[:2] == (1.0, 2.0)  # the dataset's own win


def test_given_reference_returns_override_and_must_come_in_pairs(tmp_path, monkeypatch):
    use_minari_root(tmp_path, monkeypatch)
    make_hopper_like("test/stored-v0", ref_min_score=5.0, ref_max_score=50.0)
    make_hopper_like("mujoco/hopper/medium-v0")
    make_box_dataset("test/box-v0")
    assert OfflineDataModule("test/stored-v0", eval_episodes=0).normalized_score(torch.tensor([27.5])).item() == 50.0
    for dataset_id in ("test/stored-v0", "mujoco/hopper/medium-v0", "test/box-v0"):
        dm = OfflineDataModule(dataset_id, eval_episodes=0, ref_min_score=10.0, ref_max_score=30.0)
        assert (dm.ref_min_score, dm.ref_max_score) == (10.0, 30.0)
        torch.testing.assert_close(dm.normalized_score(torch.tensor([10.0, 25.0, 40.0])),
                                   torch.tensor([0.0, 75.0, 150.0]))
    for kwargs, words in (({"ref_min_score": 1.0}, "data.ref_min_score was given without data.ref_max_score"),
                          ({"ref_max_score": 1.0}, "data.ref_max_score was given without data.ref_min_score"),
                          ({"ref_min_score": 3.0, "ref_max_score": 3.0}, "must be greater than")):
        with pytest.raises(UserError) as error:
            OfflineDataModule("test/box-v0", eval_episodes=0, **kwargs)
        assert words in str(error.value) and "\n" not in str(error.value)


def test_a_dataset_without_reference_returns_says_so_once(tmp_path, monkeypatch, caplog):
    use_minari_root(tmp_path, monkeypatch)
    make_hopper_like("test/hopper-v0")
    dm = OfflineDataModule("test/hopper-v0", batch_size=4, eval_episodes=2)
    assert dm.normalized_score(torch.tensor([1.0])) is None
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
        dm.setup("fit")
        dm.setup("validate")
    lines = score_lines(caplog)
    assert len(lines) == 1, lines
    assert "no val/normalized_score" in lines[0] and "--data.ref_min_score" in lines[0] \
        and "--data.ref_max_score" in lines[0] and "\n" not in lines[0]
    with caplog.at_level(logging.INFO):  # given reference returns: nothing to explain
        OfflineDataModule("test/hopper-v0", batch_size=4, eval_episodes=2, ref_min_score=0.0,
                          ref_max_score=1.0).setup("fit")
    assert len(score_lines(caplog)) == 1


class GoalSeeker(BC):
    """BC whose act() drives the point straight at its goal (a PD law on the raw observation), so some evaluation
    episodes of the UMaze succeed and some (goal behind the wall) do not."""

    layout: tuple[np.ndarray, np.ndarray, np.ndarray] = None

    def act(self, obs, deterministic=True):
        obs = np.asarray(obs)
        achieved, desired, state = (obs[:, idx] for idx in self.layout)
        return torch.as_tensor(np.clip(10.0 * (desired - achieved) - 1.0 * state[:, 2:4], -1, 1), dtype=torch.float32)


def maze_layout(space: gym.spaces.Dict):
    """Flat indices of achieved_goal, desired_goal and observation in `space`'s flattening."""
    marks = {key: np.full(sub.shape, i, dtype=np.float64) for i, (key, sub) in enumerate(space.spaces.items())}
    flat = gym.spaces.flatten(space, marks)
    keys = list(space.spaces)
    return tuple(np.flatnonzero(flat == keys.index(key)) for key in ("achieved_goal", "desired_goal", "observation"))


def test_success_rate_is_logged_on_pointmaze_and_matches_a_hand_rollout(maze_root, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=6, eval_seed=7)
    GoalSeeker.layout = maze_layout(dm.observation_space)
    model = GoalSeeker(dm.obs_dim, dm.action_dim)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    metrics = trainer.validate(model, dm, verbose=False)[0]
    assert "val/success_rate" in metrics and "val/normalized_score" in metrics
    assert "val/tasks_completed" not in metrics  # PointMaze has no sub-tasks

    # By hand: one env per seed, stepped until the episode ends; success = info["success"] at any step.
    seeds = [7 + i for i in range(6)]
    hand = []
    for seed in seeds:
        env = dm.make_eval_env()
        obs, _ = env.reset(seed=seed)
        succeeded, done = False, False
        while not done:
            flat = gym.spaces.flatten(dm.observation_space, obs)[None].astype(np.float32)
            obs, _, terminated, truncated, info = env.step(model.act(flat)[0].numpy())
            succeeded |= bool(info["success"])
            done = terminated or truncated
        env.close()
        hand.append(succeeded)
    assert 0 < np.mean(hand) < 1, hand  # the check means something only with both outcomes
    assert metrics["val/success_rate"] == pytest.approx(np.mean(hand))

    envs = make_vector_env(dm.make_eval_env, len(seeds))
    outcomes = rollout_episodes(lambda obs: model.act(obs).numpy(), envs, seeds, dm.observation_space)
    envs.close()
    assert outcomes.success.tolist() == hand and outcomes.tasks_completed is None


class ScriptedEnv(gym.Env):
    """Episode length and the steps whose info says success (or the sub-tasks done) depend on the reset seed."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    plans = {0: (3, {1}), 1: (2, set()), 2: (5, {4})}  # seed -> (length, steps with success)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length, self.successes = self.plans.get(seed, (2, {0, 1}))  # autoreset (no seed): always succeeds
        self.t = 0
        return np.zeros(1, np.float32), {"success": False, "episode_task_completions": []}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        info = {"success": self.t in self.successes, "episode_task_completions": ["kettle"] * min(self.t, 3)}
        return np.zeros(1, np.float32), 1.0, done, False, info


def test_rollout_counts_success_and_tasks_only_within_each_episode():
    envs = make_vector_env(ScriptedEnv, 3)
    outcomes = rollout_episodes(lambda obs: np.zeros((len(obs), 1), np.float32), envs, [0, 1, 2],
                                ScriptedEnv.observation_space)
    envs.close()
    assert outcomes.lengths.tolist() == [3, 2, 5] and outcomes.returns.tolist() == [3.0, 2.0, 5.0]
    # seed 1 ends after 2 steps without success; its next (autoreset) episode succeeds but must not count.
    assert outcomes.success.tolist() == [True, False, True]
    assert outcomes.tasks_completed.tolist() == [3, 2, 3]


def test_online_data_module_scores_a_mujoco_dataset_like_the_offline_one(tmp_path, monkeypatch):
    """Fine-tuning from (or training in the env of) Minari's mujoco/hopper data scores by D4RL's Hopper returns, as
    the offline data module does; a dataset's own metadata still wins."""
    from lit_offrl.data.online import OnlineDataModule

    use_minari_root(tmp_path, monkeypatch)
    make_hopper_like("mujoco/hopper/medium-v0")
    make_hopper_like("mujoco/hopper/expert-v0", ref_min_score=1.0, ref_max_score=2.0)
    for kwargs in ({"offline_dataset_id": "mujoco/hopper/medium-v0"}, {"env_id": "mujoco/hopper/medium-v0"}):
        dm = OnlineDataModule(**kwargs, warmup_steps=0, eval_episodes=1)
        assert (dm.ref_min_score, dm.ref_max_score) == (HOPPER_MIN, HOPPER_MAX), kwargs
    dm = OnlineDataModule(offline_dataset_id="mujoco/hopper/expert-v0", warmup_steps=0, eval_episodes=1)
    assert (dm.ref_min_score, dm.ref_max_score) == (1.0, 2.0)
