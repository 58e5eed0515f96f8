"""`lit-offrl report`: compare finished runs with stratified-bootstrap confidence intervals (rliable).

    lit-offrl report lightning_logs/                                  # every run folder below it, by algorithm
    lit-offrl report benchmarks/results/*.json --out report/          # committed benchmark results, with figures
    lit-offrl report runs/ --by algorithm,model.alpha --steps 20000   # variants of one algorithm, score at 20k

A RUN_DIR is a run folder (one holding `events.out.tfevents.*` or a CSVLogger `metrics.csv`, e.g.
`lightning_logs/version_3`) or any folder above run folders, searched recursively; a `.json` argument is a results
file of `benchmarks/scores.py` or `benchmarks/pointmaze_scores.py`. A run's score is its last logged value of
`--metric` (or the value logged at update `--steps`); its algorithm comes from its `config.yaml` (`model.class_path`)
or its checkpoint, its task (the bootstrap's stratum) from `data.dataset_id` (`data.env_id` for online runs), its
seed from `data.seed`. The report prints markdown: runs per group and task, mean / median / IQM / optimality gap per
group with 95% stratified-bootstrap confidence intervals (runs resampled within each task, rliable's
`get_interval_estimates`), the same per task, the probability of improvement between pairs of groups, and every
run it left out with the reason. `--out DIR` also writes report.md and rliable's interval-estimate and
performance-profile figures (PNG). Bad input prints one `lit-offrl report: error: ...` line and returns 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lit_offrl.datasets_cli import _count, _Parser, run_tool  # the one-line-error argparse of the `lit-offrl` tools
from lit_offrl.errors import UserError, one_line

PROG = "lit-offrl report"
METRIC = "val/normalized_score"
EVENTS = "events.out.tfevents."
CSV_FILE = "metrics.csv"
# Config keys that differ between the runs of one group by construction (the seed, the task, the shapes linked
# from the data), so they are not reported as a hidden variant.
_EXPECTED_TO_VARY = {"data.seed", "data.dataset_id", "data.env_id", "data.offline_dataset_id", "model.obs_dim",
                     "model.action_dim"}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Compare finished runs: mean, median, IQM and optimality gap per group "
                     "with stratified-bootstrap 95% confidence intervals, and the probability of improvement "
                     "between groups (rliable).")
    parser.add_argument("inputs", nargs="+", metavar="RUN_DIR", type=Path,
                        help="run folders, folders holding run folders (searched recursively), or results JSON "
                             "files of benchmarks/scores.py and benchmarks/pointmaze_scores.py")
    parser.add_argument("--by", default="algorithm", metavar="KEY[,KEY]",
                        help="what a group is: algorithm (default), dataset, seed, or config keys such as "
                             "model.alpha (= model.init_args.alpha), comma-separated")
    parser.add_argument("--metric", default=METRIC, metavar="TAG",
                        help=f"the logged metric to score (default {METRIC})")
    parser.add_argument("--steps", type=_count(1), default=None, metavar="N",
                        help="score each run by its value logged at update N (default: its last logged value)")
    parser.add_argument("--gamma", type=float, default=100.0,
                        help="optimality-gap threshold: the gap is gamma - mean(min(score, gamma)); default 100, "
                             "for scores on the 0-100 normalized scale (rliable's default 1 is for 0-1 scores)")
    parser.add_argument("--reps", type=_count(10), default=2000, metavar="N", help="bootstrap replications (2000)")
    parser.add_argument("--seed", type=_count(0), default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--groups", nargs="+", default=None, metavar="GROUP",
                        help="only these groups, in this order in the tables and figures")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help="only these tasks (dataset ids)")
    parser.add_argument("--against", nargs="+", default=None, metavar="GROUP",
                        help="probability of improvement only for pairs with one of these groups (default: all pairs)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="also write report.md, interval_estimates.png and performance_profile.png here")
    return parser


def main(argv: list[str]) -> int:
    """Run `lit-offrl report ARGV`; returns the exit status (0 ok, 2 bad input)."""
    return run_tool(PROG, _parser(), _report, argv)


# ----------------------------------------------------------------------------------------------------------------
# reading runs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training run as the report sees it: where it came from, what it is, and its metric curve."""

    source: str
    algorithm: str | None
    task: str | None
    seed: int | None
    config: dict[str, Any]                       # flattened config, `init_args` left out of the keys
    points: list[tuple[int, float]]              # (updates, value) of the metric, by update
    score: float = math.nan                      # chosen by `select`
    updates: int = 0                             # the update the score was logged at
    group: str = ""


