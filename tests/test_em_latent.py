"""LatentEM (EM policy search in a VAE's latent space) and the H-step sequence sampling it trains on.

Sequence sampling: chunks stay inside one episode, equal the gathered transitions, are seeded by (seed, rank, i)
and resume exactly; the data module's `sequence_length` is checked at the boundary. EM: the self-normalized
weights and the dual for eta against direct computation, one EM iteration on a toy contextual problem with a
known optimum, the offline return targets, the online returns against a plain env (on Hopper: up to the step
that ends the episode, no step after it), open-loop execution, and CLI fits across the phases with resume.
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from minari_fixtures import make_box_dataset, use_minari_root
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import kl_divergence

from conftest import FAST, MAZE_ID, run_cli
from lit_offrl.algos import LatentEM
from lit_offrl.algos.em_latent import OnlineChunkReturns
from lit_offrl.data.buffer import Batch, RandomSequenceStream, SamplerState, SequenceBatch, Transitions
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.errors import UserError
from test_algos import attached
from test_training import assert_same_training_state, last_checkpoint, load

# ------------------------------------------------------------------------------------------ sequence sampling
LENGTHS, TERMINATED = (3, 7, 2, 5), (True, False, True, False)


def episode_transitions() -> Transitions:
    """Episodes of LENGTHS; obs = (100 episode + step, index), next_obs = obs + 0.5, reward = 10 index,
    action = (index / N, -index / N), terminal at the last step of the TERMINATED episodes."""
    lengths = torch.tensor(LENGTHS)
    ends = lengths.cumsum(0)
    starts = ends - lengths
    episode = torch.repeat_interleave(torch.arange(len(LENGTHS)), lengths)
    index = torch.arange(int(ends[-1]), dtype=torch.float32)
    step = index - starts[episode].float()
    terminal = torch.zeros_like(index)
    terminal[(ends - 1)[torch.tensor(TERMINATED)]] = 1.0
    obs = torch.stack([100.0 * episode + step, index], 1)
    return Transitions(obs=obs, action=torch.stack([index / len(index), -index / len(index)], 1), reward=10.0 * index,
                       next_obs=obs + 0.5, terminal=terminal, episode_starts=starts, episode_ends=ends)


def sequence_stream(transitions, length=3, batch_size=64, seed=0, rank=0, consumed=0) -> RandomSequenceStream:
    state = SamplerState()
    state.consumed = consumed
    return RandomSequenceStream(transitions, batch_size, length, seed, rank, state)


def take(stream, count: int) -> list:
    return list(itertools.islice(iter(stream), count))


def assert_same(first, second) -> None:
    for a, b in zip(first, second, strict=True):
        for name in a._fields:
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_chunks_never_cross_an_episode_end_and_equal_the_gathered_transitions():
    transitions = episode_transitions()
    # Episode 0 has one 3-step chunk, episode 1 five, episode 2 (2 steps) none, episode 3 three.
    assert transitions.sequence_starts(3).tolist() == [0, 3, 4, 5, 6, 7, 12, 13, 14]
    drawn = set()
    for batch in take(sequence_stream(transitions), 10):
        assert isinstance(batch, SequenceBatch)
        assert batch.obs.shape == (64, 3, 2) and batch.action.shape == (64, 3, 2) and batch.reward.shape == (64, 3)
        index = batch.obs[:, :, 1]
        start = index[:, 0].long()
        drawn |= set(start.tolist())
        assert torch.equal(index, start[:, None].float() + torch.arange(3.0)), "consecutive transitions"
        episode = batch.obs[:, :, 0] // 100
        assert (episode == episode[:, :1]).all() and (batch.next_obs[:, :, 0] // 100 == episode).all(), "one episode"
        for name in ("obs", "action", "reward", "next_obs", "terminal"):
            expected = getattr(transitions, name)[start[:, None] + torch.arange(3)]
            assert torch.equal(getattr(batch, name), expected), name
        assert torch.equal(batch.first_obs, batch.obs[:, 0]) and torch.equal(batch.last_next_obs, batch.next_obs[:, -1])
        # Only episode 0 (terminated, 3 steps) ends in a termination inside a 3-step chunk: at its last step.
        assert torch.equal(batch.done, (start == 0).float()) and (batch.terminal[:, :-1] == 0).all()
    assert drawn == {0, 3, 4, 5, 6, 7, 12, 13, 14}, "every chunk inside an episode is drawn"


def test_chunks_as_long_as_an_episode_and_a_truncated_end_is_not_done():
    transitions = episode_transitions()
    assert transitions.sequence_starts(7).tolist() == [3]
    batch = next(iter(sequence_stream(transitions, length=7, batch_size=4)))
    assert (batch.obs[:, :, 1] == torch.arange(3.0, 10.0)).all() and (batch.done == 0).all()
    assert transitions.sequence_starts(1).tolist() == list(range(17))


def test_sequence_batches_are_seeded_by_seed_rank_and_index():
    transitions = episode_transitions()
    base = take(sequence_stream(transitions, seed=3, rank=1, batch_size=8), 5)
    assert_same(base, take(sequence_stream(transitions, seed=3, rank=1, batch_size=8), 5))
    assert_same(base[2:], take(sequence_stream(transitions, seed=3, rank=1, batch_size=8, consumed=2), 3))
    for other in (sequence_stream(transitions, seed=3, rank=0, batch_size=8),
                  sequence_stream(transitions, seed=4, rank=1, batch_size=8)):
        assert not torch.equal(next(iter(other)).obs, base[0].obs)
    assert not torch.equal(base[0].obs, base[1].obs)


def test_sequence_batch_from_a_batch_is_a_chunk_of_one():
    batch = Batch(torch.ones(5, 3), torch.ones(5, 2), torch.ones(5), torch.ones(5, 3), torch.zeros(5))
    chunk = SequenceBatch.from_batch(batch)
    assert chunk.obs.shape == (5, 1, 3) and chunk.reward.shape == (5, 1) and chunk.horizon == 1


@pytest.fixture
def box_root(tmp_path, monkeypatch):
    return use_minari_root(tmp_path / "minari", monkeypatch)


def test_data_module_sequence_length_boundaries_and_checkpoint_state(box_root):
    make_box_dataset("test/box-v0", episodes=(3, 7, 2), terminated=[True, False, True])
    with pytest.raises(UserError, match="sequence_length must be a positive integer"):
        OfflineDataModule("test/box-v0", eval_episodes=0, sequence_length=0)
    too_long = OfflineDataModule("test/box-v0", eval_episodes=0, sequence_length=8)
    with pytest.raises(UserError, match=r"longer than the longest episode .*\(7 steps\).* at most 7"):
        too_long.setup("fit")

    dm = OfflineDataModule("test/box-v0", batch_size=4, eval_episodes=0, sequence_length=7, seed=5,
                           normalize_observations=False)
    dm.setup("fit")
    chunks = take(dm.train_dataloader(), 3)
    assert all(isinstance(c, SequenceBatch) and c.obs.shape == (4, 7, 3) for c in chunks)
    assert (chunks[0].obs[:, :, 0] == 100.0 + torch.arange(7.0)).all(), "the only 7-step chunk: episode 1"
    dm.sampler_state.consumed = 2
    state = dm.state_dict()
    assert state["sequence_length"] == 7 and state["consumed_batches"] == 2
    resumed = OfflineDataModule("test/box-v0", batch_size=4, eval_episodes=0, sequence_length=7, seed=5,
                                normalize_observations=False)
    resumed.setup("fit")
    resumed.load_state_dict(state)
    assert_same(take(resumed.train_dataloader(), 1), chunks[2:])

    single = OfflineDataModule("test/box-v0", batch_size=4, eval_episodes=0)
    single.setup("fit")
    assert isinstance(next(iter(single.train_dataloader())), Batch), "sequence_length 1: single transitions"


# ------------------------------------------------------------------------------------------------- EM maths
def toy_problem(num_samples: int = 256, **kwargs):
    """R(s, alpha) = -||alpha - alpha*(s)||^2 with alpha*(s) = clip(W s) inside the policy's latent box."""
    torch.manual_seed(0)
    model = LatentEM(3, 2, horizon=2, num_samples=num_samples, hidden_dims=(64, 64), vae_hidden_dims=(8,), **kwargs)
    obs = torch.randn(16, 3)
    optimum = (obs @ (0.5 * torch.randn(3, model.latent_dim))).clamp(-1.5, 1.5)
    return model, obs, optimum, lambda alpha: -(alpha - optimum).pow(2).sum(-1)


