"""PNG figures for BENCHMARKS.md, drawn from the TensorBoard logs of benchmarks/runs and the throughput JSON.

    pip install -e ".[bench]"        # matplotlib
    python benchmarks/plot.py                      # every dataset found under benchmarks/runs
    python benchmarks/plot.py --steps 20000 --datasets lit-offrl/maze2d/umaze-v0
    python benchmarks/plot.py --steps 20000 --datasets lit-offrl/maze2d/medium-v0 --algos LAPO PLAS BCQ LatentEM \
        TD3BC --name algos2                        # a subset, in scores_<dataset>_<steps>_algos2.png

* `benchmarks/figures/scores_<dataset>.png`: normalized score against gradient updates, one line per algorithm
  (mean over seeds) with a band from the lowest to the highest seed; runs are the folders
  `<dataset>_<algo>_seed<k>_<steps>/run` that benchmarks/scores.py writes. Runs that also log
  `val/prior_normalized_score` (LatentEM: its decoded prior policy) get a dashed "<algo> prior" line.
  Where the runs log the domain's own measure, `val/success_rate` (AntMaze goal reached, Adroit success, Kitchen
  sub-tasks), a second panel shows it the same way.
* `--results benchmarks/results/X.json ...`: the same figures from the curves that benchmarks/scores.py wrote into
  its JSON (committed, so a figure can be redrawn on a machine that no longer has the TensorBoard logs):

      python benchmarks/plot.py --results benchmarks/results/antmaze_umaze_diverse_200k_*.json --name 200k
* `benchmarks/figures/throughput.png`: updates/s of lit_offrl, the plain PyTorch loop and d3rlpy per algorithm
  (benchmarks/results/throughput.json, written by benchmarks/throughput.py).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from scores import read_log

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "benchmarks" / "runs"
FIGURES = REPO / "benchmarks" / "figures"
RUN_NAME = re.compile(r"^(?P<dataset>.+)_(?P<algo>[A-Za-z0-9]+)_seed(?P<seed>\d+)_(?P<steps>\d+)$")


CURVES = (("val/normalized_score", ""), ("val/prior_normalized_score", " prior"))  # (tag, label suffix)
SUCCESS = "val/success_rate"  # the domain's own measure, drawn in a second panel where the runs log it


def read_curves(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (updates, values)} for the tags of `CURVES` and `SUCCESS` that the run's TensorBoard log holds (one
    read)."""
    found, _ = read_log(run_dir, (*(tag for tag, _ in CURVES), SUCCESS))
    return {tag: (np.array([u for u, _ in points]), np.array([v for _, v in points])) for tag, points in found.items()}


def collect(steps: int | None, algos: list[str] | None = None) -> dict[str, dict[str, dict[str, list]]]:
    """{dataset: {"score" | "success": {algo: [(updates, values) per seed]}}} for the finished runs under
    benchmarks/runs ("<algo> prior": the decoded prior's curve, where a run logs one)."""
    found: dict = defaultdict(lambda: {"score": defaultdict(list), "success": defaultdict(list)})
    for run_dir in sorted(RUNS.glob("*/run")):
        match = RUN_NAME.match(run_dir.parent.name)
        if not match or (steps and int(match["steps"]) != steps) or (algos and match["algo"] not in algos):
            continue
        curves = read_curves(run_dir)
        for tag, panel, suffix in (*((tag, "score", suffix) for tag, suffix in CURVES), (SUCCESS, "success", "")):
            updates, values = curves.get(tag, (np.zeros(0), np.zeros(0)))
            if len(updates) and updates[-1] >= int(match["steps"]):
                found[match["dataset"]][panel][match["algo"] + suffix].append((updates, values))
    return found


