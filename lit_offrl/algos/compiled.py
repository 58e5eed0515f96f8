"""The whole-update compiled path (`lit_offrl.callbacks.CompileUpdate`): one algorithm update (targets, losses,
gradients, optimizer steps, Polyak averaging) traced by `torch.compile` into as few graphs as it allows.

An eager update pays, for every one of its hundreds of small tensor operations, Python and dispatcher overhead
(with 2x32 networks that is nearly all its time, on a CPU as on a GPU), plus Lightning's `manual_backward` and
`LightningOptimizer.step` wrappers. Traced, the same update is a few graphs of generated kernels. Three things
make an update traceable without changing what the algorithm's `update` says:

* `OfflineRLModule.optimize(loss, optimizer)` takes the gradients with `torch.autograd.grad` (Dynamo traces it
  with `torch._dynamo.config.trace_autograd_ops`) instead of `backward` + `.grad`, and steps the optimizer with
  `TracedAdam.step_` below: the same arithmetic as `torch.optim.Adam` on the optimizer's own state tensors
  (`exp_avg`, `exp_avg_sq`, `step`), so checkpoints, resume and a later eager run see an ordinary Adam;
* `self.optimizers()` returns the raw `torch.optim` objects and `self.frozen(...)` does nothing (the gradients
  are taken with respect to the optimizer's parameters only, so nothing else is computed anyway);
* a learning-rate scheduler's `step()` is counted where the update calls it and run eagerly right after the
  update (`DeferredSchedulers`: no graph break), and each group's learning rate reaches the graph as a tensor
  refreshed before every update (no recompilation as it decays).

Randomness: the update's draws (TD3's target noise, SAC's samples) come from the same global generator,
seeded before every update as in eager mode; with `exact_random=True` (the default) Inductor calls the eager
random kernels (`torch._inductor.config.fallback_random`), so a compiled run draws the numbers an eager one
draws and matches it to float tolerance (`tests/test_compiled_update.py`); False lets Inductor generate its own
(faster, a different stream).

Supported: `torch.optim.Adam` (L2 `weight_decay` included; not amsgrad, maximize or differentiable), gradient
clipping by norm, precision 32 and bf16-mixed, one device (no DDP: the gradients would not be all-reduced).
Anything else is refused before the first update with one line saying what to change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_offrl.errors import UserError

__all__ = ["CompiledUpdate", "TracedAdam", "clip_grad_norm_", "check_optimizer", "init_adam_state", "DeferredSchedulers"]


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise `UserError` unless the compiled path can step `optimizer` exactly as it steps itself."""
    if type(optimizer) is not torch.optim.Adam:
        raise UserError(f"CompileUpdate steps torch.optim.Adam only, this module has a {type(optimizer).__name__}: "
                        f"train it without CompileUpdate.")
    for group in optimizer.param_groups:
        for option in ("amsgrad", "maximize", "differentiable"):
            if group.get(option):
                raise UserError(f"CompileUpdate does not implement Adam's {option}=True: train this module without "
                                f"CompileUpdate.")