@dataclass
class Skipped:
    """A run (or input file) the report leaves out, and why."""

    source: str
    reason: str


def find_runs(inputs: Iterable[Path], metric: str = METRIC) -> tuple[list[Run], list[Skipped]]:
    """Every run under `inputs` (run folders, folders above them, results JSON files), with its `metric` curve, and
    the ones that cannot be used (no metric logged, no algorithm or dataset known, an unreadable file)."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for path in inputs:
        if path.is_file() and path.suffix == ".json":
            found, bad = _json_runs(path, metric)
            runs += found
            skipped += bad
        elif path.is_dir():
            folders = _run_folders(path)
            if not folders:
                raise UserError(f"{path}: no run folder in it (a run folder holds {EVENTS}* TensorBoard files or a "
                                f"CSVLogger {CSV_FILE}); give the folder a run wrote, e.g. lightning_logs/version_0.")
            for folder in folders:
                run, reason = _folder_run(folder, metric)
                if run is None:
                    skipped.append(Skipped(str(folder), reason))
                else:
                    runs.append(run)
        elif path.exists():
            raise UserError(f"{path}: not a run folder nor a results .json file.")
        else:
            raise UserError(f"{path}: no such file or folder.")
    return runs, skipped


def _run_folders(root: Path) -> list[Path]:
    folders = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if dirs and "checkpoints" in dirs:
            dirs.remove("checkpoints")
        if CSV_FILE in files or any(name.startswith(EVENTS) for name in files):
            folders.append(Path(folder))
    return folders


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'model.alpha': 2.5, 'model.class_path': ...}: nested config keys joined by dots, `init_args` left out."""
    flat: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = prefix if key == "init_args" else f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                flat.update(_flatten(value, name))
            else:
                flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def _short(class_path: Any) -> str | None:
    return str(class_path).rsplit(".", 1)[-1] if class_path else None


def _folder_run(folder: Path, metric: str) -> tuple[Run | None, str]:
    """A run folder's run, or (None, why it cannot be used)."""
    config: dict[str, Any] = {}
    config_file = folder / "config.yaml"
    if config_file.is_file():
        import yaml

        try:
            config = _flatten(yaml.safe_load(config_file.read_text()) or {})
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            return None, f"config.yaml is not readable YAML ({type(exc).__name__})"
    algorithm = _short(config.get("model.class_path"))
    task = config.get("data.dataset_id") or config.get("data.env_id")
    seed = config.get("data.seed")
    if algorithm is None or task is None or seed is None:
        meta = _checkpoint_metadata(folder)
        algorithm = algorithm or _short(meta.get("model_class"))
        task = task or meta.get("dataset_id") or meta.get("env_id")
        seed = seed if seed is not None else meta.get("seed")
        for key, value in meta.get("config", {}).items():
            config.setdefault(key, value)
    try:
        points, tags = _read_curve(folder, metric)
    except Exception as exc:  # a truncated event file or CSV: one run, not the whole report
        return None, f"its logs are not readable ({type(exc).__name__}: {one_line(exc, 150)})"
    if not points:
        shown = ", ".join(sorted(tags)[:8]) + (", ..." if len(tags) > 8 else "")
        return None, f"no {metric} logged" + (f" (it logged {shown})" if tags else " (no metric logged at all)")
    if algorithm is None:
        return None, "no config.yaml with model.class_path and no checkpoint saying which algorithm it ran"
    if task is None:
        return None, "no config.yaml with data.dataset_id and no checkpoint saying which dataset it trained on"
    return Run(str(folder), algorithm, str(task), None if seed is None else int(seed), config, points), ""


