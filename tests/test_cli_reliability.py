"""The CLI off the tested path: preemption signals, `--ckpt_path last` on a folder of many runs, bad arguments.

Every run here is a real `cli.py fit` subprocess on the session's small PointMaze dataset (TD3+BC with 2x32
networks, so a run is mostly interpreter start-up); errors that end before training are checked in-process."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
import torch

from conftest import FAST, REPO, run_cli
from lit_offrl.cli import main

SMALL = ["--model", "TD3BC", "--model.hidden_dims", "[32,32]", *FAST, "--data.eval_episodes", "0"]
TRAIN = ["fit", *SMALL, "--checkpoint.every_n_updates", "30", "--trainer.max_steps", "120"]
PROBES = REPO / "tests"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def params(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load(path)["state_dict"].items() if not k.startswith("val_")}


def assert_same_params(a: Path, b: Path) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), f"{name} differs"


def signal_at(update: int, name: str) -> list[str]:
    return ["--trainer.callbacks+=probes.KillAtUpdate", f"--trainer.callbacks.init_args.update={update}",
            f"--trainer.callbacks.init_args.signal={name}"]


def in_process(args: list[str], root: Path, cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """`lit-offrl ARGS` in this process (for errors raised before training: no interpreter start-up)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def straight(maze_root, tmp_path_factory) -> Path:
    """last.ckpt of an uninterrupted 120-update run, the reference every interrupted run must end at."""
    cwd = tmp_path_factory.mktemp("straight")
    result = run_cli(TRAIN, maze_root, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_sigterm_writes_last_ckpt_exits_143_and_resumes_exactly(straight, maze_root, tmp_path):
    """A scheduler's SIGTERM at update 75 (checkpoints every 30): the run writes last.ckpt at update 75, exits
    143 (not 0: the work is not done), and the same command plus --ckpt_path last ends at the uninterrupted
    run's exact parameters."""
    stopped = run_cli([*TRAIN, *signal_at(75, "SIGTERM")], maze_root, tmp_path, PROBES)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "stopped by SIGTERM after update 75" in stopped.stderr and "Traceback" not in stopped.stderr
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert int(load(ckpt)["state_dict"]["num_updates"]) == 75
    resumed = run_cli([*TRAIN, "--ckpt_path", "last"], maze_root, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at update 75" in resumed.stderr
    assert int(load(ckpt)["state_dict"]["num_updates"]) == 120
    assert_same_params(straight, ckpt)


def test_sigint_writes_last_ckpt_exits_130_and_default_root_dir_places_the_run(maze_root, tmp_path):
    """Ctrl-C at update 45 writes last.ckpt there and exits 130. `--trainer.default_root_dir DIR` puts the run
    (logs, config, checkpoints) under DIR/lightning_logs, not the working folder, and `last` looks there."""
    root = tmp_path / "elsewhere"
    common = [*TRAIN, "--trainer.default_root_dir", str(root)]
    stopped = run_cli([*common, *signal_at(45, "SIGINT")], maze_root, tmp_path, PROBES)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "stopped by SIGINT after update 45" in stopped.stderr and "Traceback" not in stopped.stderr
    ckpt = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert int(load(ckpt)["state_dict"]["num_updates"]) == 45
    assert (root / "lightning_logs" / "version_0" / "config.yaml").exists()
    assert not (tmp_path / "lightning_logs").exists()
    resumed = run_cli([*common, "--trainer.max_steps", "60", "--ckpt_path", "last"], maze_root, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert int(load(ckpt)["state_dict"]["num_updates"]) == 60
    assert sorted(p.name for p in (root / "lightning_logs").iterdir()) == ["version_0"]


def test_slurm_requeue_signal_checkpoints_requeues_and_the_requeued_job_resumes(straight, maze_root, tmp_path):
    """Under SLURM (auto_requeue, Lightning's default there) SIGUSR1 at update 50 writes last.ckpt at 50 and calls
    `scontrol requeue JOB`; the requeued job (same command, SLURM_RESTART_COUNT=1, no --ckpt_path) resumes that
    run and ends exactly at the uninterrupted run's parameters. scontrol is a stand-in script that records its
    arguments (no cluster here)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env_before = dict(os.environ)
    try:
        os.environ.update(slurm)
        os.environ.pop("SLURM_RESTART_COUNT", None)
        stopped = run_cli([*TRAIN, *signal_at(50, "SIGUSR1")], maze_root, tmp_path, PROBES)
        assert stopped.returncode == 128 + signal.SIGUSR1, stopped.stderr[-3000:]
        assert calls.read_text().split() == ["requeue", "4242"]
        assert "SLURM job 4242 requeued" in stopped.stderr
        ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        assert int(load(ckpt)["state_dict"]["num_updates"]) == 50
        os.environ["SLURM_RESTART_COUNT"] = "1"
        requeued = run_cli(TRAIN, maze_root, tmp_path)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "SLURM job 4242 requeued: resuming lightning_logs/version_0" in requeued.stderr
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert_same_params(straight, ckpt)


@pytest.fixture(scope="module")
def seed3_run(maze_root, tmp_path_factory) -> Path:
    """A folder holding one 20-update TD3BC run with --data.seed 3."""
    cwd = tmp_path_factory.mktemp("seed3")
    result = run_cli(["fit", *SMALL, "--data.seed", "3", "--trainer.max_steps", "20"], maze_root, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd


def test_ckpt_path_last_resumes_only_a_run_of_the_same_model_dataset_and_seed(seed3_run, maze_root, tmp_path,
                                                                              capsys, monkeypatch):
    cwd = tmp_path / "runs"
    shutil.copytree(seed3_run, cwd)
    run_dir = cwd / "lightning_logs" / "version_0"
    before = {p: p.read_bytes() for p in (run_dir / "checkpoints" / "last.ckpt", run_dir / "config.yaml")}
    for args, reason in (([ "--model", "IQL"], "model TD3BC, not IQL"), (["--data.seed", "1"], "seed 3, not 1")):
        extra = [*SMALL, "--data.seed", "3", *args] if args[0] == "--model" else [*SMALL, *args]
        code, err = in_process(["fit", *extra, "--trainer.max_steps", "40", "--ckpt_path", "last"], maze_root, cwd,
                               capsys, monkeypatch)
        assert code == 2
        assert "no run of" in err and "version_0" in err and reason in err, err
    assert {p: p.read_bytes() for p in before} == before, "another run's checkpoint or config was written"
    assert sorted(p.name for p in (cwd / "lightning_logs").iterdir()) == ["version_0"]
    # A truncated last.ckpt in another run folder is skipped with a warning naming it; the matching run resumes.
    broken = cwd / "lightning_logs" / "version_7" / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    data = before[run_dir / "checkpoints" / "last.ckpt"]
    broken.write_bytes(data[: len(data) // 2])
    resumed = run_cli(["fit", *SMALL, "--data.seed", "3", "--trainer.max_steps", "30", "--ckpt_path", "last"],
                      maze_root, cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipping {Path('lightning_logs/version_7/checkpoints/last.ckpt')}" in resumed.stderr
    assert "resuming lightning_logs/version_0 (TD3BC on dataset_id lit-offrl/pointmaze/umaze-v0, seed 3)" \
        in resumed.stderr
    assert int(load(run_dir / "checkpoints" / "last.ckpt")["state_dict"]["num_updates"]) == 30


def test_a_checkpoint_of_another_model_or_other_dimensions_is_refused(seed3_run, maze_root, capsys, monkeypatch):
    ckpt = str(seed3_run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    code, err = in_process(["validate", "--model", "IQL", *FAST, "--ckpt_path", ckpt], maze_root, seed3_run,
                           capsys, monkeypatch)
    assert code == 2 and "is a TD3BC checkpoint but --model is IQL" in err, err
    code, err = in_process(["fit", *SMALL, "--model.obs_dim", "5", "--trainer.max_steps", "5"], maze_root,
                           seed3_run, capsys, monkeypatch)
    assert code == 2 and "--model.obs_dim 5 does not match the data" in err and "obs_dim=8" in err, err


@pytest.mark.parametrize("args, message", [
    (["--trainer.max_steps", "0"], "--trainer.max_steps 0: give the number of gradient updates"),
    (["--trainer.max_steps", "-5"], "--trainer.max_steps -5"),
    (["--ckpt_path", "no/such.ckpt"], "--ckpt_path no/such.ckpt: no such checkpoint file"),
    (["--model", "NoSuchAlgo"], "--model NoSuchAlgo: no such algorithm. Available: "),
    (["--data.updates_per_step", "4", "--trainer.max_steps", "10"],
     "--trainer.max_steps 10 is not a multiple of --data.updates_per_step 4"),
    (["--data.updates_per_step", "4", "--trainer.max_steps", "8", "--checkpoint.every_n_updates", "6"],
     "--checkpoint.every_n_updates 6 is not a multiple of --data.updates_per_step 4"),
])
def test_bad_arguments_are_one_line_before_anything_is_written(args, message, maze_root, tmp_path, capsys,
                                                               monkeypatch):
    code, err = in_process(["fit", *SMALL, *args], maze_root, tmp_path, capsys, monkeypatch)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("lit-offrl: error:")]
    assert len(lines) == 1 and message in lines[0], err
    if args[0] == "--model":
        assert "TD3BC" in lines[0] and "IQL" in lines[0] and "CQL" in lines[0]
    assert not (tmp_path / "lightning_logs").exists(), "a failed command left a run folder"


def test_a_truncated_checkpoint_given_by_path_is_one_line(seed3_run, maze_root, tmp_path, capsys, monkeypatch):
    data = (seed3_run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[:1000])
    code, err = in_process(["fit", *SMALL, "--ckpt_path", "cut.ckpt"], maze_root, tmp_path, capsys, monkeypatch)
    assert code == 2 and "--ckpt_path cut.ckpt: not a readable checkpoint" in err, err


def test_a_signal_to_one_ddp_rank_stops_every_rank_at_the_same_update(maze_root, tmp_path):
    """SIGINT to rank 1 only (2 CPU processes, gloo): the ranks agree to stop after the same update (an all-reduce of
    the stop flag), rank 0 writes last.ckpt there and the run exits 130 instead of hanging in a collective."""
    result = run_cli([*TRAIN, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                      *signal_at(20, "SIGINT"), "--trainer.callbacks.init_args.rank=1"], maze_root, tmp_path, PROBES,
                     timeout=180)
    assert result.returncode == 130, result.stderr[-3000:]
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert int(load(ckpt)["state_dict"]["num_updates"]) in (20, 21)


def test_ckpt_path_last_matches_the_hyperparameters_a_command_sets(seed3_run, maze_root, tmp_path, capsys,
                                                                  monkeypatch):
    """In a sweep over alpha, `--model.alpha 1 --ckpt_path last` does not resume the alpha=2.5 run (the default);
    a bad hyperparameter value is not reported as an unknown algorithm."""
    code, err = in_process(["fit", *SMALL, "--data.seed", "3", "--model.alpha", "1", "--trainer.max_steps", "40",
                            "--ckpt_path", "last"], maze_root, seed3_run, capsys, monkeypatch)
    assert code == 2 and "TD3BC (alpha=1.0, hidden_dims=(32, 32))" in err and "model.alpha 2.5, not 1.0" in err, err
    with pytest.raises(SystemExit):
        main(["fit", *SMALL, "--model.alpha", "abc"])
    assert "no such algorithm" not in capsys.readouterr().err
