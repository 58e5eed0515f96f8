"""End-to-end training through the CLI and the Trainer: real PointMaze data, real rollouts, real checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAST, MAZE_ID, REPO, run_cli

USERPKG = REPO / "tests" / "userpkg"


def last_checkpoint(cwd: Path) -> Path:
    found = sorted(cwd.glob("lightning_logs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    assert found, f"no last.ckpt under {cwd}/lightning_logs"
    return found[-1]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("algo", ["BC", "TD3BC", "IQL"])
def test_cli_fit_then_validate(algo, maze_root, tmp_path):
    """fit trains exactly --trainer.max_steps updates (not optimizer steps), logs to TensorBoard, keeps
    last.ckpt, and validate rolls the checkpoint out and prints the normalized score."""
    fit = run_cli(["fit", "--model", algo, *FAST, "--trainer.max_steps", "120", "--trainer.val_check_interval", "60",
                   "--checkpoint.every_n_updates", "50"], maze_root, tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = last_checkpoint(tmp_path)
    state = load(ckpt)
    assert int(state["state_dict"]["num_updates"]) == 120
    optimizers_per_update = {"BC": 1.0, "TD3BC": 1.5, "IQL": 3.0}[algo]  # TD3+BC: actor every 2nd update
    assert state["global_step"] == int(120 * optimizers_per_update)
    assert state["hyper_parameters"]["obs_dim"] == 8 and state["hyper_parameters"]["action_dim"] == 2
    events = list(tmp_path.glob("lightning_logs/*/events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [59, 119], "evaluate every 60 updates"
    assert "train/actor_loss" in scalars.Tags()["scalars"]
    assert (ckpt.parent.parent / "config.yaml").exists()
    val = run_cli(["validate", "--model", algo, *FAST, "--ckpt_path", str(ckpt)], maze_root, tmp_path)
    assert val.returncode == 0, val.stderr[-3000:]
    assert "val/normalized_score" in val.stdout and "val/return" in val.stdout


def _params(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("val_")}


def assert_same_training_state(straight: dict, resumed: dict) -> None:
    """Two checkpoints hold bit-identical parameters, buffers and optimizer moments."""
    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    for opt_a, opt_b in zip(straight["optimizer_states"], resumed["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for key, moments in opt_a["state"].items():
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(moments[moment], opt_b["state"][key][moment]), f"optimizer {moment} differs"


def test_resume_matches_uninterrupted_run(maze_root, tmp_path):
    """A run stopped at update 60 and resumed with `--ckpt_path last` ends with exactly the parameters,
    targets, optimizer states and sampler position of an uninterrupted 120-update run; the resumed half runs 5
    updates per training step (`--data.updates_per_step 5`, one gather of 5 minibatches), which changes nothing."""
    common = ["fit", "--model", "TD3BC", *FAST, "--data.eval_episodes", "0", "--checkpoint.every_n_updates", "30"]
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight_dir.mkdir(), resumed_dir.mkdir()
    assert run_cli([*common, "--trainer.max_steps", "120"], maze_root, straight_dir).returncode == 0
    first = run_cli([*common, "--trainer.max_steps", "60"], maze_root, resumed_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*common, "--trainer.max_steps", "120", "--ckpt_path", "last", "--data.updates_per_step", "5"],
                     maze_root, resumed_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(list(resumed_dir.glob("lightning_logs/*"))) == 1, "the resumed run must continue in its run folder"
    straight, resumed = load(last_checkpoint(straight_dir)), load(last_checkpoint(resumed_dir))
    assert int(resumed["state_dict"]["num_updates"]) == 120
    assert_same_training_state(straight, resumed)
    assert straight["OfflineDataModule"]["consumed_batches"] == resumed["OfflineDataModule"]["consumed_batches"] == 120


def test_killed_run_resumes_as_if_it_had_not_stopped(maze_root, tmp_path):
    """IQL (three optimizers, a cosine learning-rate schedule over the run) SIGKILLed at update 75 and
    restarted with the same command plus `--ckpt_path last` ends exactly like a run that was never killed."""
    common = ["fit", "--model", "IQL", *FAST, "--data.eval_episodes", "0", "--checkpoint.every_n_updates", "30",
              "--trainer.max_steps", "120"]
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight_dir.mkdir(), killed_dir.mkdir()
    assert run_cli(common, maze_root, straight_dir).returncode == 0
    killed = run_cli([*common, "--trainer.callbacks+=probes.KillAtUpdate", "--trainer.callbacks.init_args.update=75"],
                     maze_root, killed_dir, REPO / "tests")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert int(load(last_checkpoint(killed_dir))["state_dict"]["num_updates"]) == 60
    resumed = run_cli([*common, "--ckpt_path", "last"], maze_root, killed_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, after = load(last_checkpoint(straight_dir)), load(last_checkpoint(killed_dir))
    a, b = _params(straight), _params(after)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after the kill and resume"
    assert straight["lr_schedulers"][0]["_last_lr"] == after["lr_schedulers"][0]["_last_lr"]


def test_user_subclass_by_class_path(maze_root, tmp_path):
    """A subclass in the user's own package swaps the critic and adds a loss term, and trains by class path."""
    result = run_cli(["fit", "--model", "mypkg.MyTD3BC", "--model.action_penalty", "0.5", *FAST,
                      "--trainer.max_steps", "40", "--data.eval_episodes", "0"], maze_root, tmp_path, USERPKG)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load(last_checkpoint(tmp_path))
    assert any("critic.net.1.weight" == k for k in state["state_dict"]), "critic should have LayerNorm after layer 0"
    assert state["state_dict"]["critic.net.0.weight"].shape == (2, 10, 64)
    assert state["hyper_parameters"]["action_penalty"] == 0.5
    events = list(tmp_path.glob("lightning_logs/*/events.out.tfevents.*"))
    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/action_penalty" in tags and "train/critic_loss" in tags


