"""Networks as the reference code builds them (issue 16): ReBRAC's Dense -> ReLU -> LayerNorm critics and EDAC-style
initialization (tinkoff-ai/ReBRAC src/networks.py, CORL rebrac.py), CQL's learnable log-std scale and offset
(CORL cql.py TanhGaussianPolicy), with SAC's and the other algorithms' networks left as they were; CQL and ReBRAC
still export. The domain configs' options: CQL's clipped penalty difference, plain (not importance-sampled)
log-sum-exp and separate critic sizes (CORL cql.py), IQL's policy dropout (CORL iql.py, official IQL), and CQL
checkpoints from before the log-std scalars."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lit_offrl import export
from lit_offrl.algos import CQL, IQL, SAC, TD3, ReBRAC
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic, TanhGaussianActor
from lit_offrl.nets.mlp import VectorizedLayerNorm, VectorizedLinear, without_dropout

OBS, ACT, HIDDEN = 5, 2, (32, 32, 32)


def batch(size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(size, OBS, generator=generator), torch.rand(size, ACT, generator=generator) * 2 - 1,
                 torch.randn(size, generator=generator), torch.randn(size, OBS, generator=generator),
                 torch.zeros(size), torch.rand(size, ACT, generator=generator) * 2 - 1)


def linears(net):
    return [m for m in net if isinstance(m, (nn.Linear, VectorizedLinear))]


# ------------------------------------------------------------------------------------------------- ReBRAC
def reference_critic(critic, obs, action):
    """The reference's Critic written out per member: h = LayerNorm(relu(h W + b)) per hidden layer, q = h W + b."""
    layers = list(critic.net)
    out = []
    for i in range(critic.num_critics):
        h = torch.cat([obs, action], -1)
        for linear, norm in zip(layers[0:-1:3], layers[2:-1:3]):
            h = torch.relu(h @ linear.weight[i] + linear.bias[i])
            h = nn.functional.layer_norm(h, h.shape[-1:]) * norm.weight[i] + norm.bias[i]
        out.append((h @ layers[-1].weight[i] + layers[-1].bias[i]).squeeze(-1))
    return torch.stack(out)


def test_rebrac_critics_are_dense_relu_layernorm_and_the_actor_has_no_layernorm():
    torch.manual_seed(0)
    model = ReBRAC(OBS, ACT, hidden_dims=HIDDEN)
    kinds = [type(m) for m in model.critic.net]
    assert kinds == [VectorizedLinear, nn.ReLU, VectorizedLayerNorm] * 3 + [VectorizedLinear]
    data = batch()
    with torch.no_grad():
        torch.testing.assert_close(model.critic(data.obs, data.action), reference_critic(model.critic, data.obs,
                                                                                           data.action))
    assert [type(m) for m in model.actor.net] == [nn.Linear, nn.ReLU] * 3 + [nn.Linear, nn.Tanh]


def test_rebrac_initialization_is_the_references():
    """Hidden kernels U(+-1/sqrt(fan_in)), hidden biases 0.1, output layers U(+-3e-3) (critic), U(+-1e-3) (actor);
    the targets start equal to the networks."""
    torch.manual_seed(0)
    model = ReBRAC(OBS, ACT, hidden_dims=HIDDEN)
    for net, bound in ((model.critic.net, 3e-3), (model.actor.net, 1e-3)):
        *hidden, output = linears(net)
        for layer in hidden:
            assert torch.all(layer.bias == 0.1)
            fan_in = layer.in_features
            assert layer.weight.abs().max() <= 1 / math.sqrt(fan_in)
            assert layer.weight.abs().max() > 0.9 / math.sqrt(fan_in), "drawn over the whole range"
        for tensor in (output.weight, output.bias):
            assert tensor.abs().max() <= bound
            assert tensor.std() > 0.3 * bound, "drawn uniformly over +-bound, not a constant"
    for online, target in ((model.actor, model.target_actor), (model.critic, model.target_critic)):
        for (name, a), b in zip(online.state_dict().items(), target.state_dict().values()):
            assert torch.equal(a, b), name
    # the critics are independent draws
    output = linears(model.critic.net)[-1]
    assert not torch.equal(output.weight[0], output.weight[1])


