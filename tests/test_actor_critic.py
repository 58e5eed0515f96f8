"""Off-policy actor-critics: SAC, TD3 (naive offline baselines), CQL and ReBRAC.

Losses against direct computation on fixed batches (random draws replayed by re-seeding the default generator
before each side), the Lagrange and temperature duals moving the right way, and CLI runs with resume.
"""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import FAST, attached, fixed_batch, run_cli
from lit_offrl.algos import CQL, SAC, TD3, TD3BC, ReBRAC
from lit_offrl.data.buffer import Batch
from lit_offrl.nets.mlp import VectorizedLayerNorm
from test_training import assert_same_training_state, last_checkpoint, load


def members(critic, obs, action):
    """Every member's Q(s, a), (E, B), from the stacked network (min / first member taken by the caller)."""
    return critic.net(torch.cat([obs, action], -1)).squeeze(-1)


def tanh_gaussian_sample(actor, obs):
    """a = tanh(mu + sigma eps) and log pi(a|s) written out: Gaussian log-density minus log(1 - a^2)."""
    mean, log_std = actor.net(obs).chunk(2, -1)
    std = log_std.clamp(-20.0, 2.0).exp()
    u = mean + std * torch.randn(mean.shape)
    gaussian = -0.5 * ((u - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
    return torch.tanh(u), (gaussian - torch.log(1 - torch.tanh(u).pow(2))).sum(-1)


# ---------------------------------------------------------------------------------------------------- SAC
def test_sac_target_actor_and_temperature_losses_match_direct_computation(maze_dm, tmp_path):
    model = attached(SAC(maze_dm.obs_dim, maze_dm.action_dim), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    alpha = model.log_alpha.exp().detach()
    with torch.no_grad():
        torch.manual_seed(1)
        target = model.critic_target(batch)
        torch.manual_seed(1)
        next_action, next_log_prob = tanh_gaussian_sample(model.actor, batch.next_obs)
        next_q = members(model.target_critic, batch.next_obs, next_action).min(0).values
        expected = batch.reward + 0.99 * (1 - batch.terminal) * (next_q - alpha * next_log_prob)
        torch.testing.assert_close(target, expected, rtol=1e-4, atol=1e-4)

        torch.manual_seed(2)
        actor_loss, log_prob, _ = model.actor_loss(batch)
        torch.manual_seed(2)
        action, expected_log_prob = tanh_gaussian_sample(model.actor, batch.obs)
        q = members(model.critic, batch.obs, action).min(0).values
        torch.testing.assert_close(log_prob, expected_log_prob, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(actor_loss, (alpha * expected_log_prob - q).mean(), rtol=1e-4, atol=1e-4)

        # L(alpha) = -E[log alpha (log pi(a|s) + H*)], H* = -|A|, with log pi from the update's own actor sample
        torch.manual_seed(3)
        _, log_prob = tanh_gaussian_sample(model.actor, batch.obs)
        expected_alpha_loss = -(model.log_alpha * (log_prob - maze_dm.action_dim)).mean()
    torch.manual_seed(3)
    metrics = model.update(batch)
    torch.testing.assert_close(metrics["alpha_loss"], expected_alpha_loss, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target_entropy", [5.0, -50.0])
def test_sac_auto_alpha_moves_alpha_toward_the_target_entropy(target_entropy, maze_dm, tmp_path):
    """Entropy below the target (5 > log 4, the most a 2-D action in [-1, 1]^2 can have) raises alpha; entropy
    above it (-50) lowers alpha, at every update."""
    model = attached(SAC(maze_dm.obs_dim, maze_dm.action_dim, alpha_lr=1e-2, target_entropy=target_entropy),
                     maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    alphas = [model.alpha.item()]
    for _ in range(5):
        metrics = model.update(batch)
        alphas.append(model.alpha.item())
        assert (metrics["entropy"].item() < target_entropy) == (target_entropy > 0)
    steps = torch.tensor(alphas).diff()
    assert (steps > 0).all() if target_entropy > 0 else (steps < 0).all(), alphas


# ---------------------------------------------------------------------------------------------------- TD3
def test_td3_actor_loss_is_minus_q1_and_its_target_is_td3bc_s(maze_dm, tmp_path):
    model = attached(TD3(maze_dm.obs_dim, maze_dm.action_dim), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    with torch.no_grad():
        loss, extra = model.actor_loss(batch)
        q = members(model.critic, batch.obs, model.actor(batch.obs))
        assert not torch.equal(q[0], q.min(0).values), "the twin critics must differ for this test to mean anything"
        torch.testing.assert_close(loss, -q[0].mean())
        assert extra == {}

        td3bc = TD3BC(maze_dm.obs_dim, maze_dm.action_dim)
        td3bc.load_state_dict(model.state_dict())
        torch.manual_seed(4)
        target = model.critic_target(batch)
        torch.manual_seed(4)
        assert torch.equal(target, td3bc.critic_target(batch))
        torch.manual_seed(4)
        noise = (torch.randn(batch.action.shape) * 0.2).clamp(-0.5, 0.5)
        next_action = (model.target_actor(batch.next_obs) + noise).clamp(-1, 1)
        next_q = members(model.target_critic, batch.next_obs, next_action).min(0).values
        torch.testing.assert_close(target, batch.reward + 0.99 * (1 - batch.terminal) * next_q)


# ---------------------------------------------------------------------------------------------------- CQL
def tiny_batch(obs_dim=3, action_dim=2, size=4):
    generator = torch.Generator().manual_seed(5)
    return Batch(torch.randn(size, obs_dim, generator=generator),
                 torch.rand(size, action_dim, generator=generator) * 2 - 1, torch.randn(size, generator=generator),
                 torch.randn(size, obs_dim, generator=generator), torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_cql_penalty_matches_a_loop_over_states_critics_and_sampled_actions():
    """Delta_i = mean_s [log sum_j exp(Q_i(s, a_j) - log p_j(a_j)) - Q_i(s, a)] over n uniform actions
    (p = 0.5^|A|), n actions of pi(.|s) and n of pi(.|s') (p = pi), computed one number at a time."""
    torch.manual_seed(0)
    n, action_dim = 3, 2
    # (default init: CORL's near-zero output layer would make pi(.|s) and pi(.|s') indistinguishable here)
    model = CQL(3, action_dim, cql_n_actions=n, hidden_dims=(16, 16), orthogonal_init=False)
    batch = tiny_batch(action_dim=action_dim)
    with torch.no_grad():
        q_data = model.critic(batch.obs, batch.action)
        torch.manual_seed(6)
        gap = model.conservative_gap(batch, q_data)
        torch.manual_seed(6)
        uniform = torch.rand(4, n, action_dim) * 2 - 1
        current, current_log_prob = model.actor(batch.obs.repeat_interleave(n, 0))
        following, following_log_prob = model.actor(batch.next_obs.repeat_interleave(n, 0))

        def q(i, s, a):
            return members(model.critic, batch.obs[s:s + 1], a.view(1, -1))[i, 0].item()

        expected = []
        for i in range(2):
            total = 0.0
            for s in range(4):
                terms = [q(i, s, uniform[s, j]) - action_dim * math.log(0.5) for j in range(n)]
                terms += [q(i, s, current[s * n + j]) - current_log_prob[s * n + j].item() for j in range(n)]
                terms += [q(i, s, following[s * n + j]) - following_log_prob[s * n + j].item() for j in range(n)]
                total += math.log(sum(math.exp(t) for t in terms)) - q(i, s, batch.action[s])
            expected.append(total / 4)
        torch.testing.assert_close(gap, torch.tensor(expected), rtol=1e-4, atol=1e-4)

        # The critic loss is SAC's TD error (no entropy in the backup) plus alpha_cql * sum_i Delta_i.
        torch.manual_seed(7)
        loss, metrics = model.critic_loss(batch)
        torch.manual_seed(7)
        next_action, _ = model.actor(batch.next_obs)
        y = batch.reward + 0.99 * (1 - batch.terminal) * members(model.target_critic, batch.next_obs,
                                                                  next_action).min(0).values
        td = sum((q_data[i] - y).pow(2).mean() for i in range(2))
        gap = model.conservative_gap(batch, q_data)
        torch.testing.assert_close(loss, td + 10.0 * gap.sum(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(metrics["cql_gap"], gap.mean())


@pytest.mark.parametrize("action_gap, direction", [(-1e3, +1), (1e3, -1)])
def test_cql_lagrange_dual_raises_alpha_prime_while_the_gap_exceeds_the_target(action_gap, direction, maze_dm,
                                                                               tmp_path):
    model = attached(CQL(maze_dm.obs_dim, maze_dm.action_dim, cql_lagrange=True, cql_target_action_gap=action_gap,
                         alpha_prime_lr=1e-2, hidden_dims=(64, 64)), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    alpha_prime = model.alpha_prime.clone()
    metrics = model.update(batch)
    # sum_i alpha' alpha_cql (Delta_i - tau_gap), with the alpha' of before this update's dual step
    expected_penalty = alpha_prime * 10.0 * 2 * (metrics["cql_gap"] - action_gap)
    torch.testing.assert_close(metrics["cql_penalty"], expected_penalty, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(metrics["alpha_prime_loss"], -alpha_prime * 10.0 * (metrics["cql_gap"] - action_gap),
                               rtol=1e-5, atol=1e-3)
    assert math.copysign(1, (model.alpha_prime - alpha_prime).item()) == direction
    for _ in range(3):
        before = model.alpha_prime.clone()
        model.update(batch)
        assert (model.alpha_prime - before).item() * direction > 0


# ------------------------------------------------------------------------------------------------- ReBRAC
def test_rebrac_target_penalizes_the_next_action_and_actor_loss_matches_corl(maze_dm, tmp_path):
    model = attached(ReBRAC(maze_dm.obs_dim, maze_dm.action_dim, actor_bc_coef=0.3, critic_bc_coef=2.0),
                     maze_dm, tmp_path)
    norms = [m for m in model.critic.modules() if isinstance(m, VectorizedLayerNorm)]
    assert len(norms) == 3, "a LayerNorm after each of the critic's 3 hidden layers"
    assert all(m.weight.shape[0] == 2 for m in norms), "each critic has its own LayerNorm gain and bias"
    assert not any(isinstance(m, (nn.LayerNorm, VectorizedLayerNorm)) for m in model.actor.modules())
    batch = fixed_batch(maze_dm)
    assert not torch.equal(batch.next_action, batch.action)
    with torch.no_grad():
        torch.manual_seed(9)
        target = model.critic_target(batch)
        torch.manual_seed(9)
        noise = (torch.randn(batch.action.shape) * 0.2).clamp(-0.5, 0.5)
        next_action = (model.target_actor(batch.next_obs) + noise).clamp(-1, 1)
        next_q = members(model.target_critic, batch.next_obs, next_action).min(0).values
        penalty = (next_action - batch.next_action).pow(2).sum(-1)
        torch.testing.assert_close(target, batch.reward + 0.99 * (1 - batch.terminal) * (next_q - 2.0 * penalty))

        loss, extra = model.actor_loss(batch)
        action = model.actor(batch.obs)
        q = members(model.critic, batch.obs, action).min(0).values
        expected = (0.3 * (action - batch.action).pow(2).sum(-1) - q / q.abs().mean()).mean()
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(extra["lambda"], 1 / q.abs().mean())


# -------------------------------------------------------------------------------------------- CLI + resume
SMALL = ["--model.hidden_dims", "[64, 64]", "--data.batch_size", "64", "--checkpoint.every_n_updates", "30"]
LAGRANGE = ["--model.cql_lagrange", "true", "--model.cql_target_action_gap", "5"]


@pytest.mark.parametrize("algo, extra, steps_per_update, resume", [
    ("SAC", [], 3, False),                                  # actor, temperature, critics
    ("TD3", [], 1.5, False),                                # critics every update, actor every 2nd
    ("CQL", ["--model.cql_n_actions", "4"], 3, False),      # SAC's three
    ("CQL", ["--model.cql_n_actions", "4", *LAGRANGE], 4, True),  # and the dual alpha'
    ("ReBRAC", [], 1.5, False),
], ids=["SAC", "TD3", "CQL", "CQL-Lagrange", "ReBRAC"])
def test_cli_fit_counts_updates_and_resumes_exactly(algo, extra, steps_per_update, resume, maze_root, tmp_path):
    """120 updates through the CLI: num_updates 120, global_step = optimizer steps, validation every 60 in
    TensorBoard. With `resume`: 60 updates, then `--ckpt_path last` to 120, ends with exactly the parameters and
    optimizer states of the uninterrupted run. CQL-Lagrange has the most state of the SAC family (four optimizers,
    alpha and alpha'); the TD3 family's update (TD3, TD3+BC, ReBRAC share it) is resumed in test_training."""
    common = ["fit", "--model", algo, *FAST, *SMALL, *extra]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight_dir.mkdir(), resumed_dir.mkdir()
    straight = run_cli([*common, "--trainer.max_steps", "120", "--data.eval_episodes", "1",
                        "--trainer.val_check_interval", "60"], maze_root, straight_dir)
    assert straight.returncode == 0, straight.stderr[-3000:]
    state = load(last_checkpoint(straight_dir))
    assert int(state["state_dict"]["num_updates"]) == 120
    assert state["global_step"] == int(120 * steps_per_update)
    events = next(straight_dir.glob("lightning_logs/*/events.out.tfevents.*"))
    scalars = EventAccumulator(str(events.parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [59, 119]
    assert {"train/critic_loss", "train/actor_loss"} <= set(scalars.Tags()["scalars"])
    if not resume:
        return
    # Evaluation off here: rollouts must not touch the training randomness, so the parameters still match.
    first = run_cli([*common, "--trainer.max_steps", "60", "--data.eval_episodes", "0"], maze_root, resumed_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*common, "--trainer.max_steps", "120", "--data.eval_episodes", "0", "--ckpt_path", "last"],
                     maze_root, resumed_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = load(last_checkpoint(resumed_dir))
    assert resumed["global_step"] == state["global_step"]
    assert_same_training_state(state, resumed)