def collect_results(paths: list[Path], algos: list[str] | None = None) -> dict[str, dict[str, dict[str, list]]]:
    """`collect`'s shape from benchmarks/scores.py JSON files (their "curve" and "success_curve" per seed); runs
    that failed are left out. Datasets are named as the run folders name them (slashes as underscores)."""
    found: dict = defaultdict(lambda: {"score": defaultdict(list), "success": defaultdict(list)})
    for path in paths:
        results = json.loads(Path(path).read_text())["results"]
        for dataset, by_algo in results.items():
            for algo, by_seed in by_algo.items():
                if algos and algo not in algos:
                    continue
                for run in by_seed.values():
                    if run.get("failed"):
                        continue
                    for key, panel in (("curve", "score"), ("success_curve", "success")):
                        if run.get(key):
                            points = np.array(run[key], dtype=float)
                            found[dataset.replace("/", "_")][panel][algo].append((points[:, 0], points[:, 1]))
    return found


def _draw(ax, by_algo: dict) -> None:
    """One line per algorithm (mean over seeds, up to the shortest seed's curve) with a min-max band."""
    for algo, runs in sorted(by_algo.items()):
        length = min(len(u) for u, _ in runs)
        updates = runs[0][0][:length]
        values = np.stack([v[:length] for _, v in runs])
        line, = ax.plot(updates, values.mean(0), marker="o", markersize=3, label=f"{algo} ({len(runs)} seeds)",
                        linestyle="--" if algo.endswith(" prior") else "-")
        ax.fill_between(updates, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("gradient updates")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)


def plot_scores(dataset: str, panels: dict, out: Path) -> None:
    """The normalized-score panel, and beside it the success-rate panel where the runs have one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_success = bool(panels.get("success"))
    fig, axes = plt.subplots(1, 2 if with_success else 1, figsize=(12 if with_success else 7, 4.2), squeeze=False)
    _draw(axes[0, 0], panels["score"])
    axes[0, 0].set_ylabel("normalized score (x100)")
    axes[0, 0].set_title(dataset.replace("_", "/", 1).replace("_", "/", 1))
    if with_success:
        _draw(axes[0, 1], panels["success"])
        axes[0, 1].set_ylabel("success rate (val/success_rate)")
        axes[0, 1].set_ylim(-0.05, 1.05)
        axes[0, 1].set_title("the domain's own measure")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_throughput(path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    algos = list(data["rates"])
    impls = [("lit", "lit_offrl"), ("plain", "plain PyTorch"), ("d3rlpy", "d3rlpy")]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(impls)
    for k, (key, label) in enumerate(impls):
        cells = [data["rates"][a].get(key) or {} for a in algos]
        rates = [c.get("updates_per_sec", 0.0) for c in cells]
        # The bar is the median of the interleaved runs, the whisker their range.
        spread = np.array([[r - c.get("min", r), c.get("max", r) - r] for r, c in zip(rates, cells)]).T
        bars = ax.bar(np.arange(len(algos)) + (k - 1) * width, rates, width, label=label, yerr=spread, capsize=2)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(algos)), algos)
    ax.set_yscale("log")  # CQL does ~15x the work of TD3+BC per update
    ax.set_ylabel("gradient updates / s (log scale)")
    ax.set_title(f"batch {data['batch_size']}, {data['device']}, {data['cpus']} CPU cores, {data['date']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="only runs of this length")
    parser.add_argument("--datasets", nargs="*", default=None, help="dataset ids (default: all found)")
    parser.add_argument("--algos", nargs="*", default=None, help="only these algorithms (default: all found)")
    parser.add_argument("--name", default="", help="suffix of the score figures' file names")
    parser.add_argument("--results", nargs="*", type=Path, default=None,
                        help="draw from these benchmarks/scores.py JSON files instead of benchmarks/runs")
    parser.add_argument("--throughput", type=Path, default=REPO / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    wanted = {d.replace("/", "_") for d in args.datasets} if args.datasets else None
    found = collect_results(args.results, args.algos) if args.results else collect(args.steps, args.algos)
    for dataset, panels in found.items():
        if (wanted and dataset not in wanted) or not panels["score"]:
            continue
        out = FIGURES / f"scores_{dataset}{'_' + str(args.steps) if args.steps else ''}{'_' + args.name if args.name else ''}.png"
        plot_scores(dataset, panels, out)
        print(f"wrote {out.relative_to(REPO)}")
    if args.throughput.exists():
        plot_throughput(args.throughput, FIGURES / "throughput.png")
        print(f"wrote {(FIGURES / 'throughput.png').relative_to(REPO)}")


if __name__ == "__main__":
    main()