def test_rebrac_options_off_give_the_former_networks_and_actor_layer_norm_follows_the_order():
    """norm_after_activation and edac_init off: the same parameters as a plain LayerNorm ensemble and TD3's actor
    from the same seed (what ReBRAC built before); actor_layer_norm adds the reference's actor_ln."""
    torch.manual_seed(3)
    old = ReBRAC(OBS, ACT, hidden_dims=HIDDEN, norm_after_activation=False, edac_init=False)
    torch.manual_seed(3)
    actor = DeterministicActor(OBS, ACT, HIDDEN)
    critic = EnsembleCritic(OBS, ACT, 2, HIDDEN, layer_norm=True)
    assert [type(m) for m in old.critic.net][:3] == [VectorizedLinear, VectorizedLayerNorm, nn.ReLU]
    for mine, theirs in ((old.actor, actor), (old.critic, critic)):
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))

    model = ReBRAC(OBS, ACT, hidden_dims=HIDDEN, actor_layer_norm=True)
    assert [type(m) for m in model.actor.net] == [nn.Linear, nn.ReLU, nn.LayerNorm] * 3 + [nn.Linear, nn.Tanh]
    assert all(torch.all(layer.bias == 0.1) for layer in linears(model.actor.net)[:-1])
    assert all(torch.equal(a, b) for a, b in zip(model.actor.state_dict().values(),
                                                 model.target_actor.state_dict().values()))


def test_other_algorithms_networks_are_unchanged():
    """TD3's networks keep PyTorch's default init (biases drawn, LayerNorm nowhere); EnsembleCritic's default order
    is still Linear -> LayerNorm -> ReLU."""
    torch.manual_seed(0)
    model = TD3(OBS, ACT)
    for net in (model.actor.net, model.critic.net):
        assert not any(isinstance(m, (nn.LayerNorm, VectorizedLayerNorm)) for m in net)
        assert all(layer.bias.std() > 0 for layer in linears(net))
    assert linears(model.critic.net)[-1].weight.abs().max() > 3e-2  # U(+-1/16), not ReBRAC's +-3e-3
    assert [type(m) for m in EnsembleCritic(OBS, ACT, layer_norm=True).net][:3] == [VectorizedLinear,
                                                                                    VectorizedLayerNorm, nn.ReLU]


# --------------------------------------------------------------------------------------------------- CQL
def test_cql_policy_starts_near_sigma_exp_minus_one_with_the_clamp_after_the_affine_map():
    torch.manual_seed(0)
    model = CQL(OBS, ACT, hidden_dims=HIDDEN)
    actor = model.actor
    obs = batch().obs
    with torch.no_grad():
        raw = actor.net(obs).chunk(2, -1)[1]
        assert raw.abs().max() < 0.05, "CORL's near-zero output layer: raw log std near 0"
        sigma = actor.distribution(obs).stddev
        torch.testing.assert_close(sigma, torch.full_like(sigma, math.exp(-1)), atol=0.02, rtol=0)
        torch.testing.assert_close(sigma, (1.0 * raw - 1.0).exp())
        # the clamp to [-20, 2] applies to m raw + b (CORL clamps inside ReparameterizedTanhGaussian)
        actor.log_std_offset.fill_(5.0)
        torch.testing.assert_close(actor.distribution(obs).stddev, torch.full_like(sigma, math.exp(2.0)))
        actor.log_std_offset.fill_(-1.0)

    sac = SAC(OBS, ACT, hidden_dims=HIDDEN)
    with torch.no_grad():
        raw = sac.actor.net(obs).chunk(2, -1)[1]
        torch.testing.assert_close(sac.actor.distribution(obs).stddev, raw.clamp(-20, 2).exp())


