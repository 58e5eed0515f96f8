"""Algorithm losses: exact small cases against direct computation, and updates that reduce their losses."""

from __future__ import annotations

import pytest
import torch

from conftest import attached, fixed_batch
from lit_offrl.algos import BC, IQL, SAC, TD3BC
from lit_offrl.algos.iql import expectile_loss


def test_expectile_loss_matches_hand_computation():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # |tau - 1(u<0)| u^2 with tau 0.7: 0.7*4, 0.3*1, 0.7*0.25, 0.3*9
    assert expectile_loss(diff, 0.7).item() == pytest.approx((2.8 + 0.3 + 0.175 + 2.7) / 4)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * diff.pow(2).mean().item())


def test_td3bc_target_and_actor_loss_match_the_paper(maze_dm, tmp_path):
    model = attached(TD3BC(maze_dm.obs_dim, maze_dm.action_dim, policy_noise=0.0), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    with torch.no_grad():
        next_action = model.target_actor(batch.next_obs)
        q1 = model.target_critic.net(torch.cat([batch.next_obs, next_action], -1))[0].squeeze(-1)
        q2 = model.target_critic.net(torch.cat([batch.next_obs, next_action], -1))[1].squeeze(-1)
        expected = batch.reward + 0.99 * (1 - batch.terminal) * torch.minimum(q1, q2)
        torch.testing.assert_close(model.critic_target(batch), expected)
        loss, extra = model.actor_loss(batch)
        pi = model.actor(batch.obs)
        q = model.critic(batch.obs, pi)[0]
        lmbda = 2.5 / q.abs().mean()
        torch.testing.assert_close(loss, -lmbda * q.mean() + (pi - batch.action).pow(2).mean())
        torch.testing.assert_close(extra["lambda"], lmbda)


def test_iql_losses_match_the_paper(maze_dm, tmp_path):
    model = attached(IQL(maze_dm.obs_dim, maze_dm.action_dim), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    with torch.no_grad():
        target_q = model.target_critic(batch.obs, batch.action).min(0).values
        v = model.value(batch.obs)
        u = target_q - v
        value_loss = (torch.where(u < 0, 0.3, 0.7) * u.pow(2)).mean()
        next_v = model.value(batch.next_obs)
        q = model.critic(batch.obs, batch.action)
        y = batch.reward + 0.99 * (1 - batch.terminal) * next_v
        critic_loss = 0.5 * ((q[0] - y).pow(2).mean() + (q[1] - y).pow(2).mean())
        weight = torch.exp(3.0 * u).clamp(max=100.0)
        actor_loss = -(weight * model.actor(batch.obs).log_prob(batch.action).sum(-1)).mean()
    metrics = model.update(batch)
    # V(s') in the critic target and A in the actor weights come from V before this update's value step
    # (CORL's order), so every loss of the update equals its value computed from the pre-update networks.
    torch.testing.assert_close(metrics["value_loss"], value_loss)
    torch.testing.assert_close(metrics["critic_loss"], critic_loss)
    torch.testing.assert_close(metrics["advantage_weight"], weight.mean())
    torch.testing.assert_close(metrics["actor_loss"], actor_loss, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls, losses", [
    (BC, {"actor_loss": 0.7}),
    (TD3BC, {"critic_loss": 0.7}),
    # IQL's actor loss is a likelihood weighted by exp(beta A), and A moves with V: it falls, but slowly.
    (IQL, {"value_loss": 0.7, "critic_loss": 0.7, "actor_loss": 0.97}),
])
def test_updates_reduce_their_losses_on_a_fixed_batch(cls, losses, maze_dm, tmp_path):
    # (IQL's cosine schedule would have decayed the actor's lr to 0 over the one-update attaching run)
    kwargs = {"actor_cosine_decay": False} if cls is IQL else {}
    model = attached(cls(maze_dm.obs_dim, maze_dm.action_dim, **kwargs), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    history = [model.update(batch) for _ in range(60)]
    for name, factor in losses.items():
        first, last = history[0][name].item(), history[-1][name].item()
        assert last < factor * first, f"{cls.__name__} {name}: {first:.4f} -> {last:.4f}"


def test_optimize_clips_the_gradient_norm(maze_dm, tmp_path):
    """optimize(loss, opt, clip=c) leaves the step's gradients with total norm c (clipped before the step)."""
    model = attached(BC(maze_dm.obs_dim, maze_dm.action_dim), maze_dm, tmp_path)
    batch = fixed_batch(maze_dm)
    loss = (model.actor(batch.obs) - batch.action).pow(2).mean() * 1e3
    model.optimize(loss, model.optimizers(), clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.actor.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-4)


def test_critic_members_slice_evaluates_those_members_only():
    from lit_offrl.nets import EnsembleCritic

    torch.manual_seed(0)
    for layer_norm in (False, True):
        critic = EnsembleCritic(5, 2, num_critics=3, hidden_dims=(16, 16), layer_norm=layer_norm)
        obs, action = torch.randn(7, 5), torch.rand(7, 2)
        every = critic(obs, action)
        torch.testing.assert_close(critic(obs, action, members=slice(1, 3)), every[1:3])
        torch.testing.assert_close(critic.q1(obs, action), every[0])


@pytest.mark.parametrize("cls", [TD3BC, SAC])
def test_a_frozen_critic_in_the_actor_step_changes_no_result(cls, maze_dm, tmp_path, monkeypatch):
    """The actor step runs with the critic's weights frozen (no weight gradients): every parameter after a few
    updates equals an update without the freezing, and the critic's weights still require gradients after."""
    import contextlib

    from lit_offrl.algos.base import OfflineRLModule

    maze_dm.setup("fit")
    batch = fixed_batch(maze_dm)
    results = []
    for freeze in (True, False):
        if not freeze:
            monkeypatch.setattr(OfflineRLModule, "frozen", staticmethod(lambda *modules: contextlib.nullcontext()))
        torch.manual_seed(0)
        maze_dm.sampler_state.consumed = 0  # both fits draw the same first batch
        model = attached(cls(maze_dm.obs_dim, maze_dm.action_dim), maze_dm, tmp_path)
        for update in range(4):
            torch.manual_seed(update)
            model._updates = update
            model.update(batch)
        assert all(p.requires_grad for p in model.critic.parameters())
        results.append({name: p.detach().clone() for name, p in model.named_parameters()})
    for name, value in results[0].items():
        assert torch.equal(value, results[1][name]), name


def test_frozen_parameters_pass_gradients_to_their_inputs_only():
    from lit_offrl.algos.base import OfflineRLModule

    net = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    with OfflineRLModule.frozen(net):
        net(x).sum().backward()
    assert net.weight.grad is None and net.bias.grad is None
    torch.testing.assert_close(x.grad, net.weight.detach().expand(4, 3))
    assert net.weight.requires_grad and net.bias.requires_grad