def test_nonfinite_loss_stops_run_and_keeps_last_good_checkpoint(maze_root, tmp_path):
    result = run_cli(["fit", "--model", "mypkg.PoisonedTD3BC", "--model.poison_at", "6", *FAST,
                      "--trainer.log_every_n_steps", "4", "--checkpoint.every_n_updates", "5",
                      "--trainer.max_steps", "40", "--data.eval_episodes", "0"], maze_root, tmp_path, USERPKG)
    assert result.returncode == 1
    assert "NaN or infinite at update 7" in result.stderr and "critic_loss" in result.stderr
    assert "Traceback" not in result.stderr
    state = load(last_checkpoint(tmp_path))
    assert int(state["state_dict"]["num_updates"]) == 5
    assert all(torch.isfinite(v).all() for v in _params(state).values() if v.is_floating_point())


def test_nan_gradient_with_finite_loss_never_reaches_a_checkpoint(maze_root, tmp_path):
    # Poisoned at the update just before a checkpoint: the loss was still finite, only the weights are not.
    result = run_cli(["fit", "--model", "mypkg.NaNGradientBC", "--model.poison_at", "19", *FAST,
                      "--trainer.log_every_n_steps", "50", "--checkpoint.every_n_updates", "10",
                      "--trainer.max_steps", "40", "--data.eval_episodes", "0"], maze_root, tmp_path, USERPKG)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "a parameter became NaN or infinite by update 20" in result.stderr
    state = load(last_checkpoint(tmp_path))
    assert int(state["state_dict"]["num_updates"]) == 10
    assert all(torch.isfinite(v).all() for v in _params(state).values() if v.is_floating_point())


def test_bad_dataset_id_is_one_clear_error(maze_root, tmp_path):
    result = run_cli(["fit", "--model", "BC", *FAST, "--data.dataset_id", "nobody/nothing-v0"], maze_root, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "nobody/nothing-v0" in result.stderr and str(maze_root) in result.stderr and MAZE_ID in result.stderr


def test_bf16_mixed_trains_with_finite_losses(maze_root, tmp_path):
    result = run_cli(["fit", "--model", "IQL", *FAST, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "60",
                      "--data.eval_episodes", "1", "--trainer.callbacks+=probes.RecordCriticDtype",
                      f"--trainer.callbacks.init_args.out_file={tmp_path / 'dtype.txt'}"], maze_root, tmp_path,
                     REPO / "tests")
    assert result.returncode == 0, result.stderr[-3000:]  # a non-finite loss would have stopped the run (exit 1)
    assert (tmp_path / "dtype.txt").read_text() == "torch.bfloat16", "the critic did not run under bf16 autocast"
    # One line says so where bf16 is emulated (an AVX2-only CPU), and nothing where the CPU computes it.
    from lit_offrl.algos.base import cpu_has_bf16

    assert ("it is emulated" in result.stderr) == (not cpu_has_bf16()), result.stderr[-2000:]
    state = load(last_checkpoint(tmp_path))
    assert int(state["state_dict"]["num_updates"]) == 60
    assert all(torch.isfinite(v).all() for v in _params(state).values() if v.is_floating_point())


def test_ddp_two_processes_keep_ranks_identical(maze_root, tmp_path):
    """`--trainer.strategy ddp --trainer.devices 2` on CPU (gloo): ranks draw different batches, yet after
    training every parameter and target parameter is identical on both ranks (gradients are averaged)."""
    result = run_cli(["fit", "--model", "TD3BC", *FAST, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                      "--trainer.devices", "2", "--trainer.max_steps", "30", "--data.eval_episodes", "3",
                      "--trainer.callbacks+=probes.DumpRankState", f"--trainer.callbacks.init_args.out_dir={tmp_path}"],
                     maze_root, tmp_path, REPO / "tests")
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(rank0["first_batch_obs"], rank1["first_batch_obs"]), "ranks must draw different batches"
    assert rank0["state"].keys() == rank1["state"].keys()
    for name, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][name]), f"{name} differs between ranks"
    assert not torch.equal(rank0["state"]["actor.net.0.weight"], rank0["initial_actor"]), "nothing was trained"
    assert int(rank0["state"]["num_updates"]) == 30
    assert rank0["val_return"] == rank1["val_return"], "evaluation must be aggregated across ranks"


