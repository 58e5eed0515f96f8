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
import torch
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

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit and validate: offline RL has no test/predict dataloaders (evaluation is validation)."""
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"}}

    def _parse_ckpt_path(self) -> None:
        # `--ckpt_path last` must become a real path before Lightning reads the checkpoint's hyperparameters.
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path") == "last":
            self._resolve_last_checkpoint(self.config[subcommand], subcommand)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        # One seed for everything: --data.seed seeds the weights too, unless --seed_everything N is given.
        seed = config.get("seed_everything")
        L.seed_everything(config.data.seed if seed in (None, False, True) else int(seed), verbose=False)

    @staticmethod
    def _resolve_last_checkpoint(config, subcommand: str) -> None:
        """The newest last.ckpt under the logger's folder of this dataset; fit keeps logging in its run folder."""
        logger = config.trainer.logger
        init = logger.get("init_args", None) if hasattr(logger, "get") else None
        root = Path(init.get("save_dir") or ".") / (init.get("name") or "lightning_logs") if init else Path("lightning_logs")
        candidates = []
        for path in root.glob("*/checkpoints/last.ckpt"):
            saved = torch.load(path, map_location="cpu", weights_only=False).get("datamodule_hyper_parameters", {})
            if saved.get("dataset_id") == config.data.dataset_id:
                candidates.append(path)
        if not candidates:
            raise UserError(f"--ckpt_path last: no last.ckpt of a run on '{config.data.dataset_id}' under "
                            f"{root}/*/checkpoints/. Start a run without --ckpt_path, or give the checkpoint's path.")
        newest = max(candidates, key=lambda p: p.stat().st_mtime)
        config.ckpt_path = str(newest)
        if init is not None and subcommand == "fit":
            init["version"] = newest.parent.parent.name
        print(f"lit_offrl: resuming from {newest}", file=sys.stderr)


def main(args: list[str] | None = None) -> None:
    """Entry point of `lit-offrl` and `python cli.py`: user errors print one message, no traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["datasets"]:  # `lit-offrl datasets make|list|show ...` is not a LightningCLI subcommand
        from lit_offrl import datasets_cli
        raise SystemExit(datasets_cli.main(argv[1:]))
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
