"""A callback the DDP test loads by class path: each rank dumps what the test compares."""

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