def _checkpoint_metadata(folder: Path) -> dict[str, Any]:
    """Model class, dataset and seed from the run's newest checkpoint (memory-mapped: the weights are not read),
    else from the hparams.yaml Lightning's loggers write; {} if neither says."""
    meta: dict[str, Any] = {}
    checkpoints = sorted((folder / "checkpoints").glob("*.ckpt"),
                         key=lambda path: (path.name != "last.ckpt", -path.stat().st_mtime))
    if checkpoints:
        import torch

        try:
            try:
                checkpoint = torch.load(checkpoints[0], map_location="cpu", weights_only=False, mmap=True)
            except RuntimeError:
                checkpoint = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
        except Exception:
            checkpoint = {}
        hyper = checkpoint.get("hyper_parameters") or {}
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        meta["model_class"] = (checkpoint.get("lit_offrl") or {}).get("model_class") or hyper.get("_class_path")
        meta.update({key: data.get(key) for key in ("dataset_id", "env_id", "seed") if data.get(key) is not None})
        meta["config"] = {**{f"model.{k}": v for k, v in _flatten(dict(hyper)).items() if not k.startswith("_")},
                          **{f"data.{k}": v for k, v in _flatten(dict(data)).items() if not k.startswith("_")}}
    hparams = folder / "hparams.yaml"
    if hparams.is_file() and not all(meta.get(key) is not None for key in ("dataset_id", "seed")):
        import yaml

        try:
            saved = yaml.safe_load(hparams.read_text()) or {}
        except yaml.YAMLError:
            saved = {}
        if isinstance(saved, dict):
            for key in ("dataset_id", "env_id", "seed"):
                if meta.get(key) is None and saved.get(key) is not None:
                    meta[key] = saved[key]
            meta["model_class"] = meta.get("model_class") or saved.get("_class_path")
    return meta


def _read_curve(folder: Path, metric: str) -> tuple[list[tuple[int, float]], set[str]]:
    """([(updates, value), ...] of `metric`, every tag logged) from the folder's TensorBoard events, else its
    metrics.csv. Lightning logs a metric of update u at step u - 1 (the number of batches before it). A step
    logged twice (a run resumed from a checkpoint before its last log) keeps its newest value."""
    tags: set[str] = set()
    if any(name.startswith(EVENTS) for name in os.listdir(folder)):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        scalars = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
        tags = set(scalars.Tags()["scalars"])
        if metric in tags:
            events = sorted(scalars.Scalars(metric), key=lambda e: e.wall_time)
            return sorted({int(e.step) + 1: float(e.value) for e in events}.items()), tags
    csv_file = folder / CSV_FILE
    if csv_file.is_file():
        with csv_file.open(newline="") as file:
            reader = csv.DictReader(file)
            tags |= {name for name in reader.fieldnames or () if name not in ("step", "epoch")}
            values = {int(float(row["step"])) + 1: float(row[metric]) for row in reader
                      if row.get(metric) not in (None, "") and row.get("step") not in (None, "")}
        if values:
            return sorted(values.items()), tags
    return [], tags


