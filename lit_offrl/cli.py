"""The lit_offrl command line: LightningCLI with the data shapes linked into the model.

    lit-offrl fit --config configs/quickstart.yaml
    lit-offrl fit --model IQL --data.dataset_id lit-offrl/pointmaze/umaze-v0 --trainer.max_steps 20000
    lit-offrl fit --config ... --ckpt_path last          # resume the newest run of this model, data, seed
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

import csv
import importlib
import inspect
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

import lit_offrl.algos  # noqa: F401  (registers the algorithms so `--model IQL` resolves)
from lit_offrl.algos.base import OfflineRLModule, check_update_counts
from lit_offrl.callbacks import UpdateCheckpoint, UpdatesProgressBar
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.data.online import OnlineDataModule  # noqa: F401  (registers `--data OnlineDataModule`)
from lit_offrl.errors import NonFiniteLossError, UserError, one_line

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


class _Parser(LightningArgumentParser):
    """LightningCLI's parser, with one line instead of a usage dump for a `--model` / `--data` class that does not
    resolve (jsonargparse's message for `--model NoSuchAlgo` is 60 lines ending in "Expected a dot import path")."""

    def error(self, message: str, *args, **kwargs):
        match = re.match(r'Parser key "(model|data)":', message or "")
        given = re.search(r"Given value: (.*)", message or "")
        # Only a class name or path that does not resolve: a bad `--model.alpha abc` / `--data.datset_id` is also
        # reported under the "model" / "data" key (with a NestedArg value) and keeps jsonargparse's own message.
        problem = re.search(r"Problem with given class_path '[^']*':\s*\n\s*(.+)", message or "")
        if (match and given and "Given value type: <class 'str'>" in message
                and not given.group(1).startswith("NestedArg")
                and ("Expected a dot import path string" in message or problem)):
            key, value = match.group(1), given.group(1).strip()
            thing = "algorithm" if key == "model" else "data module"
            what = f"cannot import this {thing} ({problem.group(1).strip()})" if problem else f"no such {thing}"
            if key == "model":
                raise UserError(f"--model {value}: {what}. Available: {', '.join(available_algorithms())} (or the "
                                f"class path of your own OfflineRLModule subclass, e.g. mypkg.MyTD3BC).")
            raise UserError(f"--data {value}: {what}. Available: OfflineDataModule, OnlineDataModule (or the class "
                            f"path of a subclass of OfflineDataModule).")
        return super().error(message, *args, **kwargs)


def available_algorithms() -> list[str]:
    """The algorithm class names `--model NAME` accepts (lit_offrl.algos)."""
    return [name for name in lit_offrl.algos.__all__ if name != "OfflineRLModule"]


class LitOffRLCLI(LightningCLI):
    """LightningCLI for `OfflineRLModule` subclasses (by name or class path) over `OfflineDataModule`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", _Parser)
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
        if path:  # (with --ckpt_path too: refused in _parse_ckpt_path)
            load_weights(self.model, path)
        resumed = getattr(self, "_resumed_run", None)
        if resumed is not None and isinstance(resumed.updates, int):
            _keep_csv_rows(self.trainer, resumed.updates)

    def _parse_ckpt_path(self) -> None:
        # Runs after parsing and before anything is instantiated or written: every check of the run's arguments
        # that can fail goes here, so a bad argument leaves no run folder behind.
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return super()._parse_ckpt_path()
        config = self.config[subcommand]
        _place_default_logger(config)
        if subcommand == "fit":
            _check_max_steps(config)
            _check_updates_per_step(config)
            if config.get("finetune_from") and config.get("ckpt_path"):
                raise UserError("give either --ckpt_path (resume that run) or --finetune_from (a new run from its "
                                "weights), not both.")
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            self._resolve_last_checkpoint(config, subcommand)
        elif ckpt_path is None and subcommand == "fit":
            self._resume_requeued_slurm_job(config)
        elif ckpt_path not in (None, "best", "hpc", "registry") and not str(ckpt_path).startswith("registry:"):
            _check_checkpoint_file(config, str(ckpt_path))
        given = config.get("model")
        given = None if given is None else (given.get("class_path"), dict(vars(given.get("init_args") or {})),
                                            _explicit_hyperparameters(given.get("class_path"), given.get("init_args")))
        self._given_model = given
        super()._parse_ckpt_path()
        if given is not None and config.get("ckpt_path"):
            _note_replaced_hyperparameters(given[2], self.config[subcommand].get("model"))

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        # One seed for everything: --data.seed seeds the weights too, unless --seed_everything N is given.
        seed = config.get("seed_everything")
        L.seed_everything(_data_args(config).seed if seed in (None, False, True) else int(seed), verbose=False)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # model.obs_dim / action_dim are linked from the data; a value the user gave that the data contradicts
        # cannot be honoured (the model would be built for other dimensions).
        given = getattr(self, "_given_model", None)
        datamodule = getattr(self, "datamodule", None)
        if given is None or datamodule is None or not hasattr(datamodule, "obs_dim"):
            return
        for name in ("obs_dim", "action_dim"):
            value = given[1].get(name)
            if value is not None and int(value) != int(getattr(datamodule, name)):
                raise UserError(f"--model.{name} {value} does not match the data: "
                                f"'{getattr(datamodule, 'dataset_id', '?')}' has {name}={getattr(datamodule, name)}. "
                                f"Leave model.{name} unset (the CLI links it from the data).")

    def _resolve_last_checkpoint(self, config, subcommand: str) -> None:
        """The newest last.ckpt of a run of this model class, dataset, seed and set hyperparameters under the run
        root; fit keeps logging in that run's folder. Other runs are never resumed (nor written)."""
        root = _run_root(config)
        runs = _runs(root)
        wanted = _wanted_run(config)
        matching = [run for run in runs if not _mismatches(run, wanted)]
        if not matching:
            described = "".join(f"\n  {run.folder}: {run.describe()}: {'; '.join(_mismatches(run, wanted))}"
                                for run in runs)
            raise UserError(f"--ckpt_path last: no run of {_describe(wanted)} under {root}/*/checkpoints/"
                            + (f". Runs found, none matching:{described}\n" if runs else " (no readable last.ckpt "
                               "there). ")
                            + "Start a new run without --ckpt_path, or give a checkpoint's path.")
        newest = max(matching, key=lambda run: run.mtime)
        self._resume(config, subcommand, newest, "resuming")

    def _resume_requeued_slurm_job(self, config) -> None:
        """A SLURM job requeued after preemption (SLURM_RESTART_COUNT >= 1) runs its command again: it resumes the
        run that this job id wrote, if it wrote one, so the sbatch line needs no --ckpt_path."""
        from lit_offrl.algos.base import slurm_job_id

        job = slurm_job_id()
        if job is None or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) < 1:
            return
        wanted = _wanted_run(config)
        mine = [run for run in _runs(_run_root(config), warn=False)
                if run.slurm_job_id == job and not _mismatches(run, wanted)]
        if mine:
            self._resume(config, "fit", max(mine, key=lambda run: run.mtime), f"SLURM job {job} requeued: resuming")

    def _resume(self, config, subcommand: str, run: "_Run", verb: str) -> None:
        config.ckpt_path = str(run.path)
        init = _logger_init(config)
        if init is not None and subcommand == "fit":
            init["version"] = run.folder.name
            self._resumed_run = run
        print(f"lit_offrl: {verb} {run.folder} ({run.describe()}) from {run.path.name} at update {run.updates}",
              file=sys.stderr)


