"""`lit-offrl export`: the exported TorchScript and ONNX policies compute `model.act` on dataset observations,
load without lit_offrl, carry their metadata; refusals and bad input end in one line with exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import onnxruntime
import pytest
import torch

import lit_offrl
from conftest import MAZE_ID, attached
from lit_offrl import export
from lit_offrl.algos import BC, BCQ, IQL, PLAS, TD3BC, LatentEM
from lit_offrl.data.datamodule import OfflineDataModule

TOLERANCE = 1e-5  # float32 rounding of the same networks in another runtime
HIDDEN = (32, 32)
UPDATES = 4
HORIZON = 4
ALGOS = {  # small networks; PLAS and LatentEM pass their pretraining phases within UPDATES
    "BC": lambda: BC(8, 2, hidden_dims=HIDDEN),
    "TD3BC": lambda: TD3BC(8, 2, hidden_dims=HIDDEN),
    "IQL": lambda: IQL(8, 2, hidden_dims=HIDDEN),
    "PLAS": lambda: PLAS(8, 2, vae_pretrain_steps=2, vae_hidden_dims=HIDDEN, actor_hidden_dims=HIDDEN,
                         critic_hidden_dims=HIDDEN),
    "BCQ": lambda: BCQ(8, 2, vae_hidden_dims=HIDDEN, hidden_dims=HIDDEN),
    "LatentEM": lambda: LatentEM(8, 2, horizon=HORIZON, vae_steps=2, return_steps=1, vae_hidden_dims=HIDDEN,
                                 hidden_dims=HIDDEN),  # execution="open_loop": the plan is explicit state
}
# ONNX export takes seconds per model: PLAS (latent policy -> decoder) is left to TorchScript, LatentEM's ONNX
# graph holds the same path.
ONNX_ALGOS = [name for name in ALGOS if name != "PLAS"]


class NoisyBC(BC):
    """A BC whose 'deterministic' action adds noise: the exporter must refuse it."""

    def policy_action(self, obs, deterministic=True):
        action = super().policy_action(obs, deterministic)
        return (action + 0.01 * torch.randn_like(action)).clamp(-1.0, 1.0)


def _fit(model, dm, root: Path, updates: int) -> Path:
    """Train `updates` updates and write the checkpoint `lit-offrl fit` would, with asymmetric action bounds (the
    maze's are [-1, 1], where the scaling to the bounds would be the identity)."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=updates, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    trainer.fit(model, dm)
    with torch.no_grad():
        model.action_low.copy_(torch.tensor([-2.0, -0.5]))
        model.action_high.copy_(torch.tensor([3.0, 0.25]))
    path = root / f"{type(model).__name__}.ckpt"
    trainer.save_checkpoint(path)
    return path


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = export.main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(maze_root, tmp_path_factory):
    """Each of ALGOS trained UPDATES updates, checkpointed and exported by the CLI in both formats:
    name -> dict(model, ckpt, torchscript, onnx, stdout), plus the 1,000 raw dataset observations under "obs"."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(maze_root))
        runs: dict = {}
        for name, build in ALGOS.items():
            dm = OfflineDataModule(MAZE_ID, batch_size=64, eval_episodes=0,
                                   sequence_length=HORIZON if name == "LatentEM" else 1)
            model = build()
            ckpt = _fit(model, dm, root / name, UPDATES)
            run = {"model": model.eval(), "ckpt": ckpt}
            for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx"))[:2 if name in ONNX_ALGOS else 1]:
                path = root / name / f"policy{suffix}"
                status, stdout, stderr = _main([str(ckpt), "--format", fmt, "--out", str(path)])
                assert status == 0, stderr
                run[fmt], run[f"{fmt}_stdout"] = path, stdout
            runs[name] = run
        runs["obs"] = dm.data.observations[::6][:1000].copy()  # raw: before the module's normalization
    assert runs["obs"].shape == (1000, 8)
    return runs


def _observation_sequence(name: str, obs: np.ndarray) -> list[np.ndarray]:
    """The calls to compare: one batch for a stateless policy; 2H + 1 steps of shifted batches for LatentEM's open
    loop (plans at calls 0, H and 2H, executes queued actions in between)."""
    return [np.roll(obs, 37 * t, axis=0) for t in range(2 * HORIZON + 1)] if name == "LatentEM" else [obs]


def _run_exported(fmt: str, path: Path, name: str, calls: list[np.ndarray]) -> list[np.ndarray]:
    """Actions of the exported file for each call, feeding LatentEM's plan state back."""
    if fmt == "torchscript":
        policy = torch.jit.load(str(path))
        run = lambda *inputs: [x.numpy() for x in _tuple(policy(*(torch.from_numpy(i) for i in inputs)))]  # noqa: E731
    else:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        run = lambda *inputs: session.run(None, dict(zip(names, inputs)))  # noqa: E731
    actions = []
    state = (np.zeros((len(calls[0]), HORIZON, 2), np.float32), np.full(len(calls[0]), HORIZON, np.int64))
    for obs in calls:
        if name == "LatentEM":
            action, *state = run(obs, *state)
        else:
            (action,) = run(obs)
        actions.append(action)
    return actions


def _tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _expected_actions(name: str, model, calls: list[np.ndarray], monkeypatch) -> list[np.ndarray]:
    if name == "BCQ":  # the export's constant latents, as if the prior drew them for every state
        noise = export.FixedNoiseBCQPolicy(model, seed=0).noise
        monkeypatch.setattr(model.vae, "sample_prior", lambda shape, like: noise.repeat(shape[0] // len(noise), 1))
    if name == "LatentEM":
        model.reset_plan()
    return [model.act(obs).numpy() for obs in calls]


@pytest.mark.parametrize("name, fmt", [(name, "torchscript") for name in ALGOS] +
                         [(name, "onnx") for name in ONNX_ALGOS])
def test_exported_policy_matches_act_on_dataset_observations(exported, name, fmt, monkeypatch):
    run = exported[name]
    calls = _observation_sequence(name, exported["obs"])
    expected = _expected_actions(name, run["model"], calls, monkeypatch)
    got = _run_exported(fmt, run[fmt], name, calls)
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    spread = float(np.concatenate(expected).std(0).min())
    print(f"export {name} {fmt}: max |exported - act| = {diff:.3g} over {len(calls)} x 1000 observations")
    assert diff < TOLERANCE, f"{name} {fmt}: max abs difference {diff:.3g} >= {TOLERANCE:g}"
    assert all(g.shape == (1000, 2) and g.dtype == np.float32 for g in got)
    assert spread > 1e-3, f"{name}: the actions hardly vary over the observations (std {spread:.3g}), a weak test"
    assert "matches the checkpoint's policy" in run[f"{fmt}_stdout"]


def test_torchscript_files_load_and_act_without_lit_offrl(exported, tmp_path, monkeypatch):
    """Plain torch in an isolated interpreter (`python -I`, lit_offrl imports blocked): each file loads, acts like
    `model.act`, and its extra file holds the metadata."""
    np.save(tmp_path / "obs.npy", exported["obs"])
    names = [name for name in ALGOS if name != "LatentEM"]  # stateless ones: obs -> action
    files = {name: str(exported[name]["torchscript"]) for name in names}
    script = f"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "lit_offrl":
            raise ImportError("lit_offrl must not be imported")
sys.meta_path.insert(0, Block())
import numpy as np, torch
obs = torch.from_numpy(np.load("obs.npy"))
result = {{}}
for name, path in {files!r}.items():
    extra = {{"lit_offrl.json": ""}}
    policy = torch.jit.load(path, _extra_files=extra)
    with torch.no_grad():
        np.save(name + ".npy", policy(obs).numpy())
    result[name] = json.loads(extra["lit_offrl.json"])
assert not any(m.split(".")[0] == "lit_offrl" for m in sys.modules)
print(json.dumps(result))
"""
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    obs = exported["obs"]
    for name in names:
        model = exported[name]["model"]
        (expected,) = _expected_actions(name, model, [obs], monkeypatch)
        diff = float(np.abs(np.load(tmp_path / f"{name}.npy") - expected).max())
        assert diff < TOLERANCE, f"{name} loaded without lit_offrl: max abs difference {diff:.3g}"
        record = metadata[name]
        assert record["algorithm"] == name and record["format"] == "torchscript"
        assert (record["obs_dim"], record["action_dim"], record["dataset_id"]) == (8, 2, MAZE_ID)
        assert record["action_low"] == model.action_low.tolist() and record["action_high"] == model.action_high.tolist()
        assert record["updates"] == UPDATES and record["lit_offrl_version"] == lit_offrl.__version__
        assert record["deterministic"] is True


def test_onnx_metadata_and_interface(exported):
    """The ONNX files' metadata as onnxruntime shows it; dynamic batch; LatentEM's plan state in the interface."""
    for name in ONNX_ALGOS:
        session = onnxruntime.InferenceSession(str(exported[name]["onnx"]), providers=["CPUExecutionProvider"])
        record = json.loads(session.get_modelmeta().custom_metadata_map["lit_offrl"])
        assert record == export.read_metadata(exported[name]["onnx"])
        assert (record["algorithm"], record["format"], record["dataset_id"]) == (name, "onnx", MAZE_ID)
        assert record["action_high"] == exported[name]["model"].action_high.tolist()
        inputs = [(i.name, i.shape) for i in session.get_inputs()]
        if name == "LatentEM":
            assert inputs == [("obs", ["batch", 8]), ("plan", ["batch", HORIZON, 2]), ("plan_step", ["batch"])]
            assert [o.name for o in session.get_outputs()] == ["action", "next_plan", "next_plan_step"]
            assert record["horizon"] == HORIZON
        else:
            assert inputs == [("obs", ["batch", 8])]
            assert session.run(None, {"obs": exported["obs"][:1]})[0].shape == (1, 2)
    assert export.read_metadata(exported["BCQ"]["onnx"])["fixed_noise"]["seed"] == 0


def test_refuses_a_policy_that_samples_and_writes_nothing(maze_dm, tmp_path):
    ckpt = tmp_path / "noisy.ckpt"
    model = attached(NoisyBC(8, 2, hidden_dims=(8,)), maze_dm, tmp_path)
    model.trainer.save_checkpoint(ckpt)
    out = tmp_path / "noisy.onnx"
    status, stdout, stderr = _main([str(ckpt), "--out", str(out)])  # the format from the suffix
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("lit-offrl export: error: cannot export NoisyBC: ")
    assert "draws random numbers (aten::randn_like)" in stderr
    assert not out.exists() and list(tmp_path.glob(".noisy.onnx.tmp-*")) == []


def test_bad_input_is_one_line_with_status_2(tmp_path):
    missing = tmp_path / "missing.ckpt"
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [([str(missing), "--format", "onnx", "--out", str(tmp_path / "p.onnx")], "no such checkpoint file"),
             ([str(garbage), "--format", "torchscript"], "is not a readable checkpoint"),
             ([str(missing)], "give --format torchscript|onnx"),
             ([str(missing), "--out", str(tmp_path / "p.bin")], "cannot tell the format from the suffix"),
             ([str(missing), "--format", "tflite"], "invalid choice: 'tflite'")]
    for argv, message in cases:
        status, stdout, stderr = _main(argv)
        assert (status, stdout) == (2, ""), (argv, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith("lit-offrl export: error: ") and message in stderr, stderr
    assert not (tmp_path / "p.onnx").exists()