def _json_runs(path: Path, metric: str) -> tuple[list[Run], list[Skipped]]:
    """The runs of a results file of benchmarks/scores.py ({"results": {dataset: {algo: {seed: {"curve": [[updates,
    score], ...]}}}}}) or of benchmarks/pointmaze_scores.py ({"dataset_id": ..., "seeds": [...], "results": {algo:
    {"scores": [...]}}}); both hold val/normalized_score only."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [], [Skipped(str(path), f"not readable JSON ({type(exc).__name__})")]
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        return [], [Skipped(str(path), "not a results file of benchmarks/scores.py or pointmaze_scores.py (no "
                                       "\"results\" of scores)")]
    if metric != METRIC:
        return [], [Skipped(str(path), f"a benchmark results file holds {METRIC} only, not {metric}")]
    config = {"trainer.max_steps": data.get("steps"), "data.eval_episodes": data.get("eval_episodes"),
              **_extra_config(data.get("extra") or [])}
    config = {key: value for key, value in config.items() if value is not None}
    runs: list[Run] = []
    skipped: list[Skipped] = []
    if "dataset_id" in data:  # pointmaze_scores.py: final scores only, one per seed in `seeds`
        task, seeds = data["dataset_id"], list(data.get("seeds") or [])
        for algo, entry in results.items():
            scores = (entry or {}).get("scores") or []
            if algo == "random":
                skipped.append(Skipped(f"{path}: {task} random", "the random policy's reference score, not a run"))
                continue
            for index, score in enumerate(scores):
                seed = seeds[index] if index < len(seeds) else None
                runs.append(Run(f"{path}: {task} {algo} seed {seed}", algo, task, seed, dict(config),
                                [(int(data.get("steps") or 0), float(score))]))
        return runs, skipped
    for task, by_algo in results.items():
        if not isinstance(by_algo, dict):
            skipped.append(Skipped(f"{path}: {task}", "not a results file of benchmarks/scores.py"))
            continue
        for algo, by_seed in by_algo.items():
            for seed, entry in (by_seed or {}).items():
                source = f"{path}: {task} {algo} seed {seed}"
                curve = (entry or {}).get("curve") or []
                if (entry or {}).get("failed"):
                    skipped.append(Skipped(source, "the run failed (\"failed\": true)"))
                elif not curve:
                    skipped.append(Skipped(source, f"no {metric} in its curve"))
                else:
                    runs.append(Run(source, algo, task, int(seed), dict(config),
                                    [(int(u), float(v)) for u, v in curve]))
    return runs, skipped


def _extra_config(extra: list[str]) -> dict[str, Any]:
    """`--model.penalty policy` (the extra CLI arguments a benchmark ran with) as {'model.penalty': 'policy'}."""
    config = {}
    for key, value in zip(extra, extra[1:]):
        if key.startswith("--") and not value.startswith("--"):
            config[key[2:].replace(".init_args.", ".")] = value
    return config


# ----------------------------------------------------------------------------------------------------------------
# choosing the score of each run
# ----------------------------------------------------------------------------------------------------------------


def _group_name(run: Run, keys: list[str]) -> str:
    parts = []
    for key in keys:
        if key == "algorithm":
            parts.append(str(run.algorithm))
        elif key == "dataset":
            parts.append(str(run.task))
        elif key == "seed":
            parts.append(f"seed {run.seed}")
        else:
            value = run.config.get(key.replace(".init_args.", "."), "n/a")
            value = list(value) if isinstance(value, tuple) else value
            parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(parts)


def select(runs: list[Run], by: list[str], steps: int | None = None, groups: list[str] | None = None,
           tasks: list[str] | None = None) -> tuple[dict[str, dict[str, list[Run]]], list[Skipped], list[str]]:
    """Group the runs ({group: {task: [runs by seed]}}), give each its score, and leave out (with the reason) runs
    without a value at update `steps`, runs of another update budget than the rest of their group on the task,
    and repeats of a run already counted. Also returns notes on config keys that vary between the runs of a group
    on one task (variants that `--by` would tell apart)."""
    skipped: list[Skipped] = []
    chosen: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        run.group = _group_name(run, by)
        if groups is not None and run.group not in groups:
            continue
        if tasks is not None and run.task not in tasks:
            continue
        if steps is None:
            run.updates, run.score = run.points[-1]
        else:
            at = [value for updates, value in run.points if updates == steps]
            if not at:
                logged = ", ".join(f"{u:,}" for u, _ in run.points[-4:])
                skipped.append(Skipped(run.source, f"no value logged at update {steps:,} (last logged at {logged})"))
                continue
            run.updates, run.score = steps, at[-1]
        if not math.isfinite(run.score):
            skipped.append(Skipped(run.source, f"its score is {run.score}"))
            continue
        chosen[(run.group, run.task)].append(run)
    table: dict[str, dict[str, list[Run]]] = defaultdict(dict)
    for (group, task), members in chosen.items():
        budgets = Counter(run.updates for run in members)
        budget = max(budgets, key=lambda b: (budgets[b], b))
        kept: dict[Any, Run] = {}
        for run in members:
            if run.updates != budget:
                skipped.append(Skipped(run.source, f"its score is at update {run.updates:,} where the other "
                                                   f"{budgets[budget]} run(s) of {group} on {task} are at {budget:,} "
                                                   f"(unfinished, or another budget: pick one with --steps)"))
                continue
            key = run.seed if run.seed is not None else id(run)
            if key in kept:
                first = kept[key]
                differ = _differences([first, run])
                skipped.append(Skipped(run.source, f"a repeat of {group} on {task} seed {run.seed} at {budget:,} "
                                                   f"updates, already counted from {first.source}"
                                       + (f" (score {first.score:.2f} there, {run.score:.2f} here)"
                                          if first.score != run.score else "")
                                       + (f"; they differ in {differ}: tell them apart with --by" if differ else "")))
                continue
            kept[key] = run
        table[group][task] = sorted(kept.values(), key=lambda r: (r.seed is None, r.seed or 0, r.source))
    notes = []  # within a task only: configs differ between tasks by design (configs/<algo>/<domain>.yaml)
    for group, by_task in table.items():
        for task, members in by_task.items():
            differ = _differences(members)
            if differ:
                notes.append(f"the runs of {group} on {task} differ in {differ}; `--by {','.join(by)},KEY` tells "
                             f"them apart")
    return dict(table), skipped, notes


def _differences(runs: list[Run], limit: int = 4) -> str:
    """'model.alpha (2.5, 5.0)': model/data config keys (and the update budget) that differ between `runs`."""
    values: dict[str, set] = defaultdict(set)
    for run in runs:
        for key, value in run.config.items():
            if (key.startswith(("model.", "data.")) or key == "trainer.max_steps") and key not in _EXPECTED_TO_VARY:
                values[key].add(repr(value))
    varying = [f"{key} ({', '.join(sorted(seen))})" for key, seen in sorted(values.items()) if len(seen) > 1]
    return "; ".join(varying[:limit]) + (f" and {len(varying) - limit} more" if len(varying) > limit else "")


# ----------------------------------------------------------------------------------------------------------------
# statistics (rliable)
# ----------------------------------------------------------------------------------------------------------------


def aggregate_metrics(scores: np.ndarray, gamma: float = 100.0) -> np.ndarray:
    """rliable's [mean, median, IQM, optimality gap] of a (runs x tasks) score matrix: mean and median of the
    per-task means, IQM = 25%-trimmed mean of all scores (scipy drops int(n/4) from each end), optimality gap =
    gamma - mean(min(score, gamma))."""
    from rliable import metrics

    return np.array([metrics.aggregate_mean(scores), metrics.aggregate_median(scores), _iqm(scores),
                     metrics.aggregate_optimality_gap(scores, gamma)])


def _iqm(scores: np.ndarray) -> float:
    """rliable's `metrics.aggregate_iqm` (scipy.stats.trim_mean(scores, 0.25, axis=None)), the same arithmetic
    without scipy's per-call overhead (a quarter of a millisecond, called for every bootstrap replication)."""
    flat = np.sort(scores, axis=None)
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """[P(X > Y)]: per task, P(a run of X beats a run of Y) + 0.5 P(tie) over all pairs of runs, averaged over tasks
    (columns). rliable's `metrics.probability_of_improvement` (a Mann-Whitney U per task), vectorized: the bootstrap
    calls it thousands of times."""
    difference = scores_x[:, None, :] - scores_y[None, :, :]
    return np.array([((difference > 0) + 0.5 * (difference == 0)).mean(axis=(0, 1)).mean()])


