"""Networks as the reference code builds them (issue 16): ReBRAC's Dense -> ReLU -> LayerNorm critics and EDAC-style
initialization (tinkoff-ai/ReBRAC src/networks.py, CORL rebrac.py), CQL's learnable log-std scale and offset
(CORL cql.py TanhGaussianPolicy), with SAC's and the other algorithms' networks left as they were; CQL and ReBRAC
still export."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lit_offrl import export
from lit_offrl.algos import CQL, SAC, TD3, ReBRAC
from lit_offrl.data.buffer import Batch
from lit_offrl.nets import DeterministicActor, EnsembleCritic, TanhGaussianActor
from lit_offrl.nets.mlp import VectorizedLayerNorm, VectorizedLinear

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


# ------------------------------------------------------------------------------------------------ export
def test_cql_and_rebrac_export_and_match_act(tmp_path):
    obs = np.random.default_rng(0).normal(size=(7, OBS)).astype(np.float32)
    for name, model in (("cql", CQL(OBS, ACT, hidden_dims=HIDDEN)), ("rebrac", ReBRAC(OBS, ACT, hidden_dims=HIDDEN))):
        model.eval()
        path = tmp_path / f"{name}.pt"
        export.export_policy(model, path, "torchscript")
        exported = torch.jit.load(str(path))(torch.from_numpy(obs))
        torch.testing.assert_close(exported, model.act(obs), atol=1e-5, rtol=0)
