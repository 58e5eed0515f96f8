"""The generative-model family: the conditional VAE, BCQ, PLAS and LAPO (losses, targets, acting, CLI, resume)."""

from __future__ import annotations

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Normal, kl_divergence

from conftest import FAST, MAZE_ID, REPO, attached, run_cli
from lit_offrl.algos import BCQ, LAPO, PLAS
from lit_offrl.algos.lapo import advantage_weights
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.nets.vae import ConditionalVAE, LatentActor, mean_vae_loss
from test_training import assert_same_training_state, last_checkpoint, load


# ----------------------------------------------------------------------------------------- conditional VAE
def test_vae_elbo_terms_match_a_direct_computation():
    torch.manual_seed(0)
    vae = ConditionalVAE(cond_dim=3, x_dim=2, latent_dim=4, hidden_dims=(5,))
    cond, x = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    torch.manual_seed(1)
    recon, kl = vae.elbo_terms(cond, x)
    # By hand: encoder Linear-ReLU-Linear -> (mu, log sigma clamped to [-4, 15]), z = mu + sigma eps with the
    # same eps, decoder Linear-ReLU-Linear-tanh, squared error summed over x, KL of diagonal Gaussians.
    enc0, enc1 = vae.encoder[0], vae.encoder[2]
    hidden = torch.relu(torch.cat([cond, x], -1) @ enc0.weight.T + enc0.bias)
    out = hidden @ enc1.weight.T + enc1.bias
    mu, sigma = out[:, :4], out[:, 4:].clamp(-4.0, 15.0).exp()
    torch.manual_seed(1)
    z = mu + sigma * torch.randn(6, 4)
    dec0, dec1 = vae.decoder[0], vae.decoder[2]
    x_hat = torch.tanh(torch.relu(torch.cat([cond, z], -1) @ dec0.weight.T + dec0.bias) @ dec1.weight.T + dec1.bias)
    torch.testing.assert_close(recon, ((x_hat - x) ** 2).sum(-1))
    torch.testing.assert_close(kl, kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1))
    mean, std = vae.encode(cond, x)
    torch.testing.assert_close(mean, mu), torch.testing.assert_close(std, sigma)
    # BCQ / PLAS's loss: per-element means, F.mse_loss(recon, x) + 0.5 * KL.mean()
    torch.manual_seed(1)
    loss, _, _ = mean_vae_loss(vae, cond, x, kl_weight=0.5)
    expected = ((x_hat - x) ** 2).mean() + 0.5 * kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(loss, expected)
    # The prior sample is N(0, I) clipped to +-0.5 (BCQ); a sequence is the same module with x = H actions.
    torch.manual_seed(2)
    sampled = vae.decode(cond)
    torch.manual_seed(2)
    torch.testing.assert_close(sampled, vae.decode(cond, torch.randn(6, 4).clamp(-0.5, 0.5)))


def test_vae_reconstruction_error_drops_with_training():
    """A few hundred Adam steps on a tiny dataset of 3-step action sequences (x = 3 actions, cond = state)."""
    torch.manual_seed(0)
    cond = torch.randn(64, 3)
    x = torch.tanh(torch.cat([cond @ torch.randn(3, 2) * k for k in (1.0, 0.5, -1.0)], -1))  # (64, 6)
    vae = ConditionalVAE(cond_dim=3, x_dim=6, latent_dim=4, hidden_dims=(64, 64))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)

    def error() -> float:
        with torch.no_grad():
            return (vae.decode(cond, vae.encode(cond, x)[0]) - x).pow(2).sum(-1).mean().item()

    before = error()
    for _ in range(300):
        recon, kl = vae.elbo_terms(cond, x)
        loss = (recon + 0.1 * kl).mean()
        opt.zero_grad(), loss.backward(), opt.step()
    assert error() < 0.1 * before, (before, error())


def test_latent_actor_stays_in_the_decoder_support_for_any_input():
    actor = LatentActor(obs_dim=4, latent_dim=3, hidden_dims=(8,), max_latent=2.0)
    obs = torch.cat([torch.randn(8, 4), torch.full((2, 4), 1e6), torch.full((2, 4), -1e6)])
    z = actor(obs)
    assert z.abs().max().item() <= 2.0 and torch.isfinite(z).all()