def interval_estimates(score_dict: dict[str, Any], func, reps: int, seed: int
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's stratified-bootstrap point estimates and 95% percentile intervals, one key at a time with numpy's
    global generator reset to `seed` (rliable draws from it), so a group's interval does not depend on the others."""
    from rliable import library as rly

    points, intervals = {}, {}
    for key, scores in score_dict.items():
        np.random.seed(seed)
        point, interval = rly.get_interval_estimates({key: scores}, func, reps=reps)
        points[key], intervals[key] = np.asarray(point[key]), np.asarray(interval[key])
    return points, intervals


def _rectangular(by_task: dict[str, list[Run]]) -> tuple[list[str], np.ndarray, list[tuple[Run, str]]]:
    """rliable's (runs x tasks) matrix needs the same number of runs on every task: keep k runs (lowest seeds) on
    each task with at least k, the k that keeps the most runs (ties: more tasks). Returns the tasks, the matrix and
    the runs left out with the reason."""
    counts = {task: len(runs) for task, runs in by_task.items()}
    k = max(sorted(set(counts.values())), key=lambda n: (n * sum(c >= n for c in counts.values()),
                                                         sum(c >= n for c in counts.values())))
    tasks = [task for task in by_task if counts[task] >= k]
    left_out = []
    for task, runs in by_task.items():
        if counts[task] < k:
            left_out += [(run, f"only {counts[task]} run(s) on {task} where the others have {k}: the task is "
                               f"left out of the aggregate") for run in runs]
        else:
            left_out += [(run, f"{counts[task]} runs on {task}, {k} on another task: the aggregate keeps the "
                               f"{k} lowest seeds") for run in runs[k:]]
    matrix = np.array([[run.score for run in by_task[task][:k]] for task in tasks]).T
    return tasks, matrix, left_out


@dataclass
class Comparison:
    """Everything the report prints and plots."""

    metric: str
    gamma: float
    reps: int
    seed: int
    table: dict[str, dict[str, list[Run]]]
    tasks: list[str]
    groups: list[str]                                            # by aggregate IQM, best first (or as --groups)
    aggregate_tasks: dict[str, list[str]] = field(default_factory=dict)
    aggregate: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)   # group -> (point, 2 x 4)
    per_task: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    improvement: list[tuple[str, str, list[str], float, np.ndarray]] = field(default_factory=list)
    left_out: list[tuple[Run, str]] = field(default_factory=list)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)