class _Run:
    """What a run folder's last.ckpt says about its run (read lazily, memory-mapped)."""

    def __init__(self, path: Path, checkpoint: dict):
        self.path, self.folder, self.mtime = path, path.parent.parent, path.stat().st_mtime
        meta = checkpoint.get("lit_offrl") or {}
        self.hparams = dict(checkpoint.get("hyper_parameters") or {})
        self.model_class = meta.get("model_class") or self.hparams.get("_class_path")
        self.slurm_job_id = meta.get("slurm_job_id")
        self.data_class = next((key for key in checkpoint if key.endswith("DataModule")), None)
        self.data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
        state = checkpoint.get("state_dict") or {}
        self.updates = int(state["num_updates"]) if "num_updates" in state else meta.get("updates", "?")

    def describe(self) -> str:
        return _describe({"model": self.model_class, "data_class": self.data_class,
                          **{key: self.data.get(key) for key in _DATA_KEYS if key in self.data},
                          "seed": self.data.get("seed")})


_DATA_KEYS = ("dataset_id", "env_id", "offline_dataset_id")


def _describe(run: dict) -> str:
    model = str(run.get("model") or "any model").rsplit(".", 1)[-1]
    if run.get("hparams"):
        model += f" ({', '.join(f'{key}={value!r}' for key, value in run['hparams'].items())})"
    data = ", ".join(f"{key} {run[key]}" for key in _DATA_KEYS if run.get(key) is not None)
    return f"{model} on {data or run.get('data_class')}, seed {run.get('seed')}"


