"""The data layer: Minari -> flat arrays (minari_io), OfflineDataModule statistics and selection, the seeded
batch stream, normalization statistics in checkpoints, and the errors users see for bad input.

Every test writes its own small Minari datasets (tests/minari_fixtures.py) into its own Minari root.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from gymnasium import spaces
from minari_fixtures import (box_obs_value, box_observations, flat_rows, make_box_dataset, make_dict_dataset,
                             make_discrete_dataset, make_empty_dataset, use_minari_root)

from lit_offrl.algos import TD3BC
from lit_offrl.data import minari_io
from lit_offrl.data.buffer import RandomBatchStream, SamplerState, Transitions
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.errors import DatasetError, UserError


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Each test reads and writes Minari datasets in a fresh folder of its own."""
    return use_minari_root(tmp_path / "minari", monkeypatch)


@pytest.fixture
def offline(monkeypatch):
    """No network: Minari's download fails at once (instead of depending on what the machine can reach)."""
    import minari

    def refuse(*args, **kwargs):
        raise ConnectionError("network unreachable in tests")

    monkeypatch.setattr(minari, "download_dataset", refuse)


def data_module(dataset_id: str, **kwargs) -> OfflineDataModule:
    kwargs = {"batch_size": 4, "eval_episodes": 0, **kwargs}
    dm = OfflineDataModule(dataset_id, **kwargs)
    dm.setup("fit")
    return dm


def concat(arrays) -> np.ndarray:
    return np.concatenate(list(arrays))