def compare(table: dict[str, dict[str, list[Run]]], metric: str = METRIC, gamma: float = 100.0, reps: int = 2000,
            seed: int = 0, order: list[str] | None = None, against: list[str] | None = None) -> Comparison:
    """Aggregate metrics over tasks per group, the same per task, and the probability of improvement for pairs of
    groups over the tasks both have, each with stratified-bootstrap 95% confidence intervals."""
    tasks = sorted({task for by_task in table.values() for task in by_task})
    matrices, aggregate_tasks, left_out = {}, {}, []
    for group, by_task in table.items():
        ordered = {task: by_task[task] for task in tasks if task in by_task}
        aggregate_tasks[group], matrices[group], dropped = _rectangular(ordered)
        left_out += dropped
    points, intervals = interval_estimates(matrices, lambda s: aggregate_metrics(s, gamma), reps, seed)
    if order:
        groups = [group for group in order if group in table]
    else:
        groups = sorted(table, key=lambda g: (-points[g][2], g))
    result = Comparison(metric, gamma, reps, seed, table, tasks, groups, aggregate_tasks,
                        {g: (points[g], intervals[g]) for g in groups}, left_out=left_out,
                        matrices={g: matrices[g] for g in groups})
    for task in tasks:
        single = {group: np.array([[run.score] for run in table[group][task]]) for group in groups
                  if task in table[group]}
        p, i = interval_estimates(single, lambda s: aggregate_metrics(s, gamma), reps, seed)
        result.per_task[task] = {group: (p[group], i[group]) for group in single}
    for a, x in enumerate(groups):
        for y in groups[a + 1:]:
            if against is not None and x not in against and y not in against:
                continue
            shared = [task for task in aggregate_tasks[x] if task in aggregate_tasks[y]]
            if not shared:
                continue
            pair = [matrices[g][:, [aggregate_tasks[g].index(t) for t in shared]] for g in (x, y)]
            p, i = interval_estimates({"pair": pair}, probability_of_improvement, reps, seed)
            result.improvement.append((x, y, shared, float(p["pair"][0]), i["pair"][:, 0]))
    return result


# ----------------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------------


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def _ci(point: float, interval: np.ndarray, digits: int = 1) -> str:
    return f"{_number(point, digits)} [{_number(interval[0], digits)}, {_number(interval[1], digits)}]"


