"""The speed and scale paths: compiled networks give the eager numbers; two torchrun "nodes" train as one job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import lightning as L
import pytest
import torch

from conftest import FAST, MAZE_ID, REPO
from lit_offrl.algos import BC, TD3BC
from lit_offrl.callbacks import CompileNetworks
from lit_offrl.data.datamodule import OfflineDataModule


def fit_small(maze_root, tmp_path, callbacks, monkeypatch, cls=BC) -> BC | TD3BC:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, batch_size=64, eval_episodes=0)
    L.seed_everything(0, verbose=False)
    model = cls(8, 2, hidden_dims=(32, 32))
    trainer = L.Trainer(max_steps=4, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path, callbacks=callbacks)
    trainer.fit(model, dm)
    return model


@pytest.mark.parametrize("cls", [BC, TD3BC])
def test_compiled_updates_match_eager_updates(cls, maze_root, tmp_path, monkeypatch):
    """Four updates with every network compiled end with the parameters of four eager updates (same batches);
    TD3+BC's include two actor steps through a frozen Q_1-only critic."""
    eager = fit_small(maze_root, tmp_path, [], monkeypatch, cls)
    compiled = fit_small(maze_root, tmp_path, [CompileNetworks()], monkeypatch, cls)
    assert hasattr(compiled.actor, "_compiled_call_impl") and compiled.actor._compiled_call_impl is not None
    assert eager.state_dict().keys() == compiled.state_dict().keys(), "compiling must not rename parameters"
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(eager.actor.net[0].weight, cls(8, 2, hidden_dims=(32, 32)).actor.net[0].weight)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_over_localhost_end_identical(maze_root, tmp_path):
    """Multi-node launch as a cluster runs it: `torchrun --nnodes 2 --node_rank R` per node, rendezvous on
    127.0.0.1, `--trainer.num_nodes 2`. Both nodes end with identical parameters after different batches."""
    port = free_port()
    env = {**os.environ, "MINARI_DATASETS_PATH": str(maze_root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    procs = []
    for node in range(2):
        cwd = tmp_path / f"node{node}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
               str(REPO / "cli.py"), "fit", "--model", "TD3BC", *FAST, "--trainer.accelerator", "cpu",
               "--trainer.strategy", "ddp", "--trainer.devices", "1", "--trainer.num_nodes", "2",
               "--trainer.max_steps", "20", "--data.eval_episodes", "0",
               "--trainer.callbacks+=probes.DumpRankState", f"--trainer.callbacks.init_args.out_dir={tmp_path}"]
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(rank0["first_batch_obs"], rank1["first_batch_obs"]), "nodes must draw different batches"
    for name, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][name]), f"{name} differs between nodes"
    assert int(rank0["state"]["num_updates"]) == 20
    assert not torch.equal(rank0["state"]["actor.net.0.weight"], rank0["initial_actor"]), "nothing was trained"
