"""Callbacks that count gradient updates (`OfflineRLModule.num_updates`) instead of optimizer steps."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torchmetrics import Metric

from lit_offrl.errors import UserError, one_line


@dataclass
class Stopped:
    """Why and where a run stopped on a signal (set on the `SIGTERMException` the CLI turns into an exit status)."""

    signum: int
    updates: int
    checkpoint: str
    requeued: str | None = None  # the SLURM job id requeued, if any


class UpdateCheckpoint(ModelCheckpoint):
    """Saves every `every_n_updates` gradient updates and at the end of training, keeping `last.ckpt`.

    Lightning's `every_n_train_steps` counts optimizer steps, two or three per update in manual
    optimization; this callback counts the module's updates. Before writing, it checks that no loss has
    gone NaN/inf, so a checkpoint never holds broken weights. By default only `last.ckpt` is kept
    (`save_top_k: -1` keeps one file per save, named by update count). `fit --ckpt_path last` resumes it.
    A run resumed from a folder it was not started in (a moved run, a new Minari root) goes on writing
    `last.ckpt` there: no version counter, so no `last-v1.ckpt` beside a stale `last.ckpt`.
    """

    def __init__(self, every_n_updates: int = 10_000, save_top_k: int = 0, dirpath: str | None = None,
                 filename: str = "updates={updates}", save_last: bool = True):
        super().__init__(dirpath=dirpath, filename=filename, save_top_k=save_top_k, save_last=save_last,
                         every_n_train_steps=0, every_n_epochs=0, save_on_train_epoch_end=False,
                         auto_insert_metric_name=False, enable_version_counter=False)
        self.every_n_updates = every_n_updates
        self._last_update_saved = -1
        self._stop_signal: int | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        per_step = int(getattr(getattr(trainer, "datamodule", None), "updates_per_step", 1))
        if stage == "fit" and self.every_n_updates > 0 and self.every_n_updates % per_step:
            raise UserError(f"the checkpoint interval of {self.every_n_updates} updates is not a multiple of "
                            f"data.updates_per_step {per_step} (a training step runs {per_step} updates): pick a "
                            f"multiple for every_n_updates or another updates_per_step.")

    # ---- preemption: SIGTERM / SIGINT / SLURM's requeue signal stop after the update in progress, with last.ckpt
    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._install_stop_handlers(trainer)

    def _install_stop_handlers(self, trainer) -> None:
        """SIGTERM (schedulers' preemption), SIGINT (Ctrl-C) and, under SLURM with auto_requeue, its requeue
        signal (SIGUSR1) only note the signal; at the end of the update in progress `on_train_batch_end` asks
        Lightning's loop to stop (on every DDP rank at the same update) and `on_exception` writes last.ckpt. A
        handler never saves: it can run in the middle of an update (between the critic's and the actor's step),
        and a checkpoint of that would not resume exactly. A second SIGINT interrupts at once (no checkpoint).
        Installed once Lightning has registered its own handlers, whose teardown restores the handlers from
        before fit; a SIGTERM Lightning caught between its registration and now is taken over."""
        self._stop_signal = None
        connector = trainer._signal_connector
        if connector.received_sigterm:
            self._stop_signal, connector.received_sigterm = int(signal.SIGTERM), False
        if threading.current_thread() is not threading.main_thread():
            return

        def note(signum, frame) -> None:
            if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
                raise KeyboardInterrupt
            if self._stop_signal is None:
                self._stop_signal = int(signum)
                print(f"lit_offrl: {signal.Signals(signum).name} received: stopping after the training step in progress",
                      file=sys.stderr, flush=True)

        signal.signal(signal.SIGTERM, note)
        signal.signal(signal.SIGINT, note)
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            # Replaces Lightning's handler, which saves an hpc_ckpt inside the handler (mid-update) into
            # default_root_dir, shared by every run there.
            signal.signal(environment.requeue_signal or signal.SIGUSR1, note)

    def _stop_requested(self, trainer, pl_module) -> bool:
        """Whether any rank noted a stop signal; under DDP an all-reduce, so all ranks stop at the same update
        (Lightning's own check is per rank: a rank stopping alone would wait forever in the next collective)."""
        signum = self._stop_signal or 0
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([signum], dtype=torch.int64, device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            self._stop_signal = self._stop_signal or signum
        return bool(signum)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return  # a crash or a second Ctrl-C: the state may be mid-update, keep the last good checkpoint
        signum = self._stop_signal or signal.SIGTERM
        if pl_module._updates != self._last_update_saved:
            self._save(trainer, pl_module)
        written = self.last_model_path if self._last_update_saved == pl_module._updates else None
        requeued = None
        environment = trainer._accelerator_connector.cluster_environment
        if (isinstance(environment, SLURMEnvironment) and environment.auto_requeue
                and signum == (environment.requeue_signal or signal.SIGUSR1)):
            requeued = self._requeue(trainer)
        exception.lit_offrl_stop = Stopped(int(signum), pl_module._updates, written, requeued)

    @staticmethod
    def _requeue(trainer) -> str | None:
        """`scontrol requeue` this SLURM job (rank 0), as Lightning's auto_requeue does; the requeued job runs the
        same command and resumes this run (lit_offrl.cli matches it by the job id saved in the checkpoint)."""
        from lit_offrl.algos.base import slurm_job_id

        job = slurm_job_id()
        if not trainer.is_global_zero or job is None:
            return job
        try:
            status = subprocess.call(["scontrol", "requeue", job])
        except FileNotFoundError:
            status = None
        if status != 0:
            print(f"lit_offrl: warning: `scontrol requeue {job}` failed ({'not found' if status is None else status});"
                  f" resume with --ckpt_path last", file=sys.stderr)
            return None
        return job

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        updates = pl_module._updates
        final = 0 < pl_module.max_updates <= updates
        if final or (self.every_n_updates > 0 and updates % self.every_n_updates == 0):
            self._save(trainer, pl_module)
        if self._stop_requested(trainer, pl_module):
            trainer._signal_connector.received_sigterm = True  # the loop raises SIGTERMException after this update

    def on_train_end(self, trainer, pl_module) -> None:
        """A run stopped early (max_time, EarlyStopping, should_stop) still saves its last updates."""
        if pl_module._updates != self._last_update_saved:
            self._save(trainer, pl_module)

    def _save(self, trainer, pl_module) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        pl_module.check_finite()
        candidates = self._monitor_candidates(trainer)
        candidates["updates"] = torch.tensor(pl_module._updates)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._last_update_saved = pl_module._updates

    def on_validation_end(self, trainer, pl_module) -> None:
        """Saving follows updates only (see on_train_batch_end)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Saving follows updates only (see on_train_batch_end)."""


class UpdatesProgressBar(TQDMProgressBar):
    """The training bar of a lit_offrl run, counted in gradient updates (`num_updates`, not batches or optimizer
    steps): updates done / total, updates per second and the time left (averaged over this session, evaluations
    included), and the last evaluation's normalized score (its return where the dataset has no reference scores)
    with the update it was measured at. A module with training phases names the current one through an optional
    `phase` property (a short string, or None), shown after its class name:

        TD3BC:  45%|████▌     | 9000/20000 [01:02<01:16, 144.12 updates/s, score=53.2 at update 5000]
        BRAC phase 1/2 behavior policy (to 300000):   3%|▎         | 9000/320000 [00:40<23:10, 223.70 updates/s]

    A resumed run starts the bar at its checkpoint's update count; rate and time left count this session's updates.
    """

    UNIT = " updates"

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self._evaluated_at: int | None = None

    @property
    def total_train_batches(self) -> int | float:
        max_updates = getattr(self.trainer.lightning_module, "max_updates", -1)
        return max_updates if max_updates > 0 else super().total_train_batches

    @staticmethod
    def description(pl_module) -> str:
        """The bar's label: the module's class name and, for a phased algorithm, its current phase."""
        phase = getattr(pl_module, "phase", None)
        return f"{type(pl_module).__name__} {phase}" if phase else type(pl_module).__name__

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        """The bar's postfix: the last evaluation (normalized score, else return) and the update it ran at, and any
        other metric logged with prog_bar=True. Lightning's v_num and the module's perf/updates_per_sec (the bar
        shows its own rate) are left out."""
        items = {name: value for name, value in super().get_metrics(trainer, pl_module).items()
                 if name not in ("v_num", "perf/updates_per_sec") and not name.startswith("val/")}
        metrics = trainer.callback_metrics
        for key, label in (("val/normalized_score", "score"), ("val/return", "return")):
            if key in metrics and self._evaluated_at is not None:
                items[label] = f"{float(metrics[key]):.1f} at update {self._evaluated_at}"
                break
        return items

    def init_train_tqdm(self) -> Tqdm:
        """The training bar, started at the module's update count (a resumed run's checkpoint: tqdm's rate and time
        left count from there) with the run's length, labelled as `description` says."""
        module = self.trainer.lightning_module
        total = getattr(module, "max_updates", -1)
        return Tqdm(desc=self.description(module), initial=int(getattr(module, "num_updates", 0)),
                    total=total if total > 0 else None, unit=self.UNIT, position=2 * self.process_position,
                    disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0,
                    bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        """Lightning's resets the bar to 0 and labels it 'Epoch N'; a lit_offrl run is one endless epoch counted in
        updates, so the bar made in on_train_start stays."""

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self.train_progress_bar
        updates = int(getattr(pl_module, "_updates", batch_idx + 1))
        if bar is None or bar.disable or not self._should_update(updates, bar.total):
            return
        bar.set_description(self.description(pl_module), refresh=False)
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.n = updates
        bar.refresh()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._evaluated_at = int(getattr(pl_module, "_updates", trainer.global_step))
        super().on_validation_end(trainer, pl_module)


class CompileNetworks(Callback):
    """`torch.compile` every network of the module before training (`--trainer.callbacks+=CompileNetworks`).

    Each child module with parameters (actor, critics, their targets, VAEs) is compiled in place with
    `nn.Module.compile`, so parameter names, checkpoints, resume and DDP (which wraps the LightningModule
    outside the compiled networks) are unchanged; the losses and optimizer steps stay eager. `mode` is passed
    to `torch.compile`: "reduce-overhead" adds CUDA graphs on a GPU. Off by default: on CPU, compiling these
    small MLPs made a critic update about 6% slower in our measurement (benchmarks/, BENCHMARKS.md).
    """

    def __init__(self, mode: str = "default", dynamic: bool = False):
        self.mode, self.dynamic = mode, dynamic

    def setup(self, trainer, pl_module, stage: str) -> None:
        for child in pl_module.children():
            if any(True for _ in child.parameters()) and not isinstance(child, Metric):
                child.compile(mode=self.mode, dynamic=self.dynamic)


class CompileUpdate(Callback):
    """Compile each whole update (`--trainer.callbacks+=CompileUpdate`): targets, losses, gradients, Adam steps
    and target averaging traced by `torch.compile` into a few graphs, in place of eager ops and Lightning's
    per-step wrappers (`lit_offrl.algos.compiled`). The algorithm's `update` is unchanged and so are its results, to
    float tolerance (the same random numbers with `exact_random`); checkpoints hold ordinary Adam state, so a run
    resumes with or without the callback. Compilation happens at the first updates (each branch of an update, e.g.
    TD3's actor step every other update, is one more graph; the time is logged); Inductor caches the generated code
    on disk, so later runs of the same shapes start faster.

    `mode` and `backend` are passed to `torch.compile` ("reduce-overhead" adds CUDA graphs on a GPU; backend
    "eager" traces without generating code, for checking). One device, precision 32 or bf16-mixed, Adam optimizers:
    anything else is refused before the first update.
    """

    def __init__(self, mode: str | None = None, fullgraph: bool = False, exact_random: bool = True,
                 backend: str = "inductor"):
        self.mode, self.fullgraph, self.exact_random, self.backend = mode, fullgraph, exact_random, backend

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.world_size > 1:
            raise UserError("CompileUpdate runs on one device: its traced gradients are not all-reduced across "
                            f"{trainer.world_size} processes. Train with DDP without CompileUpdate.")
        precision = str(trainer.precision)
        if precision not in ("32-true", "32", "bf16-mixed", "bf16"):
            raise UserError(f"CompileUpdate supports precision 32-true and bf16-mixed, not {precision} (16-mixed "
                            f"scales the loss in manual_backward, which the traced update does not call).")

    def on_train_start(self, trainer, pl_module) -> None:
        from lit_offrl.algos.compiled import CompiledUpdate

        pl_module._compiled = CompiledUpdate(pl_module, mode=self.mode, fullgraph=self.fullgraph,
                                             exact_random=self.exact_random, backend=self.backend)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Before UpdateCheckpoint's hook (Lightning runs checkpoint callbacks last), which reads global_step.
        if pl_module._compiled is not None:
            pl_module._compiled.count_steps(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._remove(pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove(pl_module)

    @staticmethod
    def _remove(pl_module) -> None:
        if pl_module._compiled is not None:
            pl_module._compiled.close()
            pl_module._compiled = None


class RecordVideo(Callback):
    """Log a video of one evaluation episode to TensorBoard every `every_n_validations` evaluations during fit
    (`--trainer.callbacks+=RecordVideo`): the deterministic policy from the first validation seed
    (`data.eval_seed`), rendered headless (`lit_offrl.record` picks the MuJoCo backend) at `width` x `height`,
    every `frame_every`-th frame, cut after `max_steps` steps if given. It is written as an animated GIF image under
    `tag` at the update count, which TensorBoard's Images tab plays (what `SummaryWriter.add_video` writes, without
    its moviepy dependency). Rank 0 only; without a TensorBoardLogger, or where nothing renders, it warns once
    and records nothing. Rendering costs time: about 20 ms a frame at 160 px on a CPU.
    """

    def __init__(self, every_n_validations: int = 1, max_steps: int | None = None, width: int = 160,
                 height: int = 160, frame_every: int = 2, tag: str = "val/episode_video"):
        if every_n_validations < 1 or frame_every < 1:
            raise ValueError(f"RecordVideo: every_n_validations and frame_every must be >= 1, got "
                             f"{every_n_validations}, {frame_every}")
        self.every_n_validations, self.max_steps, self.frame_every, self.tag = (every_n_validations, max_steps,
                                                                                frame_every, tag)
        self.size = {"width": width, "height": height}
        self._validations = 0
        self._disabled = False
        self._source = None  # lit_offrl.record.EvalSource, once rendering has worked

    def setup(self, trainer, pl_module, stage: str) -> None:
        from lit_offrl import record

        record.choose_gl_backend()  # before anything renders; the user's MUJOCO_GL is kept

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._disabled:
            return
        self._validations += 1
        if self._validations % self.every_n_validations or not trainer.is_global_zero:
            return
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            self._disable("no TensorBoardLogger among the trainer's loggers")
            return
        gif, frames = self.render(trainer, pl_module)
        if gif is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        height, width = frames[0].shape[:2]
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        logger.experiment._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=self.tag, image=image)]),
                                                         pl_module._updates)

    def render(self, trainer, pl_module) -> tuple[bytes | None, list]:
        """(GIF bytes, frames) of one episode, or (None, []) where it cannot be rendered (then disabled, with a
        warning: a video is never worth stopping the run for)."""
        import os

        import imageio.v3 as iio
        import numpy as np

        from lit_offrl import record

        try:
            if self._source is None:
                source = record.EvalSource(dict(trainer.datamodule.hparams))
                problem = record.probe_rendering(source, self.size)
                if problem is not None:
                    self._disable(f"cannot render ({problem}): {record.rendering_hint(os.environ['MUJOCO_GL'])}")
                    return None, []
                self._source = source
            env = self._source.make_env(render_mode="rgb_array", **self.size)
            writer = record.FrameList()
            try:
                record.rollout_episode(pl_module, env, self._source.observation_space or env.observation_space,
                                       record.Episode(0, self._source.eval_seed), self.max_steps, writer,
                                       self.frame_every)
                fps = max(1, round(env.metadata.get("render_fps") or 30) // self.frame_every)
            finally:
                env.close()
            gif = iio.imwrite("<bytes>", np.stack(writer.frames), extension=".gif", duration=1000.0 / fps, loop=0)
        except Exception as exc:
            self._disable(f"recording failed ({type(exc).__name__}: {one_line(exc)})")
            return None, []
        return gif, writer.frames

    def _disable(self, why: str) -> None:
        from lightning.pytorch.utilities import rank_zero_warn

        self._disabled = True
        rank_zero_warn(f"RecordVideo: {why}; no videos will be recorded in this run.")
