"""`lit-offrl export`: a trained policy as one standalone, deterministic TorchScript or ONNX file.

    lit-offrl export CKPT --format torchscript --out policy.pt     # load with torch.jit.load, no lit_offrl needed
    lit-offrl export CKPT --format onnx --out policy.onnx          # run with onnxruntime

The file holds the whole acting path of `OfflineRLModule.act(obs, deterministic=True)`: raw flat float32
observations (batch, obs_dim) in, the observation normalization (the checkpoint's obs_mean / obs_std), the
algorithm's `policy_action` (decoders included: PLAS's and LAPO's latent policy and VAE decoder, BCQ's VAE,
perturbation and critic argmax), and the scaling from [-1, 1] to the environment's action bounds, actions
(batch, action_dim) out. The batch dimension is dynamic in both formats. Only the networks acting uses are in
the file (no critics unless the action needs them, no target networks).

Per algorithm:
* BC, TD3, TD3BC, ReBRAC, SAC, CQL, IQL, AWAC, BRAC, PLAS, LAPO: exported as they act (the policy's mean, or
  the deterministic decoded latent; an IQL policy trained with `actor_dropout` acts, and is exported, without
  dropout); the file equals `model.act(obs)` to float rounding.
* BCQ: its deterministic action is still a best-of-N over latents drawn from the VAE prior at every call. The
  export fixes that noise as a constant: one set of `num_act_samples` latents, drawn by the VAE's own prior
  (N(0, I) clipped) from `--seed` (default 0), used for every state and every call. The file equals
  `model.act(obs)` whenever the prior happens to draw those latents for each state; it is a deterministic
  function of the observation, where the Python policy is not.
* LatentEM, `execution="receding"`: plans at every step and executes the first action, a stateless function of
  the observation: exported as the others. `execution="open_loop"` executes each H-step plan over H calls, which
  the Python module keeps as state (`_plan`, `_plan_step`) between calls. The export makes that state explicit:
  inputs obs (batch, obs_dim), plan (batch, H, action_dim) float32, plan_step (batch,) int64; outputs action,
  next_plan, next_plan_step. Start (and restart env i at an episode start) with plan_step = H, which plans from
  the observation at that call; feed next_plan / next_plan_step back at the next call. Each env keeps its own
  plan (the Python module replans all envs together, the same when they start together).
* Any other `OfflineRLModule` subclass is traced through its `policy_action(obs, deterministic=True)`; one whose
  deterministic action draws random numbers is refused (an exported graph with a random op is not deterministic).

Every export is checked before the file is written: the saved file is loaded back and run against the Python
policy on observations around the data's mean (batch sizes 1 and 7, neither the traced one); a difference above
1e-4 fails the export. A metadata record (algorithm, class, obs_dim, action_dim, action bounds, dataset id,
updates trained, inputs and outputs, lit_offrl and torch versions) goes with the file: the TorchScript extra
file `lit_offrl.json`, the ONNX metadata property `lit_offrl` (JSON either way; `read_metadata(path)`).

TorchScript is written by `torch.jit.trace` (torch 2.13 marks it deprecated in favour of torch.export; it still
works, and `torch.jit.load` reads the file); ONNX by torch.export's exporter (`torch.onnx.export(dynamo=True)`,
opset 20; needs onnxscript, and onnxruntime for the check: `pip install 'lit_offrl[export]'`). Checkpoints are
unpickled (`weights_only=False`, as `lit-offrl fit` itself loads them): export only checkpoints you trust.

Bad input (a missing or unreadable CKPT, a checkpoint of no lit_offrl model, an algorithm that cannot be
exported, a bad argument) prints one `lit-offrl export: error: ...` line on stderr and returns 2; an export that
fails in the exporter or in the check returns 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from lit_offrl.errors import UserError, one_line

PROG = "lit-offrl export"
FORMATS = ("torchscript", "onnx")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript",
            ".torchscript": "torchscript"}
METADATA_KEY = "lit_offrl"  # the ONNX metadata property; the TorchScript extra file is METADATA_KEY + ".json"
CHECK_TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 7)
TRACE_BATCH_SIZE = 3
ONNX_OPSET = 20
# Ops whose presence makes a traced policy stochastic (dropout is traced with train=False in eval mode: not listed).
RANDOM_OPS = {f"aten::{name}" for name in (
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "normal", "normal_",
    "uniform_", "bernoulli", "bernoulli_", "multinomial", "poisson", "exponential_", "geometric_", "cauchy_",
    "log_normal_", "random_", "rrelu", "_standard_gamma", "_sample_dirichlet", "binomial")}


class ExportFailed(RuntimeError):
    """The exporter raised, or the written file does not compute the policy's actions (exit status 1)."""