@torch.no_grad()
def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """Create the state torch.optim.Adam creates at its first step (zeros, step 0, as the fused kernel keeps it)
    for every parameter that has none, so the traced step updates tensors that already exist."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if len(state) == 0:
                fused_or_capturable = bool(group.get("fused") or group.get("capturable"))
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if fused_or_capturable else "cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class TracedAdam:
    """One torch.optim.Adam (checked with `check_optimizer` by `CompiledUpdate`) seen as plain lists (parameters, their state tensors, their group's hyperparameters)
    for the traced step; made at the start of each fit's first update, after a checkpoint has been restored
    (loading an optimizer state dict replaces its state tensors)."""

    def __init__(self, optimizer: torch.optim.Adam):
        init_adam_state(optimizer)
        self.optimizer = optimizer
        self.params: list[Tensor] = []
        self.slots: list[tuple[Tensor, Tensor, Tensor, Tensor, float, float, float, float]] = []
        self.lrs = [torch.zeros((), dtype=torch.float64) for _ in optimizer.param_groups]
        self._written: list[float | None] = [None] * len(self.lrs)  # the rate each tensor holds
        for index, group in enumerate(optimizer.param_groups):
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = optimizer.state[p]
                self.params.append(p)
                self.slots.append((state["step"], state["exp_avg"], state["exp_avg_sq"], self.lrs[index],
                                   float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"])))

    def refresh_learning_rates(self) -> None:
        """Copy each group's learning rate (a scheduler may have changed it) into the tensor the graph reads, where
        it changed (a tensor write costs microseconds: most of a 2x32 update's budget beside the graph)."""
        for index, group in enumerate(self.optimizer.param_groups):
            lr = float(group["lr"])
            if lr != self._written[index]:
                self.lrs[index].fill_(lr)
                self._written[index] = lr

    @torch.no_grad()
    def step_(self, grads: list[Tensor | None]) -> None:
        """torch.optim.Adam's update (as its single-tensor and fused kernels compute it), in place, with grads[i]
        the gradient of params[i]; a parameter without a gradient is skipped, as Adam skips one whose `.grad` is
        None."""
        for p, grad, (step_t, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay) in zip(
                self.params, grads, self.slots):
            if grad is None:
                continue
            step_t.add_(1)
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.to(torch.float64)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step).sqrt()
            step_size = (lr / bias_correction1).to(p.dtype)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.to(p.dtype)).add_(eps)
            p.sub_(step_size * exp_avg / denom)


def clip_grad_norm_(grads: list[Tensor | None], max_norm: float) -> list[Tensor | None]:
    """`grads` scaled so their joint 2-norm is at most `max_norm` (`torch.nn.utils.clip_grad_norm_`'s rule, which
    Lightning's gradient clipping by norm applies: coefficient max_norm / (norm + 1e-6), capped at 1)."""
    present = [g for g in grads if g is not None]
    if not present:
        return grads
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2.0) for g in present]), 2.0)
    coefficient = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return [None if g is None else g * coefficient.to(g.dtype) for g in grads]


class DeferredSchedulers:
    """What `self.lr_schedulers()` returns inside a compiled update: the real scheduler(s), stepped eagerly right
    after the traced update returns (`flush`), as many times as the update called `step()`.

    Stepping them where the update calls `step()` would break the graph there (a scheduler is Python arithmetic on
    the optimizer's param groups): two graphs and a Python round trip per update. Deferred, the update is one
    graph and every later optimizer step still sees the new learning rate (each group's rate reaches the graph as
    a tensor refreshed before every update), so the arithmetic is eager's exactly, with one condition: the update
    steps no optimizer after calling `step()` (in eager mode that step would already use the new rate). That is
    checked while the update is traced (`check_no_pending`), and refused with one line."""

    def __init__(self, schedulers):
        self._schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        self.pending = 0  # step() calls by the running update; a Python int, so Dynamo replays it after the graph

    def step(self) -> None:
        self.pending += 1

    def check_no_pending(self) -> None:
        if self.pending:
            raise UserError("under CompileUpdate a learning-rate scheduler steps after the update, but this update "
                            "steps an optimizer after calling lr_schedulers().step(): call it after the update's "
                            "last optimizer step, or train without CompileUpdate.")

    def flush(self) -> None:
        steps, self.pending = self.pending, 0
        for _ in range(steps):
            for scheduler in self._schedulers:
                # The traced Adam step does not go through optimizer.step(), which is what marks an optimizer as
                # stepped for the scheduler's "lr_scheduler.step() before optimizer.step()" check: it has been.
                scheduler.optimizer._opt_called = True
                scheduler.step()


_INSTALLED = [0]  # compiled updates installed now (`_Settings.apply` .. `restore`): `OfflineRLModule.frozen` reads it


def installed() -> bool:
    """Whether a compiled update is installed (between the start and the end of a CompileUpdate training)."""
    return _INSTALLED[0] > 0