def expected_return(model, obs, optimum) -> torch.Tensor:
    """E_{alpha ~ pi(.|s)} -||alpha - alpha*||^2 = -(||mu - alpha*||^2 + sum sigma^2), mean over states."""
    with torch.no_grad():
        dist = model.policy(obs)
        return -((dist.mean - optimum).pow(2).sum(-1) + dist.variance.sum(-1)).mean()


def test_self_normalized_weights_and_sample_kl_match_direct_computation():
    model, obs, _, returns_fn = toy_problem(num_samples=6, eta_mode="fixed", eta=0.7)
    alpha, weights, eta, returns = model.e_step(obs, returns_fn)
    assert alpha.shape == (6, 16, model.latent_dim) and (alpha.abs() <= model.max_latent).all()
    torch.testing.assert_close(returns, returns_fn(alpha))
    exp = torch.exp(returns.double() / 0.7)
    torch.testing.assert_close(weights.double(), exp / exp.sum(0, keepdim=True))
    assert eta.item() == pytest.approx(0.7)
    direct_kl = (weights.double() * torch.log(6 * weights.double())).sum(0).mean()
    torch.testing.assert_close(model.sample_kl(returns, eta).double(), direct_kl, rtol=1e-5, atol=1e-6)
    # M-step loss: -mean_s sum_k w_k log N(alpha_k; mu(s), sigma(s))
    dist = model.policy(obs)
    log_prob = (-0.5 * ((alpha - dist.mean) / dist.stddev).pow(2) - dist.stddev.log() - 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(model.m_step_loss(obs, alpha, weights), -(weights * log_prob.sum(-1)).sum(0).mean())


def test_dual_temperature_minimizes_g_and_meets_the_trust_region():
    model, obs, _, returns_fn = toy_problem(num_samples=64, epsilon=0.1)
    _, weights, eta, returns = model.e_step(obs, returns_fn)
    g = model.dual(eta, returns)
    for factor in (0.98, 1.02, 0.5, 2.0):
        assert g <= model.dual(eta * factor, returns), f"g(eta) is not minimal against eta x {factor}"
    # g'(eta) = epsilon - E_s KL_s(eta) = 0 at the minimum: the trust region is met with equality, from inside.
    assert model.sample_kl(returns, eta).item() == pytest.approx(0.1, abs=1e-5)
    assert model.sample_kl(returns, eta).item() <= 0.1
    torch.testing.assert_close(weights, torch.softmax(returns / eta, 0))


def test_one_em_iteration_raises_the_return_within_the_trust_region():
    """E-step with the dual eta, then the M-step (weighted maximum likelihood) to convergence: the expected return
    rises towards the known optimum while the new policy stays within about epsilon of the old one; a greedy
    fixed eta (no trust region) moves much further."""
    steps = {}
    for mode, kwargs in (("dual", {"epsilon": 0.1}), ("greedy", {"eta_mode": "fixed", "eta": 0.01})):
        model, obs, optimum, returns_fn = toy_problem(**kwargs)
        before = expected_return(model, obs, optimum)
        with torch.no_grad():
            old = model.policy(obs)
        alpha, weights, eta, returns = model.e_step(obs, returns_fn)
        optimizer = torch.optim.Adam(model.policy.parameters(), lr=3e-3)
        for _ in range(200):
            optimizer.zero_grad()
            model.m_step_loss(obs, alpha, weights).backward()
            optimizer.step()
        after = expected_return(model, obs, optimum)
        with torch.no_grad():
            kl = kl_divergence(model.policy(obs), old).sum(-1).mean().item()
        steps[mode] = (before.item(), after.item(), kl, model.sample_kl(returns, eta).item())
    before, after, kl, sample_kl = steps["dual"]
    assert after > before + 1.0, steps
    assert sample_kl <= 0.1 and kl < 0.2, steps  # the sample KL is the constraint; the Gaussian fit's is close
    assert steps["greedy"][2] > 10 * kl, steps


# -------------------------------------------------------------------------------------------- on PointMaze
@pytest.fixture
def chunk_dm(maze_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    return OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=0, sequence_length=4)


def test_offline_return_targets_and_losses_match_the_equations(chunk_dm, tmp_path):
    model = attached(LatentEM(chunk_dm.obs_dim, chunk_dm.action_dim, horizon=4, vae_steps=1, return_steps=10,
                              hidden_dims=(32, 32), vae_hidden_dims=(32, 32)), chunk_dm, tmp_path)
    start = torch.arange(32) * 150
    batch = chunk_dm.transitions.sequences(start, 4)
    with torch.no_grad():
        direct = torch.zeros(32)
        for h in range(4):
            direct += 0.99**h * chunk_dm.transitions.reward[start + h]
        end = start + 3
        bootstrap = model.target_value(chunk_dm.transitions.next_obs[end])
        direct += 0.99**4 * (1 - chunk_dm.transitions.terminal[end]) * bootstrap
        torch.testing.assert_close(model.chunk_return(batch), direct)
        value_loss = (model.value(batch.obs[:, 0]) - direct).pow(2).mean()
        mean, std = model.vae.encode(batch.obs[:, 0], batch.action.reshape(32, 8))
        torch.manual_seed(5)
        alpha = mean + std * torch.randn(32, model.latent_dim)  # alpha ~ q(z | s, tau), the update's only draw
        predicted = model.return_model.net(torch.cat([batch.obs[:, 0], alpha], -1)).squeeze(-1)
        return_loss = (predicted - direct).pow(2).mean()
    assert model._updates == 1  # the return-fitting phase: V and R_phi step, the VAE does not
    vae_before = [p.clone() for p in model.vae.parameters()]
    torch.manual_seed(5)
    metrics = model.update(batch)
    torch.testing.assert_close(metrics["value_loss"], value_loss)
    torch.testing.assert_close(metrics["return_model_loss"], return_loss)
    assert "vae_loss" not in metrics and "policy_loss" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(vae_before, model.vae.parameters()))