def _wanted_run(config) -> dict:
    data = _data_args(config)
    data_class = str(config.data.get("class_path", "OfflineDataModule")).rsplit(".", 1)[-1]
    model = config.get("model")
    class_path = model.get("class_path") if model is not None else None
    hparams = _explicit_hyperparameters(class_path, model.get("init_args")) if model is not None else {}
    return {"model": class_path, "data_class": data_class, "hparams": hparams,
            **{key: data.get(key) for key in _DATA_KEYS if key in data}, "seed": data.get("seed")}


def _explicit_hyperparameters(class_path: str | None, init_args) -> dict:
    """The model hyperparameters a command sets (on the command line or in a config): those that differ from the
    class's defaults. obs_dim / action_dim come from the data and are left out."""
    values = dict(vars(init_args)) if init_args is not None else {}
    cls = _import_class(class_path)
    defaults = {}
    if cls is not None:
        for klass in reversed(cls.__mro__):  # a subclass's defaults win; **kwargs passed to a parent count too
            try:
                parameters = inspect.signature(klass.__init__).parameters.values()
            except (TypeError, ValueError):
                continue
            defaults.update({p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty})
    return {name: value for name, value in values.items() if name not in ("obs_dim", "action_dim")
            and value is not None and (name not in defaults or _plain(defaults[name]) != _plain(value))}


def _mismatches(run: _Run, wanted: dict) -> list[str]:
    """Why `run` is not a run of `wanted` (model class, data module, dataset / env, seed); empty if it is."""
    reasons = []
    if wanted["model"] is not None and _class_key(run.model_class) != _class_key(wanted["model"]):
        reasons.append(f"model {str(run.model_class).rsplit('.', 1)[-1]}, not {wanted['model'].rsplit('.', 1)[-1]}")
    if run.data_class != wanted["data_class"]:
        reasons.append(f"data {run.data_class}, not {wanted['data_class']}")
    for key in _DATA_KEYS:
        if key in wanted and run.data.get(key) != wanted[key]:
            reasons.append(f"{key} {run.data.get(key)}, not {wanted[key]}")
    if run.data.get("seed") != wanted["seed"]:
        reasons.append(f"seed {run.data.get('seed')}, not {wanted['seed']}")
    for name, value in wanted.get("hparams", {}).items():
        if name in run.hparams and _plain(run.hparams[name]) != _plain(value):
            reasons.append(f"model.{name} {run.hparams[name]!r}, not {value!r}")
    return reasons


def _import_class(path: str | None) -> type | None:
    """The class a class path (or a bare algorithm name) names, or None if it does not import."""
    if not path:
        return None
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name) if module else getattr(lit_offrl.algos, name)
    except (ImportError, AttributeError, ValueError):
        return None


def _class_key(path: str | None) -> str | None:
    """A class path as `module.QualName` of the class it imports (`lit_offrl.TD3BC` and
    `lit_offrl.algos.td3bc.TD3BC` are the same class); the path itself if it does not import."""
    cls = _import_class(path)
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else path


