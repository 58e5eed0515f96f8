"""BRAC (both variants) and AWAC: losses against direct computation, phases, dual alpha, CLI fit and resume."""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import kl_divergence

from conftest import FAST, attached, fixed_batch, run_cli
from lit_offrl.algos import AWAC, BRAC
from test_training import assert_same_training_state, last_checkpoint, load


def gaussian_log_density(x, mean, std):
    return -0.5 * ((x - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)


def tanh_gaussian_samples(actor, obs, n):
    """n draws of a tanh-Gaussian policy and their log-densities, written out by hand; the same normal draws
    as the model's when the generator is in the same state (same shape (n, B, A), same sampler)."""
    dist = actor.distribution(obs)
    u = dist.rsample((n,))
    action = torch.tanh(u)
    return action, (gaussian_log_density(u, dist.loc, dist.scale) - torch.log(1 - action.pow(2))).sum(-1)


def behavior_log_density(model, obs, action, eps=1e-3):
    action = action.clamp(-1 + eps, 1 - eps)
    dist = model.behavior.distribution(obs)
    return (gaussian_log_density(torch.atanh(action), dist.loc, dist.scale) - torch.log(1 - action.pow(2))).sum(-1)


# ----------------------------------------------------------------------------------------------------- BRAC
def test_brac_sampled_kl_converges_to_the_gaussian_kl():
    """D^ = mean_j [log pi(a_j|s) - log pi_b(a_j|s)] is unbiased for KL(pi || pi_b), which tanh (a bijection)
    leaves equal to the KL of the pre-tanh Gaussians: with n samples it is within 4 standard errors of it."""
    torch.manual_seed(0)
    model = BRAC(obs_dim=3, action_dim=2)
    obs = torch.randn(6, 3)
    n = 20_000
    with torch.no_grad():
        actions, log_probs = model.sample_policy(obs, n)
        assert actions.abs().max() < 0.99  # the 1e-3 clip before pi_b's density must not bite
        estimate = model.divergence(obs, actions, log_probs)
        standard_error = (log_probs - model.behavior_log_prob(obs, actions)).std(0) / math.sqrt(n)
        exact = kl_divergence(model.actor.distribution(obs), model.behavior.distribution(obs)).sum(-1)
    assert (exact > 0.2).all() and (standard_error < 0.02 * exact).all()
    assert ((estimate - exact).abs() < 4 * standard_error).all(), (estimate, exact, standard_error)


def direct_target(model, batch, num_samples, alpha):
    """y = r + gamma (1 - d) [min(Q'_1, Q'_2)(s', a_1) - alpha D^(s')] from num_samples hand-written draws."""
    with torch.no_grad():
        torch.manual_seed(0)
        actions, log_pi = tanh_gaussian_samples(model.actor, batch.next_obs, num_samples)
        divergence = (log_pi - behavior_log_density(model, batch.next_obs, actions)).mean(0)
        next_q = model.target_critic(batch.next_obs, actions[0])
        next_v = torch.minimum(next_q[0], next_q[1]) - alpha * divergence
        return batch.reward + 0.99 * (1 - batch.terminal) * next_v, divergence


def test_brac_value_penalty_target_matches_direct_computation(maze_dm, tmp_path):
    model = attached(BRAC(maze_dm.obs_dim, maze_dm.action_dim, behavior_steps=1), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    torch.manual_seed(0)
    target, divergence = model.critic_target(batch)
    expected, expected_divergence = direct_target(model, batch, num_samples=4, alpha=0.1)
    torch.testing.assert_close(divergence, expected_divergence, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(target, expected, rtol=1e-4, atol=1e-4)
    assert expected_divergence.abs().mean() > 0.1, "the penalty must matter in this check"


def test_brac_policy_regularization_penalizes_only_the_actor(maze_dm, tmp_path):
    model = attached(BRAC(maze_dm.obs_dim, maze_dm.action_dim, penalty="policy", behavior_steps=1, warm_start=5),
                     maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    torch.manual_seed(0)
    target, divergence = model.critic_target(batch)
    assert divergence is None
    torch.testing.assert_close(target, direct_target(model, batch, num_samples=1, alpha=0.0)[0])

    # actor: alpha D^(s) during the warm start (agent updates 0..4), alpha D^(s) - min_i Q_i(s, a) after it
    for updates, with_q in ((1 + 4, False), (1 + 5, True)):
        model._updates = updates
        torch.manual_seed(1)
        loss, _, metrics = model.actor_loss(batch)
        with torch.no_grad():
            torch.manual_seed(1)
            actions, log_pi = tanh_gaussian_samples(model.actor, batch.obs, 4)
            penalty = 0.1 * (log_pi - behavior_log_density(model, batch.obs, actions)).mean(0)
            q = model.critic(batch.obs, actions[0]).min(0).values
            expected_loss = (penalty - q).mean() if with_q else penalty.mean()
        torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-4, atol=1e-4)
        assert ("q_pi_mean" in metrics) == with_q


def test_brac_behavior_phase_trains_only_the_behavior_policy(maze_dm, tmp_path):
    model = attached(BRAC(maze_dm.obs_dim, maze_dm.action_dim, behavior_steps=40, warm_start=0, dual_alpha=True,
                          target_divergence=1.0), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)

    def snapshot():
        return {name: value.clone() for name, value in model.state_dict().items()}

    def changed(before, prefix):
        return {name for name, value in model.state_dict().items()
                if name.startswith(prefix) and not torch.equal(value, before[name])}

    before = snapshot()
    losses = []
    for updates in range(1, 40):
        model._updates = updates
        losses.append(model.update(batch)["behavior_loss"].item())
    for frozen in ("actor.", "critic.", "target_critic.", "log_alpha"):
        assert not changed(before, frozen), f"{frozen} changed during the behavior phase"
    assert changed(before, "behavior.")
    assert losses[-1] < losses[0] - 0.5, f"behavior log-likelihood did not improve: {losses[0]:.3f} -> {losses[-1]:.3f}"

    before = snapshot()
    model._updates = 40
    metrics = model.update(batch)
    assert "behavior_loss" not in metrics and {"critic_loss", "actor_loss", "alpha_loss"} <= metrics.keys()
    assert not changed(before, "behavior.")
    for trained in ("actor.", "critic.", "target_critic.", "log_alpha"):
        assert changed(before, trained), f"{trained} did not train after the behavior phase"


@pytest.mark.parametrize("target_divergence, rises", [(-100.0, True), (100.0, False)])
def test_brac_dual_alpha_rises_while_the_divergence_exceeds_its_target(target_divergence, rises, maze_dm, tmp_path):
    model = attached(BRAC(maze_dm.obs_dim, maze_dm.action_dim, behavior_steps=1, dual_alpha=True, alpha_max=0.1002,
                          target_divergence=target_divergence), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    alphas = [model.alpha.item()]
    for updates in range(1, 6):
        model._updates = updates
        model.update(batch)
        alphas.append(model.alpha.item())
    steps = [b - a for a, b in zip(alphas, alphas[1:])]
    if rises:
        assert steps[0] > 0 and all(step >= 0 for step in steps)
        assert alphas[-1] == pytest.approx(0.1002, rel=1e-6), "alpha must stop at alpha_max"
    else:
        assert all(step < 0 for step in steps)


# ----------------------------------------------------------------------------------------------------- AWAC
@pytest.mark.parametrize("weighting, awac_lambda, value_samples", [("clip", 1e-3, 1), ("softmax", 1 / 3, 3)])
def test_awac_target_weights_and_actor_loss_match_direct_computation(weighting, awac_lambda, value_samples, maze_dm,
                                                                     tmp_path):
    model = attached(AWAC(maze_dm.obs_dim, maze_dm.action_dim, weighting=weighting, awac_lambda=awac_lambda,
                          value_samples=value_samples), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    torch.manual_seed(0)
    target = model.critic_target(batch)
    loss, metrics = model.actor_loss(batch)
    with torch.no_grad():
        torch.manual_seed(0)
        next_action = model.actor(batch.next_obs).sample().clamp(-1, 1)
        expected_target = batch.reward + 0.99 * (1 - batch.terminal) * model.target_critic(
            batch.next_obs, next_action).min(0).values
        pi = model.actor(batch.obs)
        policy_actions = pi.sample((value_samples,)).clamp(-1, 1)
        # V(s) = 1/k sum_j min_i Q_i(s, a_j) with the policy's own samples, one sample at a time
        v = sum(model.critic(batch.obs, policy_actions[j]).min(0).values for j in range(value_samples)) / value_samples
        advantage = model.critic(batch.obs, batch.action).min(0).values - v
        scores = advantage / awac_lambda
        if weighting == "clip":
            weight = torch.where(scores > math.log(100.0), torch.full_like(scores, 100.0), scores.exp())
            assert (weight == 100.0).any() and (weight < 1.0).any(), "the check must cover clipped and unclipped"
        else:
            weight = (scores - scores.max()).exp() / (scores - scores.max()).exp().sum() * len(scores)
            assert weight.sum().item() == pytest.approx(len(scores), rel=1e-5)
        log_pi = gaussian_log_density(batch.action, pi.loc, pi.scale).sum(-1)
        expected_loss = -(weight * log_pi).mean()
    torch.testing.assert_close(target, expected_target)
    torch.testing.assert_close(model.advantage_weights(advantage), weight)
    torch.testing.assert_close(metrics["advantage_weight"], weight.mean())
    torch.testing.assert_close(metrics["advantage_mean"], advantage.mean())
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------------ CLI
# Small networks and batches: the counts, logs and resume equivalence checked here do not depend on sizes.
BRAC_SMALL = ["--model", "BRAC", "--model.actor_hidden_dims", "[32, 32]", "--model.critic_hidden_dims", "[32, 32]",
              "--model.behavior_hidden_dims", "[32, 32]", "--model.warm_start", "20"]
BRAC_VP = [*BRAC_SMALL, "--model.penalty", "value", "--model.dual_alpha", "true", "--model.target_divergence", "1.0",
           "--model.behavior_steps", "80"]
BRAC_PR = [*BRAC_SMALL, "--model.penalty", "policy", "--model.behavior_steps", "40"]
AWAC_SMALL = ["--model", "AWAC", "--model.hidden_dims", "[32, 32, 32]"]


@pytest.mark.parametrize("model_args, behavior_steps, optimizer_steps, resume", [
    # behavior updates step one optimizer; agent updates step critic + actor (+ alpha with the dual)
    (BRAC_VP, 80, 80 + 40 * 3, True),   # resumed at 60, inside the behavior phase, crosses it at 80
    (BRAC_PR, 40, 40 + 80 * 2, False),
    (AWAC_SMALL, 0, 120 * 2, True),
], ids=["BRAC-vp-dual", "BRAC-pr", "AWAC"])
def test_cli_fit_and_resume(model_args, behavior_steps, optimizer_steps, resume, maze_root, tmp_path):
    """fit runs 120 updates (behavior phase, then the agent), logs both phases and evaluates; a run stopped at 60
    and resumed with `--ckpt_path last` ends with exactly the parameters and optimizer states of the straight run."""
    common = ["fit", *model_args, *FAST, "--data.batch_size", "64", "--checkpoint.every_n_updates", "30"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight_dir.mkdir(), resumed_dir.mkdir()
    fit = run_cli([*common, "--trainer.max_steps", "120", "--data.eval_episodes", "1", "--trainer.val_check_interval",
                   "60"], maze_root, straight_dir)
    assert fit.returncode == 0, fit.stderr[-3000:]
    straight = load(last_checkpoint(straight_dir))
    assert int(straight["state_dict"]["num_updates"]) == 120
    assert straight["global_step"] == optimizer_steps
    scalars = EventAccumulator(str(last_checkpoint(straight_dir).parent.parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [59, 119]
    actor_steps = [e.step for e in scalars.Scalars("train/actor_loss")]
    assert actor_steps and min(actor_steps) >= behavior_steps
    if behavior_steps:
        behavior_loss = {e.step: e.value for e in scalars.Scalars("train/behavior_loss")}
        phase_logs = list(range(19, behavior_steps, 20))  # logged every 20 updates during the behavior phase
        assert set(phase_logs) == behavior_loss.keys(), "a finished phase's loss must not be logged again"
        assert behavior_loss[phase_logs[-1]] < behavior_loss[phase_logs[0]] - 1.0, "pi_b's likelihood must improve"
        assert "train/q_pi_mean" in scalars.Tags()["scalars"], "the Q term never came on after the warm start"
    if not resume:
        return
    common += ["--data.eval_episodes", "0"]
    first = run_cli([*common, "--trainer.max_steps", "60"], maze_root, resumed_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*common, "--trainer.max_steps", "120", "--ckpt_path", "last"], maze_root, resumed_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = load(last_checkpoint(resumed_dir))
    assert int(resumed["state_dict"]["num_updates"]) == 120 and resumed["global_step"] == optimizer_steps
    assert_same_training_state(straight, resumed)