class _Settings:
    """Dynamo's and Inductor's settings for a traced update, set while the compiled update is installed (from the
    start of training to its end): trace `torch.autograd.grad`; take integer attributes of the module (the update
    counter `_updates` an update branches on) as values, not constants, so a new count does not recompile (a branch
    on it is one guard: TD3's actor step every other update gives two graphs); and, with `exact_random`, the eager
    random kernels. Set once, not around every call: entering a config patch costs more than a small update."""

    def __init__(self, exact_random: bool):
        import torch._dynamo
        import torch._inductor.config

        self.values = [(torch._dynamo.config, "trace_autograd_ops", True),
                       (torch._dynamo.config, "allow_unspec_int_on_nn_module", True),
                       (torch._inductor.config, "fallback_random", exact_random)]
        self.saved: list | None = None

    def apply(self) -> None:
        if self.saved is None:
            self.saved = [getattr(config, name) for config, name, _ in self.values]
            for config, name, value in self.values:
                setattr(config, name, value)
            _INSTALLED[0] += 1

    def restore(self) -> None:
        if self.saved is not None:
            for (config, name, _), value in zip(self.values, self.saved):
                setattr(config, name, value)
            self.saved = None
            _INSTALLED[0] -= 1


class CompiledUpdate:
    """`module.update` compiled, with the state the traced `optimize` needs; installed as `module._compiled` by
    `lit_offrl.callbacks.CompileUpdate` at the start of training, called by `training_step` in place of `update`."""

    def __init__(self, module, mode: str | None = None, fullgraph: bool = False, dynamic: bool | None = None,
                 exact_random: bool = True, backend: str = "inductor"):
        from lightning.pytorch import LightningModule

        self.optimizers = LightningModule.optimizers(module, use_pl_optimizer=False)
        schedulers = LightningModule.lr_schedulers(module)
        self.schedulers = None if schedulers is None else DeferredSchedulers(schedulers)
        listed = self.optimizers if isinstance(self.optimizers, list) else [self.optimizers]
        for optimizer in listed:
            check_optimizer(optimizer)
        self._listed = listed
        self._traced: list[TracedAdam] | None = None
        self._steps_counted = 0
        self.settings = _Settings(exact_random)
        self.function = torch.compile(module._tracked_update, backend=backend, mode=mode, fullgraph=fullgraph,
                                      dynamic=dynamic)

    def traced(self, optimizer) -> TracedAdam:
        if self.schedulers is not None:
            self.schedulers.check_no_pending()
        for traced in self._traced:
            if traced.optimizer is optimizer:
                return traced
        raise UserError("the update stepped an optimizer that configure_optimizers did not return; CompileUpdate "
                        "steps only the module's own optimizers.")

    def __call__(self, batch):
        if self._traced is None:  # the first update of this fit, after any checkpoint was restored
            self._traced = [TracedAdam(optimizer) for optimizer in self._listed]
            self._steps_counted = self.optimizer_steps()
        for traced in self._traced:
            traced.refresh_learning_rates()
        self.settings.apply()
        metrics = self.function(batch)
        if self.schedulers is not None:
            self.schedulers.flush()
        return metrics

    def optimizer_steps(self) -> int:
        """Optimizer steps taken so far, summed over the optimizers (each one's largest Adam `step`)."""
        counts = [torch.stack([slot[0] for slot in traced.slots]).max() for traced in self._traced if traced.slots]
        return int(torch.stack(counts).sum().item()) if counts else 0

    def count_steps(self, trainer) -> None:
        """Advance Lightning's count of optimizer steps (`trainer.global_step`, which checkpointing reads) by the
        traced steps since the last call, as `LightningOptimizer.step` would have one by one (one host read of
        the step counters per training step)."""
        if self._traced is None:
            return
        now = self.optimizer_steps()
        progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for tracker in (progress.total, progress.current):
            tracker.ready += now - self._steps_counted
            tracker.completed += now - self._steps_counted
        self._steps_counted = now

    def close(self) -> None:
        """Put Dynamo's and Inductor's settings back (the end of training)."""
        self.settings.restore()