def _load_checkpoint_metadata(path: Path) -> dict:
    """A checkpoint, memory-mapped (reading a run's metadata does not read its weights or replay buffer)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=False)  # a legacy (non-zip) checkpoint


def _runs(root: Path, warn: bool = True) -> list[_Run]:
    """Every run folder under `root` with a readable `checkpoints/last.ckpt`; unreadable ones are skipped with a
    warning naming them (a truncated file must not stop every other run from resuming)."""
    runs = []
    for path in sorted(root.glob("*/checkpoints/last.ckpt")):
        try:
            runs.append(_Run(path, _load_checkpoint_metadata(path)))
        except Exception as exc:  # truncated, empty or not a checkpoint at all
            if warn:
                print(f"lit_offrl: warning: skipping {path}: not a readable checkpoint ({type(exc).__name__}: "
                      f"{one_line(exc)})", file=sys.stderr)
    return runs


def _check_checkpoint_file(config, path: str) -> None:
    """--ckpt_path PATH: the file exists, is a readable checkpoint, and is one of the model the user asked for."""
    file = Path(path)
    if not file.is_file():
        hint = " (it is a folder: give the .ckpt file inside it)" if file.is_dir() else ""
        raise UserError(f"--ckpt_path {path}: no such checkpoint file{hint}. Give the path of a .ckpt file, or "
                        f"`--ckpt_path last` to resume the newest run of this model, dataset and seed.")
    try:
        run = _Run(file, _load_checkpoint_metadata(file))
    except Exception as exc:
        raise UserError(f"--ckpt_path {path}: not a readable checkpoint ({type(exc).__name__}: {one_line(exc)}); "
                        f"the file may be truncated (a run killed while writing it): use another checkpoint.") from None
    model = config.get("model")
    given = model.get("class_path") if model is not None else None
    if given is not None and run.model_class and _class_key(run.model_class) != _class_key(given):
        saved = str(run.model_class).rsplit(".", 1)[-1]
        raise UserError(f"--ckpt_path {path} is a {saved} checkpoint but --model is {given.rsplit('.', 1)[-1]}: "
                        f"give --model {saved} (or leave --model out to take it from the checkpoint).")


def _note_replaced_hyperparameters(given: dict, model) -> None:
    """One line for every model hyperparameter the user set that the checkpoint's replaced (Lightning takes a
    resumed or evaluated model's hyperparameters from its checkpoint)."""
    if model is None:
        return
    final = dict(vars(model.get("init_args") or {}))
    changed = [f"{name} {final[name]!r} (given {value!r})" for name, value in given.items()
               if name in final and _plain(final[name]) != _plain(value)]
    if changed:
        print(f"lit_offrl: note: the model's hyperparameters come from the checkpoint: {', '.join(changed)}",
              file=sys.stderr)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_max_steps(config) -> None:
    """--trainer.max_steps counts updates; 0 or a negative count would train forever (the data never ends)."""
    max_steps = config.trainer.get("max_steps")
    if max_steps is None or max_steps > 0:
        return
    if max_steps == -1 and config.trainer.get("max_time"):
        return  # no update limit, bounded by max_time (Lightning's convention)
    raise UserError(f"--trainer.max_steps {max_steps}: give the number of gradient updates to train, a positive "
                    f"integer (e.g. --trainer.max_steps 100000); -1 (no limit) needs --trainer.max_time.")


def _check_updates_per_step(config) -> None:
    """With `--data.updates_per_step K` a training step runs K updates, so every count of updates the run is given
    (max_steps, an integer val_check_interval, the checkpoint interval) must be a multiple of K. The modules check
    this too (`OfflineRLModule._count_steps_in_updates`, `UpdateCheckpoint.setup`); here it fails before the run
    folder is made."""
    per_step = getattr(_data_args(config), "updates_per_step", None)
    if not isinstance(per_step, int) or per_step <= 1:
        return  # 1 (or a value the data module itself refuses: its one line says why)
    interval = config.trainer.get("val_check_interval")
    checkpoint = config.get("checkpoint")
    check_update_counts([("trainer.max_steps", config.trainer.get("max_steps")),
                         ("trainer.val_check_interval", interval if isinstance(interval, int) else None),
                         ("checkpoint.every_n_updates", checkpoint.get("every_n_updates") if checkpoint else None)],
                        per_step, prefix="--")


