"""The Adroit recipes (lit_offrl.recipes.adroit), tiny: a 60-update SAC run on pen, 300-step levels, 30 BC updates."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from lit_offrl.data.online import OnlineDataModule
from lit_offrl.data.registry import RECIPES
from lit_offrl.errors import UserError
from lit_offrl.recipes import adroit

TRAINING = dict(train_steps=60, snapshot_every=30, warmup_steps=30, eval_episodes=1, progress=False)
LEVEL = dict(steps=300, bc_updates=30, require_success=False, **TRAINING)
HUB_SHAPES = {"pen": (45, 24), "door": (39, 28), "hammer": (46, 26), "relocate": (39, 30)}  # (obs, action) sizes


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adroit_root(tmp_path_factory) -> Path:
    """A Minari root holding tiny lit-offrl/pen/{expert,cloned}-v0 (one SAC run, cached in the root)."""
    root = tmp_path_factory.mktemp("adroit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        torch.set_num_threads(1)
        for level in adroit.LEVELS:
            adroit.make_adroit_dataset(f"lit-offrl/pen/{level}-v0", task="pen", level=level, **LEVEL)
    return root


@pytest.fixture
def minari_root(adroit_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(adroit_root))
    return adroit_root


def _episodes(dataset_id: str) -> list:
    return list(minari.load_dataset(dataset_id).iterate_episodes())


def _run_folder(root: Path) -> Path:
    (folder,) = (root / ".lit_offrl_cache" / "adroit").glob("AdroitHandPen-v1-sac-*")
    return folder


def test_register_adds_expert_and_cloned_for_every_task():
    adroit.register()
    ids = {f"lit-offrl/{task}/{level}-v0" for task in adroit.TASKS for level in ("expert", "cloned")}
    assert ids <= set(RECIPES)
    assert not any(key.startswith("lit-offrl/") and key.endswith("/human-v0") for key in RECIPES), \
        "the human flavour (motion capture) has no recipe"
    with pytest.raises(UserError, match="motion-capture"):
        adroit.make_adroit_dataset("x/pen/human-v0", task="pen", level="human")


@pytest.mark.parametrize("task", list(adroit.TASKS))
def test_env_is_the_hubs_adroit_env_with_d4rls_episode_limit(task):
    env = adroit.make_env(task)
    obs_dim, action_dim = HUB_SHAPES[task]
    assert env.spec.id == f"AdroitHand{task.capitalize()}-v1"
    assert env.spec.max_episode_steps == (100 if task == "pen" else 200)
    assert env.observation_space.shape == (obs_dim,) and env.action_space.shape == (action_dim,)
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    assert env.spec.kwargs.get("reward_type", "dense") == "dense"


@pytest.mark.parametrize("task", ["door", "hammer", "relocate"])
def test_expert_trains_on_d4rls_dense_reward(task):
    """gymnasium-robotics >= 1.2.1's -v1 adds 0.1 |palm - x| where D4RL subtracts it: the training env subtracts it."""
    env, train = adroit.make_env(task), gym.make(adroit.training_env_id(task))
    assert train.spec.max_episode_steps == 200 and adroit.training_env_id("pen") == "AdroitHandPen-v1"
    target = {"door": ("site", "S_handle"), "hammer": ("body", "Object"), "relocate": ("body", "Object")}[task]
    np.testing.assert_array_equal(env.reset(seed=3)[0], train.reset(seed=3)[0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        obs, reward, *_ = env.step(action)
        train_obs, train_reward, *_ = train.step(action)
        data = train.unwrapped.data
        distance = np.linalg.norm(data.site("S_grasp").xpos - getattr(data, target[0])(target[1]).xpos)
        np.testing.assert_array_equal(obs, train_obs)
        assert train_reward == pytest.approx(reward - 0.2 * distance, abs=1e-12)


def test_levels_have_the_hubs_spaces_metadata_and_eval_env(minari_root):
    low, high = adroit.D4RL_REFERENCE_RETURNS["pen"]
    assert (low, high) == (96.262799, 3076.8331017826877), "d4rl/infos.py pen REF_MIN/MAX_SCORE"
    for level in adroit.LEVELS:
        dataset = minari.load_dataset(f"lit-offrl/pen/{level}-v0")
        metadata = dataset.storage.metadata
        assert (metadata["ref_min_score"], metadata["ref_max_score"]) == (low, high)
        assert dataset.observation_space.shape == (45,) and dataset.action_space.shape == (24,)
        assert dataset._eval_env_spec is not None, "the eval env is stored"
        for spec in (dataset.env_spec, dataset._eval_env_spec):
            assert spec.id == "AdroitHandPen-v1" and spec.max_episode_steps == 100
        env = dataset.recover_environment(eval_env=True)
        assert env.spec.max_episode_steps == 100
        episodes = list(dataset.iterate_episodes())
        assert dataset.total_steps == 300 and sum(len(ep.rewards) for ep in episodes) == 300
        for ep in episodes:
            assert len(ep.rewards) <= 100 and not ep.terminations.any()
            assert ep.truncations[-1] and not ep.truncations[:-1].any()
            assert ep.infos["success"].shape == (len(ep.rewards) + 1,) and not ep.infos["success"][0]
        assert metadata["code_permalink"] == adroit.CODE_PERMALINK and level in metadata["description"]


def test_expert_is_the_best_snapshot_rolled_out(minari_root):
    snapshots = adroit.read_snapshots(_run_folder(minari_root))
    assert [s.updates for s in snapshots] == [30, 60]
    best = adroit.best_snapshot(snapshots)
    assert best == max(snapshots, key=lambda s: (s.success_rate, s.return_mean))
    assert f"{best.updates} updates" in minari.load_dataset("lit-offrl/pen/expert-v0").storage.metadata["description"]


def test_cloned_is_half_expert_episodes_half_a_noisy_bc_policy(minari_root):
    expert, cloned = _episodes("lit-offrl/pen/expert-v0"), _episodes("lit-offrl/pen/cloned-v0")
    # The first 150 transitions: the expert level's first episodes (the last one cut at 150).
    steps, split = 0, 0
    while steps < 150:
        ours, theirs = cloned[split], expert[split]
        n = len(ours.rewards)
        np.testing.assert_array_equal(ours.observations, theirs.observations[:n + 1])
        np.testing.assert_array_equal(ours.actions, theirs.actions[:n])
        steps, split = steps + n, split + 1
    assert steps == 150
    # The other 150: the BC policy of the expert data plus N(0, 0.1^2) noise, clipped to [-1, 1].
    folder = _run_folder(minari_root)
    (bc_file,) = (folder / "bc").glob("*.pt")
    policy = adroit.cloned_policy(folder, None, [], bc_file.stem.rsplit("-updates", 1)[0], 30, 0)
    rest = cloned[split:]
    assert sum(len(ep.rewards) for ep in rest) == 150
    obs = np.concatenate([ep.observations[:-1] for ep in rest])
    actions = np.concatenate([ep.actions for ep in rest])
    residual = (actions - policy(obs))[np.abs(actions) < 1.0]
    assert abs(residual.mean()) < 0.01 and 0.09 < residual.std() < 0.11
    # ...which the expert half is not (SAC's own exploration noise is another distribution).
    expert_obs = np.concatenate([ep.observations[:-1] for ep in cloned[:split]])
    expert_actions = np.concatenate([ep.actions for ep in cloned[:split]])
    assert np.abs(expert_actions - policy(expert_obs)).std() > 0.2


def test_same_seed_same_training_and_data(minari_root, tmp_path):
    """A second SAC run with the same seed in another cache writes the same snapshots, weights and rollouts."""
    first = _run_folder(minari_root)
    again, snapshots = adroit.train_policies("pen", cache_dir=tmp_path, **TRAINING)
    assert snapshots == adroit.read_snapshots(first)
    for snapshot in snapshots:
        a, b = (torch.load(run / snapshot.path, weights_only=True)["state_dict"] for run in (first, again))
        assert all(torch.equal(a[key], b[key]) for key in a)
    adroit.make_adroit_dataset("test/pen-expert-again-v0", task="pen", level="expert", cache_dir=tmp_path, **LEVEL)
    for ours, theirs in zip(_episodes("test/pen-expert-again-v0"), _episodes("lit-offrl/pen/expert-v0"), strict=True):
        np.testing.assert_array_equal(ours.observations, theirs.observations)
        np.testing.assert_array_equal(ours.actions, theirs.actions)
        np.testing.assert_array_equal(ours.rewards, theirs.rewards)


def test_cached_training_is_reused_and_a_killed_run_resumes(minari_root, tmp_path, monkeypatch):
    import lightning as L

    # A finished run is reused: no training.
    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    adroit.make_adroit_dataset("test/pen-expert-cached-v0", task="pen", level="expert", **LEVEL)
    monkeypatch.undo()

    # Killed at update 45 (its last checkpoint at 30), then started again: it resumes from the checkpoint.
    collect = OnlineDataModule.collect

    def killed_at_update_45(self, module, vector_steps):
        if self.batches_served == 45:
            raise RuntimeError("killed")
        return collect(self, module, vector_steps)

    monkeypatch.setattr(OnlineDataModule, "collect", killed_at_update_45)
    with pytest.raises(RuntimeError, match="killed"):
        adroit.train_policies("pen", cache_dir=tmp_path, **TRAINING)
    monkeypatch.setattr(OnlineDataModule, "collect", collect)
    folder = adroit.run_directory("pen", cache_dir=tmp_path, **{k: v for k, v in TRAINING.items() if k != "progress"})
    assert not (folder / "done").exists() and not (folder / "training.lock").exists()
    first = adroit.read_snapshots(folder)
    assert [s.updates for s in first] == [30]
    assert first == adroit.read_snapshots(_run_folder(minari_root))[:1], "the same run up to the kill"
    policy_written = (folder / first[0].path).stat().st_mtime_ns
    _, snapshots = adroit.train_policies("pen", cache_dir=tmp_path, **TRAINING)
    assert [s.updates for s in snapshots] == [30, 60] and (folder / "done").exists()
    assert snapshots[0] == first[0] and (folder / first[0].path).stat().st_mtime_ns == policy_written
    # The replay buffer came back: 30 warmup transitions + one per update, not a fresh warmup after the resume.
    assert snapshots[1].env_steps == 30 + 60
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(checkpoint["state_dict"]["num_updates"]) == 60
    assert int(checkpoint["OnlineDataModule"]["buffer"]["size"]) == 30 + 60


def test_an_unreached_task_is_not_built_as_expert(minari_root):
    with pytest.raises(UserError, match="did not reach the task"):
        adroit.make_adroit_dataset("test/pen-refused-v0", task="pen", level="expert",
                                   **{**LEVEL, "require_success": True})
    assert "test/pen-refused-v0" not in minari.list_local_datasets()
