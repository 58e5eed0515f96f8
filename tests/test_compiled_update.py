"""CompileUpdate (`lit_offrl.algos.compiled`): the traced update computes what the eager one computes, on the same
batches and random numbers, resumes exactly, and refuses what it does not implement.

Tolerances: the traced Adam step rounds in another order than torch's fused kernel (one or two float32 ulps per
step) and Inductor's generated kernels sum in another order than ATen's, so parameters agree to 1e-5 after a
few updates (measured: 3e-8 to 5e-7 with 2x256 networks after 6 updates, every algorithm but BCQ's 1.4e-5, LatentEM
7e-8 through all three phases); one compiled run resumed is bit-identical to the uninterrupted compiled run (the
same kernels on the same inputs).

BCQ's 1.4e-5 is Adam, not the trace: 1.4e-5 already after one update, and 3e-6 with the traced path's Python run
without Dynamo. A fifth of its perturbation network's second-layer gradients are below 1e-7, near Adam's eps = 1e-8,
where the first step lr g / (|g| + eps) turns the last bits of g into a visible step; every weight that differs by
more than 1e-7 has |g| < 1.8e-7 (median 2e-8)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from conftest import MAZE_ID
from lit_offrl.algos import CQL, TD3BC
from lit_offrl.algos.compiled import TracedAdam, check_optimizer, clip_grad_norm_
from lit_offrl.callbacks import CompileUpdate, UpdateCheckpoint
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.errors import UserError


def fit(cls, steps, callbacks=(), ckpt=None, per_step=1, **kwargs):
    dm = OfflineDataModule(MAZE_ID, batch_size=16, eval_episodes=0, seed=0, updates_per_step=per_step)
    L.seed_everything(0, verbose=False)
    model = cls(dm.obs_dim, dm.action_dim, hidden_dims=(8, 8), **kwargs)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=list(callbacks), log_every_n_steps=10**6,
                        enable_checkpointing=any(isinstance(c, UpdateCheckpoint) for c in callbacks))
    trainer.fit(model, dm, ckpt_path=ckpt)
    return model


def state(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def assert_close(a, b, atol: float) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    worst = max(((sa[k] - sb[k]).abs().max().item(), k) for k in sa)
    assert worst[0] <= atol, f"{worst[1]} differs by {worst[0]:.3g}"


@pytest.mark.parametrize("cls", [TD3BC, CQL])
def test_traced_update_matches_eager(cls, maze_root, monkeypatch):
    """Traced by Dynamo (backend "eager": the same graph, run without generated code): TD3+BC's actor branch every
    other update (two guarded graphs, no recompilation per update), CQL's sampled actions, learned alpha."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    eager = fit(cls, 6)
    traced = fit(cls, 6, [CompileUpdate(backend="eager")])
    assert int(traced.num_updates) == 6
    assert_close(eager, traced, 1e-5)
    assert traced._compiled is None  # removed at the end of training: validation and later fits run eagerly


def test_scheduler_step_is_deferred_not_a_graph_break(maze_root, monkeypatch):
    """IQL's cosine actor schedule, stepped in the middle of its update, is counted there and run after it: the
    update is one graph, compiled once for all 6 updates, and the weights and the actor's learning rate are eager's.
    An update that steps an optimizer after the scheduler is refused (its rate would differ from eager's)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    from lit_offrl.algos import IQL

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    eager = fit(IQL, 6)
    traced = fit(IQL, 6, [CompileUpdate(backend=counting)])
    assert len(graphs) == 1
    assert_close(eager, traced, 1e-5)
    assert traced.optimizers()[0].param_groups[0]["lr"] == eager.optimizers()[0].param_groups[0]["lr"] < 3e-4

    class SchedulerFirst(IQL):
        def update(self, batch):
            self.lr_schedulers().step()
            return super().update(batch)

    with pytest.raises(UserError, match="steps an optimizer after calling lr_schedulers"):
        fit(SchedulerFirst, 2, [CompileUpdate(backend="eager")])


def test_traced_adam_and_clipping_are_torchs():
    """Five Adam steps (L2 weight decay) from the traced step equal torch.optim.Adam's; the clipping rule equals
    torch.nn.utils.clip_grad_norm_."""
    torch.manual_seed(0)
    a, b = torch.randn(4, 3, requires_grad=True), None
    b = a.detach().clone().requires_grad_(True)
    reference = torch.optim.Adam([a], lr=0.01, weight_decay=0.1)
    traced = TracedAdam(torch.optim.Adam([b], lr=0.01, weight_decay=0.1))
    for _ in range(5):
        grad = torch.randn(4, 3)
        a.grad = grad.clone()
        reference.step()
        traced.refresh_learning_rates()
        traced.step_([grad.clone()])
    assert torch.allclose(a, b, atol=1e-7, rtol=0)
    grads = [torch.randn(5) * 10, None, torch.randn(2, 2)]
    params = [torch.zeros(5, requires_grad=True), torch.zeros(1, requires_grad=True),
              torch.zeros(2, 2, requires_grad=True)]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()
    torch.nn.utils.clip_grad_norm_(params, 1.5)
    clipped = clip_grad_norm_(grads, 1.5)
    assert clipped[1] is None
    for p, g in zip(params, clipped):
        if g is not None:
            assert torch.allclose(p.grad, g, atol=1e-6)


def test_what_it_does_not_implement_is_refused():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(UserError, match="steps torch.optim.Adam only, this module has a SGD"):
        check_optimizer(torch.optim.SGD([w], lr=0.1))
    with pytest.raises(UserError, match="does not implement Adam's amsgrad=True"):
        check_optimizer(torch.optim.Adam([w], amsgrad=True))


class StopAt(L.Callback):
    """Stops the run after `updates` updates (as a kill would, but with UpdateCheckpoint's last.ckpt written)."""

    def __init__(self, updates: int):
        self.updates = updates

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module._updates >= self.updates:
            trainer.should_stop = True


def test_compiled_run_resumes_exactly(maze_root, monkeypatch, tmp_path):
    """IQL (cosine actor schedule over the 8 updates), two updates per training step under CompileUpdate, stopped
    after 4 updates and resumed from its last.ckpt, equals the uninterrupted compiled run bit for bit, and Lightning's
    step count (what checkpointing reads) is eager's (3 optimizer steps per IQL update)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    from lit_offrl.algos import IQL

    whole = fit(IQL, 8, [CompileUpdate(backend="eager")], per_step=2)
    stopped = fit(IQL, 8, [CompileUpdate(backend="eager"), StopAt(4), UpdateCheckpoint(0, dirpath=tmp_path)],
                  per_step=2)
    assert int(stopped.num_updates) == 4 and stopped.trainer.global_step == 12
    resumed = fit(IQL, 8, [CompileUpdate(backend="eager"), UpdateCheckpoint(0, dirpath=tmp_path)], per_step=2,
                  ckpt=tmp_path / "last.ckpt")
    assert int(resumed.num_updates) == 8 and resumed.trainer.global_step == 24
    assert_close(whole, resumed, 0.0)