# ----------------------------------------------------------------------------------------------------------------
# the exported functions
# ----------------------------------------------------------------------------------------------------------------


class ExportedPolicy(nn.Module):
    """raw obs (B, obs_dim) float32 -> action (B, action_dim) in the environment's bounds, as `model.act`.

    Holds the model's networks (all of them, or only those named in `keep`) and its four normalization buffers;
    `forward` normalizes, runs `model.policy_action(obs, deterministic=True)` and scales [-1, 1] to the bounds.
    The model itself is referenced, not registered, so tracing sees each network once, under `parts`.
    """

    input_names: tuple[str, ...] = ("obs",)
    output_names: tuple[str, ...] = ("action",)

    def __init__(self, model: nn.Module, keep: set[str] | None = None):
        super().__init__()
        from torchmetrics import Metric

        self.parts = nn.ModuleDict({name: child for name, child in model.named_children()
                                    if not isinstance(child, Metric) and (keep is None or name in keep)})
        for name in ("obs_mean", "obs_std", "action_low", "action_high"):
            self.register_buffer(name, getattr(model, name))
        self._model = (model,)  # a tuple: not a submodule

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    def forward(self, obs: Tensor) -> Tensor:
        return self.to_env(self.policy((obs - self.obs_mean) / self.obs_std))

    def policy(self, obs: Tensor) -> Tensor:
        """The action in [-1, 1] for normalized observations."""
        return self.model.policy_action(obs, True)

    def to_env(self, action: Tensor) -> Tensor:
        """[-1, 1] -> the environment's bounds, as `OfflineRLModule.act`."""
        return self.action_low + (action.float() + 1.0) * 0.5 * (self.action_high - self.action_low)

    def rebuilt(self, keep: set[str]) -> ExportedPolicy:
        """The same function holding only the networks in `keep`."""
        return type(self)(self.model, keep).train(self.training)

    def example_inputs(self, batch: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        """Inputs for tracing and checking: observations around the data's mean (within a few stds)."""
        noise = torch.randn(batch, self.obs_mean.shape[0], generator=generator)
        return (self.obs_mean + self.obs_std * noise.to(self.obs_mean),)

    def interface(self) -> dict[str, Any]:
        """Inputs and outputs for the metadata record."""
        obs_dim, action_dim = self.obs_mean.shape[0], self.action_low.shape[0]
        return {"inputs": [{"name": "obs", "dtype": "float32", "shape": ["batch", obs_dim],
                            "meaning": "raw flat observation (the normalization is inside)"}],
                "outputs": [{"name": "action", "dtype": "float32", "shape": ["batch", action_dim],
                             "meaning": "action in the environment's bounds"}]}


class FixedNoiseBCQPolicy(ExportedPolicy):
    """BCQ with its prior draws fixed: the same `num_act_samples` latents (`noise`, drawn by the VAE's own clipped
    prior from `seed`) for every state, so the best-of-N action is a deterministic function of the observation."""

    def __init__(self, model: nn.Module, keep: set[str] | None = None, seed: int = 0):
        super().__init__(model, keep)
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            noise = model.vae.sample_prior((model.num_act_samples,), model.obs_mean)
        self.register_buffer("noise", noise)

    def policy(self, obs: Tensor) -> Tensor:
        # BCQ's candidates are state-major (each state's N proposals together): the noise repeats per state.
        return self.model.policy_action(obs, True, z=self.noise.repeat(obs.shape[0], 1))

    def rebuilt(self, keep: set[str]) -> ExportedPolicy:
        return type(self)(self.model, keep, self.seed).train(self.training)

    def interface(self) -> dict[str, Any]:
        return {**super().interface(),
                "fixed_noise": {"seed": self.seed, "num_act_samples": int(self.noise.shape[0]),
                                "meaning": "BCQ's candidate latents, drawn once from the VAE prior at export and "
                                           "used for every state and call"}}


class PlanStatePolicy(ExportedPolicy):
    """LatentEM with `execution="open_loop"` and its plan queue as explicit state:
    (obs (B, obs_dim), plan (B, H, A), plan_step (B,) int64) -> (action (B, A), next_plan, next_plan_step).

    Env i plans from its observation where plan_step[i] >= H (start with plan_step = H, and set it to H at an
    episode start); otherwise it executes plan[i, plan_step[i]]. The plan is in the environment's bounds."""

    input_names = ("obs", "plan", "plan_step")
    output_names = ("action", "next_plan", "next_plan_step")

    def forward(self, obs: Tensor, plan: Tensor, plan_step: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        normalized = (obs - self.obs_mean) / self.obs_std
        fresh = self.to_env(model.decode_plan(normalized, model.latent_action(normalized, True)))
        replan = plan_step >= model.horizon
        plan = torch.where(replan[:, None, None], fresh, plan)
        step = torch.where(replan, torch.zeros_like(plan_step), plan_step)
        action = plan.gather(1, step[:, None, None].expand(-1, 1, plan.shape[-1])).squeeze(1)
        return action, plan, step + 1

    def example_inputs(self, batch: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        (obs,) = super().example_inputs(batch, generator)
        horizon = self.model.horizon
        unit = torch.rand(batch, horizon, self.action_low.shape[0], generator=generator).to(obs)
        plan = self.action_low + unit * (self.action_high - self.action_low)
        plan_step = torch.randint(horizon + 1, (batch,), generator=generator)  # both branches: replan and continue
        return obs, plan, plan_step

    def interface(self) -> dict[str, Any]:
        horizon, action_dim = self.model.horizon, self.action_low.shape[0]
        base = super().interface()
        return {"inputs": [*base["inputs"],
                           {"name": "plan", "dtype": "float32", "shape": ["batch", horizon, action_dim],
                            "meaning": "the plan being executed (next_plan of the previous call; zeros at first)"},
                           {"name": "plan_step", "dtype": "int64", "shape": ["batch"],
                            "meaning": f"the plan's next action; {horizon} (or more) plans anew from obs: pass "
                                       f"{horizon} at the first call and at each env's episode start"}],
                "outputs": [*base["outputs"],
                            {"name": "next_plan", "dtype": "float32", "shape": ["batch", horizon, action_dim],
                             "meaning": "feed back as plan"},
                            {"name": "next_plan_step", "dtype": "int64", "shape": ["batch"],
                             "meaning": "feed back as plan_step"}],
                "horizon": horizon}


def policy_module(model: nn.Module, seed: int = 0) -> ExportedPolicy:
    """The exported function of `model` (an `OfflineRLModule`), as an eager module (see the module docstring)."""
    from lit_offrl.algos import BCQ, LatentEM

    if isinstance(model, BCQ):
        return FixedNoiseBCQPolicy(model, seed=seed).eval()
    if isinstance(model, LatentEM) and model.execution == "open_loop":
        return PlanStatePolicy(model).eval()
    return ExportedPolicy(model).eval()


# ----------------------------------------------------------------------------------------------------------------
# tracing, writing, checking
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Silence torch's deprecation notices for torch.jit.trace and the ONNX exporter's logging (a missing
    torchvision), which say nothing about the policy being exported."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*deprecated")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            yield
    finally:
        logger.setLevel(level)


def _trace(policy: ExportedPolicy, inputs: tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    with torch.no_grad(), _quiet():
        return torch.jit.trace(policy, inputs, check_trace=False)


def _used_parts(traced: torch.jit.ScriptModule) -> set[str]:
    """Names of the networks under `parts` that the traced function reads."""
    graph = traced.inlined_graph
    nodes = [node for node in graph.nodes() if node.kind() == "prim::GetAttr"]
    parts = {node.output().unique() for node in nodes if node.s("name") == "parts"}
    return {node.s("name") for node in nodes if node.input().unique() in parts}


def traced_policy(model: nn.Module, seed: int = 0) -> tuple[ExportedPolicy, torch.jit.ScriptModule]:
    """(the eager exported function holding only the networks acting uses, its TorchScript trace).

    Raises `UserError` for a policy that draws random numbers, `ExportFailed` when tracing fails."""
    policy = policy_module(model, seed)
    inputs = policy.example_inputs(TRACE_BATCH_SIZE, torch.Generator().manual_seed(seed))
    name = type(model).__name__
    try:
        traced = _trace(policy, inputs)
        random_ops = sorted({node.kind() for node in traced.inlined_graph.nodes()} & RANDOM_OPS)
        if random_ops:
            raise UserError(f"cannot export {name}: its deterministic action (policy_action(obs, deterministic=True))"
                            f" draws random numbers ({', '.join(random_ops)}), so an exported graph would not be "
                            f"deterministic; give it a path with the noise as an argument (as BCQ's `z`) to export.")
        policy = policy.rebuilt(_used_parts(traced))
        return policy, _trace(policy, inputs)
    except UserError:
        raise
    except Exception as exc:  # the tracer's own errors: data-dependent Python, numpy, .item() in policy_action
        raise ExportFailed(f"tracing {name}.policy_action failed: {_message(exc)}") from exc


def _message(exc: BaseException) -> str:
    """An export failure's message in one line (its type where it has none)."""
    return one_line(exc, 400, empty=type(exc).__name__)


def _write_torchscript(traced: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> None:
    # Saved without requires_grad, so the loaded policy records no autograd graph; the trace shares its parameters
    # with the model, whose flags are restored.
    params = [p for p in traced.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata, indent=1)})
    finally:
        for p in params:
            p.requires_grad_(True)


def _write_onnx(policy: ExportedPolicy, inputs: tuple[Tensor, ...], path: Path, metadata: dict[str, Any]) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; say so before torch does, at length)
    except ImportError:
        raise UserError("--format onnx needs onnxscript (and onnxruntime to check the file): "
                        "pip install 'lit_offrl[export]'") from None
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(policy, inputs, dynamo=True, verbose=False, opset_version=ONNX_OPSET,
                                    input_names=list(policy.input_names), output_names=list(policy.output_names),
                                    dynamic_shapes=tuple({0: batch} for _ in inputs))
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    program.save(str(path), external_data=False)


def _run_file(path: Path, fmt: str, inputs: tuple[Tensor, ...], names: tuple[str, ...]) -> tuple[Tensor, ...]:
    """Run the written file: TorchScript with torch.jit.load, ONNX with onnxruntime on the CPU."""
    if fmt == "torchscript":
        with torch.no_grad():
            outputs = torch.jit.load(str(path), map_location="cpu")(*inputs)
        return outputs if isinstance(outputs, tuple) else (outputs,)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {name: value.cpu().numpy() for name, value in zip(names, inputs)})
    return tuple(torch.from_numpy(output) for output in outputs)