def test_the_vae_weighs_the_kl_as_plas_does_per_action(chunk_dm, tmp_path):
    """kl_weight=None (the default) is 0.5 / H: PLAS's recon + 0.5 KL per action, spread over a chunk's H actions."""
    sizes = dict(hidden_dims=(32, 32), vae_hidden_dims=(32, 32))
    assert LatentEM(3, 2, horizon=8, kl_weight=0.3, **sizes).kl_weight == 0.3
    model = attached(LatentEM(chunk_dm.obs_dim, chunk_dm.action_dim, horizon=4, vae_steps=10, return_steps=10,
                              **sizes), chunk_dm, tmp_path)
    assert model.kl_weight == 0.125
    batch = chunk_dm.transitions.sequences(torch.arange(32) * 150, 4)
    obs, chunk = batch.obs[:, 0], batch.action.reshape(32, 4 * chunk_dm.action_dim)
    with torch.no_grad():
        mean, log_std = model.vae.encode_log_std(obs, chunk)
        torch.manual_seed(5)
        z = mean + log_std.exp() * torch.randn_like(mean)
        recon = (model.vae.decoder(torch.cat([obs, z], -1)) - chunk).pow(2).mean(-1)
        kl = 0.5 * (mean.pow(2) + log_std.exp().pow(2) - 1.0 - 2.0 * log_std).mean(-1)
    torch.manual_seed(5)
    torch.testing.assert_close(model.update(batch)["vae_loss"], (recon + 0.125 * kl).mean())