def test_cql_log_std_scalars_are_trained_by_the_actor_optimizer():
    torch.manual_seed(0)
    model = CQL(OBS, ACT, hidden_dims=HIDDEN, actor_lr=1e-2)
    scalars = [model.actor.log_std_multiplier, model.actor.log_std_offset]
    actor_opt = model.configure_optimizers()[0]
    in_actor_opt = {id(p) for group in actor_opt.param_groups for p in group["params"]}
    assert all(id(p) in in_actor_opt for p in scalars)
    before = [p.detach().clone() for p in scalars]
    torch.manual_seed(1)
    loss, _, _ = model.actor_loss(batch())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in scalars)
    actor_opt.step()
    assert all(not torch.equal(p, b) for p, b in zip(scalars, before))


def test_sac_actor_has_no_log_std_scalars_and_cql_can_turn_them_off():
    torch.manual_seed(0)
    sac = SAC(OBS, ACT)
    torch.manual_seed(0)
    plain = TanhGaussianActor(OBS, ACT)
    assert sac.actor.log_std_multiplier is None and sac.actor.log_std_offset is None
    assert sac.actor.state_dict().keys() == plain.state_dict().keys() == {f"net.{i}.{p}" for i in (0, 2, 4)
                                                                           for p in ("weight", "bias")}
    assert sum(p.numel() for p in sac.actor.parameters()) == sum(p.numel() for p in plain.net.parameters())
    off = CQL(OBS, ACT, hidden_dims=HIDDEN, log_std_affine=False)
    assert off.actor.log_std_multiplier is None
    assert "actor.log_std_offset" in CQL(OBS, ACT, hidden_dims=HIDDEN).state_dict()


def penalty_terms(model, data, seed):
    """Per critic and state, written out: the 3n sampled actions' Q values, their log-densities and Q(s, a), drawn
    as CQL draws them (uniform, pi(.|s), pi(.|s')) after seeding the default generator with `seed`."""
    n, size, action_dim = model.cql_n_actions, *data.action.shape
    torch.manual_seed(seed)
    uniform = torch.rand(size, n, action_dim) * 2 - 1
    current, current_log_prob = model.actor(data.obs.repeat_interleave(n, 0))
    following, following_log_prob = model.actor(data.next_obs.repeat_interleave(n, 0))
    terms = []
    for s in range(size):
        actions = torch.cat([uniform[s], current[s * n:(s + 1) * n], following[s * n:(s + 1) * n]])
        log_density = torch.cat([torch.full((n,), action_dim * math.log(0.5)), current_log_prob[s * n:(s + 1) * n],
                                 following_log_prob[s * n:(s + 1) * n]])
        q = model.critic(data.obs[s].expand(3 * n, -1), actions)                     # (E, 3n)
        terms.append((q, log_density, model.critic(data.obs[s:s + 1], data.action[s:s + 1])[:, 0]))
    return terms


def hand_differences(model, data, seed, importance_sample):
    """(E, B): T log sum exp(./T) - Q(s, a), summed one exponential at a time; with importance sampling over
    Q(s, a_j) - log p_j, without it over the plain Q(s, a_j) and Q(s, a) (CORL's cql_importance_sample False)."""
    temp, out = model.cql_temp, []
    for q, log_density, q_data in penalty_terms(model, data, seed):
        per_critic = []
        for i in range(q.shape[0]):
            values = (q[i] - log_density).tolist() if importance_sample else [*q[i].tolist(), q_data[i].item()]
            per_critic.append(temp * math.log(sum(math.exp(v / temp) for v in values)) - q_data[i].item())
        out.append(per_critic)
    return torch.tensor(out).T


def small_cql(**kwargs):
    torch.manual_seed(0)
    # default init: CORL's near-zero policy output makes pi(.|s) and pi(.|s') alike
    return CQL(OBS, ACT, cql_n_actions=3, hidden_dims=(16, 16), orthogonal_init=False, cql_temp=0.5, **kwargs)