def _seeds(runs: list[Run]) -> str:
    seeds = [run.seed for run in runs]
    if any(seed is None for seed in seeds):
        return f"{len(runs)}"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{len(runs)} (seeds {seeds[0]}-{seeds[-1]})"
    return f"{len(runs)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def _scores(runs: list[Run]) -> str:
    return ", ".join(_number(run.score, 1) for run in runs)


def _budgets(runs: list[Run]) -> str:
    return ", ".join(f"{b:,}" for b in sorted({run.updates for run in runs}))


def markdown(result: Comparison, by: list[str], skipped: list[Skipped], notes: list[str], inputs: list[Path],
             steps: int | None = None) -> str:
    """The report as markdown."""
    groups, tasks = result.groups, result.tasks
    label = "/".join(by)
    runs = sum(len(r) for g in groups for r in result.table[g].values())
    lines = [f"## {result.metric}: {len(groups)} group(s) by {label}, {len(tasks)} task(s), {runs} run(s)", "",
             f"Score of a run: its {result.metric} "
             + (f"at update {steps:,}. " if steps else "at the last update it was logged (in the table below). ")
             + f"95% confidence intervals: rliable's stratified bootstrap (runs resampled within each task; "
             f"percentile, {result.reps:,} replications, seed {result.seed}). Mean and median are of the per-task "
             f"means; IQM is the 25%-trimmed mean of all runs and tasks (scipy.stats.trim_mean drops int(n/4) "
             f"scores from each end, so with fewer than 4 scores it is the mean); optimality gap = "
             f"{result.gamma:g} - mean(min(score, {result.gamma:g})), gamma = {result.gamma:g} because the scores "
             f"are on the 0-100 normalized scale (rliable's default gamma = 1 is for 0-1 scores). Inputs: "
             f"{', '.join(str(p) for p in inputs)}.", "",
             "### Runs per group and task, and the update their score is from", "",
             f"| {label} | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for group in groups:
        cells = [f"{_seeds(result.table[group][t])} at {_budgets(result.table[group][t])}" if t in result.table[group]
                 else "-" for t in tasks]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    task_sets = {tuple(result.aggregate_tasks[g]) for g in groups}
    lines += ["", "### Aggregate over tasks", ""]
    if len(task_sets) > 1:
        lines += ["The groups cover different tasks (column `tasks`): compare aggregates only between groups with the "
                  "same tasks, or see the per-task tables.", ""]
    one_task = len(tasks) == 1  # then no per-task tables: the aggregate table shows the scores
    lines += [f"| {label} | tasks | runs | mean | median | IQM | optimality gap |"
              + (" per seed |" if one_task else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if one_task else "")]
    for group in groups:
        point, interval = result.aggregate[group]
        kept = result.aggregate_tasks[group]
        shown = str(len(kept)) if len(kept) == len(tasks) else f"{len(kept)}: {', '.join(kept)}"
        lines.append(f"| {group} | {shown} | {result.matrices[group].size} | "
                     + " | ".join(_ci(point[i], interval[:, i]) for i in range(4)) + " |"
                     + (f" {_scores(result.table[group][tasks[0]])} |" if one_task else ""))
    if not one_task or result.left_out:
        lines += ["", "### Per task", "", "(On one task the median of per-task means is the mean, so it is left out.)"]
        for task in tasks:
            lines += ["", f"#### {task}", "", f"| {label} | runs | mean | IQM | optimality gap | per seed |",
                      "|---|---|---|---|---|---|"]
            for group, (point, interval) in result.per_task[task].items():
                members = result.table[group][task]
                lines.append(f"| {group} | {_seeds(members)} | {_ci(point[0], interval[:, 0])} | "
                             f"{_ci(point[2], interval[:, 2])} | {_ci(point[3], interval[:, 3])} | "
                             f"{_scores(members)} |")
    if result.improvement:
        lines += ["", "### Probability of improvement", "",
                  "P(X > Y): the probability that a run of X scores above a run of Y on the same task (ties count "
                  "half), averaged over the tasks both have in the aggregate.", "",
                  "| X | Y | tasks | P(X > Y) |", "|---|---|---|---|"]
        for x, y, shared, point, interval in result.improvement:
            lines.append(f"| {x} | {y} | {len(shared)} | {_ci(point, interval, 2)} |")
    left = [Skipped(run.source, reason) for run, reason in result.left_out]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {note}" for note in notes]
    if skipped or left:
        lines += ["", f"### Left out ({len(skipped)} run(s) skipped, {len(left)} in the per-task tables only)", ""]
        lines += [f"- {item.source}: {item.reason}" for item in skipped]
        lines += [f"- {item.source}: in its per-task table; {item.reason}" for item in left]
    return "\n".join(lines) + "\n"


def write_figures(result: Comparison, out: Path) -> list[Path]:
    """rliable's interval estimates (the four aggregate metrics) and performance profile (fraction of runs above
    each score, with bootstrap bands) as PNG files in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from rliable import library as rly, plot_utils

    out.mkdir(parents=True, exist_ok=True)
    groups = result.groups
    palette = "colorblind" if len(groups) <= 10 else "husl"  # colorblind has 10 colors, then repeats them
    colors = dict(zip(groups, sns.color_palette(palette, n_colors=len(groups))))
    points = {g: result.aggregate[g][0] for g in groups}
    intervals = {g: result.aggregate[g][1] for g in groups}
    row_height = max(0.37, 1.5 / len(groups))  # rliable's 0.37 inch a row; a figure of two groups is 1.5 inch
    fig, _ = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=["Mean", "Median", "IQM", f"Optimality gap (γ={result.gamma:g})"],
        algorithms=list(reversed(groups)), colors=colors, xlabel=result.metric, row_height=row_height,
        xlabel_y_coordinate=-0.6 / (row_height * len(groups)))
    files = [out / "interval_estimates.png", out / "performance_profile.png"]
    fig.savefig(files[0], bbox_inches="tight", dpi=120)
    plt.close(fig)
    every = np.concatenate([result.matrices[g].ravel() for g in groups])
    taus = np.linspace(min(0.0, float(every.min())), max(float(every.max()), 1e-6), 101)
    np.random.seed(result.seed)
    profiles, bands = rly.create_performance_profile(
        {g: result.matrices[g] for g in groups}, taus, reps=result.reps,
        custom_profile_func=lambda scores, tau: (scores.reshape(-1, 1) > tau[None, :]).mean(axis=0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=bands, colors=colors, ax=ax,
                                         xlabel=f"{result.metric} (τ)", ylabel="fraction of runs with score > τ")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", frameon=False)
    fig.savefig(files[1], bbox_inches="tight", dpi=120)
    plt.close(fig)
    return files


def _report(args: argparse.Namespace) -> int:
    by = [key.strip() for key in args.by.split(",") if key.strip()]
    if not by:
        raise UserError("--by: give algorithm, dataset, seed or a config key such as model.alpha.")
    runs, skipped = find_runs(args.inputs, args.metric)
    table, more, notes = select(runs, by, args.steps, args.groups, args.tasks)
    skipped += more
    if not table:
        reasons = "".join(f"\n  {item.source}: {item.reason}" for item in skipped[:20])
        wanted = "".join(f" (--groups {' '.join(args.groups)})" if args.groups else "") + \
            "".join(f" (--tasks {' '.join(args.tasks)})" if args.tasks else "")
        raise UserError(f"no run to report: {len(runs)} run(s) with {args.metric} found{wanted}, "
                        f"{len(skipped)} left out:{reasons or ' none'}")
    if args.groups:
        missing = [g for g in args.groups if g not in table]
        if missing:
            notes.append(f"no runs of {', '.join(missing)} (groups found: "
                         f"{', '.join(sorted({run.group for run in runs}))})")
    result = compare(table, args.metric, args.gamma, args.reps, args.seed, args.groups, args.against)
    text = markdown(result, by, skipped, notes, args.inputs, args.steps)
    print(text, end="")
    if args.out is not None:
        figures = write_figures(result, args.out)
        (args.out / "report.md").write_text(text)
        print(f"\nWrote {args.out / 'report.md'}, " + ", ".join(str(f) for f in figures), file=sys.stderr)
    return 0
