"""OfflineRLModule: the manual-optimization scaffolding every lit_offrl algorithm subclasses.

A subclass writes its networks in `__init__`, `configure_optimizers`, and one `update(batch)` that computes
its losses, calls `self.optimize(loss, optimizer)` for each, and returns a dict of scalar tensors to log.
Everything else lives here:

* the gradient-update counter `num_updates` (a buffer, so it is in every checkpoint). Lightning's
  `trainer.global_step` counts every `optimizer.step()` in manual mode (TD3+BC steps two optimizers per
  update), so `--trainer.max_steps N` is taken over here to mean N updates;
* `optimize`: zero_grad / manual_backward / optional gradient-norm clipping (after AMP unscaling) / step;
* `soft_update`: Polyak averaging of target networks with one fused `_foreach_lerp_`;
* randomness: before every update the global torch RNG is seeded from (seed, rank, update), so the noise an
  algorithm draws is a pure function of where it is in the run; a resumed run continues exactly;
* observation / action normalization for acting (statistics from the data module, saved in checkpoints);
* validation: vectorized rollouts in the evaluation env, aggregated over DDP ranks with torchmetrics;
* logging every `trainer.log_every_n_steps` updates, with updates/s; a non-finite loss stops the run with
  a message naming the update and the loss, before any checkpoint of the broken weights is written.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from typing import Any

import lightning as L
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from lit_offrl.algos import compiled
from lit_offrl.data.buffer import Batch, batch_seed
from lit_offrl.errors import NonFiniteLossError, UserError
from lit_offrl.evaluation.rollout import make_vector_env, rollout_episodes


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (AVX512_BF16 or AMX, what oneDNN's bf16 kernels need);
    without it bf16 autocast on the CPU is emulated, an order of magnitude slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: read the CPU's flags
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return True  # nothing to go by: say nothing
        return "avx512_bf16" in flags or "amx_bf16" in flags


class OfflineRLModule(L.LightningModule):
    """Base LightningModule for offline RL algorithms (manual optimization).

    Args:
        obs_dim: flat observation size (linked from the data module by the CLI).
        action_dim: action size (linked from the data module by the CLI).
    """

    def __init__(self, obs_dim: int, action_dim: int):
        super().__init__()
        self.automatic_optimization = False
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("action_low", -torch.ones(action_dim))
        self.register_buffer("action_high", torch.ones(action_dim))
        self.register_buffer("first_nonfinite_update", torch.full((), -1, dtype=torch.long), persistent=False)
        self.max_updates = -1
        self.seed = 0
        self._updates = 0  # Python mirror of num_updates: control flow without a device sync
        self._clip: float | None = None
        self._last_metrics: dict[str, Tensor] = {}
        self._timer: tuple[float, int] | None = None
        self._eval_envs = None
        self._compiled: compiled.CompiledUpdate | None = None  # set by lit_offrl.callbacks.CompileUpdate
        self.val_return = MeanMetric()
        self.val_normalized_score = MeanMetric()
        self.val_episode_length = MeanMetric()
        self.val_success_rate = MeanMetric()
        self.val_tasks_completed = MeanMetric()

    # ------------------------------------------------------------------------------- what subclasses write
    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient update of every network; returns scalar tensors to log (no `.item()`)."""
        raise NotImplementedError

    def policy_action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Action in [-1, 1] for normalized observations; by default the policy `self.actor`'s `act`."""
        return self.actor.act(obs, deterministic)

    # ---------------------------------------------------------------------------------- shared helpers
    def optimize(self, loss: Tensor, optimizer, clip: float | None = None) -> None:
        """zero_grad, backward (precision- and strategy-aware), clip the gradient norm to `clip`, step. Inside a
        compiled update (`CompileUpdate`): the same step traced (`lit_offrl.algos.compiled`)."""
        if self._compiled is not None:
            traced = self._compiled.traced(optimizer)
            wanted = [i for i, p in enumerate(traced.params) if p.requires_grad]
            found = torch.autograd.grad(loss, [traced.params[i] for i in wanted], allow_unused=True)
            grads: list[Tensor | None] = [None] * len(traced.params)
            for i, grad in zip(wanted, found):
                grads[i] = grad
            traced.step_(grads if clip is None else compiled.clip_grad_norm_(grads, clip))
            return
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip = clip
        optimizer.step()
        self._clip = None

    def on_before_optimizer_step(self, optimizer) -> None:
        # Runs inside optimizer.step(), after a 16-mixed GradScaler has unscaled the gradients.
        if self._clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self._clip, gradient_clip_algorithm="norm")

    def adam(self, params, lr: float, **kwargs) -> torch.optim.Adam:
        """Adam for `params`, with the fused kernel (one kernel for all parameters) where this torch has one for
        the module's device: on 2 CPU cores it makes a critic update 15-20% faster than the default foreach Adam."""
        try:
            from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
            fused = self.device.type in _get_fused_kernels_supported_devices()
        except ImportError:  # torch < 2.4: no fused CPU kernel
            fused = self.device.type == "cuda"
        return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)

    @staticmethod
    @contextlib.contextmanager
    def frozen(*modules: nn.Module):
        """Inside the block the parameters of `modules` record no gradient, while gradients still flow through
        them to their inputs: an actor loss through the critic then skips the critic's weight gradients (a third
        of its backward), and under DDP they are not all-reduced. Their values, and the results, are unchanged.
        While a compiled update is installed (`CompileUpdate`) it does nothing: the traced `optimize` takes each
        loss's gradients for its optimizer's parameters only, and a requires_grad toggle would break the graph."""
        if compiled.installed():
            yield
            return
        params = [p for module in modules for p in module.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def optimizers(self, use_pl_optimizer: bool = True):
        if self._compiled is not None:  # inside a compiled update: the torch.optim objects (see optimize)
            return self._compiled.optimizers
        return super().optimizers(use_pl_optimizer)

    def lr_schedulers(self):
        if self._compiled is not None:
            return self._compiled.schedulers
        return super().lr_schedulers()

    @staticmethod
    @torch.no_grad()
    def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
        """target <- (1 - tau) target + tau source, for every parameter."""
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)

    @staticmethod
    def make_target(network: nn.Module) -> nn.Module:
        """A frozen deep copy of `network` (no gradients, so DDP and optimizers ignore it)."""
        target = copy.deepcopy(network)
        target.requires_grad_(False)
        return target

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> Tensor:
        """Actions in the environment's bounds for a batch of raw flat observations."""
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.obs_mean.device)
        action = self.policy_action((obs - self.obs_mean) / self.obs_std, deterministic).float()
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    # ----------------------------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str) -> None:
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "obs_dim"):
            if (datamodule.obs_dim, datamodule.action_dim) != (self.obs_dim, self.action_dim):
                raise UserError(
                    f"the model was configured for obs_dim={self.obs_dim}, action_dim={self.action_dim} but dataset "
                    f"'{datamodule.dataset_id}' has obs_dim={datamodule.obs_dim}, action_dim={datamodule.action_dim}. "
                    f"Leave model.obs_dim/action_dim unset (the CLI links them from the data) or pick the matching dataset.")
            self.seed = int(datamodule.seed)
            with torch.no_grad():
                self.action_low.copy_(datamodule.action_low)
                self.action_high.copy_(datamodule.action_high)
                if getattr(datamodule, "transitions", None) is not None:
                    self.obs_mean.copy_(datamodule.obs_mean)
                    self.obs_std.copy_(datamodule.obs_std)
        if stage == "fit":
            # Take --trainer.max_steps over as a count of updates (see module docstring). Kept on the trainer
            # so a second fit() with the same Trainer reads the user's value, not the -1 written here.
            if not hasattr(trainer, "_lit_offrl_max_updates"):
                trainer._lit_offrl_max_updates = trainer.max_steps
            self.max_updates = trainer._lit_offrl_max_updates
            trainer.fit_loop.epoch_loop.max_steps = -1
            self._count_steps_in_updates(trainer, int(getattr(datamodule, "updates_per_step", 1)))
            if "bf16" in str(trainer.precision) and trainer.strategy.root_device.type == "cpu" and not cpu_has_bf16():
                rank_zero_warn(f"lit_offrl: --trainer.precision {trainer.precision} on a CPU without bfloat16 "
                               f"arithmetic (no AVX512_BF16 or AMX): it is emulated, about 15x slower than 32-true "
                               f"(measured on an AVX2 EPYC: TD3+BC 6 against 102 updates/s); use --trainer.precision "
                               f"32-true here.")
            if isinstance(trainer.strategy, DDPStrategy):
                # Each loss touches only some parameters (the critic loss never reaches the actor), so DDP must
                # look for unused parameters at every manual_backward; an explicit user choice is kept.
                trainer.strategy._ddp_kwargs.setdefault("find_unused_parameters", True)

    @staticmethod
    def _count_steps_in_updates(trainer, per_step: int) -> None:
        """With K updates per training step, an integer `val_check_interval` (updates) becomes Lightning's count of
        training steps; max_steps and the interval must be multiples of K (a boundary check, before any update)."""
        # The user's value, kept across fit() calls with one Trainer unless the user set another since.
        if trainer.val_check_interval != getattr(trainer, "_lit_offrl_val_check_written", object()):
            trainer._lit_offrl_val_check_interval = trainer.val_check_interval
        interval = trainer._lit_offrl_val_check_interval
        trainer._lit_offrl_val_check_written = interval
        if per_step == 1:
            trainer.val_check_interval = interval
            return
        check_update_counts([("trainer.max_steps", trainer._lit_offrl_max_updates),
                             ("trainer.val_check_interval", interval if isinstance(interval, int) else None)], per_step)
        if isinstance(interval, int):
            trainer.val_check_interval = trainer._lit_offrl_val_check_written = interval // per_step

    def on_train_start(self) -> None:
        self._updates = int(self.num_updates)
        self._timer = (time.perf_counter(), self._updates)
        if 0 <= self.max_updates <= self._updates:
            self.trainer.should_stop = True

    def _seed_update(self) -> None:
        """Seed the default generator of this module's device from (seed, rank, update). Only that generator:
        `torch.manual_seed` would also queue lazy CUDA seeding with a stack trace, ~1 ms per call on a CPU."""
        seed = batch_seed(self.seed, self.global_rank, self._updates + (1 << 40))
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        elif self.device.type != "cpu":
            torch.manual_seed(seed)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        # A list: the data module's `updates_per_step` minibatches, one update each (the same updates as one per step).
        for minibatch in batch if isinstance(batch, list) else (batch,):
            self._seed_update()
            metrics = self._tracked_update(minibatch) if self._compiled is None else self._compiled(minibatch)
            self._updates += 1
            if self._updates % self.trainer.log_every_n_steps == 0:
                self.check_finite()
                self._log_train(metrics)
        if 0 < self.max_updates <= self._updates:
            self.trainer.should_stop = True

    def _tracked_update(self, batch: Batch) -> dict[str, Tensor]:
        """`update`, the non-finite check's bookkeeping and the count of updates (one function: what CompileUpdate
        compiles, so the count is part of its graph, not another operation beside it)."""
        metrics = self.update(batch)
        self._track_nonfinite(metrics)
        self.num_updates.add_(1)
        return metrics

    def _track_nonfinite(self, metrics: dict[str, Tensor]) -> None:
        self._last_metrics = metrics
        if not metrics:
            return
        # The sum is non-finite iff a value is; once set, the first non-finite update is kept. No host sync.
        total = torch.stack([value.detach().reshape(()) for value in metrics.values()]).float().sum()
        first = self.first_nonfinite_update
        # Called before num_updates counts this update (inside the compiled update): this update is num_updates + 1.
        first.copy_(torch.where(total.isfinite() | (first >= 0), first, self.num_updates + 1))

    def check_finite(self) -> None:
        """Raise `NonFiniteLossError` if a logged loss has been NaN/inf or a parameter is NaN/inf.

        One device sync; under DDP the verdict is reduced over ranks so every rank stops together (a rank that
        went on alone would wait forever in the next collective). Called at log steps, before every checkpoint
        and before validation, never in between.
        """
        params_finite = torch.stack([p.detach().isfinite().all() for p in self.parameters()]).all()
        bad = ((self.first_nonfinite_update >= 0) | ~params_finite).float()
        if self.trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) == 0:
            return
        first = int(self.first_nonfinite_update)
        losses = [name for name, value in self._last_metrics.items() if not torch.isfinite(value).all()]
        where = (f"a loss became NaN or infinite at update {first} ({', '.join(losses) or 'see the logs'} non-finite now)"
                 if first >= 0 else f"a parameter became NaN or infinite by update {self._updates} (the losses were "
                 f"finite: a NaN/inf gradient, e.g. an overflow or sqrt(0))")
        raise NonFiniteLossError(
            f"training stopped: {where}. No checkpoint was written after it; the last good checkpoint is kept. "
            f"Lower the learning rates, clip gradients or check the data.")

    def _log_train(self, metrics: dict[str, Tensor]) -> None:
        # Straight to the loggers, not through `self.log`: Lightning re-emits every key ever logged on step, so a
        # finished phase's loss (BRAC's behavior policy, PLAS's VAE) would be written again at every log step.
        values = dict(zip((f"train/{name}" for name in metrics),
                          torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist())
                      ) if metrics else {}
        values["train/updates"] = float(self._updates)
        now = time.perf_counter()
        if self._timer is not None and self._updates > self._timer[1]:
            rate = (self._updates - self._timer[1]) / max(now - self._timer[0], 1e-9)
            values["perf/updates_per_sec"] = rate
            self.log("perf/updates_per_sec", rate, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        self._timer = (now, self._updates)
        for logger in self.loggers:  # Lightning's step convention: the number of batches before this one
            logger.log_metrics(values, step=self._updates - 1)

    # ---------------------------------------------------------------------------------------- validation
    def on_validation_start(self) -> None:
        if self.trainer.training or self.trainer.state.fn == "fit":
            self.check_finite()

    def validation_step(self, seeds: Tensor, batch_idx: int) -> None:
        self.evaluate_episodes(seeds, "val/", self.val_return, self.val_normalized_score, self.val_episode_length,
                               prog_bar=True, successes=self.val_success_rate, tasks=self.val_tasks_completed)

    def evaluate_episodes(self, seeds: Tensor, prefix: str, returns: MeanMetric, scores: MeanMetric,
                          lengths: MeanMetric | None = None, prog_bar: bool = False,
                          successes: MeanMetric | None = None, tasks: MeanMetric | None = None) -> None:
        """Roll `act` out for one episode per seed in the evaluation envs, feed the metrics and log them as
        `<prefix>return`, `<prefix>episode_length` (with `lengths`), `<prefix>normalized_score` (when the
        dataset has reference scores), and the domain's own measures where its env reports them:
        `<prefix>success_rate` (with `successes`: the fraction of episodes in which any step's `info["success"]`
        was true) and `<prefix>tasks_completed` (with `tasks`: FrankaKitchen's sub-tasks done by the episode's
        end). Which of those are logged is decided from the env's infos at the data module's env check, the
        same on every rank; metrics are logged on every rank, with or without seeds, so DDP reduces them over
        all of them."""
        datamodule = self.trainer.datamodule
        info_keys = self._eval_info_keys(datamodule)
        successes = successes if "success" in info_keys else None
        tasks = tasks if "episode_task_completions" in info_keys else None
        seeds = seeds.tolist()
        if seeds:
            if self._eval_envs is None or self._eval_envs.num_envs != len(seeds):
                if self._eval_envs is not None:
                    self._eval_envs.close()
                self._eval_envs = make_vector_env(datamodule.make_eval_env, len(seeds))
            outcomes = rollout_episodes(lambda obs: self.act(obs).cpu().numpy(), self._eval_envs, seeds,
                                        datamodule.observation_space)
            returns_t = torch.as_tensor(outcomes.returns, dtype=torch.float32, device=self.device)
            returns.update(returns_t)
            if lengths is not None:
                lengths.update(torch.as_tensor(outcomes.lengths, dtype=torch.float32, device=self.device))
            tasks_t = (torch.as_tensor(outcomes.tasks_completed, dtype=torch.float32, device=self.device)
                       if outcomes.tasks_completed is not None else None)
            score = (datamodule.normalized_score(returns_t, tasks_t) if getattr(datamodule, "scores_by_tasks", False)
                     else datamodule.normalized_score(returns_t))
            if score is not None:
                scores.update(score)
            for metric, values in ((successes, outcomes.success), (tasks, outcomes.tasks_completed)):
                if metric is not None:  # an env that reported the key at the check but not here: none succeeded
                    values = np.zeros(len(seeds)) if values is None else values
                    metric.update(torch.as_tensor(values, dtype=torch.float32, device=self.device))
        self.log(f"{prefix}return", returns, on_step=False, on_epoch=True)
        if lengths is not None:
            self.log(f"{prefix}episode_length", lengths, on_step=False, on_epoch=True)
        if getattr(datamodule, "has_normalized_score", datamodule.ref_max_score is not None
                   and datamodule.ref_min_score is not None):
            self.log(f"{prefix}normalized_score", scores, on_step=False, on_epoch=True, prog_bar=prog_bar)
        if successes is not None:
            self.log(f"{prefix}success_rate", successes, on_step=False, on_epoch=True)
        if tasks is not None:
            self.log(f"{prefix}tasks_completed", tasks, on_step=False, on_epoch=True)

    @staticmethod
    def _eval_info_keys(datamodule) -> frozenset[str]:
        """The info keys the data module's env check saw (probing the env now if it has not run)."""
        keys = getattr(datamodule, "eval_info_keys", None)
        if keys is None and hasattr(datamodule, "check_eval_env"):
            datamodule._eval_env_checked = False
            datamodule.check_eval_env()
            keys = getattr(datamodule, "eval_info_keys", None)
        return keys or frozenset()

    def on_fit_end(self) -> None:
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        summary = ", ".join(f"{k} {v:.2f}" for k, v in sorted(metrics.items()))
        rank_zero_info(f"lit_offrl: {self._updates} updates done. Last evaluation: {summary or 'none'}. "
                       f"Run folder: {self.trainer.log_dir}")

    def teardown(self, stage: str) -> None:
        if self._eval_envs is not None:
            self._eval_envs.close()
            self._eval_envs = None

    # ---------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What `--ckpt_path last` and a requeued SLURM job match a run by (lit_offrl.cli), beside the data
        # module's hyperparameters: the model's class and the SLURM job that wrote the checkpoint.
        checkpoint["lit_offrl"] = {"model_class": f"{type(self).__module__}.{type(self).__qualname__}",
                                   "updates": self._updates, "slurm_job_id": slurm_job_id(),
                                   "updates_per_step": self._updates_per_step()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {})
        for name in ("obs_dim", "action_dim"):
            if name in saved and int(saved[name]) != getattr(self, name):
                raise UserError(
                    f"the checkpoint was trained with {name}={saved[name]} but this model/dataset has "
                    f"{name}={getattr(self, name)}: evaluate it on the dataset it was trained on.")
        self._rebase_loop_on_updates_per_step(checkpoint)

    def _updates_per_step(self) -> int:
        trainer = self._trainer
        return int(getattr(getattr(trainer, "datamodule", None), "updates_per_step", 1)) if trainer is not None else 1

    def _rebase_loop_on_updates_per_step(self, checkpoint: dict[str, Any]) -> None:
        """Resuming with another `data.updates_per_step` K: Lightning's restored loop counts training steps of the
        old K, and decides when to validate from them, so they are recounted in steps of the new K (its logger step,
        `_batches_that_stepped`, already counts updates). The resumed update count must be a multiple of K."""
        per_step, loops = self._updates_per_step(), checkpoint.get("loops")
        saved = int(checkpoint.get("lit_offrl", {}).get("updates_per_step", 1))
        if per_step == saved or not loops or "fit_loop" not in loops:
            return
        updates = int(checkpoint.get("lit_offrl", {}).get("updates",
                                                          checkpoint.get("state_dict", {}).get("num_updates", 0)))
        if updates % per_step:
            raise UserError(f"the checkpoint is at update {updates}, not a multiple of data.updates_per_step "
                            f"{per_step}: resume with an updates_per_step that divides {updates} (it was {saved}).")
        progress = loops["fit_loop"].get("epoch_loop.batch_progress")
        if progress is None:
            return
        steps = updates // per_step
        finished = progress["total"]["completed"] < progress["total"]["ready"]  # saved at the end of a step
        for counts in (progress["total"], progress["current"]):
            counts.update(ready=steps, started=steps, processed=steps, completed=steps - 1 if finished else steps)


def check_update_counts(counts: list[tuple[str, Any]], per_step: int, prefix: str = "") -> None:
    """Raise `UserError` for the first (name, value) whose positive integer value is not a multiple of
    `data.updates_per_step` `per_step` (a training step runs that many updates; `prefix`: "--" for the CLI's
    flag names). Values that are None or not integers are not update counts and are skipped."""
    for name, value in counts:
        if isinstance(value, int) and value > 0 and value % per_step:
            raise UserError(f"{prefix}{name} {value} is not a multiple of {prefix}data.updates_per_step {per_step}: "
                            f"both count updates, and a training step runs {per_step}. Pick a multiple (e.g. "
                            f"{-(-value // per_step) * per_step}) or another updates_per_step.")


def slurm_job_id() -> str | None:
    """The SLURM job running this process (`JOBID` or `ARRAYJOBID_TASKID`), or None outside SLURM. A requeued job
    keeps its id, so it identifies the run a requeued job must resume."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")
