"""The lit_offrl command line: LightningCLI with the data shapes linked into the model.

    lit-offrl fit --config configs/quickstart.yaml
    lit-offrl fit --model IQL --data.dataset_id lit-offrl/pointmaze/umaze-v0 --trainer.max_steps 20000
    lit-offrl fit --config ... --ckpt_path last          # resume the newest run's last.ckpt
    lit-offrl validate --config ... --ckpt_path PATH     # roll a checkpoint out in the evaluation env

`--trainer.max_steps N` means N gradient updates whatever the number of optimizers; `val_check_interval`
and `--checkpoint.every_n_updates` count the same updates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

import lit_offrl.algos  # noqa: F401  (registers the algorithms so `--model IQL` resolves)
from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.errors import NonFiniteLossError, UserError

TRAINER_DEFAULTS = {
    "max_steps": 1_000_000,
    "max_epochs": -1,
    "val_check_interval": 10_000,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 100,
    "num_sanity_val_steps": 0,
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": ".", "name": "lightning_logs"}},
}


class LitOffRLCLI(LightningCLI):
    """LightningCLI for `OfflineRLModule` subclasses (by name or class path) over `OfflineDataModule`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(OfflineRLModule, OfflineDataModule, *args, subclass_mode_model=True,
                         seed_everything_default=False, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.action_dim", "model.init_args.action_dim", apply_on="instantiate")
        parser.add_lightning_class_args(UpdateCheckpoint, "checkpoint")

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # The progress bar counts updates; added here (not in the defaults) so enable_progress_bar=false works.
        if config.get("enable_progress_bar", True) is not False:
            callbacks = [*callbacks, UpdatesProgressBar(refresh_rate=50)]
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        # One seed for everything: --data.seed seeds the weights too, unless --seed_everything is given.
        seed = config.get("seed_everything")
        L.seed_everything(config.data.seed if seed in (None, False) else int(seed), verbose=False)
        if self.subcommand in ("fit", "validate") and config.get("ckpt_path") == "last":
            self._resolve_last_checkpoint(config)

    def _resolve_last_checkpoint(self, config) -> None:
        """`--ckpt_path last`: the newest last.ckpt under the logger's folder; logging continues in its run folder."""
        logger = config.trainer.logger
        init = logger.get("init_args", {}) if hasattr(logger, "get") else {}
        root = Path(init.get("save_dir", ".") if init else ".") / (init.get("name", "lightning_logs") if init else "lightning_logs")
        candidates = sorted(root.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"--ckpt_path last: no last.ckpt under {root}/*/checkpoints/. Start a run without "
                            f"--ckpt_path, or give the checkpoint's path.")
        config.ckpt_path = str(candidates[-1])
        if init and self.subcommand == "fit":
            init["version"] = candidates[-1].parent.parent.name
        print(f"Resuming from {config.ckpt_path}", file=sys.stderr)


def main(args: list[str] | None = None) -> None:
    """Entry point of `lit-offrl` and `python cli.py`: user errors print one message, no traceback."""
    try:
        LitOffRLCLI(args=args)
    except UserError as exc:
        print(f"lit-offrl: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as exc:
        print(f"lit-offrl: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