def episode_of(rows: np.ndarray) -> np.ndarray:
    """Episode number of raw Box observations written by `box_observations` (100 e + t + j / 4)."""
    return (np.asarray(rows)[:, 0] // 100).astype(int)


def take(stream, count: int, start: int = 0) -> list:
    return list(itertools.islice(iter(stream), start, start + count))


def assert_same_batches(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for name in a._fields:
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def tiny_trainer(tmp_path, max_steps: int = 2) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, max_epochs=-1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                     accelerator="cpu", devices=1, default_root_dir=tmp_path)


# ------------------------------------------------------------------------------------- 1. Box observations
def test_load_box_dataset_gives_the_transitions_as_built():
    built = make_box_dataset("test/box-v0", episodes=(3, 2, 4), obs_dim=3, terminated=[True, False, False])
    data = minari_io.load(minari_io.resolve("test/box-v0"))

    # T + 1 observations per episode -> T transitions; next_obs of step t is obs t + 1 of the same episode.
    np.testing.assert_array_equal(data.observations, concat(ep.observations[:-1] for ep in built.episodes))
    np.testing.assert_array_equal(data.next_observations, concat(ep.observations[1:] for ep in built.episodes))
    np.testing.assert_array_equal(data.actions, concat(ep.actions for ep in built.episodes))
    np.testing.assert_array_equal(data.rewards, concat(ep.rewards for ep in built.episodes).astype(np.float32))
    for name in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts"):
        assert getattr(data, name).dtype == np.float32, name
    assert (data.obs_dim, data.action_dim, len(data.rewards)) == (3, 2, 9)

    # The last transition of an episode leads to that episode's final observation, never to the next
    # episode's first one; the next episode's first transition starts at its own reset observation.
    np.testing.assert_array_equal(data.next_observations[2], box_obs_value(0, 3, np.arange(3)))
    np.testing.assert_array_equal(data.observations[3], box_obs_value(1, 0, np.arange(3)))
    np.testing.assert_array_equal(data.next_observations[4], box_obs_value(1, 2, np.arange(3)))
    np.testing.assert_array_equal(episode_of(data.next_observations), episode_of(data.observations))
    np.testing.assert_array_equal(data.next_observations - data.observations, np.ones((9, 3), np.float32))

    # terminals are terminations only: the truncated ends of episodes 1 and 2 are not terminals.
    np.testing.assert_array_equal(data.terminals, [0, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(data.timeouts, [0, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(data.episode_starts, [0, 3, 5])
    np.testing.assert_array_equal(data.episode_ends, [3, 5, 9])
    np.testing.assert_allclose(data.episode_returns, built.returns)
    assert data.dataset_id == "test/box-v0"


def test_loading_in_chunks_of_episodes_gives_the_same_arrays(monkeypatch):
    make_box_dataset("test/box-v0", episodes=(3, 2, 4, 1, 2), obs_dim=3, terminated=[True, False, False, True, False])
    whole = minari_io.load(minari_io.resolve("test/box-v0"))
    monkeypatch.setattr(minari_io, "EPISODES_PER_READ", 2)  # chunks of 2, 2 and 1 episodes
    chunked = minari_io.load(minari_io.resolve("test/box-v0"))
    for name in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                 "episode_starts", "episode_ends"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name), err_msg=name)


def test_data_module_batches_keep_terminal_zero_on_truncation():
    make_box_dataset("test/box-v0", episodes=(2, 3), terminated=[False, True])
    dm = data_module("test/box-v0", normalize_observations=False)
    np.testing.assert_array_equal(dm.transitions.terminal.numpy(), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(dm.transitions.episode_starts.numpy(), [0, 2])
    np.testing.assert_array_equal(dm.transitions.episode_ends.numpy(), [2, 5])


# ------------------------------------------------------------------------------------ 2. Dict observations
def test_load_dict_dataset_rows_equal_gymnasium_flatten():
    built = make_dict_dataset("test/dict-v0", episodes=(4, 3), seed=1)
    dataset = minari_io.resolve("test/dict-v0")
    data = minari_io.load(dataset)
    space = built.observation_space

    assert list(dataset.observation_space.spaces) == list(space.spaces)  # Minari keeps the key order
    assert data.obs_dim == gym.spaces.flatdim(space) == 8
    rows = [flat_rows(space, ep.observations, len(ep) + 1) for ep in built.episodes]
    np.testing.assert_array_equal(data.observations, concat(r[:-1] for r in rows))
    np.testing.assert_array_equal(data.next_observations, concat(r[1:] for r in rows))

    # Goals are part of every row: each row holds its episode's desired_goal and its own achieved_goal.
    for start, end, ep in zip(data.episode_starts, data.episode_ends, built.episodes):
        for t, row in enumerate(data.observations[start:end]):
            single = {key: value[t] for key, value in ep.observations.items()}
            np.testing.assert_array_equal(row, gym.spaces.flatten(dataset.observation_space, single).astype(np.float32))
            assert np.isin(ep.observations["desired_goal"][t].astype(np.float32), row).all()
            assert np.isin(ep.observations["achieved_goal"][t].astype(np.float32), row).all()


def _stack(space: spaces.Space, samples: list):
    if isinstance(space, spaces.Dict):
        return {key: _stack(sub, [s[key] for s in samples]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_stack(sub, [s[i] for s in samples]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(s) for s in samples])


@pytest.mark.parametrize("space", [
    spaces.Box(-1.0, 1.0, (2, 3), np.float32),
    spaces.Dict({"observation": spaces.Box(-5, 5, (4,), np.float64), "achieved_goal": spaces.Box(-5, 5, (2,)),
                 "desired_goal": spaces.Box(-5, 5, (2,))}),
    spaces.Dict({"pos": spaces.Box(-1, 1, (2, 2)), "mode": spaces.Discrete(4, start=2),
                 "inner": spaces.Dict({"b": spaces.Box(0, 1, (1,)), "a": spaces.Box(0, 1, (3,))})}),
    spaces.Tuple((spaces.Box(-1, 1, (3,)), spaces.Discrete(3))),
], ids=["box-2d", "pointmaze-dict", "nested-dict-discrete", "tuple"])
def test_flatten_batch_agrees_with_gymnasium_flatten(space):
    space.seed(0)
    samples = [space.sample() for _ in range(6)]
    flat = minari_io.flatten_batch(space, _stack(space, samples))
    expected = np.stack([gym.spaces.flatten(space, s) for s in samples]).astype(np.float32)
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, expected)


def test_flatten_batch_names_an_unsupported_space():
    with pytest.raises(DatasetError, match="MultiBinary.*not supported"):
        minari_io.flatten_batch(spaces.MultiBinary(3), np.zeros((2, 3)))


# ---------------------------------------------------------------------------------- 3. OfflineDataModule
def test_actions_are_normalized_to_unit_box_from_the_dataset_bounds():
    action_space = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 4.0], np.float32))
    built = make_box_dataset("test/box-v0", episodes=(5, 6), action_space=action_space, seed=3)
    dm = data_module("test/box-v0")
    raw = concat(ep.actions for ep in built.episodes)

    np.testing.assert_array_equal(dm.action_low.numpy(), [-2.0, 0.0])
    np.testing.assert_array_equal(dm.action_high.numpy(), [2.0, 4.0])
    stored = dm.transitions.action.numpy()
    np.testing.assert_allclose(stored[:, 0], raw[:, 0] / 2.0, rtol=1e-6, atol=1e-7)       # [-2, 2]: a / 2
    np.testing.assert_allclose(stored[:, 1], (raw[:, 1] - 2.0) / 2.0, rtol=1e-6, atol=1e-7)  # [0, 4]: (a - 2) / 2
    assert np.abs(stored).max() <= 1.0
    # act() maps [-1, 1] back with the same bounds: that recovers the dataset's actions.
    restored = dm.action_low + (dm.transitions.action + 1.0) * 0.5 * (dm.action_high - dm.action_low)
    np.testing.assert_allclose(restored.numpy(), raw, rtol=1e-6, atol=1e-6)


def test_unbounded_action_space_does_not_clip_the_dataset_actions():
    actions = [np.array([[3.0, -0.5], [-2.5, 0.25]], np.float32), np.array([[0.5, 4.0]], np.float32)]
    make_box_dataset("test/box-v0", episodes=(2, 1), actions=actions,
                     action_space=spaces.Box(-np.inf, np.inf, (2,), np.float32))
    dm = data_module("test/box-v0")
    restored = dm.action_low + (dm.transitions.action + 1.0) * 0.5 * (dm.action_high - dm.action_low)
    np.testing.assert_allclose(restored.numpy(), concat(actions), rtol=1e-6)


def test_observation_statistics_come_from_the_data_and_near_constant_features_stay_unscaled():
    rng = np.random.default_rng(0)
    observations = []
    for e, length in enumerate((6, 5, 7)):
        obs = np.empty((length + 1, 3), np.float32)
        obs[:, 0] = 3.0 * np.arange(length + 1) + 10 * e          # spread out
        obs[:, 1] = 5.0 + 1e-4 * rng.standard_normal(length + 1)  # near-constant: std ~1e-4 < min_obs_std
        obs[:, 2] = rng.normal(-2.0, 0.5, length + 1)
        observations.append(obs)
    make_box_dataset("test/box-v0", episodes=(6, 5, 7), observations=observations)
    dm = data_module("test/box-v0", obs_std_eps=1e-3, min_obs_std=1e-2)

    raw = concat(obs[:-1] for obs in observations).astype(np.float64)  # statistics of the N transitions
    raw_next = concat(obs[1:] for obs in observations)
    mean = raw.mean(0)
    std = raw.std(0)  # population std, as CORL and d3rlpy compute it
    np.testing.assert_allclose(dm.obs_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    assert dm.obs_std[1].item() == 1.0  # floored: the near-constant feature is only centered
    np.testing.assert_allclose(dm.obs_std.numpy()[[0, 2]], std[[0, 2]] + 1e-3, rtol=1e-5)

    np.testing.assert_allclose(dm.transitions.obs.numpy(), (raw - dm.obs_mean.numpy()) / dm.obs_std.numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dm.transitions.next_obs.numpy(), (raw_next - dm.obs_mean.numpy()) / dm.obs_std.numpy(),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(dm.transitions.obs[:, 1].numpy()).max() < 1e-3  # not blown up to O(1) by a tiny std
    np.testing.assert_allclose(dm.transitions.obs.numpy()[:, [0, 2]].mean(0), 0.0, atol=1e-5)

    plain = data_module("test/box-v0", normalize_observations=False)
    np.testing.assert_array_equal(plain.obs_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(plain.obs_std.numpy(), np.ones(3))
    np.testing.assert_array_equal(plain.transitions.obs.numpy(), raw.astype(np.float32))


def test_reward_scale_and_shift():
    built = make_box_dataset("test/box-v0", episodes=(3, 2, 4))
    raw = concat(ep.rewards for ep in built.episodes)
    dm = data_module("test/box-v0", reward_scale=2.0, reward_shift=-1.0)
    np.testing.assert_allclose(dm.transitions.reward.numpy(), raw * 2.0 - 1.0, rtol=1e-6)


def test_terminal_reward_marks_goal_steps_terminal_as_d4rls_antmaze():
    # Rewards 0/1 per step, episodes truncated (none terminates): the steps with reward 1 become terminal, the
    # others keep the dataset's own flags; the rewards themselves (then shifted) are untouched.
    make_box_dataset("test/box-v0", episodes=(4, 3), terminated=(False, False),
                     rewards=lambda e, length: (np.arange(length) % 2).astype(np.float64))
    plain = data_module("test/box-v0", reward_shift=-1.0)
    np.testing.assert_array_equal(plain.transitions.terminal.numpy(), np.zeros(7))
    dm = data_module("test/box-v0", reward_shift=-1.0, terminal_reward=1.0)
    np.testing.assert_array_equal(dm.transitions.terminal.numpy(), [0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(dm.transitions.reward.numpy(), plain.transitions.reward.numpy())


def test_normalize_reward_divides_by_the_return_range_before_scale_and_shift():
    built = make_box_dataset("test/box-v0", episodes=(3, 2, 4))
    raw = concat(ep.rewards for ep in built.episodes)
    returns = built.returns                                  # 0.375, 2.125, 8.75
    np.testing.assert_allclose(returns, [0.375, 2.125, 8.75])
    dm = data_module("test/box-v0", normalize_reward=True)
    np.testing.assert_allclose(dm.transitions.reward.numpy(), raw * 1000.0 / (8.75 - 0.375), rtol=1e-6)
    dm = data_module("test/box-v0", normalize_reward=True, reward_scale=0.5, reward_shift=-1.0)
    np.testing.assert_allclose(dm.transitions.reward.numpy(), raw * 1000.0 / 8.375 * 0.5 - 1.0, rtol=1e-6)


def test_normalize_reward_with_equal_returns_is_a_dataset_error():
    make_box_dataset("test/box-v0", episodes=(2, 2), rewards=lambda e, length: np.ones(length))
    with pytest.raises(DatasetError, match="normalize_reward needs episodes with different returns"):
        data_module("test/box-v0", normalize_reward=True)


def test_top_fraction_keeps_exactly_the_best_episodes():
    lengths, returns = (2, 3, 1, 2, 4), (3.0, 10.0, 1.0, 7.0, 5.0)
    make_box_dataset("test/box-v0", episodes=lengths,
                     rewards=lambda e, length: np.full(length, returns[e] / length))
    dm = data_module("test/box-v0", top_fraction=0.4, normalize_observations=False)

    # 40 % of 5 episodes = 2: the returns 10 (episode 1, 3 steps) and 7 (episode 3, 2 steps), in dataset order.
    np.testing.assert_allclose(dm.data.episode_returns, [10.0, 7.0])
    np.testing.assert_array_equal(episode_of(dm.transitions.obs.numpy()), [1, 1, 1, 3, 3])
    np.testing.assert_array_equal(dm.transitions.obs.numpy(),
                                  concat([box_observations(1, 3, 3)[:-1], box_observations(3, 2, 3)[:-1]]))
    np.testing.assert_array_equal(dm.transitions.next_obs.numpy(),
                                  concat([box_observations(1, 3, 3)[1:], box_observations(3, 2, 3)[1:]]))
    np.testing.assert_array_equal(dm.transitions.episode_starts.numpy(), [0, 3])
    np.testing.assert_array_equal(dm.transitions.episode_ends.numpy(), [3, 5])
    np.testing.assert_allclose(dm.transitions.reward.numpy(), [10 / 3] * 3 + [3.5] * 2, rtol=1e-6)

    best = data_module("test/box-v0", top_fraction=0.2, normalize_observations=False)
    np.testing.assert_array_equal(episode_of(best.transitions.obs.numpy()), [1, 1, 1])


def test_dataset_fraction_keeps_a_seeded_subset_of_whole_episodes():
    make_box_dataset("test/box-v0", episodes=[2] * 10)

    def kept(seed: int) -> list[int]:
        dm = data_module("test/box-v0", dataset_fraction=0.3, seed=seed, normalize_observations=False)
        obs = dm.transitions.obs.numpy()
        episodes = sorted(set(episode_of(obs).tolist()))
        # whole episodes, in dataset order, with their bounds recomputed
        np.testing.assert_array_equal(obs, concat(box_observations(e, 2, 3)[:-1] for e in episodes))
        np.testing.assert_array_equal(dm.transitions.episode_starts.numpy(), [0, 2, 4])
        np.testing.assert_array_equal(dm.transitions.episode_ends.numpy(), [2, 4, 6])
        return episodes

    first = kept(seed=0)
    assert len(first) == 3  # 30 % of 10 episodes
    assert kept(seed=0) == first  # the same seed keeps the same episodes
    assert len({tuple(kept(seed)) for seed in range(1, 6)} | {tuple(first)}) > 1  # other seeds, other subsets


# ------------------------------------------------------------------- 4. statistics through a checkpoint
def test_normalization_statistics_round_trip_through_a_checkpoint(tmp_path):
    make_box_dataset("test/box-v0", episodes=(5, 4, 6), obs_dim=3,
                     action_space=spaces.Box(-2.0, 2.0, (2,), np.float32))
    dm = OfflineDataModule("test/box-v0", batch_size=8, seed=3, eval_episodes=0)
    model = TD3BC(obs_dim=dm.obs_dim, action_dim=dm.action_dim, hidden_dims=(16, 16))
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=dm)

    assert int(model.num_updates) == 2
    assert dm.state_dict()["consumed_batches"] == 2
    # The data module's statistics reached the model (they are not the buffers' defaults 0 / 1 / -1 / 1).
    assert torch.equal(model.obs_mean, dm.obs_mean) and torch.equal(model.obs_std, dm.obs_std)
    assert torch.equal(model.action_low, torch.full((2,), -2.0))
    assert torch.equal(model.action_high, torch.full((2,), 2.0))
    assert (dm.obs_mean.abs() > 1).all() and (dm.obs_std > 1).all()

    raw_obs = dm.data.observations[::2]
    before = model.act(raw_obs)
    expected = -2.0 + (model.actor(dm.normalize(torch.from_numpy(raw_obs))) + 1.0) * 2.0  # normalize, act, rescale
    torch.testing.assert_close(before, expected.detach())

    path = tmp_path / "td3bc.ckpt"
    trainer.save_checkpoint(path)
    loaded = TD3BC.load_from_checkpoint(path)
    for name in ("obs_mean", "obs_std", "action_low", "action_high"):
        assert torch.equal(getattr(loaded, name), getattr(dm, name)), name
    assert torch.equal(loaded.act(raw_obs), before)

    # The checkpoint also carries the data module's position in the batch stream.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    saved = checkpoint[OfflineDataModule.__qualname__]
    assert saved["consumed_batches"] == 2
    fresh = OfflineDataModule("test/box-v0", batch_size=8, seed=3, eval_episodes=0)
    fresh.load_state_dict(saved)
    assert fresh.sampler_state.consumed == 2


# ------------------------------------------------------------------------------------------- 5. sampler
def index_transitions(n: int = 50) -> Transitions:
    """Transitions whose every field encodes the transition's index i (obs = i, reward = 10 i, ...)."""
    i = torch.arange(n, dtype=torch.float32)
    return Transitions(obs=i[:, None].repeat(1, 3), action=(i[:, None] / n).repeat(1, 2), reward=10 * i,
                       next_obs=i[:, None].repeat(1, 3) + 0.5, terminal=(i % 7 == 6).float(),
                       episode_starts=torch.tensor([0, 7]), episode_ends=torch.tensor([7, n]))


def stream(transitions: Transitions, seed: int = 0, rank: int = 0, consumed: int = 0, batch_size: int = 16):
    state = SamplerState()
    state.consumed = consumed
    return RandomBatchStream(transitions, batch_size, seed, rank, state)


def test_batches_are_whole_transitions_of_the_requested_size():
    transitions = index_transitions(50)
    for batch in take(stream(transitions, batch_size=16), 4):
        index = batch.obs[:, 0]
        assert batch.obs.shape == (16, 3) and batch.action.shape == (16, 2) and batch.reward.shape == (16,)
        assert ((index >= 0) & (index < 50)).all() and torch.equal(index, index.round())
        assert torch.equal(batch.reward, 10 * index)
        assert torch.equal(batch.next_obs, batch.obs + 0.5)
        assert torch.equal(batch.action[:, 0], index / 50)
        assert torch.equal(batch.terminal, (index % 7 == 6).float())


def test_one_row_gather_equals_gathering_each_field():
    transitions = index_transitions(50)
    separate = {name: getattr(transitions, name).clone() for name in
                ("obs", "action", "reward", "next_obs", "terminal", "next_action")}
    # The fields are views of one (N, F) tensor: no second copy of the data.
    storage = transitions.obs.untyped_storage().data_ptr()
    assert all(getattr(transitions, name).untyped_storage().data_ptr() == storage for name in separate)
    index = torch.tensor([49, 0, 6, 7, 6, 13])
    for where in (transitions, transitions.to("cpu")):
        batch = where.batch(index)
        for name, values in separate.items():
            assert torch.equal(getattr(batch, name), values[index]), name
    chunks = transitions.sequences(torch.tensor([0, 10]), 3)
    assert torch.equal(chunks.reward, separate["reward"][torch.tensor([[0, 1, 2], [10, 11, 12]])])
    assert torch.equal(chunks.next_obs[1, 2], separate["next_obs"][12])


def test_fields_of_different_dtypes_are_gathered_one_by_one():
    i = torch.arange(10, dtype=torch.float32)
    transitions = Transitions(obs=i[:, None], action=i[:, None] / 10, reward=i.double(), next_obs=i[:, None] + 1,
                              terminal=torch.zeros(10), episode_starts=torch.tensor([0]), episode_ends=torch.tensor([10]))
    batch = transitions.batch(torch.tensor([3, 9]))
    assert batch.reward.dtype == torch.float64 and torch.equal(batch.reward, torch.tensor([3.0, 9.0], dtype=torch.float64))
    assert torch.equal(batch.next_obs[:, 0], torch.tensor([4.0, 10.0]))


def test_same_seed_and_rank_give_identical_batches():
    transitions = index_transitions()
    assert_same_batches(take(stream(transitions, seed=5, rank=1), 5), take(stream(transitions, seed=5, rank=1), 5))


def test_ranks_and_seeds_give_different_batches():
    transitions = index_transitions()
    base = take(stream(transitions, seed=0, rank=0), 3)
    other_rank = take(stream(transitions, seed=0, rank=1), 3)
    other_seed = take(stream(transitions, seed=1, rank=0), 3)
    for a, b, c in zip(base, other_rank, other_seed):
        assert not torch.equal(a.obs, b.obs)
        assert not torch.equal(a.obs, c.obs)
    assert not torch.equal(base[0].obs, base[1].obs)  # and consecutive batches of one stream differ


@pytest.mark.parametrize("k", [1, 4])
def test_a_stream_resumed_at_consumed_k_continues_with_batch_k(k):
    transitions = index_transitions()
    uninterrupted = take(stream(transitions, seed=2, rank=1), k + 3)
    resumed = take(stream(transitions, seed=2, rank=1, consumed=k), 3)
    assert_same_batches(resumed, uninterrupted[k:])


@pytest.mark.parametrize("consumed", [0, 3])
def test_grouped_streams_serve_the_ungrouped_batches_k_at_a_time(consumed):
    """updates_per_step K: each item is K minibatches drawn with one gather, and they are exactly the K next
    batches of the ungrouped stream (flat and sequence batches), from wherever the stream resumes."""
    from lit_offrl.data.buffer import RandomSequenceStream

    transitions = index_transitions()
    state = SamplerState()
    state.consumed = consumed
    grouped = take(RandomBatchStream(transitions, 16, 2, 1, state, group=4), 2)
    assert all(isinstance(item, list) and len(item) == 4 for item in grouped)
    assert_same_batches([b for item in grouped for b in item], take(stream(transitions, 2, 1, consumed), 8))
    assert grouped[0][1].obs.untyped_storage().data_ptr() == grouped[0][0].obs.untyped_storage().data_ptr()
    plain = take(RandomSequenceStream(transitions, 5, 3, 2, 1, state), 6)
    chunks = [b for item in take(RandomSequenceStream(transitions, 5, 3, 2, 1, state, group=3), 2) for b in item]
    for expected, got in zip(plain, chunks, strict=True):
        assert all(torch.equal(e, g) for e, g in zip(expected, got))


def test_updates_per_step_must_divide_the_update_counts(tmp_path):
    """max_steps, val_check_interval and the checkpoint interval count updates: a K that does not divide one of
    them is one line naming both, before any update."""
    from lit_offrl.callbacks import UpdateCheckpoint

    make_box_dataset("test/box-v0", episodes=(5, 6))
    for max_steps, interval, every, wrong in ((10, 8, 0, "trainer.max_steps 10"), (8, 6, 0, "val_check_interval 6"),
                                              (8, 8, 6, "checkpoint interval of 6")):
        dm = OfflineDataModule("test/box-v0", batch_size=4, eval_episodes=0, updates_per_step=4)
        model = TD3BC(obs_dim=dm.obs_dim, action_dim=dm.action_dim, hidden_dims=(8,))
        trainer = tiny_trainer(tmp_path, max_steps=max_steps)
        trainer.val_check_interval = interval
        trainer.callbacks.append(UpdateCheckpoint(every_n_updates=every, dirpath=tmp_path / "ckpt"))
        with pytest.raises(UserError, match=wrong) as raised:
            trainer.fit(model, datamodule=dm)
        assert "updates_per_step 4" in str(raised.value) and int(model.num_updates) == 0
    with pytest.raises(UserError, match="updates_per_step must be a positive"):
        OfflineDataModule("test/box-v0", updates_per_step=0)


def test_data_module_state_dict_carries_the_consumed_count():
    make_box_dataset("test/box-v0", episodes=(5, 6))
    dm = data_module("test/box-v0", batch_size=4, seed=7)
    reference = take(stream(dm.transitions, seed=7, rank=0, batch_size=4), 6)
    assert_same_batches(take(dm.train_dataloader(), 2), reference[:2])  # rank 0 of seed 7, from batch 0

    dm.sampler_state.consumed = 3
    state = dm.state_dict()
    assert state["consumed_batches"] == 3
    resumed = data_module("test/box-v0", batch_size=4, seed=7)
    resumed.load_state_dict(state)
    assert resumed.sampler_state.consumed == 3
    assert_same_batches(take(resumed.train_dataloader(), 3), reference[3:])


class RecordBatches(L.Callback):
    def __init__(self):
        self.obs: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.obs.append(batch.obs.clone())


def test_a_fit_resumed_from_a_checkpoint_trains_on_the_batches_it_had_not_reached(tmp_path):
    make_box_dataset("test/box-v0", episodes=(5, 4, 6))

    def fit(max_steps: int, ckpt_path=None, save_to=None):
        dm = OfflineDataModule("test/box-v0", batch_size=8, seed=3, eval_episodes=0)
        model = TD3BC(obs_dim=dm.obs_dim, action_dim=dm.action_dim, hidden_dims=(8,))
        recorder = RecordBatches()
        trainer = tiny_trainer(tmp_path, max_steps=max_steps)
        trainer.callbacks.append(recorder)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        if save_to is not None:
            trainer.save_checkpoint(save_to)
        return recorder.obs, dm

    uninterrupted, _ = fit(4)
    first, _ = fit(2, save_to=tmp_path / "half.ckpt")
    second, dm = fit(4, ckpt_path=tmp_path / "half.ckpt")
    assert (len(first), len(second), dm.sampler_state.consumed) == (2, 2, 4)
    for expected, got in zip(uninterrupted, first + second):
        assert torch.equal(expected, got)


# ------------------------------------------------------------------------------------------ 6. bad input
def test_unknown_id_in_an_empty_root_is_a_dataset_error(offline, minari_root):
    # The download is refused by the `offline` fixture: Minari would otherwise try the network (or, without
    # huggingface_hub, fail with an ImportError), which makes the test slow or machine-dependent.
    with pytest.raises(DatasetError) as info:
        OfflineDataModule("test/missing-v0")
    message = str(info.value)
    assert "'test/missing-v0' is not available" in message
    assert str(minari_root) in message and "MINARI_DATASETS_PATH" in message
    assert "ConnectionError: network unreachable in tests" in message
    assert "Local datasets: none" in message


def test_unknown_id_lists_the_local_datasets(offline):
    make_box_dataset("test/box-v0")
    with pytest.raises(DatasetError, match=r"(?s)'test/box-v1' is not available.*Local datasets: test/box-v0"):
        OfflineDataModule("test/box-v1")


@pytest.mark.parametrize("dataset_id", [
    "not an id",
    "test/box",
])
def test_malformed_id_is_a_dataset_error(offline, dataset_id):
    with pytest.raises(DatasetError, match="is not a Minari dataset id.*version suffix is required"):
        OfflineDataModule(dataset_id)


def test_discrete_action_space_is_a_dataset_error():
    make_discrete_dataset("test/discrete-v0")
    with pytest.raises(DatasetError, match=r"'test/discrete-v0' has a Discrete action space.*continuous \(Box\)"):
        OfflineDataModule("test/discrete-v0")
    with pytest.raises(DatasetError, match="Discrete action space"):
        minari_io.load(minari_io.resolve("test/discrete-v0"))


def test_empty_dataset_is_a_dataset_error():
    make_empty_dataset("test/empty-v0")
    dm = OfflineDataModule("test/empty-v0", eval_episodes=0)
    with pytest.raises(DatasetError, match=r"'test/empty-v0' is empty \(0 episodes, 0 steps\)"):
        dm.setup("fit")


@pytest.mark.parametrize("field, at, value, name, transition", [
    ("observations", (1, 1), float("nan"), "observations", 4),   # episode 1 starts at transition 3
    ("observations", (0, 3), float("nan"), "next_observations", 2),  # the final observation of episode 0
    ("rewards", (2, 3), float("inf"), "rewards", 8),
    ("actions", (0, 0), float("nan"), "actions", 0),
], ids=["nan-obs", "nan-final-obs", "inf-reward", "nan-action"])
def test_non_finite_values_are_a_dataset_error(field, at, value, name, transition):
    make_box_dataset("test/box-v0", episodes=(3, 2, 4), nan_in=field, nan_at=at, nan_value=value)
    dm = OfflineDataModule("test/box-v0", eval_episodes=0)
    with pytest.raises(DatasetError) as info:
        dm.setup("fit")
    assert f"'test/box-v0' has NaN or infinite {name} in 1 transitions (first at transition {transition})" \
        in str(info.value)


def test_batch_size_zero_is_a_user_error():
    make_box_dataset("test/box-v0")
    with pytest.raises(UserError, match="data.batch_size must be a positive integer, got 0"):
        OfflineDataModule("test/box-v0", batch_size=0)


@pytest.mark.parametrize("name, value", [("dataset_fraction", 0.0), ("dataset_fraction", 1.5),
                                         ("top_fraction", -0.1), ("top_fraction", 0.0)])
def test_fraction_outside_zero_one_is_a_user_error(name, value):
    make_box_dataset("test/box-v0")
    with pytest.raises(UserError, match=rf"data.{name} must be in \(0, 1\], got {value}"):
        OfflineDataModule("test/box-v0", **{name: value})


def test_model_for_the_wrong_obs_dim_is_a_user_error_naming_both(tmp_path):
    make_box_dataset("test/box-v0", episodes=(3, 4), obs_dim=3)
    dm = OfflineDataModule("test/box-v0", batch_size=4, eval_episodes=0)
    model = TD3BC(obs_dim=5, action_dim=dm.action_dim, hidden_dims=(8,))
    with pytest.raises(UserError) as info:
        tiny_trainer(tmp_path).fit(model, datamodule=dm)
    message = str(info.value)
    assert "obs_dim=5" in message and "obs_dim=3" in message and "'test/box-v0'" in message
    assert int(model.num_updates) == 0