# ------------------------------------------------------------------------------------- algorithms, direct
def small_batch(dm, size=16):
    """A fixed batch of `size` rows spread over the dataset (every 97th): smaller than conftest's `fixed_batch`, for
    the VAE-based models' direct checks."""
    return dm.transitions.batch(torch.arange(size) * 97)


def q_member(critic, i, obs, action):
    """Q_i(s, a) of one ensemble member, computed on its own."""
    return critic.net(torch.cat([obs, action], -1))[i].squeeze(-1)


def test_bcq_soft_clipped_double_q_target_matches_a_direct_computation(maze_dm, tmp_path):
    model = attached(BCQ(maze_dm.obs_dim, maze_dm.action_dim, hidden_dims=(32, 32), vae_hidden_dims=(32, 32),
                         num_samples=5), maze_dm, tmp_path)
    batch = small_batch(maze_dm)
    torch.manual_seed(3)
    target = model.critic_target(batch)
    torch.manual_seed(3)
    z = torch.randn(16 * 5, model.latent_dim).clamp(-0.5, 0.5).view(16, 5, -1)  # 5 prior draws per next state
    with torch.no_grad():
        per_sample = []
        for j in range(5):
            proposal = model.vae.decoder(torch.cat([batch.next_obs, z[:, j]], -1))
            action = (proposal + 0.05 * model.target_actor.net(torch.cat([batch.next_obs, proposal], -1))).clamp(-1, 1)
            q1, q2 = (q_member(model.target_critic, i, batch.next_obs, action) for i in (0, 1))
            per_sample.append(0.75 * torch.minimum(q1, q2) + 0.25 * torch.maximum(q1, q2))
        expected = batch.reward + 0.99 * (1 - batch.terminal) * torch.stack(per_sample, -1).max(-1).values
    torch.testing.assert_close(target, expected)


def test_bcq_acts_with_the_argmax_q_candidate(maze_dm, tmp_path):
    model = attached(BCQ(maze_dm.obs_dim, maze_dm.action_dim, hidden_dims=(32, 32), vae_hidden_dims=(32, 32),
                         num_act_samples=7), maze_dm, tmp_path)
    obs = small_batch(maze_dm, 6).obs
    torch.manual_seed(4)
    with torch.no_grad():
        chosen = model.policy_action(obs)
    torch.manual_seed(4)
    z = torch.randn(6 * 7, model.latent_dim).clamp(-0.5, 0.5).view(6, 7, -1)
    with torch.no_grad():
        candidates = torch.stack([model.actor(obs, model.vae.decode(obs, z[:, j])) for j in range(7)], 1)  # (6, 7, A)
        q1 = torch.stack([q_member(model.critic, 0, obs, candidates[:, j]) for j in range(7)], 1)
    best = q1.argmax(1)
    assert len(set(best.tolist())) > 1, "the test needs states whose best candidate differs"
    torch.testing.assert_close(chosen, candidates[torch.arange(6), best])


def small_plas(dm, **kwargs):
    return PLAS(dm.obs_dim, dm.action_dim, vae_hidden_dims=(32, 32), actor_hidden_dims=(32, 32),
                critic_hidden_dims=(32, 32), **kwargs)


def test_plas_actions_stay_in_the_decoder_support(maze_dm, tmp_path):
    model = attached(small_plas(maze_dm, vae_pretrain_steps=0, perturbation=True), maze_dm, tmp_path)
    obs = torch.cat([small_batch(maze_dm, 8).obs, torch.full((2, maze_dm.obs_dim), 1e8),
                     torch.full((2, maze_dm.obs_dim), -1e8)])
    with torch.no_grad():
        z = model.actor(obs)
        action = model.policy_action(obs)
        target = model.critic_target(small_batch(maze_dm))
    assert z.abs().max() <= 2.0 and torch.isfinite(z).all()
    assert action.abs().max() <= 1.0 and torch.isfinite(action).all()
    # PLAS+P: a = clip(D(s, z) + 0.05 tanh(g(s, D(s, z))), -1, 1), so within 0.05 of the decoded action
    assert (action - model.vae.decode(obs, z)).abs().max() <= 0.05 + 1e-6
    batch = small_batch(maze_dm)
    with torch.no_grad():
        mid = model.vae.decode(batch.next_obs, model.target_actor(batch.next_obs))
        next_action = model.target_perturb(batch.next_obs, mid)
        q1, q2 = (q_member(model.target_critic, i, batch.next_obs, next_action) for i in (0, 1))
        soft_q = 0.75 * torch.minimum(q1, q2) + 0.25 * torch.maximum(q1, q2)
        expected = batch.reward + 0.99 * (1 - batch.terminal) * soft_q
    torch.testing.assert_close(target, expected)