def _check(policy: ExportedPolicy, path: Path, fmt: str, seed: int) -> tuple[float, int]:
    """(max abs difference, number of observations) between the written file and the eager function."""
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UserError("checking the ONNX file needs onnxruntime: pip install 'lit_offrl[export]'") from None
    generator = torch.Generator().manual_seed(seed + 1)
    worst, count = 0.0, 0
    for batch in CHECK_BATCH_SIZES:
        inputs = policy.example_inputs(batch, generator)
        with torch.no_grad():
            expected = policy(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        try:
            got = _run_file(path, fmt, inputs, policy.input_names)
        except Exception as exc:
            raise ExportFailed(f"the written {fmt} file does not run on a batch of {batch}: {_message(exc)}") from exc
        for name, want, have in zip(policy.output_names, expected, got):
            if tuple(have.shape) != tuple(want.shape):
                raise ExportFailed(f"the written {fmt} file gives {name} of shape {tuple(have.shape)} for a batch of "
                                   f"{batch}, the policy {tuple(want.shape)} (a batch size fixed at tracing?)")
            worst = max(worst, (have.to(want.dtype) - want.cpu()).abs().max().item() if want.numel() else 0.0)
        count += batch
    if not worst <= CHECK_TOLERANCE:
        raise ExportFailed(f"the written {fmt} file differs from the policy by up to {worst:.3g} (> "
                           f"{CHECK_TOLERANCE:g}) on {count} observations around the data's mean; not written")
    return worst, count


def export_policy(model: nn.Module, out: str | os.PathLike, fmt: str, seed: int = 0,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `model`'s deterministic policy to `out` as `fmt` ("torchscript" or "onnx"), checked against the
    Python policy first (see the module docstring); returns the metadata record written with it, with the check's
    result (`check_max_abs_diff`, `check_observations`). `metadata` adds to the record (the checkpoint's dataset id
    and updates). Written atomically: a failed export leaves no file and keeps an existing one."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the file to write (e.g. {out / ('policy' + _suffix(fmt))})")
    was_training = model.training
    model.eval()
    try:
        policy, traced = traced_policy(model, seed)
        cls = type(model)
        record: dict[str, Any] = {
            "format": fmt, "algorithm": cls.__name__, "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "obs_dim": int(policy.obs_mean.shape[0]), "action_dim": int(policy.action_low.shape[0]),
            "action_low": policy.action_low.tolist(), "action_high": policy.action_high.tolist(),
            "dataset_id": None, "updates": int(getattr(model, "num_updates", 0)),
            **policy.interface(), "deterministic": True,
            "lit_offrl_version": _version(), "torch_version": torch.__version__, **(metadata or {})}
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            if fmt == "torchscript":
                _write_torchscript(traced, temporary, record)
            else:
                inputs = policy.example_inputs(TRACE_BATCH_SIZE, torch.Generator().manual_seed(seed))
                try:
                    _write_onnx(policy, inputs, temporary, record)
                except UserError:
                    raise
                except Exception as exc:
                    raise ExportFailed(f"the ONNX exporter failed on {cls.__name__}: {_message(exc)}") from exc
            worst, count = _check(policy, temporary, fmt, seed)
            os.replace(temporary, out)
        finally:
            temporary.unlink(missing_ok=True)
        return {**record, "check_max_abs_diff": worst, "check_observations": count}
    finally:
        model.train(was_training)


def _suffix(fmt: str) -> str:
    return ".onnx" if fmt == "onnx" else ".pt"


def _version() -> str:
    import lit_offrl

    return getattr(lit_offrl, "__version__", "unknown")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata record of an exported file (TorchScript or ONNX), without running it."""
    path = Path(path)
    if zipfile.is_zipfile(path):  # a TorchScript archive
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_KEY}.json")), None)
            if name is None:
                raise UserError(f"{path} is a TorchScript file without lit_offrl's metadata")
            return json.loads(archive.read(name))
    import onnx

    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    if METADATA_KEY not in props:
        raise UserError(f"{path} is an ONNX file without lit_offrl's metadata")
    return json.loads(props[METADATA_KEY])


# ----------------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------------


def load_checkpoint_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(the model a lit_offrl checkpoint holds, in eval mode, the checkpoint): its class from
    `checkpoint["lit_offrl"]["model_class"]` (or the CLI's `hyper_parameters["_class_path"]`), built with the saved
    hyperparameters, with the saved weights and statistics loaded strictly. Raises `UserError` naming what is wrong."""
    from lit_offrl.algos.base import OfflineRLModule

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file.")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a checkpoint file (a run's checkpoints/last.ckpt, for example).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, not a torch file, a pickle of missing classes
        reason = one_line(exc, 200, empty=type(exc).__name__)
        raise UserError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {reason}); give a "
                        f".ckpt written by `lit-offrl fit`.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict); give a .ckpt written by "
                        f"`lit-offrl fit`.")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = (checkpoint.get("lit_offrl") or {}).get("model_class") or hparams.get("_class_path")
    if not class_path:
        raise UserError(f"{path} records no model class (neither lit_offrl.model_class nor hyper_parameters."
                        f"_class_path): it was not written by a lit_offrl model.")
    module_name, _, class_name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        reason = one_line(exc, 200, empty=type(exc).__name__)
        raise UserError(f"{path} holds a {class_path}, which cannot be imported here ({reason}); "
                        f"install the package that defines it.") from None
    if not (isinstance(cls, type) and issubclass(cls, OfflineRLModule)):
        raise UserError(f"{path} holds a {class_path}, not a lit_offrl OfflineRLModule.")
    init_args = {key: value for key, value in hparams.items() if not key.startswith("_")}
    try:
        model = cls(**init_args)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: {cls.__name__} cannot be built from the checkpoint's hyperparameters "
                        f"({one_line(exc, 300, empty=type(exc).__name__)}).") from None
    model.on_load_checkpoint(checkpoint)  # as Lightning loads it: the model may upgrade an older checkpoint (CQL)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise UserError(f"{path}: its weights do not fit {cls.__name__} built from its hyperparameters: "
                        f"{one_line(exc, 500, empty=type(exc).__name__)}") from None
    return model.eval(), checkpoint


