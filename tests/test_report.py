"""`lit-offrl report` against hand-computed statistics of fake runs with known final scores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from lit_offrl import report

METRIC = "val/normalized_score"
A, B, C = "lit-offrl/a-v0", "lit-offrl/b-v0", "lit-offrl/c-v0"
# Final scores of seeds 0-3 on each task, chosen so that mean, median, IQM and optimality gap all differ.
FINAL = {"TD3BC": {A: [10, 20, 30, 40], B: [40, 50, 70, 90], C: [80, 100, 130, 150]},
         "IQL": {A: [15, 20, 20, 35], B: [40, 40, 40, 40], C: [150, 150, 150, 150]}}
# By hand. TD3BC: task means 25, 62.5, 115 -> mean 202.5 / 3 = 67.5, median 62.5. IQM: the 12 scores sorted are
# 10 20 30 40 40 50 70 80 90 100 130 150; without the lowest and highest 3: (40+40+50+70+80+90) / 6 = 61.667.
# Optimality gap (gamma 100): min(score, 100) sums to 100 + 250 + 380 = 730 -> 100 - 730 / 12 = 39.167.
# IQL: task means 22.5, 40, 150 -> mean 212.5 / 3 = 70.833, median 40; IQM: 15 20 20 [35 40 40 40 40 150] 150 150 150
# -> 345 / 6 = 57.5; gap: (90 + 160 + 400) / 12 = 54.167 -> 45.833.
EXPECTED = {"TD3BC": [67.5, 62.5, 370 / 6, 100 - 730 / 12], "IQL": [212.5 / 3, 40.0, 57.5, 100 - 650 / 12]}
# P(TD3BC > IQL) + 0.5 P(tie) over the 16 pairs of runs per task: A: 0 + (1 + .5 + .5) + 3 + 4 = 9 -> 9/16;
# B: 4 ties (2) + 12 wins -> 14/16; C: 150 ties 4 x .5 = 2 -> 2/16. Averaged: (9 + 14 + 2) / 48.
EXPECTED_IMPROVEMENT = (9 / 16 + 14 / 16 + 2 / 16) / 3


def write_config(folder, algorithm, task, seed, alpha=2.5):
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"class_path": f"lit_offrl.{algorithm}", "init_args": {"alpha": alpha}},
              "data": {"class_path": "lit_offrl.OfflineDataModule", "init_args": {"dataset_id": task, "seed": seed}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def write_tensorboard(folder, points):
    """TensorBoard events as Lightning writes them: a metric of update u at step u - 1."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for updates, value in points:
        writer.add_scalar("train/critic_loss", 0.5, updates - 1)
        writer.add_scalar(METRIC, value, updates - 1)
    writer.close()