def test_plas_decoder_is_trained_then_frozen(maze_dm, tmp_path):
    model = small_plas(maze_dm, vae_pretrain_steps=3)
    initial = {k: v.clone() for k, v in model.vae.state_dict().items()}
    model = attached(model, maze_dm, tmp_path)  # update 0: VAE phase
    batch = small_batch(maze_dm)
    metrics = [model.update(batch) for _ in range(2)]  # updates 1, 2: still the VAE phase
    model._updates = 3
    assert all(set(m) == {"vae_loss", "recon_loss", "kl_loss"} for m in metrics)
    trained = {k: v.clone() for k, v in model.vae.state_dict().items()}
    assert any(not torch.equal(initial[k], trained[k]) for k in initial), "the VAE phase must train the VAE"
    actor_before = [p.clone() for p in model.actor.parameters()]
    for _ in range(3):
        assert "actor_loss" in model.update(batch)
    assert all(torch.equal(trained[k], v) for k, v in model.vae.state_dict().items()), "decoder changed"
    assert all(not torch.equal(a, b) for a, b in zip(actor_before, model.actor.parameters()))


def test_plas_actor_gradient_flows_through_the_decoder(maze_dm, tmp_path):
    model = attached(small_plas(maze_dm, vae_pretrain_steps=0), maze_dm, tmp_path)
    model.freeze_vae()
    batch = small_batch(maze_dm)
    params = list(model.actor.parameters())
    grads = torch.autograd.grad(model.actor_loss(batch), params)
    # Chain rule by hand: dL/dz through the decoder at z = pi(s), then dz/dtheta.
    z = model.actor(batch.obs)
    z_leaf = z.detach().requires_grad_(True)
    loss = -q_member(model.critic, 0, batch.obs, model.vae.decode(batch.obs, z_leaf)).mean()
    dl_dz, = torch.autograd.grad(loss, z_leaf)
    assert dl_dz.abs().sum() > 0
    expected = torch.autograd.grad(z, params, grad_outputs=dl_dz)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    assert all(not p.requires_grad for p in model.vae.parameters())


def test_lapo_weightings_match_hand_computed_values():
    adv = torch.tensor([2.0, -1.0, 0.0, 0.5, 10.0])
    torch.testing.assert_close(advantage_weights(adv, "expectile", expectile=0.9),
                               torch.tensor([0.9, 0.1, 0.1, 0.9, 0.9]))
    e = torch.e
    torch.testing.assert_close(advantage_weights(adv, "exponential", temperature=2.0, max_weight=10.0),
                               torch.tensor([e, e ** -0.5, 1.0, e ** 0.25, 10.0]))


def test_lapo_value_and_q_targets_match_a_direct_computation(maze_root, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=0, reward_scale=2.0)  # rewards 0 or 2
    model = attached(LAPO(dm.obs_dim, dm.action_dim, hidden_dims=(32, 32), lmbda=0.7), dm, tmp_path)
    # r / max r as the published code: max r = 2, and V targets clipped to [min r, max r] / (1 - gamma) = [0, 100]
    assert model.reward_multiplier.item() == pytest.approx(0.5)
    assert (model.value_min.item(), model.value_max.item()) == pytest.approx((0.0, 100.0))
    batch = dm.transitions.batch(torch.cat([torch.nonzero(dm.transitions.reward > 0)[:4, 0], torch.arange(12) * 97]))
    torch.manual_seed(5)
    y_q, y_v = model.critic_targets(batch)
    torch.manual_seed(5)
    with torch.no_grad():
        r = batch.reward / 2.0
        assert r.max() == 1.0
        torch.testing.assert_close(y_q, r + 0.99 * (1 - batch.terminal) * model.value(batch.next_obs))
        eps = (torch.randn(16, model.latent_dim) * 0.1).clamp(-0.2, 0.2)
        action = model.target_vae.decoder(torch.cat([batch.obs, model.target_actor(batch.obs) + eps], -1))  # linear
        q1, q2 = (q_member(model.target_critic, i, batch.obs, action) for i in (0, 1))
        expected_v = (0.7 * torch.minimum(q1, q2) + 0.3 * torch.maximum(q1, q2)).clamp(0.0, 100.0)
        torch.testing.assert_close(y_v, expected_v)
        next_action = model.target_vae.decoder(torch.cat([batch.next_obs, model.target_actor(batch.next_obs)], -1))
        q1, q2 = (q_member(model.target_critic, i, batch.next_obs, next_action) for i in (0, 1))
        next_q = 0.7 * torch.minimum(q1, q2) + 0.3 * torch.maximum(q1, q2)
        torch.testing.assert_close(model.advantage(batch),
                                   r + 0.99 * (1 - batch.terminal) * next_q - model.value(batch.obs))