def test_cql_without_importance_sampling_is_a_plain_logsumexp_over_the_sampled_and_dataset_actions():
    data = batch(size=6)
    for importance_sample in (True, False):
        model = small_cql(cql_importance_sample=importance_sample)
        with torch.no_grad():
            q_data = model.critic(data.obs, data.action)
            torch.manual_seed(4)
            gap = model.conservative_gap(data, q_data)
            expected = hand_differences(model, data, 4, importance_sample)
        torch.testing.assert_close(gap, expected.mean(1), rtol=1e-4, atol=1e-4)
        if importance_sample:
            with_densities = gap
    assert (gap - with_densities).abs().min() > 1e-2, "the log-densities are no longer subtracted"
    # the gradient reaches Q(s, a) through the log-sum-exp too: d Delta / d Q(s, a) = softmax weight - 1, not -1
    model = small_cql(cql_importance_sample=False)
    q_data = model.critic(data.obs, data.action).detach().requires_grad_(True)
    torch.manual_seed(4)
    model.conservative_gap(data, q_data).sum().backward()
    assert torch.all(q_data.grad > -1.0 / data.obs.shape[0]) and torch.all(q_data.grad < 0)


def test_cql_clip_bounds_clamp_each_states_difference_before_the_mean():
    data = batch(size=8)
    model = small_cql()
    with torch.no_grad():
        differences = hand_differences(model, data, 4, importance_sample=True)
        low, high = differences.quantile(0.25).item(), differences.quantile(0.75).item()
        q_data = model.critic(data.obs, data.action)
        torch.manual_seed(4)
        unclipped = model.conservative_gap(data, q_data)
        clipped_model = small_cql(cql_clip_diff_min=low, cql_clip_diff_max=high)
        torch.manual_seed(4)
        clipped = clipped_model.conservative_gap(data, q_data)
        below_model = small_cql(cql_clip_diff_min=low)
        torch.manual_seed(4)
        below = below_model.conservative_gap(data, q_data)
    torch.testing.assert_close(unclipped, differences.mean(1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(clipped, differences.clamp(low, high).mean(1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(below, differences.clamp(min=low).mean(1), rtol=1e-4, atol=1e-4)
    assert torch.all(clipped != unclipped) and torch.all(below > unclipped)
    # the clipped gap is the one the penalty (and the Lagrange dual) sees
    torch.manual_seed(4)
    _, metrics = clipped_model.critic_loss(data)
    torch.manual_seed(4)
    clipped_model.critic_target(data)
    torch.testing.assert_close(metrics["cql_gap"], clipped_model.conservative_gap(data, q_data).mean())


def test_cql_critic_hidden_dims_sizes_the_critics_apart_from_the_actor():
    torch.manual_seed(0)
    model = CQL(OBS, ACT, hidden_dims=HIDDEN, critic_hidden_dims=(16,) * 5)
    for critic in (model.critic, model.target_critic):
        shapes = [tuple(layer.weight.shape) for layer in linears(critic.net)]
        assert shapes == [(2, OBS + ACT, 16)] + [(2, 16, 16)] * 4 + [(2, 16, 1)]
    assert [layer.weight.shape[0] for layer in linears(model.actor.net)] == [32, 32, 32, 2 * ACT]
    *hidden, output = linears(model.critic.net)  # CORL's orthogonal init on every critic layer
    assert all(torch.all(layer.bias == 0) for layer in hidden + [output]) and output.weight.abs().max() < 0.05
    for layer in hidden:
        weight = layer.weight[0]
        # stored (in, out) = W^T of an orthogonal W (out >= in here): W^T W = gain^2 I
        torch.testing.assert_close(weight @ weight.T, 2.0 * torch.eye(weight.shape[0]), atol=1e-4, rtol=0)
    # None: the critics take hidden_dims, the same draws as naming hidden_dims twice
    torch.manual_seed(0)
    default = CQL(OBS, ACT, hidden_dims=HIDDEN)
    torch.manual_seed(0)
    named = CQL(OBS, ACT, hidden_dims=HIDDEN, critic_hidden_dims=HIDDEN)
    assert default.state_dict().keys() == named.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), named.state_dict().values()))


def test_cql_options_at_their_defaults_are_the_former_cql():
    """Defaults: no clip (infinite bounds), importance sampling, critics of hidden_dims: the same parameters, draws
    and gap as with those values spelled out, and the critic layers CQL always had."""
    default = small_cql()
    spelled = small_cql(cql_clip_diff_min=-math.inf, cql_clip_diff_max=math.inf, cql_importance_sample=True,
                        critic_hidden_dims=(16, 16))
    assert [tuple(layer.weight.shape) for layer in linears(default.critic.net)] == [(2, OBS + ACT, 16), (2, 16, 16),
                                                                                   (2, 16, 1)]
    assert default.state_dict().keys() == spelled.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), spelled.state_dict().values()))
    data = batch()
    with torch.no_grad():
        q_data = default.critic(data.obs, data.action)
        gaps = []
        for model in (default, spelled):
            torch.manual_seed(2)
            gaps.append(model.conservative_gap(data, q_data))
    assert torch.equal(*gaps)