def write_csv(folder, points, metric=METRIC):
    """A CSVLogger metrics.csv: train and validation rows apart, empty cells for the other columns."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "step", "train/critic_loss", metric])
        writer.writeheader()
        for updates, value in points:
            writer.writerow({"step": updates - 1, "train/critic_loss": 0.5})
            writer.writerow({"epoch": 0, "step": updates - 1, metric: value})


def curve(final):
    """Evaluated at 500 and 1,000 updates; the score at 500 is 7 below the final one."""
    return [(500, final - 7), (1000, final)]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """TD3BC runs as TensorBoard logs, IQL runs as CSVLogger logs (one with a checkpoint instead of config.yaml),
    in nested folders, plus a run that logged no score and an IQL run that stopped at 500 updates."""
    root = tmp_path_factory.mktemp("runs")
    version = 0
    for algorithm, by_task in FINAL.items():
        for task, finals in by_task.items():
            for seed, final in enumerate(finals):
                folder = root / ("lightning_logs" if algorithm == "TD3BC" else "iql/nested") / f"version_{version}"
                version += 1
                if algorithm == "TD3BC":
                    write_config(folder, algorithm, task, seed)
                    write_tensorboard(folder, curve(final))
                else:
                    write_csv(folder, curve(final))
                    if (task, seed) == (C, 3):  # what the run is, from its checkpoint only
                        (folder / "checkpoints").mkdir()
                        torch.save({"lit_offrl": {"model_class": "lit_offrl.algos.iql.IQL"},
                                    "datamodule_hyper_parameters": {"dataset_id": C, "seed": 3}},
                                   folder / "checkpoints" / "last.ckpt")
                    else:
                        write_config(folder, algorithm, task, seed)
    write_config(root / "iql" / "no_score", "IQL", A, 9)
    write_csv(root / "iql" / "no_score", curve(50.0), metric="val/return")
    write_config(root / "iql" / "stopped", "IQL", A, 4)
    write_csv(root / "iql" / "stopped", [(500, 99.0)])
    return root


def test_report_matches_hand_computation(runs_root, tmp_path, capsys):
    """Mean, median, IQM and optimality gap (gamma 100) per algorithm equal the hand computation, each inside its
    95% interval; P(TD3BC > IQL) too; the markdown says so, lists the runs per task and the skipped runs, and the
    figures are PNG files."""
    runs, skipped = report.find_runs([runs_root])
    assert len(runs) == 25 and [s.source.rsplit("/", 1)[-1] for s in skipped] == ["no_score"]
    assert "no val/normalized_score logged (it logged train/critic_loss, val/return)" in skipped[0].reason
    table, more, notes = report.select(runs, ["algorithm"])
    assert [s.source.rsplit("/", 1)[-1] for s in more] == ["stopped"] and "update 500" in more[0].reason
    assert notes == []
    assert {g: {t: [r.score for r in rs] for t, rs in by_task.items()} for g, by_task in table.items()} == FINAL
    assert [r.seed for r in table["IQL"][C]] == [0, 1, 2, 3]  # seed 3 known from its checkpoint

    result = report.compare(table, reps=200)
    assert result.groups == ["TD3BC", "IQL"]  # by IQM, best first
    from rliable import metrics

    for group, expected in EXPECTED.items():
        point, interval = result.aggregate[group]
        np.testing.assert_allclose(point, expected, rtol=1e-9)
        assert interval.shape == (2, 4) and np.all(interval[0] <= point + 1e-9) and np.all(point <= interval[1] + 1e-9)
        # A real interval where the seeds differ; IQL's median is always task B's mean, 40 on every seed.
        assert list(interval[1] - interval[0] > 0) == [True, group == "TD3BC", True, True]
        assert point[2] == pytest.approx(metrics.aggregate_iqm(result.matrices[group]))
    (x, y, shared, probability, interval), = result.improvement
    assert (x, y, shared) == ("TD3BC", "IQL", [A, B, C])
    assert probability == pytest.approx(EXPECTED_IMPROVEMENT)
    assert probability == pytest.approx(metrics.probability_of_improvement(result.matrices["TD3BC"],
                                                                           result.matrices["IQL"]))
    assert interval[0] <= probability <= interval[1]

    out = tmp_path / "out"
    assert report.main([str(runs_root), "--reps", "200", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| TD3BC | 4 (seeds 0-3) at 1,000 | 4 (seeds 0-3) at 1,000 | 4 (seeds 0-3) at 1,000 |" in text
    assert "| TD3BC | 3 | 12 | 67.5 [" in text and "| 62.5 [" in text and "| 61.7 [" in text and "| 39.2 [" in text
    assert "| IQL | 3 | 12 | 70.8 [" in text and "| 40.0 [" in text and "| 57.5 [" in text and "| 45.8 [" in text
    assert "| TD3BC | IQL | 3 | 0.52 [" in text
    assert "gamma = 100" in text and "stopped: its score is at update 500" in text
    assert (out / "report.md").read_text() == text
    for name in ("interval_estimates.png", "performance_profile.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_report_steps_and_unequal_runs(runs_root):
    """--steps N scores each run by its value at update N (the stopped run counts then); a task with more runs
    than the others is cut to the lowest seeds for the aggregate, and the run left out is listed."""
    runs, _ = report.find_runs([runs_root])
    table, skipped, _ = report.select(runs, ["algorithm"], steps=500)
    assert skipped == []
    assert [r.seed for r in table["IQL"][A]] == [0, 1, 2, 3, 4]
    result = report.compare(table, reps=50)
    assert result.aggregate["TD3BC"][0][0] == pytest.approx(67.5 - 7)
    assert result.aggregate["IQL"][0][:3] == pytest.approx(np.array(EXPECTED["IQL"][:3]) - 7)
    (run, reason), = result.left_out
    assert run.seed == 4 and run.task == A and "keeps the 4 lowest seeds" in reason
    assert [r.score for r in table["IQL"][A]] == [8, 13, 13, 28, 99]


def test_report_reads_benchmark_results_json(runs_root, tmp_path):
    """The results JSON files of benchmarks/scores.py and pointmaze_scores.py give the same statistics as the run
    folders; a run found twice (the same seed in two files) counts once."""
    scores_py = {"steps": 1000, "eval_every": 500, "seeds": [0, 1, 2, 3], "eval_episodes": 50, "extra": [],
                 "results": {task: {"TD3BC": {str(seed): {"curve": curve(final), "seconds": 1.0}
                                              for seed, final in enumerate(finals)}}
                             for task, finals in FINAL["TD3BC"].items()}}
    (tmp_path / "algos.json").write_text(json.dumps(scores_py))
    for task, finals in FINAL["IQL"].items():  # pointmaze_scores.py: one file per dataset, final scores only
        pointmaze = {"steps": 1000, "seeds": [0, 1, 2, 3], "eval_episodes": 50, "dataset_id": task,
                     "results": {"random": {"scores": [-4.7]}, "IQL": {"scores": finals, "seconds": [1.0] * 4}}}
        (tmp_path / f"iql_{task[-4]}.json").write_text(json.dumps(pointmaze))
    (tmp_path / "throughput.json").write_text(json.dumps({"rates": {}}))
    files = sorted(tmp_path.glob("*.json"))
    runs, skipped = report.find_runs([*files, tmp_path / "algos.json"])
    assert len(runs) == 36 and len(skipped) == 4  # 3 random policies, throughput.json
    table, repeats, _ = report.select(runs, ["algorithm"])
    assert len(repeats) == 12 and all("a repeat of TD3BC" in s.reason for s in repeats)
    from_json = report.compare(table, reps=50)
    for group, expected in EXPECTED.items():
        np.testing.assert_allclose(from_json.aggregate[group][0], expected, rtol=1e-9)
    assert from_json.improvement[0][3] == pytest.approx(EXPECTED_IMPROVEMENT)


def test_report_by_config_key_tells_variants_apart(tmp_path):
    """Two runs of one algorithm, task and seed with another hyperparameter: grouped by algorithm, the second is a
    repeat whose reason names the key; `--by algorithm,model.alpha` makes them two groups."""
    for name, alpha, final in (("low", 2.5, 10.0), ("high", 5.0, 30.0)):
        write_config(tmp_path / name, "TD3BC", A, 0, alpha=alpha)
        write_csv(tmp_path / name, curve(final))
    runs, _ = report.find_runs([tmp_path])
    table, skipped, _ = report.select(runs, ["algorithm"])
    assert [r.score for r in table["TD3BC"][A]] == [30.0]  # "high" comes first (folders in name order)
    assert "they differ in model.alpha (2.5, 5.0): tell them apart with --by" in skipped[0].reason
    table, skipped, _ = report.select(runs, ["algorithm", "model.init_args.alpha"])
    assert skipped == [] and {g: [r.score for r in t[A]] for g, t in table.items()} == {
        "TD3BC alpha=2.5": [10.0], "TD3BC alpha=5.0": [30.0]}


def test_report_bad_input_is_one_line(tmp_path, capsys):
    """A missing path, a folder without runs, or no usable run: one `lit-offrl report: error:` line, status 2."""
    (tmp_path / "empty").mkdir()
    write_csv(tmp_path / "no_score", curve(1.0), metric="val/return")
    write_config(tmp_path / "no_score", "IQL", A, 0)
    for argv, message in [([str(tmp_path / "missing")], "no such file or folder"),
                          ([str(tmp_path / "empty")], "no run folder in it"),
                          ([str(tmp_path / "no_score")], "no run to report"),
                          ([str(tmp_path / "no_score"), "--reps", "0"], "--reps: must be >= 10")]:
        assert report.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("lit-offrl report: error: ") and message in err, err
    assert report.main([str(tmp_path / "no_score"), "--metric", "val/return", "--gamma", "50", "--reps", "20"]) == 0
    assert "optimality gap = 50 - mean(min(score, 50))" in capsys.readouterr().out