def test_updates_per_step_keeps_evaluations_and_logged_steps_on_the_update_count(maze_root, tmp_path, monkeypatch):
    """With 4 updates per training step the evaluations still run after updates 8 and 16 (val_check_interval 8)
    and every logger step is an update count, as with one update per step."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lit_offrl.algos import TD3BC
    from lit_offrl.data.datamodule import OfflineDataModule

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    rows = {}
    for per_step in (1, 4):
        dm = OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=1, updates_per_step=per_step)
        L.seed_everything(0, verbose=False)
        model = TD3BC(dm.obs_dim, dm.action_dim, hidden_dims=(16,))
        logger = CSVLogger(tmp_path, name=f"k{per_step}")
        trainer = L.Trainer(max_steps=16, max_epochs=-1, val_check_interval=8, log_every_n_steps=4, logger=logger,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", devices=1, num_sanity_val_steps=0)
        trainer.fit(model, datamodule=dm)
        with open(logger.log_dir + "/metrics.csv") as file:
            rows[per_step] = [(row["step"], row["val/return"], row["train/critic_loss"]) for row in csv.DictReader(file)]
        assert int(model.num_updates) == 16
    assert rows[1] == rows[4]
    assert [step for step, val, _ in rows[4] if val] == ["7", "15"]


def test_resuming_with_another_updates_per_step_keeps_evaluations_on_the_update_count(maze_root, tmp_path,
                                                                                     monkeypatch):
    """A run saved at update 12 with one update per step and resumed with 4 evaluates after updates 16 and 24
    (val_check_interval 8) and Lightning's per-step logging (here LearningRateMonitor) still fires; a checkpoint at
    an update that is not a multiple of the new K is one error line."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback, LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    from lit_offrl.algos import IQL
    from lit_offrl.callbacks import UpdateCheckpoint
    from lit_offrl.data.datamodule import OfflineDataModule
    from lit_offrl.errors import UserError

    class Evaluated(Callback):
        def __init__(self):
            self.at = []

        def on_validation_end(self, trainer, module):
            self.at.append(module._updates)

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))

    def fit(per_step, max_steps, every, ckpt=None):
        dm = OfflineDataModule(MAZE_ID, batch_size=16, eval_episodes=1, updates_per_step=per_step)
        model, evaluated = IQL(dm.obs_dim, dm.action_dim, hidden_dims=(8,)), Evaluated()
        logger = CSVLogger(tmp_path, name="log", version=0)
        trainer = L.Trainer(max_steps=max_steps, max_epochs=-1, val_check_interval=8, log_every_n_steps=4,
                            logger=logger, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                            num_sanity_val_steps=0, callbacks=[evaluated, LearningRateMonitor("step"),
                                                               UpdateCheckpoint(every, dirpath=tmp_path / "ckpt")])
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        return evaluated.at, logger

    assert fit(1, 12, 12)[0] == [8, 12]
    evaluated, logger = fit(4, 24, 4, ckpt=tmp_path / "ckpt" / "last.ckpt")
    assert evaluated == [16, 24]
    import csv

    with open(tmp_path / "log" / "version_0" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    lr_steps = [int(row["step"]) for row in rows if any(key.startswith("lr-") and row[key] for key in row)]
    assert [step for step in lr_steps if step >= 12] == [15, 19, 23]  # every 4th update, as with one per step
    fit(1, 30, 30)  # the same run continued to update 30 with one update per step, then resumed with 4
    with pytest.raises(UserError, match="update 30, not a multiple of data.updates_per_step 4"):
        fit(4, 40, 4, ckpt=tmp_path / "ckpt" / "last.ckpt")