# ------------------------------------------------------------------------------------------------- IQL
def test_iql_actor_dropout_acts_in_training_and_never_when_acting():
    obs, action = batch().obs, batch().action.clamp(-0.9, 0.9)
    torch.manual_seed(0)
    plain = IQL(OBS, ACT, hidden_dims=(32, 32))
    assert not any(isinstance(m, nn.Dropout) for m in plain.actor.net)
    for policy in ("gaussian", "deterministic"):
        torch.manual_seed(0)
        model = IQL(OBS, ACT, hidden_dims=(32, 32), policy=policy, actor_dropout=0.5)
        kinds = [type(m) for m in model.actor.net]
        assert kinds == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear, nn.Tanh]
        assert all(m.p == 0.5 for m in model.actor.net if isinstance(m, nn.Dropout))
        if policy == "gaussian":  # the same weights, drawn in the same order, as without dropout
            assert all(torch.equal(a, b) for a, b in zip(model.actor.parameters(), plain.actor.parameters()))
        loss = ((lambda: model.actor.log_prob(obs, action)) if policy == "gaussian"
                else (lambda: model.actor(obs)))
        with torch.no_grad():
            model.train()
            first, second = loss(), loss()
            assert not torch.equal(first, second), "dropout in train mode"
            torch.manual_seed(1)
            acted_in_train_mode = model.act(obs.numpy())
            rng_after = torch.rand(1)
            model.eval()
            assert torch.equal(loss(), loss()), "no dropout in eval mode"
            torch.manual_seed(1)
            assert torch.equal(model.act(obs.numpy()), acted_in_train_mode)
            assert torch.equal(torch.rand(1), rng_after), "acting deterministically draws nothing"
            mean = without_dropout(model.actor.net, obs)
            torch.testing.assert_close(model.act(obs.numpy()), mean.clamp(-1, 1))
    with np.testing.assert_raises(ValueError):
        IQL(OBS, ACT, actor_dropout=1.0)


# ----------------------------------------------------------------------------------- CQL old checkpoints
def old_cql_checkpoint():
    """A checkpoint of a CQL from before the log-std scalars: its policy had log sigma = raw (as log_std_affine
    false still builds it), and its actor optimizer had no m, b; after one Adam step."""
    torch.manual_seed(0)
    old = CQL(OBS, ACT, hidden_dims=HIDDEN, log_std_affine=False)
    optimizers = old.configure_optimizers()
    torch.manual_seed(1)
    old.actor_loss(batch())[0].backward()
    optimizers[0].step()
    state = old.state_dict()
    hparams = {k: v for k, v in old.hparams.items() if k != "log_std_affine"}
    return old, {"state_dict": state, "hyper_parameters": hparams,
                 "optimizer_states": [optimizer.state_dict() for optimizer in optimizers]}