def test_open_loop_execution_plays_the_decoded_chunk_then_plans_again(chunk_dm, tmp_path):
    model = LatentEM(chunk_dm.obs_dim, chunk_dm.action_dim, horizon=4, hidden_dims=(32, 32), vae_hidden_dims=(32, 32))
    obs = torch.randn(6, 5, chunk_dm.obs_dim)
    plan = model.decode_plan(obs[0], model.policy.act(obs[0]))
    played = [model.policy_action(obs[t]) for t in range(5)]
    for t in range(4):  # open loop: the later observations do not change the chunk
        torch.testing.assert_close(played[t], plan[:, t])
    torch.testing.assert_close(played[4], model.decode_plan(obs[4], model.policy.act(obs[4]))[:, 0])
    model.reset_plan()
    torch.testing.assert_close(model.policy_action(obs[5]), model.decode_plan(obs[5], model.policy.act(obs[5]))[:, 0])
    model.execution = "receding"
    for t in range(3):
        first = model.decode_plan(obs[t], model.policy.act(obs[t]))[:, 0]
        torch.testing.assert_close(model.policy_action(obs[t]), first)


def test_online_returns_equal_executing_the_chunk_in_a_fresh_env(maze_root, monkeypatch):
    """K env copies reset with one seed and advanced in lockstep are the same state; each copy's return is the
    discounted H-step return of its chunk replayed in a fresh env from that seed."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, eval_episodes=1)
    online = OnlineChunkReturns(dm.make_eval_env, dm.observation_space, num_states=2, num_copies=2)
    rng = np.random.default_rng(0)
    prefix, chunks = rng.uniform(-1, 1, (2, 3, 2)), rng.uniform(-1, 1, (2, 2, 4, 2))
    starts = online.reset([11, 12])
    after = online.advance(prefix)
    returns = online.returns(chunks, 0.9)
    online.close()
    env = dm.make_eval_env()
    flat = lambda obs: gym.spaces.flatten(dm.observation_space, obs)  # noqa: E731
    for i, seed in enumerate([11, 12]):
        for k in range(2):
            obs, _ = env.reset(seed=seed)
            np.testing.assert_allclose(flat(obs), starts[i])
            for action in prefix[i]:
                obs = env.step(action)[0]
            np.testing.assert_allclose(flat(obs), after[i])
            direct = sum(0.9**h * env.step(action)[1] for h, action in enumerate(chunks[i, k]))
            assert returns[i, k] == pytest.approx(direct)
    assert not np.allclose(starts[0], starts[1]) and not online.ended.any()
    env.close()


class NoStepAfterEnd(gym.Wrapper):
    """Counts steps and fails on a step after the episode ended (terminated or truncated) without a reset."""

    def reset(self, **kwargs):
        self.over, self.steps = False, 0
        return super().reset(**kwargs)

    def step(self, action):
        assert not self.over, "stepped after its episode ended"
        result = super().step(action)
        self.over, self.steps = bool(result[2] or result[3]), self.steps + 1
        return result


@pytest.mark.parametrize("max_episode_steps", [1000, 22])
def test_online_returns_stop_at_the_episode_end_on_hopper(max_episode_steps):
    """Hopper episodes terminate: a state whose episode ends in the prefix is `ended` and its copies are not
    stepped again (returns 0); a chunk's return is the discounted sum of its rewards up to and including the
    step that terminates or truncates the episode, as a plain Hopper-v5 set to the same qpos/qvel and stepped
    with the same actions gives it (float tolerance 1e-9: qpos/qvel are MuJoCo's whole state here)."""
    seeds, gamma, horizon = [3, 4], 0.99, 8
    # With these uniform random actions state 0 terminates at prefix step 9 (in the second chunk); state 1 lives
    # through the 16 prefix steps and its three chunks terminate at h = 6, never and h = 4 (with
    # max_episode_steps=22 the first two are truncated at h = 5, the episode's 22nd step).
    rng = np.random.default_rng(17)
    prefix, chunks = rng.uniform(-1, 1, (2, 16, 3)), rng.uniform(-1, 1, (2, 3, horizon, 3))
    make_env = lambda: NoStepAfterEnd(gym.make("Hopper-v5", max_episode_steps=max_episode_steps))  # noqa: E731
    online = OnlineChunkReturns(make_env, gym.make("Hopper-v5").observation_space, num_states=2, num_copies=3)
    online.reset(seeds)
    online.advance(prefix[:, :8])
    assert online.ended.tolist() == [False, False]
    after = online.advance(prefix[:, 8:])
    assert online.ended.tolist() == [True, False]
    assert [env.steps for env in online.envs[:3]] == [10, 10, 10], "state 0: the 10 steps up to its termination"
    qpos, qvel = online.envs[3].unwrapped.data.qpos.copy(), online.envs[3].unwrapped.data.qvel.copy()  # state 1
    returns = online.returns(chunks, gamma)
    online.close()
    assert returns[0].tolist() == [0.0, 0.0, 0.0] and [env.steps for env in online.envs[:3]] == [10, 10, 10]

    env = gym.make("Hopper-v5")  # no time limit of its own: the steps left are counted below
    env.reset(seed=seeds[1])
    for action in prefix[1]:
        obs, _, terminated, _, _ = env.step(action)
        assert not terminated
    np.testing.assert_array_equal(obs.astype(np.float32), after[1])
    np.testing.assert_array_equal(env.unwrapped.data.qpos, qpos)
    steps_left = min(horizon, max_episode_steps - 16)
    ends = []
    for k in range(3):
        env.reset(seed=0)
        env.unwrapped.set_state(qpos, qvel)
        direct, h = 0.0, 0
        for h in range(steps_left):
            _, reward, terminated, _, _ = env.step(chunks[1, k, h])
            direct += gamma**h * reward
            if terminated:
                break
        ends.append(h if terminated else None)
        assert returns[1, k] == pytest.approx(direct, rel=0, abs=1e-9), k
        assert online.envs[3 + k].steps == 16 + h + 1, "no step after the episode ended"
    assert ends == ([6, None, 4] if max_episode_steps == 1000 else [None, None, 4]), ends
    env.close()


# ------------------------------------------------------------------------------------------------------ CLI
SMALL = ["--model.hidden_dims", "[64, 64]", "--model.vae_hidden_dims", "[64, 64]", "--data.sequence_length", "4",
         "--model.horizon", "4", "--data.batch_size", "64"]


@pytest.mark.parametrize("source, optimizer_steps", [("offline", 60 * 2 + 60), ("online", 120)])
def test_cli_fit_crosses_the_phases(source, optimizer_steps, maze_root, tmp_path):
    """120 updates: VAE (+ V) for 30, V + R_phi for 30 (offline only), then EM; evaluated at 60 and 120."""
    extra = ["--model.online_num_states", "2", "--model.num_samples", "4", "--model.online_max_prefix_chunks", "1"]
    result = run_cli(["fit", "--model", "LatentEM", *FAST, *SMALL, "--model.return_source", source,
                      "--model.vae_steps", "30", "--model.return_steps", "30", "--trainer.max_steps", "120",
                      "--trainer.val_check_interval", "60", *(extra if source == "online" else [])],
                     maze_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load(last_checkpoint(tmp_path))
    assert int(state["state_dict"]["num_updates"]) == 120
    assert state["global_step"] == optimizer_steps
    scalars = EventAccumulator(str(next(tmp_path.glob("lightning_logs/*/events.out.tfevents.*")).parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [59, 119]
    assert [e.step for e in scalars.Scalars("val/prior_normalized_score")] == [59, 119], "the decoded prior, too"
    tags = scalars.Tags()["scalars"]
    phases = ["train/vae_loss", "train/policy_loss", "train/eta", "train/kl_q_pi", "train/return_q"]
    if source == "offline":
        phases += ["train/value_loss", "train/return_model_loss"]
    assert set(phases) <= set(tags), tags
    assert all(e.value <= 0.1 + 1e-5 for e in scalars.Scalars("train/kl_q_pi")), "the trust region KL <= epsilon"


def test_prior_policy_decodes_the_prior_mean_and_restores_pi_theta():
    """Inside `prior_policy()` acting decodes alpha = 0 (the VAE prior's mean) open loop; outside it pi_theta's mean."""
    torch.manual_seed(0)
    model = LatentEM(3, 2, horizon=2, hidden_dims=(16,), vae_hidden_dims=(8,))
    obs = torch.randn(5, 3)
    with model.prior_policy():
        first, second = model.policy_action(obs), model.policy_action(obs)
    plan = model.decode_plan(obs, torch.zeros(5, model.latent_dim))
    torch.testing.assert_close(torch.stack([first, second], 1), plan)
    torch.testing.assert_close(model.policy_action(obs), model.decode_plan(obs, model.policy.act(obs))[:, 0])
    assert not torch.allclose(model.policy.act(obs), torch.zeros(5, model.latent_dim))


def test_a_horizon_other_than_the_data_sequence_length_is_a_user_error(maze_root, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, batch_size=8, eval_episodes=0)
    with pytest.raises(UserError, match="--data.sequence_length 4"):
        attached(LatentEM(dm.obs_dim, dm.action_dim, horizon=4, hidden_dims=(8,), vae_hidden_dims=(8,)), dm, tmp_path)


def test_resume_at_the_start_of_em_matches_an_uninterrupted_run(maze_root, tmp_path):
    """Stopped at update 60, the end of return fitting, and resumed into the EM phase: the same parameters,
    optimizer states and sampler position as 120 updates straight."""
    common = ["fit", "--model", "LatentEM", *FAST, *SMALL, "--data.eval_episodes", "0", "--model.vae_steps", "30",
              "--model.return_steps", "30", "--checkpoint.every_n_updates", "30"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight_dir.mkdir(), resumed_dir.mkdir()
    assert run_cli([*common, "--trainer.max_steps", "120"], maze_root, straight_dir).returncode == 0
    first = run_cli([*common, "--trainer.max_steps", "60"], maze_root, resumed_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    policy_at_60 = load(last_checkpoint(resumed_dir))["state_dict"]["policy.net.0.weight"]
    second = run_cli([*common, "--trainer.max_steps", "120", "--ckpt_path", "last"], maze_root, resumed_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    straight, resumed = load(last_checkpoint(straight_dir)), load(last_checkpoint(resumed_dir))
    assert_same_training_state(straight, resumed)
    assert int(resumed["state_dict"]["num_updates"]) == 120
    assert not torch.equal(straight["state_dict"]["policy.net.0.weight"], policy_at_60), "EM ran after the resume"
    assert straight["OfflineDataModule"]["consumed_batches"] == resumed["OfflineDataModule"]["consumed_batches"] == 120
    assert resumed["OfflineDataModule"]["sequence_length"] == 4