def checkpoint_metadata(checkpoint: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """What the metadata record says about the checkpoint: its dataset (or env) id, file name and updates."""
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    dataset_id = data.get("dataset_id") or data.get("offline_dataset_id") or data.get("env_id")
    record = {"dataset_id": dataset_id, "checkpoint": Path(path).name}
    state = checkpoint.get("state_dict") or {}
    if "num_updates" in state:
        record["updates"] = int(state["num_updates"])
    return record


# ----------------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises `UserError` (one line, no usage dump) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Write a checkpoint's deterministic policy as a standalone TorchScript "
                                            "or ONNX file: raw observations in, actions in the env's bounds out.")
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by `lit-offrl fit`")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="torchscript (torch.jit.load) or onnx (onnxruntime); default: from --out's suffix "
                             "(.onnx; .pt, .pth, .ts)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="the file to write (replaced if it exists); default: CKPT with the format's suffix")
    parser.add_argument("--seed", type=_seed, default=0, metavar="S",
                        help="BCQ only: seed of the constant latent draws baked into the policy (default 0)")
    return parser


def _format_and_out(args: argparse.Namespace) -> tuple[str, Path]:
    fmt = args.format
    if fmt is None:
        if args.out is None:
            raise UserError("give --format torchscript|onnx (or an --out FILE ending in .onnx or .pt).")
        fmt = SUFFIXES.get(Path(args.out).suffix.lower())
        if fmt is None:
            raise UserError(f"--out {args.out}: cannot tell the format from the suffix; add --format torchscript|onnx.")
    out = Path(args.out) if args.out is not None else Path(args.checkpoint).with_suffix(_suffix(fmt))
    return fmt, out


def main(argv: list[str]) -> int:
    """Run `lit-offrl export ARGV`; returns the exit status (0 written, 1 export failed, 2 bad input)."""
    try:
        args = _parser().parse_args(argv)
        fmt, out = _format_and_out(args)
        model, checkpoint = load_checkpoint_model(args.checkpoint)
        record = export_policy(model, out, fmt, seed=args.seed,
                               metadata=checkpoint_metadata(checkpoint, args.checkpoint))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ExportFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    interface = ", ".join(item["name"] for item in record["inputs"]) + " -> " + ", ".join(
        item["name"] for item in record["outputs"])
    print(f"lit_offrl: wrote {out} ({fmt}, {out.stat().st_size / 1024:.1f} KiB): {record['algorithm']} trained "
          f"{record['updates']} updates on {record['dataset_id'] or 'unknown data'}, {interface} (obs_dim "
          f"{record['obs_dim']}, action_dim {record['action_dim']}); matches the checkpoint's policy on "
          f"{record['check_observations']} observations (max abs difference {record['check_max_abs_diff']:.2g})")
    return 0