def test_cql_checkpoint_without_the_log_std_scalars_loads_with_m_1_b_0(capsys):
    old, checkpoint = old_cql_checkpoint()
    assert "actor.log_std_multiplier" not in checkpoint["state_dict"]
    first_moment = checkpoint["optimizer_states"][0]["state"][0]["exp_avg"].clone()  # of actor.net.0.weight
    model = CQL(**checkpoint["hyper_parameters"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])  # strict
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit_offrl: note:")]
    assert len(notes) == 1 and "log_std_multiplier" in notes[0]
    assert model.actor.log_std_multiplier.item() == 1.0 and model.actor.log_std_offset.item() == 0.0
    obs = batch().obs
    with torch.no_grad():
        for a, b in ((model.actor.distribution(obs).stddev, old.actor.distribution(obs).stddev),
                     (model.act(obs.numpy()), old.act(obs.numpy()))):
            assert torch.equal(a, b)
        torch.manual_seed(3)
        new_sample = model.actor(obs)
        torch.manual_seed(3)
        old_sample = old.actor(obs)
    assert all(torch.equal(a, b) for a, b in zip(new_sample, old_sample))
    # the actor optimizer's state fits: m and b come first in actor.parameters() and start without Adam state
    actor_optimizer = model.configure_optimizers()[0]
    actor_optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    params = list(model.actor.parameters())
    assert params[0] is model.actor.log_std_multiplier and params[2] is model.actor.net[0].weight
    assert not actor_optimizer.state[params[0]] and not actor_optimizer.state[params[1]]
    assert torch.equal(actor_optimizer.state[params[2]]["exp_avg"], first_moment)
    # a checkpoint that has them is left alone, without a note
    current = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_load_checkpoint(current)
    assert "lit_offrl: note:" not in capsys.readouterr().err


def test_rebrac_checkpoint_from_before_the_layer_order_loads_with_its_own_order(capsys):
    """A checkpoint written when ReBRAC's critics ran Linear -> LayerNorm -> ReLU (no norm_after_activation in its
    hyperparameters) loads strictly into a default ReBRAC, which then computes that checkpoint's Q values."""
    torch.manual_seed(0)
    old = ReBRAC(5, 2, norm_after_activation=False, edac_init=False, hidden_dims=(16, 16))
    hyper_parameters = {k: v for k, v in old.hparams.items() if k not in ("norm_after_activation", "edac_init")}
    checkpoint = {"state_dict": old.state_dict(), "hyper_parameters": hyper_parameters}
    model = ReBRAC(**hyper_parameters)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])  # strict
    obs, action = torch.randn(7, 5), torch.rand(7, 2) * 2 - 1
    assert torch.equal(model.critic(obs, action), old.critic(obs, action))
    assert torch.equal(model.target_critic(obs, action), old.target_critic(obs, action))
    assert model.hparams["norm_after_activation"] is False
    assert "LayerNorm before the ReLU" in capsys.readouterr().err
    current = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    ReBRAC(**dict(model.hparams)).on_load_checkpoint(current)  # records its order: no note
    assert "lit_offrl: note:" not in capsys.readouterr().err


def test_old_cql_checkpoint_loads_for_export_and_exports_its_policy(tmp_path, capsys):
    old, checkpoint = old_cql_checkpoint()
    checkpoint["lit_offrl"] = {"model_class": "lit_offrl.algos.cql.CQL"}
    path = tmp_path / "old.ckpt"
    torch.save(checkpoint, path)
    model, _ = export.load_checkpoint_model(path)
    assert model.actor.log_std_offset.item() == 0.0
    assert "lit_offrl: note:" in capsys.readouterr().err
    export.export_policy(model, tmp_path / "old.pt", "torchscript")
    obs = np.random.default_rng(1).normal(size=(5, OBS)).astype(np.float32)
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "old.pt"))(torch.from_numpy(obs)), old.act(obs),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ export
def test_cql_rebrac_and_iql_with_dropout_export_and_match_act(tmp_path):
    obs = np.random.default_rng(0).normal(size=(7, OBS)).astype(np.float32)
    for name, model in (("cql", CQL(OBS, ACT, hidden_dims=HIDDEN)), ("rebrac", ReBRAC(OBS, ACT, hidden_dims=HIDDEN)),
                        ("iql_dropout", IQL(OBS, ACT, actor_dropout=0.5))):
        model.eval()
        path = tmp_path / f"{name}.pt"
        export.export_policy(model, path, "torchscript")
        exported = torch.jit.load(str(path))(torch.from_numpy(obs))
        torch.testing.assert_close(exported, model.act(obs), atol=1e-5, rtol=0)