# ------------------------------------------------------------------------------------------ CLI, resume
# PLAS's VAE phase is shortened to 90 updates, so the run crosses into the policy phase after the resume point:
# the resumed process restores a VAE-phase checkpoint and switches phases itself. PLAS runs as PLAS+P here, so
# the perturbation layer and its target go through the same checks.
SMALL = "[64, 64]"  # small networks keep the CLI runs quick; the published sizes are the defaults
CLI_CASES = {
    "BCQ": (["--model.vae_hidden_dims", SMALL, "--model.hidden_dims", SMALL], 3 * 120),  # VAE, critic, actor
    "PLAS": (["--model.vae_pretrain_steps", "90", "--model.perturbation", "true", "--model.vae_hidden_dims", SMALL,
              "--model.actor_hidden_dims", SMALL, "--model.critic_hidden_dims", SMALL], 90 + 2 * 30),
    "LAPO": (["--model.hidden_dims", SMALL], 3 * 120),                                  # critics (Q, V), VAE, actor
}


@pytest.mark.parametrize("algo", sorted(CLI_CASES))
def test_cli_fit_and_resume_equivalence(algo, maze_root, tmp_path):
    """fit runs 120 updates (optimizer steps as expected), evaluates at 60 and 120 and logs to TensorBoard; a run
    stopped at 60 and resumed with `--ckpt_path last` ends with exactly the same parameters and targets.
    (Evaluation draws from the same default generator as the updates, which reseed it before each update.)"""
    extra, optimizer_steps = CLI_CASES[algo]
    common = ["fit", "--model", algo, *FAST, *extra, "--checkpoint.every_n_updates", "30"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight_dir.mkdir(), resumed_dir.mkdir()
    fit = run_cli([*common, "--trainer.max_steps", "120", "--trainer.val_check_interval", "60"], maze_root,
                  straight_dir)
    assert fit.returncode == 0, fit.stderr[-3000:]
    straight = load(last_checkpoint(straight_dir))
    assert int(straight["state_dict"]["num_updates"]) == 120
    assert straight["global_step"] == optimizer_steps
    events = list(straight_dir.glob("lightning_logs/*/events.out.tfevents.*"))
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [59, 119]
    tags = scalars.Tags()["scalars"]
    assert {"train/actor_loss", "train/critic_loss", "train/recon_loss"} <= set(tags)

    no_eval = [*common, "--data.eval_episodes", "0"]
    first = run_cli([*no_eval, "--trainer.max_steps", "60"], maze_root, resumed_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*no_eval, "--trainer.max_steps", "120", "--ckpt_path", "last"], maze_root, resumed_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = load(last_checkpoint(resumed_dir))
    assert int(resumed["state_dict"]["num_updates"]) == 120 and resumed["global_step"] == optimizer_steps
    assert_same_training_state(straight, resumed)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for algo in ("bcq", "plas", "lapo")
                                          for p in (REPO / "configs" / algo).glob("*.yaml")))
def test_config_arguments_are_valid(config, maze_root, monkeypatch):
    """Each shipped config's model and data arguments build the model and data module (with the test maze);
    tests/test_configs.py trains every config through the CLI."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    spec = yaml.safe_load((REPO / config).read_text())
    dm = OfflineDataModule(**{**spec["data"], "dataset_id": MAZE_ID, "eval_episodes": 0})
    cls = {"BCQ": BCQ, "PLAS": PLAS, "LAPO": LAPO}[spec["model"]["class_path"]]
    model = cls(dm.obs_dim, dm.action_dim, **spec["model"]["init_args"])
    assert all(getattr(model, k) == v for k, v in spec["model"]["init_args"].items() if not k.endswith("hidden_dims"))
