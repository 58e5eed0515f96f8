"""Callbacks the CLI tests load by class path (`--trainer.callbacks+=probes.X`) to look inside a run."""

from pathlib import Path

import lightning as L
import torch


class DumpRankState(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.first_batch_obs = None
        self.initial_actor = None

    def on_train_start(self, trainer, pl_module):
        self.initial_actor = pl_module.actor.net[0].weight.detach().clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch_obs is None:
            self.first_batch_obs = batch.obs.detach().clone()

    def on_fit_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        val = trainer.callback_metrics.get("val/return")
        torch.save({"state": state, "first_batch_obs": self.first_batch_obs, "initial_actor": self.initial_actor,
                    "val_return": None if val is None else float(val)},
                   self.out_dir / f"rank{trainer.global_rank}.pt")


class KillAtUpdate(L.Callback):
    """Sends the training process a real signal after update `update`: SIGKILL (a crash: no cleanup, no final
    checkpoint), or SIGTERM / SIGINT / SIGUSR1 (a scheduler's preemption, Ctrl-C, SLURM's requeue warning)."""

    def __init__(self, update: int, signal: str = "SIGKILL", rank: int | None = None):
        self.update, self.signal, self.rank = update, signal, rank  # rank: only that DDP rank gets the signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module._updates == self.update and self.rank in (None, trainer.global_rank):
            import os
            import signal

            os.kill(os.getpid(), getattr(signal, self.signal))


class RecordCriticDtype(L.Callback):
    """Writes the dtype of the critic's output during training (to see that autocast is really on)."""

    def __init__(self, out_file: str):
        self.out_file, self.dtypes = Path(out_file), set()

    def on_train_start(self, trainer, pl_module):
        pl_module.critic.register_forward_hook(lambda module, args, output: self.dtypes.add(str(output.dtype)))

    def on_train_end(self, trainer, pl_module):
        self.out_file.write_text(",".join(sorted(self.dtypes)))
