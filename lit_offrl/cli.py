"""The lit_offrl command line: LightningCLI with the data shapes linked into the model.

    lit-offrl fit --config configs/quickstart.yaml
    lit-offrl fit --model IQL --data.dataset_id lit-offrl/pointmaze/umaze-v0 --trainer.max_steps 20000
    lit-offrl fit --config ... --ckpt_path last          # resume the newest run's last.ckpt
    lit-offrl validate --config ... --ckpt_path PATH     # roll a checkpoint out in the evaluation env
    lit-offrl fit --model SAC --data OnlineDataModule --data.env_id Hopper-v5     # online RL
    lit-offrl fit --model AWAC --data OnlineDataModule --data.offline_dataset_id ID --finetune_from OFFLINE.ckpt

`--trainer.max_steps N` means N gradient updates whatever the number of optimizers; `val_check_interval`
and `--checkpoint.every_n_updates` count the same updates. `--data` defaults to `OfflineDataModule`
(`--data.dataset_id X` needs no class path); `--data OnlineDataModule` trains online. `fit --finetune_from
CKPT` starts a new run from a checkpoint's weights (offline-to-online fine-tuning: update counter, optimizers
and run folder start fresh), where `--ckpt_path` resumes the checkpoint's own run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI

import lit_offrl.algos  # noqa: F401  (registers the algorithms so `--model IQL` resolves)
from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.data.online import OnlineDataModule  # noqa: F401  (registers `--data OnlineDataModule`)
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
        super().__init__(OfflineRLModule, OfflineDataModule, *args, subclass_mode_model=True, subclass_mode_data=True,
                         seed_everything_default=False, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "lit_offrl.data.datamodule.OfflineDataModule"}})
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

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument("--finetune_from", type=Optional[str], default=None,
                                help="Start a new run from this checkpoint's weights (targets and observation "
                                     "statistics included; update counter and optimizers fresh), e.g. an offline "
                                     "checkpoint fine-tuned online with --data OnlineDataModule.")
        return parser

    def before_fit(self) -> None:
        path = self.config.fit.get("finetune_from")
        if path:
            if self.config.fit.get("ckpt_path"):
                raise UserError("give either --ckpt_path (resume that run) or --finetune_from (a new run from its "
                                "weights), not both.")
            load_weights(self.model, path)

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
        L.seed_everything(_data_args(config).seed if seed in (None, False, True) else int(seed), verbose=False)

    @staticmethod
    def _resolve_last_checkpoint(config, subcommand: str) -> None:
        """The newest last.ckpt under the logger's folder of this dataset; fit keeps logging in its run folder."""
        logger = config.trainer.logger
        init = logger.get("init_args", None) if hasattr(logger, "get") else None
        root = Path(init.get("save_dir") or ".") / (init.get("name") or "lightning_logs") if init else Path("lightning_logs")
        data = _data_args(config)
        data_class = str(config.data.get("class_path", "OfflineDataModule")).rsplit(".", 1)[-1]
        # The run's data: the dataset (offline), the environment and offline dataset (online).
        keys = {key: data.get(key) for key in ("dataset_id", "env_id", "offline_dataset_id") if key in data}
        candidates = []
        for path in root.glob("*/checkpoints/last.ckpt"):
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            saved = checkpoint.get("datamodule_hyper_parameters", {})
            if data_class in checkpoint and all(saved.get(key) == value for key, value in keys.items()):
                candidates.append(path)
        if not candidates:
            what = ", ".join(f"{key}={value}" for key, value in keys.items() if value is not None)
            raise UserError(f"--ckpt_path last: no last.ckpt of a {data_class} run on {what} under "
                            f"{root}/*/checkpoints/. Start a run without --ckpt_path, or give the checkpoint's path.")
        newest = max(candidates, key=lambda p: p.stat().st_mtime)
        config.ckpt_path = str(newest)
        if init is not None and subcommand == "fit":
            init["version"] = newest.parent.parent.name
        print(f"lit_offrl: resuming from {newest}", file=sys.stderr)


def _data_args(config):
    """The data module's arguments in a parsed config (`data.init_args` in subclass mode)."""
    return config.data.init_args if "init_args" in config.data else config.data


def load_weights(model: OfflineRLModule, path: str) -> None:
    """Load a checkpoint's weights, targets and observation statistics into `model` for a new run."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"--finetune_from {path}: no such file.") from None
    saved = checkpoint.get("hyper_parameters", {})
    for name in ("obs_dim", "action_dim"):
        if name in saved and int(saved[name]) != getattr(model, name):
            raise UserError(f"--finetune_from {path}: the checkpoint was trained with {name}={saved[name]} but this "
                            f"environment has {name}={getattr(model, name)}.")
    state = {k: v for k, v in checkpoint["state_dict"].items() if k != "num_updates"}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "num_updates"]
        problem = f"missing {missing[:5]}, unexpected {unexpected[:5]}" if missing or unexpected else ""
    except RuntimeError as exc:  # a shape mismatch
        problem = " ".join(str(exc).split())[:600]
    if problem:
        hparams = ", ".join(f"{k}={v}" for k, v in saved.items() if k not in ("obs_dim", "action_dim")
                            and not k.startswith("_"))
        raise UserError(f"--finetune_from {path}: its weights do not fit {type(model).__name__} (the checkpoint's "
                        f"hyperparameters: {hparams or 'none saved'}): {problem}. Fine-tune with the algorithm and "
                        f"network sizes the checkpoint was trained with.")
    model.finetune_source = str(path)  # the data module checks its observation statistics against the model's
    print(f"lit_offrl: fine-tuning from the weights of {path} "
          f"(trained {int(checkpoint['state_dict'].get('num_updates', 0))} updates; counting restarts at 0)",
          file=sys.stderr)


def main(args: list[str] | None = None) -> None:
    """Entry point of `lit-offrl` and `python cli.py`: user errors print one message, no traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["datasets"]:  # `lit-offrl datasets make|list|show ...` is not a LightningCLI subcommand
        from lit_offrl import datasets_cli
        raise SystemExit(datasets_cli.main(argv[1:]))
    try:
        LitOffRLCLI(args=args)
        _close_process_group()
    except UserError as exc:
        print(f"lit-offrl: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as exc:
        print(f"lit-offrl: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (ValueError, TypeError) as exc:
        # jsonargparse wraps an error raised while instantiating a subclass-mode argument (the data module)
        cause = _user_error_in(exc)
        if cause is None:
            raise
        print(f"lit-offrl: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def _close_process_group() -> None:
    """After a multi-process run, wait for every rank and close the process group before the interpreter exits.
    Left to interpreter shutdown, a rank's communication threads can be torn down while another rank still talks
    to the store: seen once as a SIGABRT ("terminate called without an active exception") of a finished rank in
    the 2-node torchrun test on a loaded machine."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _user_error_in(exc: BaseException | None) -> UserError | None:
    """The `UserError` in an exception's chain of causes, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    main()