def _place_default_logger(config) -> None:
    """`--trainer.default_root_dir DIR` places the run: the default TensorBoard logger (save_dir '.') writes
    DIR/lightning_logs/version_N, as Lightning's own default logger does; so does `--trainer.logger CSVLogger`,
    which keeps the default's save_dir '.'. A save_dir the user set is kept."""
    root = config.trainer.get("default_root_dir")
    init = _logger_init(config)
    class_path = str(config.trainer.logger.get("class_path", "")) if init is not None else ""
    if root and class_path.endswith(("TensorBoardLogger", "CSVLogger")) and init.get("save_dir") in (".", None):
        init["save_dir"] = str(root)


def _keep_csv_rows(trainer, updates: int) -> None:
    """A run resumed in its own folder keeps its CSVLogger rows: Lightning's CSVLogger deletes an existing
    metrics.csv when it opens the folder, so the rows are read first and handed back to it (written with its next
    save). Rows logged after the checkpoint's update (step >= updates) are left out: those updates run again."""
    from lightning.pytorch.loggers import CSVLogger

    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if path is None or not path.is_file():
            continue
        with path.open(newline="") as file:
            rows = [{key: value for key, value in row.items() if value not in ("", None)}
                    for row in csv.DictReader(file) if row.get("step") and int(float(row["step"])) < updates]
        experiment = logger.experiment  # opening it deletes the file; a DummyExperiment off rank 0
        if isinstance(getattr(experiment, "metrics", None), list):
            experiment.metrics[:0] = rows


def _logger_init(config):
    """The logger's init_args in a parsed config (None for `logger: true/false` or a list of loggers)."""
    logger = config.trainer.get("logger")
    return logger.get("init_args", None) if hasattr(logger, "get") else None


def _run_root(config) -> Path:
    """The folder holding this command's run folders: the logger's save_dir/name, else default_root_dir."""
    init = _logger_init(config)
    if init is not None and init.get("save_dir") is not None:
        name = init.get("name")
        return Path(init["save_dir"]) / name if name else Path(init["save_dir"])
    return Path(config.trainer.get("default_root_dir") or ".") / "lightning_logs"


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
    model.on_load_checkpoint(checkpoint)  # the algorithm's own upgrades of older checkpoints (e.g. CQL's log-std)
    state = {k: v for k, v in checkpoint["state_dict"].items() if k != "num_updates"}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "num_updates"]
        problem = f"missing {missing[:5]}, unexpected {unexpected[:5]}" if missing or unexpected else ""
    except RuntimeError as exc:  # a shape mismatch
        problem = one_line(exc, 600)
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


# Commands beside fit/validate: each module's `main(argv) -> int` returns the exit status.
TOOLS = {"datasets": "lit_offrl.datasets_cli", "export": "lit_offrl.export", "record": "lit_offrl.record",
         "report": "lit_offrl.report"}


def main(args: list[str] | None = None) -> None:
    """Entry point of `lit-offrl` and `python cli.py`: user errors print one message, no traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] and argv[0] in TOOLS:  # `lit-offrl datasets|export|record|report ...`: not LightningCLI subcommands
        raise SystemExit(importlib.import_module(TOOLS[argv[0]]).main(argv[1:]))
    try:
        LitOffRLCLI(args=args)
        _close_process_group()
    except UserError as exc:
        print(f"lit-offrl: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as exc:
        print(f"lit-offrl: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except SIGTERMException as exc:
        # Preempted (SIGTERM), interrupted (SIGINT) or requeued: last.ckpt holds the last finished update, and the
        # exit status is the signal's (128 + N), never 0, so a scheduler does not record the run as finished.
        stop = getattr(exc, "lit_offrl_stop", None)
        signum = stop.signum if stop is not None else int(signal.SIGTERM)
        if stop is not None:
            then = (f"SLURM job {stop.requeued} requeued; it resumes this run" if stop.requeued else
                    "resume with the same command plus --ckpt_path last")
            written = f"{stop.checkpoint} written" if stop.checkpoint else "no checkpoint written (save_last is off)"
            print(f"lit-offrl: stopped by {signal.Signals(signum).name} after update {stop.updates}; {written}: "
                  f"{then}.", file=sys.stderr)
        raise SystemExit(128 + signum) from None
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
