"""Any Lightning logger: `--trainer.logger CSVLogger` gets every metric TensorBoard gets, with the update counter as
its step, and `--ckpt_path last` and `lit-offrl report` find the run. (W&B and MLflow are not installed here.)"""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from lit_offrl import report
from conftest import FAST, run_cli

CSV_FIT = ["fit", "--model", "TD3BC", "--model.hidden_dims", "[32,32]", *FAST, "--trainer.val_check_interval", "20",
           "--trainer.logger", "CSVLogger", "--trainer.default_root_dir", "runs"]


def rows(path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def steps(table: list[dict[str, str]], column: str) -> list[int]:
    return [int(row["step"]) for row in table if row.get(column)]


@pytest.fixture(scope="module")
def csv_run(maze_root, tmp_path_factory):
    """(the folder the commands ran in, the run folder, the resumed fit): a 20-update TD3BC run with CSVLogger and
    `--trainer.default_root_dir runs` (its metrics.csv copied as it was), then resumed to 40 updates with
    `--ckpt_path last`."""
    cwd = tmp_path_factory.mktemp("csv_run")
    first = run_cli([*CSV_FIT, "--trainer.max_steps", "20"], maze_root, cwd)
    assert first.returncode == 0, first.stderr[-3000:]
    run, = [path.parent for path in cwd.rglob("metrics.csv")]
    shutil.copy(run / "metrics.csv", cwd / "metrics_after_20.csv")
    second = run_cli([*CSV_FIT, "--trainer.max_steps", "40", "--ckpt_path", "last"], maze_root, cwd)
    assert second.returncode == 0, second.stderr[-3000:]
    return cwd, run, second


def test_csv_logger_gets_the_metrics_at_the_update_counter(csv_run):
    """metrics.csv has the train losses and the evaluation, each at step = updates - 1 (Lightning's step of a metric
    logged after update u, as the TensorBoard logs have it: tests/test_training.py), and no TensorBoard events."""
    cwd, run, _ = csv_run
    table = rows(cwd / "metrics_after_20.csv")
    assert {"step", "train/critic_loss", "train/actor_loss", "train/updates", "val/normalized_score",
            "val/return"} <= set(table[0])
    trained = [row for row in table if row["train/critic_loss"]]
    assert [int(row["step"]) for row in trained] == [19]
    assert all(int(row["step"]) == float(row["train/updates"]) - 1 for row in trained)
    assert steps(table, "val/normalized_score") == [19]
    assert not list(cwd.rglob("events.out.tfevents.*"))


def test_csv_logger_resume_continues_in_the_same_folder(csv_run):
    """`--trainer.logger CSVLogger --ckpt_path last` resumes version_0 and goes on writing there."""
    cwd, run, second = csv_run
    assert f"resuming {run.relative_to(cwd)} " in second.stderr and run.name == "version_0"
    assert [p.name for p in run.parent.iterdir()] == ["version_0"]
    checkpoint = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert int(checkpoint["state_dict"]["num_updates"]) == 40
    assert steps(rows(run / "metrics.csv"), "val/normalized_score")[-1] == 39


def test_csv_logger_run_is_under_default_root_dir(csv_run):
    """`--trainer.default_root_dir runs` places a CSVLogger run as it places the default TensorBoard run."""
    cwd, run, _ = csv_run
    assert run == cwd / "runs" / "lightning_logs" / "version_0"


def test_csv_logger_resume_keeps_the_earlier_rows(csv_run):
    """After the resume, metrics.csv holds both segments: the first run's rows, then the resumed run's."""
    _, run, _ = csv_run
    table = rows(run / "metrics.csv")
    assert steps(table, "val/normalized_score") == [19, 39]
    assert steps(table, "train/critic_loss") == [19, 39]


def test_report_reads_a_csv_logger_run(csv_run, capsys):
    """`lit-offrl report` finds the CSVLogger run and scores it by its last evaluation, at update 40."""
    cwd, run, _ = csv_run
    assert report.main([str(cwd), "--reps", "20"]) == 0
    text = capsys.readouterr().out
    final = float([row for row in rows(run / "metrics.csv") if row["val/normalized_score"]][-1]["val/normalized_score"])
    assert "| TD3BC | 1 (seed 0) at 40 |" in text
    assert f"| TD3BC | 1 | 1 | {final:.1f} [{final:.1f}, {final:.1f}] |" in text
